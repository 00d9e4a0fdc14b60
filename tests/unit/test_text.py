"""Human text: one money format, and snapshot strings made terminal-safe."""

from __future__ import annotations

import pytest

from opendev_snapshot.core.text import format_cost, printable


@pytest.mark.parametrize(
    ("usd", "shown"),
    [
        (0.0, "$0.00"),
        (-0.0, "$0.00"),
        (0.0042, "<$0.01"),
        (0.005, "<$0.01"),
        (0.01, "$0.01"),
        (0.4213, "$0.42"),
        (12.5, "$12.50"),
        (1234.5, "$1,234.50"),
        (-3.25, "-$3.25"),
        (-0.001, "-<$0.01"),
        (5, "$5.00"),
    ],
    ids=lambda v: repr(v),
)
def test_format_cost(usd, shown):
    assert format_cost(usd) == shown


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain text", "plain text"),
        ("\x1b]52;c;ZXZpbA==\x07", "\\e]52;c;ZXZpbA==\\x07"),  # OSC 52 clipboard write
        ("\x9b2J", "\\x9b2J"),  # C1 CSI: clears the screen on some terminals
        ("a\x7fb", "a\\x7fb"),  # DEL
        ("evil\u202etxt.exe", "evil\\u202etxt.exe"),  # bidi override
        ("\u2066iso\u2069", "\\u2066iso\\u2069"),
        ("line\nnext\ttab\r", "line\\nnext\\ttab\\r"),
        ("bad\udcffname", "bad\\udcffname"),  # a lone surrogate: a name that is not UTF-8
        ("caf\u00e9 \u65e5\u672c", "caf\u00e9 \u65e5\u672c"),  # printable non-ASCII stays
        ("\x00", "\\x00"),
    ],
    ids=["plain", "osc52", "c1-csi", "del", "bidi-override", "bidi-isolate", "layout", "lone-surrogate", "unicode", "nul"],
)
def test_printable_escapes_controls(raw, shown):
    assert printable(raw) == shown


def test_printable_keep_layout_keeps_newlines_and_tabs_only():
    assert printable("a\nb\tc\x1b[31m", keep_layout=True) == "a\nb\tc\\e[31m"


def test_printable_of_non_text():
    assert printable(12) == "12"
