"""The one table of how money and snapshot text are shown, for every front door.

``tests/unit/test_text.py`` checks the Python functions (``core.text``) that the
command line, IPython and the server's prompts use against these cases; the
editor tests (``tests/e2e/test_editor_text.py``) run the same cases through the
Lua (Neovim), Emacs Lisp and TypeScript (VS Code) copies. A case added here is
checked in all four places, so they cannot drift apart.
"""

from __future__ import annotations

# (dollars, shown). Ties are rounded to even on the exact binary value, as
# Python's and C's "%.2f" do (JavaScript's toFixed would round 0.125 up).
COST_CASES = [
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
    # beyond the first table: rounding, grouping and sizes every copy must get right
    (0.009999, "<$0.01"),
    (5e-324, "<$0.01"),
    (0.125, "$0.12"),  # an exact tie: to even
    (0.375, "$0.38"),
    (0.625, "$0.62"),
    (0.875, "$0.88"),
    (-0.125, "-$0.12"),
    (2.675, "$2.67"),  # really 2.67499999...
    (1.005, "$1.00"),
    (0.1 + 0.2, "$0.30"),
    (999.995, "$1,000.00"),  # really 999.99500000000000455: rounds into a new group
    (999.999, "$1,000.00"),
    (1234567.891, "$1,234,567.89"),
    (-1234.5, "-$1,234.50"),
    (1234, "$1,234.00"),
    (1_000_000, "$1,000,000.00"),
    (9007199254740993.0, "$9,007,199,254,740,992.00"),  # 2**53 + 1 is not a double
    (1e21, "$1,000,000,000,000,000,000,000.00"),  # JavaScript's toFixed gives "1e+21"
    (2.5e22, "$24,999,999,999,999,997,902,848.00"),  # the double's exact value
]

# (name, raw, shown): C0 (ESC as \e, newline \n), DEL, C1, bidi controls, line
# separators, BOM and lone surrogates become visible escapes; the rest stays.
PRINTABLE_CASES = [
    ("plain", "plain text", "plain text"),
    ("osc52", "\x1b]52;c;ZXZpbA==\x07", "\\e]52;c;ZXZpbA==\\x07"),  # OSC 52 clipboard write
    ("c1-csi", "\x9b2J", "\\x9b2J"),  # C1 CSI: clears the screen on some terminals
    ("del", "a\x7fb", "a\\x7fb"),
    ("bidi-override", "evil\u202etxt.exe", "evil\\u202etxt.exe"),
    ("bidi-isolate", "\u2066iso\u2069", "\\u2066iso\\u2069"),
    ("layout", "line\nnext\ttab\r", "line\\nnext\\ttab\\r"),
    ("lone-surrogate", "bad\udcffname", "bad\\udcffname"),  # a name that is not UTF-8
    ("unicode", "caf\u00e9 \u65e5\u672c", "caf\u00e9 \u65e5\u672c"),  # printable non-ASCII stays
    ("nul", "\x00", "\\x00"),
    # beyond the first table
    ("c1-nel", "a\x85b", "a\\x85b"),
    ("separators-and-bom", "\ufeffa\u2028b\u2029c", "\\ufeffa\\u2028b\\u2029c"),
    ("bidi-embedding", "\u202aL\u202bR\u202c", "\\u202aL\\u202bR\\u202c"),
    ("high-surrogate", "x\ud800y", "x\\ud800y"),
    ("emoji", "ok \U0001f600 done", "ok \U0001f600 done"),  # outside the BMP: a pair, not two escapes
    ("backslash", "C:\\dir\\e", "C:\\dir\\e"),  # backslashes are not escaped (as in core.text)
    ("hostile-project", "/home/u/\x1b]52;c;cm0gLXJmIH4=\x07\u202eevil", "/home/u/\\e]52;c;cm0gLXJmIH4=\\x07\\u202eevil"),
]
