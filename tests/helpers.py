"""Paths and small helpers shared by the test suites (importable as ``helpers``)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("OPENDEV_SHARED", ROOT.parent / "shared"))
FIXTURES = SHARED / "fixtures"
