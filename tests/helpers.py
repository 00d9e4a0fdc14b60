"""Paths and small helpers shared by the test suites (importable as ``helpers``).

Everything a test needs lives inside the repository: the golden fixtures
are vendored in ``tests/fixtures/`` (see its README), so the suite runs in
a bare clone with nothing beside it.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
