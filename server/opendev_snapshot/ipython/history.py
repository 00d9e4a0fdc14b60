"""Give a dead kernel's code back: its cells, from IPython's history database.

A kernel's snapshot keeps only short previews of its last cells; IPython's
own history database (``history.sqlite``) keeps the full source of every
cell, keyed by the kernel's history session number, which the kernel
writes into its lock file (``historySession``, and ``historyDb`` when the
database is not the default one). This module reads that database
read-only, checks that it still belongs to the snapshot, falls back to the
previews (and says why) when it cannot, and renders the cells three ways:
a next input cell, a runnable ``.py`` file, and a list of cells to re-run.

No IPython import at module level: the transformer is passed in (or
imported when a script is rendered).
"""

from __future__ import annotations

import os
import re
import sqlite3
import urllib.parse
from dataclasses import dataclass, field

CELL_ID = re.compile(r"In\[(\d+)\]\Z")
ELLIPSIS = "\u2026"
OUTCOME_SEP = "\n-> "
REDACTED = "[REDACTED:"
# How long a reader waits for a writer (another kernel) to release the database.
DB_TIMEOUT_S = 3.0
# Lines that are opendev's own commands: never re-run, kept as comments.
_OWN_COMMAND = re.compile(r"\s*%{1,2}(opendev\b|(load_ext|reload_ext|unload_ext)\s+opendev_snapshot\b)")


class HistoryUnavailable(Exception):
    """The history database cannot give this session's cells; the message says why."""


@dataclass
class Cell:
    """One cell the dead kernel ran."""

    number: int  # its In[N]
    source: str  # full source when ``complete``, else what the preview kept
    complete: bool = True  # False: only a (possibly cut) preview is known
    outcome: str | None = None  # "ok", "out: ...", "error: ..." from the snapshot, None if not recorded
    success: bool | None = None
    unfinished: bool = False  # no outcome and the last cell: it may have been running at the crash

    @property
    def own_command(self) -> bool:
        lines = [line for line in self.source.splitlines() if line.strip()]
        return bool(lines) and all(_OWN_COMMAND.match(line) for line in lines)


@dataclass
class Recovery:
    """What is known of a dead kernel's cells, and where it came from."""

    session_id: str
    cells: list[Cell]
    from_history: bool  # True: full sources from the history database
    notes: list[str] = field(default_factory=list)  # human sentences (fallbacks, gaps)
    notebook: str | None = None
    history_db: str | None = None
    history_session: int | None = None

    @property
    def complete_count(self) -> int:
        return sum(1 for c in self.cells if c.complete)


# ------------------------------------------------------------------ previews
def split_preview(preview: str) -> tuple[str, str | None, bool]:
    """``(source head, outcome or None, head is complete)`` of one cell's preview.

    The extension writes ``"<source head>\\n-> <outcome>"``; the head is cut
    with an ellipsis when the source was longer than the preview allows,
    and the whole preview may be cut (losing the outcome). Redacted secrets
    make a head incomplete too.
    """
    if preview.startswith("-> "):
        return "", preview[3:], True
    head, sep, outcome = preview.partition(OUTCOME_SEP)
    if not sep:
        return preview, None, False  # the preview itself was cut before the outcome
    complete = not head.endswith(ELLIPSIS) and REDACTED not in head
    return head, outcome, complete


def cells_from_record(record: dict) -> dict[int, Cell]:
    """The cells a snapshot recorded (tool results ``cell`` / ``In[N]``), by number."""
    cells: dict[int, Cell] = {}
    for entry in record.get("last_tool_results") or []:
        match = CELL_ID.match(str(entry.get("call_id", "")))
        if entry.get("tool_name") != "cell" or not match:
            continue
        head, outcome, complete = split_preview(str(entry.get("output_preview", "")))
        number = int(match.group(1))
        cells[number] = Cell(number, head, complete, outcome, bool(entry.get("success")))
    return cells


