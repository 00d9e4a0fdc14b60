"""The vendored golden fixtures and the contract copy stay in step with the shared originals.

The tests read the golden files from ``tests/fixtures/`` only, so a bare
clone runs them. This module is the one place that looks beside the
repository (``../shared``, or ``$OPENDEV_SHARED``): where the shared
originals exist, the copies must match them; where they do not (a clone
with nothing beside it) there is nothing to compare, and the test says so.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import FIXTURES, ROOT

GOLDEN_DIRS = ("write", "write-legacy", "refused")

# docs/PROTOCOL.md is the shared contract with its two paths that point
# outside the repository rewritten to what a reader of the repository has.
PROTOCOL_REWRITES = (
    (
        "The reference for every storage behaviour is `../seed/state_snapshot.rs`",
        "The reference for every storage behaviour is `state_snapshot.rs` (the Rust reference, "
        "opendev-runtime 0.1.4; not part of this repository)",
    ),
    ("`../fixtures/` holds pairs that show it.", "`tests/fixtures/` holds pairs that show it."),
)


def _shared_root() -> Path:
    return Path(os.environ.get("OPENDEV_SHARED") or ROOT.parent / "shared")


def _golden_files(base: Path) -> dict:
    files = {}
    for sub in GOLDEN_DIRS:
        for path in sorted((base / sub).glob("*")):
            files[f"{sub}/{path.name}"] = path.read_bytes()
    return files


def test_vendored_fixtures_are_complete():
    files = _golden_files(FIXTURES)
    inputs = [n for n in files if n.startswith("write/") and n.endswith(".input.json")]
    assert len(inputs) >= 30, f"golden fixtures missing under {FIXTURES}"
    for name in inputs:
        assert name.replace(".input.json", ".expected.json") in files, name
    assert any(n.startswith("write-legacy/") for n in files)
    assert len([n for n in files if n.startswith("refused/")]) >= 9
    readme = (FIXTURES / "README.md").read_text("utf-8")
    assert "Where these files come from" in readme


def test_vendored_fixtures_match_the_shared_originals():
    shared = _shared_root() / "fixtures"
    if not shared.is_dir():
        pytest.skip(f"no shared fixtures at {shared} (a bare clone): the vendored copy is the only one, nothing to compare")
    ours, theirs = _golden_files(FIXTURES), _golden_files(shared)
    assert sorted(ours) == sorted(theirs), "the vendored fixtures and the shared ones are different sets of files"
    differ = [name for name in ours if ours[name] != theirs[name]]
    assert not differ, f"vendored fixtures differ from {shared}: {differ} (refresh them, see tests/fixtures/README.md)"


def test_protocol_copy_is_in_step_with_the_contract():
    shared = _shared_root() / "contract" / "PROTOCOL.md"
    if not shared.is_file():
        pytest.skip(f"no shared contract at {shared} (a bare clone): docs/PROTOCOL.md is the only copy, nothing to compare")
    expected = shared.read_text("utf-8")
    for old, new in PROTOCOL_REWRITES:
        assert old in expected, f"the contract no longer says {old!r}: update PROTOCOL_REWRITES and docs/PROTOCOL.md"
        expected = expected.replace(old, new)
    ours = (ROOT / "docs" / "PROTOCOL.md").read_text("utf-8")
    assert ours == expected, "docs/PROTOCOL.md is not the shared contract (with the paths rewritten): copy it again"
