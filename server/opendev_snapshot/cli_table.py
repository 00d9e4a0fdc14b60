"""Tables for the command line: fitted to a terminal, plain tabs in a pipe.

Standard library only, on purpose. ``rich`` is the usual choice for
terminal tables, and it was measured against this module's budget (the
whole ``opendev-snapshot list`` process may grow by at most 10 %): on a
directory of 10,000 snapshots (8,010 listed) the whole process takes
~430 ms; importing ``rich.console`` + ``rich.table`` (rich 15.0) alone
costs ~30 ms (7 %), and rendering the 8,010 rows through ``rich.table``
took 2.7-3.8 s (more than 6x the whole process). This renderer adds a
few milliseconds.

Rules (``gh``'s): a column marked ``keep`` is never cut (session ids);
on a narrow terminal a ``squeeze`` column (a path) first loses its start
(``…/projects/x``), then the ``drop`` columns go, in their order, then the
path shrinks to its minimum; if that still does not fit (a long id on a
60-column terminal), each row becomes a small block instead of a line
(the id alone on its first line), so nothing is ever cut. ``wide`` shows
everything in full. In a pipe the rows are tab-separated, without a
header and without any cutting: one row per line, every value escaped by
the caller (no tab or newline inside a value).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

ELLIPSIS = "\u2026"
GAP = "  "
COMFORT = 24  # a squeezed path keeps this many cells before optional columns go


@dataclass
class Column:
    header: str
    keep: bool = False  # never cut, never dropped
    drop: int = 0  # 1, 2, 3...: dropped in this order when too narrow; 0 = never dropped
    squeeze: int = 0  # > 0: may be cut from the left down to this many cells
    right: bool = False  # right-aligned (numbers)
    stacked: str = "{}"  # how the value reads in the stacked layout ("{} messages")


def cell_width(text: str) -> int:
    """Terminal cells ``text`` takes (East Asian wide and full-width chars count 2)."""
    if text.isascii():
        return len(text)
    width = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def cut_left(text: str, cells: int) -> str:
    """``text`` cut from the left to at most ``cells`` cells, marked with an ellipsis."""
    if cell_width(text) <= cells:
        return text
    if cells <= 1:
        return ELLIPSIS[:cells]
    kept = []
    used = 1
    for ch in reversed(text):
        w = cell_width(ch)
        if used + w > cells:
            break
        kept.append(ch)
        used += w
    return ELLIPSIS + "".join(reversed(kept))


def _pad(text: str, width: int, right: bool) -> str:
    fill = " " * (width - cell_width(text))
    return fill + text if right else text + fill


def render(columns: list, rows: list, width: int | None, *, wide: bool = False) -> str:
    """A table fitted to ``width`` cells (None or ``wide``: as wide as it needs)."""
    shown = list(range(len(columns)))
    widths = [cell_width(c.header) for c in columns]
    for row in rows:
        for i, value in enumerate(row):
            w = cell_width(value)
            if w > widths[i]:
                widths[i] = w
    limits = list(widths)

    def total() -> int:
        return sum(limits[i] for i in shown) + len(GAP) * (len(shown) - 1)

    if width is not None and not wide:
        squeezable = [i for i, c in enumerate(columns) if c.squeeze]
        # 1) squeeze paths to a comfortable size, 2) drop the optional columns
        #    in order, 3) squeeze paths to their minimum, 4) drop them too.
        for i in squeezable:
            if total() > width:
                limits[i] = max(min(widths[i], COMFORT), limits[i] - (total() - width))
        for i in sorted((i for i, c in enumerate(columns) if c.drop), key=lambda i: columns[i].drop):
            if total() <= width:
                break
            shown.remove(i)
        for i in squeezable:
            if total() > width and i in shown:
                limits[i] = max(columns[i].squeeze, cell_width(columns[i].header), limits[i] - (total() - width))
        if total() > width:
            return stacked(columns, rows, width)
    lines = []
    last = shown[-1] if shown else None
    header_cells = []
    for i in shown:
        header = columns[i].header
        header_cells.append(header if i == last and not columns[i].right else _pad(header, limits[i], columns[i].right))
    lines.append(GAP.join(header_cells).rstrip())
    for row in rows:
        cells = []
        for i in shown:
            value = row[i]
            if columns[i].squeeze and cell_width(value) > limits[i]:
                value = cut_left(value, limits[i])
            cells.append(value if i == last and not columns[i].right else _pad(value, limits[i], columns[i].right))
        lines.append(GAP.join(cells).rstrip())
    return "\n".join(lines)


def stacked(columns: list, rows: list, width: int) -> str:
    """One block per row, for terminals too narrow for the table: the first
    column on its own line (never cut: it wraps if it must), then the short
    values on indented lines no wider than ``width``, and each path on its
    own line, whole."""
    blocks = []
    for row in rows:
        lines = [row[0]]
        line = ""
        for c, v in zip(columns[1:], row[1:]):
            if c.squeeze or not v:
                continue
            part = c.stacked.format(v)
            if line and cell_width(line) + 2 + cell_width(part) > width - 2:
                lines.append("  " + line)
                line = ""
            line = f"{line}, {part}" if line else part
        if line:
            lines.append("  " + line)
        lines.extend("  " + v for c, v in zip(columns[1:], row[1:]) if c.squeeze and v)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def tsv(rows: list) -> str:
    """Rows as tab-separated lines (values must hold no tab or newline)."""
    return "\n".join("\t".join(row) for row in rows)