# ------------------------------------------------------------------- history
def read_history(db_path: str, session_number: int, *, timeout: float = DB_TIMEOUT_S) -> list[tuple[int, str]]:
    """``[(line, raw source)]`` of one history session, read-only, in order.

    Raises :class:`HistoryUnavailable` with a short reason when the file is
    missing, locked, corrupt or not an IPython history database. Never
    creates or changes the file.
    """
    if db_path == ":memory:":
        raise HistoryUnavailable("that kernel kept its history in memory only (HistoryManager.hist_file = ':memory:')")
    if not os.path.isfile(db_path):
        raise HistoryUnavailable(f"IPython's history database {db_path} does not exist")
    uri = "file:" + urllib.parse.quote(os.path.abspath(db_path)) + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=timeout)
    except sqlite3.Error as exc:
        raise HistoryUnavailable(f"cannot open IPython's history database {db_path}: {exc}") from exc
    try:
        rows = conn.execute(
            "SELECT line, source_raw, source FROM history WHERE session = ? ORDER BY line",
            (int(session_number),),
        ).fetchall()
    except sqlite3.OperationalError as exc:
        text = str(exc)
        if "locked" in text or "busy" in text:
            raise HistoryUnavailable(
                f"IPython's history database {db_path} is locked by another process (waited {timeout:g}s)"
            ) from exc
        raise HistoryUnavailable(f"cannot read IPython's history database {db_path}: {text}") from exc
    except sqlite3.DatabaseError as exc:
        raise HistoryUnavailable(f"IPython's history database {db_path} is unreadable: {exc}") from exc
    finally:
        conn.close()
    out = []
    for line, raw, parsed in rows:
        text = raw if isinstance(raw, str) else parsed if isinstance(parsed, str) else ""
        if isinstance(line, int):
            out.append((line, text))
    return out


def _matches(history_source: str, cell: Cell) -> bool:
    """Whether a recorded preview head agrees with the history's full source."""
    head = cell.source
    if not head or REDACTED in head:
        return True  # nothing to compare
    if head.endswith(ELLIPSIS):
        head = head[:-1]
    return history_source.strip("\n").rstrip().startswith(head)


def recover(
    record: dict,
    lock_info: dict | None,
    *,
    default_db: str | None,
    timeout: float = DB_TIMEOUT_S,
) -> Recovery:
    """Every cell the dead kernel ran that can be known, in execution order.

    From the history database named by the lock file (``historySession``,
    ``historyDb`` or ``default_db``) when it is readable and agrees with the
    snapshot's previews; otherwise from the previews, with a note saying why.
    Cells the snapshot recorded but the database lacks (written in the
    instant before the kill) are filled in from their previews.
    """
    info = lock_info or {}
    recorded = cells_from_record(record)
    notebook = info.get("notebook") if isinstance(info.get("notebook"), str) else None
    result = Recovery(record["session_id"], [], False, notebook=notebook)
    session_number = info.get("historySession")
    db = info.get("historyDb") if isinstance(info.get("historyDb"), str) else default_db
    reason = None
    rows: list[tuple[int, str]] = []
    if type(session_number) is not int or session_number <= 0:
        reason = "its snapshot does not name an IPython history session (it was not saved by a notebook kernel, or by an older version)"
    elif not db:
        reason = "the history database's location is unknown"
    else:
        result.history_db, result.history_session = db, session_number
        try:
            rows = read_history(db, session_number, timeout=timeout)
        except HistoryUnavailable as exc:
            reason = str(exc)
        else:
            by_line = dict(rows)
            bad = [n for n, c in recorded.items() if n in by_line and not _matches(by_line[n], c)]
            if bad:
                reason = (
                    f"history session {session_number} in {db} does not match the snapshot "
                    f"(In[{bad[0]}] differs): the database was replaced or belongs to another profile"
                )
            elif not rows:
                reason = f"history session {session_number} in {db} holds no cells"
    if reason is None:
        result.from_history = True
        by_number = {n: Cell(n, src) for n, src in rows}
        missing = sorted(set(recorded) - set(by_number))
        for n in missing:  # recorded, not yet flushed to the database when the kernel died
            by_number[n] = recorded[n]
        if missing:
            result.notes.append(
                "not in the history database, taken from the snapshot's previews: "
                + ", ".join(f"In[{n}]" for n in missing)
            )
        for n, cell in by_number.items():
            if n in recorded and cell.outcome is None:
                cell.outcome, cell.success = recorded[n].outcome, recorded[n].success
        cells = [by_number[n] for n in sorted(by_number)]
    else:
        result.notes.append(f"IPython's history is not available: {reason}. Only the snapshot's previews are shown.")
        cells = [recorded[n] for n in sorted(recorded)]
        if cells and cells[0].number > 1:
            result.notes.append(f"cells before In[{cells[0].number}] were not recorded by the snapshot")
    if cells:
        last = cells[-1]
        count = record.get("message_count")
        if last.outcome is None and last.number not in recorded and isinstance(count, int) and last.number > count:
            last.unfinished = True
    incomplete = [c.number for c in cells if not c.complete]
    if incomplete:
        result.notes.append(
            "known only from a preview that was cut or redacted (kept as comments): "
            + ", ".join(f"In[{n}]" for n in incomplete)
        )
    result.cells = cells
    return result


