"""Text shown to people: money, and snapshot strings made safe for a terminal.

Every front door (command line, IPython, the server's prompts) formats
costs with :func:`format_cost` and passes text that came from a snapshot
or a lock file through :func:`printable` before a terminal or an editor
shows it: a tool preview can hold escape sequences (an OSC 52 clipboard
write, a CSI that moves the cursor) or bidi overrides that reorder what
the reader sees.
"""

from __future__ import annotations

import math
import re

# C0 controls, DEL, C1 controls, and the bidi embedding/override/isolate
# marks (U+202A-U+202E, U+2066-U+2069) plus the line/paragraph separators;
# and lone surrogates (a file name that is not UTF-8, a "\ud800" escape in a
# lock file's JSON), which no terminal encoding can write.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\e"}
_KEEP_LAYOUT = {"\n", "\t"}


def _escape(match: re.Match) -> str:
    ch = match.group()
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, *, keep_layout: bool = False) -> str:
    """``text`` with every control character made visible as an escape.

    C0 (``\\x1b`` shows as ``\\e``, newline as ``\\n``), DEL, C1 (``\\x9b``)
    and bidi overrides (``\\u202e``) never reach the output raw.
    ``keep_layout`` leaves newlines and tabs alone, for multi-line blocks.
    """
    value = text if isinstance(text, str) else str(text)
    if keep_layout:
        return _UNSAFE.sub(lambda m: m.group() if m.group() in _KEEP_LAYOUT else _escape(m), value)
    return _UNSAFE.sub(_escape, value)


_MAX_DEPTH = 32
_SURROGATE = re.compile("[\ud800-\udfff]")


def printable_json(value: object, *, only_unencodable: bool = False, _depth: int = 0) -> object:
    """A JSON value read from disk made safe to send and to show.

    Every string, keys included, goes through :func:`printable`; with
    ``only_unencodable`` only the strings holding a lone surrogate (which no
    UTF-8 stream or terminal can write and strict JSON parsers refuse) do,
    and the others stay data for the front doors to escape when they show
    them (a notebook path with a bidi mark in its name still opens). A
    non-finite number (``NaN``, ``1e400``) becomes its name, as JSON has
    none; containers nested deeper than 32 levels become ``"..."``.
    """
    if isinstance(value, str):
        return printable(value) if not only_unencodable or _SURROGATE.search(value) else value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (dict, list)) and _depth >= _MAX_DEPTH:
        return "..."
    deeper = {"only_unencodable": only_unencodable, "_depth": _depth + 1}
    if isinstance(value, dict):
        return {printable_json(key, **deeper): printable_json(item, **deeper) for key, item in value.items()}
    if isinstance(value, list):
        return [printable_json(item, **deeper) for item in value]
    return value


def format_cost(usd: float) -> str:
    """Dollars the same way everywhere: ``$0.00``, ``<$0.01``, ``$0.42``, ``$1,234.50``."""
    value = float(usd)
    if value == 0:
        return "$0.00"
    sign = "-" if value < 0 else ""
    value = abs(value)
    if value < 0.01:
        return f"{sign}<$0.01"
    return f"{sign}${value:,.2f}"
