"""Shared test fixtures: paths to the golden fixtures and temporary stores."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from helpers import FIXTURES, ROOT  # noqa: F401  (re-exported for tests)


@pytest.fixture
def snapshot_dir(tmp_path: Path) -> Path:
    return tmp_path / "snapshots"


@pytest.fixture
def store(snapshot_dir: Path):
    from opendev_snapshot.core import SnapshotStore

    s = SnapshotStore(snapshot_dir)
    yield s
    s.close()


@pytest.fixture
def python() -> str:
    return sys.executable