# ----------------------------------------------------------------- rendering
def _commented(text: str, prefix: str = "# ") -> str:
    return "\n".join(prefix + line if line else prefix.rstrip() for line in text.splitlines())


def _cell_note(cell: Cell) -> str | None:
    if cell.own_command:
        return "opendev's own command, not re-run"
    if not cell.complete:
        return "only a cut preview of this cell is known"
    if cell.unfinished:
        return "no outcome recorded: it may have been running when the kernel died"
    return None


def span(cells: list[Cell]) -> str:
    """``In[3]``, ``In[3]\u2013In[7]``, or ``no cells``."""
    if not cells:
        return "no cells"
    first, last = cells[0].number, cells[-1].number
    return f"In[{first}]" if first == last else f"In[{first}]\u2013In[{last}]"


def header(recovery: Recovery) -> list[str]:
    n = len(recovery.cells)
    whose = f"{os.path.basename(recovery.notebook)}'s dead kernel" if recovery.notebook else "a dead IPython session"
    source = (
        f"IPython's history (session {recovery.history_session})"
        if recovery.from_history
        else "the snapshot's previews"
    )
    lines = [
        f"# Recovered by opendev-snapshot: {n} cell{'s' if n != 1 else ''} of {whose}, {span(recovery.cells)}.",
        f"# Session {recovery.session_id}, from {source}.",
    ]
    lines += [f"# Note: {note}" for note in recovery.notes]
    return lines


def as_next_input(recovery: Recovery, transform=None) -> str:
    """One cell's text: every cell after a ``# In[N]`` marker, as typed.

    A cell magic (``%%time``) must open its cell, so inside the combined
    cell it is written the way IPython runs it (``transform``); cells that
    are only known from a cut preview, and opendev's own commands, are
    kept as comments.
    """
    out = header(recovery)
    for cell in recovery.cells:
        note = _cell_note(cell)
        source = cell.source.strip("\n").rstrip()
        marker = f"# In[{cell.number}]"
        if note and (cell.own_command or not cell.complete):
            out += ["", f"{marker} ({note})", _commented(source) if source else "#"]
            continue
        if source.lstrip().startswith("%%") and transform is not None:
            out += ["", f"{marker} (cell magic, written as IPython runs it)", transform(source).rstrip()]
            continue
        out += ["", f"{marker} ({note})" if note else marker, source]
    return "\n".join(out) + "\n"


def as_script(recovery: Recovery, transform) -> str:
    """A runnable ``.py`` file: IPython syntax transformed as IPython runs it.

    Cells that do not compile (they failed in the dead kernel too), cut
    previews and opendev's own commands become comments, so the file as a
    whole always compiles. When a cell needs ``get_ipython()`` the header
    says to run the file with ``ipython``.
    """
    body: list[str] = []
    needs_ipython = False
    for cell in recovery.cells:
        note = _cell_note(cell)
        source = cell.source.strip("\n").rstrip()
        marker = f"# In[{cell.number}]"
        if cell.own_command or not cell.complete:
            body += ["", "", f"{marker} ({note})", _commented(source) if source else "#"]
            continue
        code = transform(source).rstrip() if source else ""
        try:
            compile(code + "\n", f"In[{cell.number}]", "exec")
        except (SyntaxError, ValueError) as exc:
            why = f"{type(exc).__name__}: {getattr(exc, 'msg', None) or exc}"
            body += ["", "", f"{marker} (does not compile, kept as a comment: {why})", _commented(source)]
            continue
        notes = [note] if note else []
        if code != source:
            needs_ipython = True
            notes.append("IPython syntax, written as IPython runs it")
            if "\n" not in source:
                notes.append(f"was: {source}")
        body += ["", "", f"{marker} ({'; '.join(notes)})" if notes else marker, code]
    head = ["#!/usr/bin/env python3"] + header(recovery)
    if needs_ipython:
        head.append("# Some cells use IPython (get_ipython()): run this file with `ipython FILE.py` or `%run FILE.py`.")
    return "\n".join(head + body) + "\n"


def cells_to_run(recovery: Recovery) -> tuple[list[Cell], list[str], Cell | None]:
    """``(cells to re-run, notes on skipped cells, cell that stops the run)``.

    opendev's own commands are skipped; the run stops before a cell that
    is only known from a cut preview, and before the last cell when it
    may have been running at the crash (it may be what killed the kernel).
    """
    run: list[Cell] = []
    skipped: list[str] = []
    for cell in recovery.cells:
        if not cell.source.strip():
            continue
        if cell.own_command:
            skipped.append(f"In[{cell.number}] (opendev's own command)")
            continue
        if not cell.complete or cell.unfinished:
            return run, skipped, cell
        run.append(cell)
    return run, skipped, None
