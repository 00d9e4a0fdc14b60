"""Human text: one money format, and snapshot strings made terminal-safe.

The cases are in ``tests/text_cases.py``, shared with the editors' copies
(``tests/e2e/test_editor_text.py``).
"""

from __future__ import annotations

import pytest

from opendev_snapshot.core.text import format_cost, printable
from text_cases import COST_CASES, PRINTABLE_CASES


@pytest.mark.parametrize(("usd", "shown"), COST_CASES, ids=lambda v: repr(v))
def test_format_cost(usd, shown):
    assert format_cost(usd) == shown


@pytest.mark.parametrize(("raw", "shown"), [c[1:] for c in PRINTABLE_CASES], ids=[c[0] for c in PRINTABLE_CASES])
def test_printable_escapes_controls(raw, shown):
    assert printable(raw) == shown


def test_printable_keep_layout_keeps_newlines_and_tabs_only():
    assert printable("a\nb\tc\x1b[31m", keep_layout=True) == "a\nb\tc\\e[31m"


def test_printable_of_non_text():
    assert printable(12) == "12"
