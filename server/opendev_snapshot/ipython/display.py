"""Rich displays of sessions: HTML in a notebook, plain text in a terminal.

Each object carries both representations (``_repr_html_`` and
``_repr_pretty_``); the front end picks the one it can show. Notebook
kernels (``kind: ipython``) are shown in a notebook's words (notebook,
cells run, ``In[...]``, no cost); OpenDev agent sessions in the agent's
(messages, tool results, cost). Text that came from a snapshot or a lock
file goes through :func:`printable` in the plain-text form (a preview can
hold escape sequences) and through ``html.escape`` in the HTML form. No
IPython import here.
"""

from __future__ import annotations

import html
import os
import re
import time

from ..core.durations import format_age
from ..core.holder import describe_holder as core_describe_holder
from ..core.text import format_cost, printable

KIND_IPYTHON = "ipython"
KIND_OPENDEV = "opendev"
_STYLE_BAD = "color:#b00"
_CELL_ID = re.compile(r"In\[(\d+)\]\Z")
# Ids that start alike: a prefix shows six characters past them.
_ID_PREFIXES = ("ipykernel-", "ipython-")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# ----------------------------------------------------------------- helpers
def short_ids(ids, *, minimum: int = 8) -> dict[str, str]:
    """The shortest prefix of each id that no other id in ``ids`` starts with.

    At least ``minimum`` characters, and six past ``ipykernel-`` (or
    ``ipython-``) for a kernel's id, so a prefix stays recognisable and
    stays unique as the directory grows a little. ``%opendev`` accepts a
    prefix everywhere an id is taken.
    """
    ids = sorted(set(ids))
    out = {}
    for i, sid in enumerate(ids):
        need = 1
        for j in (i - 1, i + 1):  # in sorted order the longest common prefix is with a neighbour
            if 0 <= j < len(ids):
                other = ids[j]
                common = 0
                for a, b in zip(sid, other):
                    if a != b:
                        break
                    common += 1
                need = max(need, common + 1)
        floor = next((len(p) + 6 for p in _ID_PREFIXES if sid.startswith(p)), minimum)
        out[sid] = sid[: max(need, floor)]
    return out


def kind_of(listing: dict) -> str:
    return KIND_IPYTHON if listing.get("kind") == KIND_IPYTHON else KIND_OPENDEV


def cell_numbers(record: dict) -> list[int]:
    """The ``In[N]`` numbers of the cells a snapshot recorded, in order."""
    out = []
    for entry in record.get("last_tool_results") or []:
        match = _CELL_ID.match(str(entry.get("call_id", "")))
        if entry.get("tool_name") == "cell" and match:
            out.append(int(match.group(1)))
    return out


def cell_range(record: dict) -> str:
    numbers = cell_numbers(record)
    if not numbers:
        return "none recorded"
    first, last = min(numbers), max(numbers)
    return f"In[{first}]" if first == last else f"In[{first}]\u2013In[{last}]"


def notebook_name(notebook: object) -> str:
    if not isinstance(notebook, str) or not notebook:
        return "(no notebook)"
    return os.path.basename(notebook.rstrip("/")) or notebook


def clock(ms: int) -> str:
    """Local wall-clock time of a millisecond timestamp: ``2025-06-01 14:03:12``."""
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))
    except (OverflowError, OSError, ValueError):
        return "an invalid time"


def saved_at(ms: int, now: int) -> str:
    return f"{format_age(now - ms)} ago ({clock(ms)})"


def describe_holder(holder: object) -> str:
    """The core's one line (``pid 123 on box (IPython kernel of /p/a.ipynb)``) and since when."""
    if not isinstance(holder, dict):
        return str(holder) if holder else "an unknown process"
    text = core_describe_holder(holder)
    started = holder.get("startedMs")
    if type(started) is int:
        text += f", since {clock(started)}"
    return text


# ------------------------------------------------------------------ tables
# "last cells": the In[...] the snapshot holds (its last max_tool_results), next to "cells run";
# recover gives back every cell from the history, not only these
IPYTHON_COLUMNS = ("session", "status", "notebook", "cells run", "last cells", "age", "recover")
OPENDEV_COLUMNS = ("session", "status", "age", "messages", "results", "cost", "project")


def ipython_row(listing: dict, short: str, now: int, own: bool = False) -> dict:
    return {
        "session": short,
        "status": listing.get("status", ""),
        "notebook": notebook_name(listing.get("notebook")),
        "cells run": str(listing["message_count"]),
        "last cells": cell_range(listing),
        "age": format_age(now - listing["snapshot_timestamp_ms"]),
        "recover": "(this kernel)" if own else f"%opendev recover {short}",
    }


def opendev_row(listing: dict, short: str, now: int) -> dict:
    return {
        "session": short,
        "status": listing.get("status", ""),
        "age": format_age(now - listing["snapshot_timestamp_ms"]),
        "messages": str(listing["message_count"]),
        "results": str(len(listing.get("last_tool_results") or [])),
        "cost": format_cost(listing.get("cost_usd", 0.0)),
        "project": listing["project_dir"],
    }


def text_table(rows: list[dict], columns) -> str:
    safe = [{c: printable(r[c]) for c in columns} for r in rows]
    widths = {c: max([len(c)] + [len(r[c]) for r in safe]) for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip()]
    for r in safe:
        lines.append("  ".join(r[c].ljust(widths[c]) for c in columns).rstrip())
    return "\n".join(lines)


def html_table(rows: list[dict], columns, titles: list[dict] | None = None) -> str:
    head = "".join(f"<th style=\"text-align:left\">{html.escape(c)}</th>" for c in columns)
    body = []
    for i, r in enumerate(rows):
        cells = []
        for c in columns:
            value = html.escape(r[c])
            title = (titles[i].get(c) if titles else None) or ""
            attr = f" title=\"{html.escape(title)}\"" if title else ""
            if c in ("session", "recover"):
                value = f"<code>{value}</code>"
            elif c == "status" and r[c] == "interrupted":
                value = f"<b style=\"{_STYLE_BAD}\">{value}</b>"
            cells.append(f"<td style=\"text-align:left\"{attr}>{value}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        "<table class=\"opendev-sessions\"><thead><tr>" + head + "</tr></thead><tbody>"
        + "".join(body) + "</tbody></table>"
    )


class _Rich:
    def _repr_pretty_(self, p, cycle) -> None:  # IPython's plain-text display
        p.text(self.to_text())

    def __str__(self) -> str:
        return self.to_text()

    def __repr__(self) -> str:  # short, for previews; _repr_pretty_ wins in IPython
        return f"<{type(self).__name__}: {self.summary()}>"

    def summary(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def to_text(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def _repr_html_(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError


class SessionTable(_Rich):
    """A listing of sessions (listing dicts) and skipped files.

    ``all_ids`` are the ids the short prefixes must be unique among (every
    session of the directory); by default the listed ones.
    """

    def __init__(self, sessions: list, skipped: list = (), *, title: str | None = None,
                 hint: str | None = None, empty: str = "No sessions.", all_ids=None,
                 own_id: str | None = None) -> None:
        self.sessions = list(sessions)
        self.skipped = [s.to_dict() if hasattr(s, "to_dict") else dict(s) for s in skipped]
        self.title = title
        self.hint = hint
        self.empty = empty
        self._now = now_ms()
        self.own_id = own_id
        ids = set(all_ids or ()) | {s["session_id"] for s in self.sessions}
        self.short = short_ids(ids)

    def __len__(self) -> int:
        return len(self.sessions)

    def summary(self) -> str:
        return f"{len(self.sessions)} session(s), {len(self.skipped)} skipped"

    def groups(self) -> list[tuple[str, tuple, list[dict], list[dict]]]:
        """``(heading, columns, rows, titles)`` per kind present: notebook kernels first."""
        out = []
        kernels = [s for s in self.sessions if kind_of(s) == KIND_IPYTHON]
        agents = [s for s in self.sessions if kind_of(s) == KIND_OPENDEV]
        if kernels:
            rows = [ipython_row(s, self.short[s["session_id"]], self._now, s["session_id"] == self.own_id)
                    for s in kernels]
            titles = [{"session": s["session_id"], "notebook": s.get("notebook") or ""} for s in kernels]
            out.append(("Notebook kernels", IPYTHON_COLUMNS, rows, titles))
        if agents:
            rows = [opendev_row(s, self.short[s["session_id"]], self._now) for s in agents]
            titles = [{"session": s["session_id"]} for s in agents]
            out.append(("OpenDev agent sessions", OPENDEV_COLUMNS, rows, titles))
        return out

    def to_text(self) -> str:
        parts = []
        if self.title:
            parts.append(printable(self.title))
        groups = self.groups()
        if not groups:
            parts.append(self.empty)
        for heading, columns, rows, _titles in groups:
            if len(groups) > 1:
                parts.append(heading + ":")
            parts.append(text_table(rows, columns))
        for s in self.skipped:
            parts.append(f"skipped {printable(s['file'])}: {printable(s['reason'])}")
        if self.hint and self.sessions:
            parts.append(self.hint)
        return "\n".join(parts)

    def _repr_html_(self) -> str:
        parts = []
        if self.title:
            parts.append(f"<p><b>{html.escape(self.title)}</b></p>")
        groups = self.groups()
        if not groups:
            parts.append(f"<p>{html.escape(self.empty)}</p>")
        for heading, columns, rows, titles in groups:
            if len(groups) > 1:
                parts.append(f"<p>{html.escape(heading)}:</p>")
            parts.append(html_table(rows, columns, titles))
        if self.skipped:
            items = "".join(
                f"<li><code>{html.escape(s['file'])}</code>: {html.escape(s['reason'])}</li>" for s in self.skipped
            )
            parts.append(f"<p>Skipped files:</p><ul>{items}</ul>")
        if self.hint and self.sessions:
            parts.append(f"<p>{html.escape(self.hint)}</p>")
        return "<div class=\"opendev-snapshot\">" + "".join(parts) + "</div>"


class TrashTable(_Rich):
    """The trash: what ``%opendev restore ID`` can bring back."""

    def __init__(self, entries: list) -> None:
        self.entries = list(entries)
        self._now = now_ms()
        self.short = short_ids(e["session_id"] for e in self.entries)

    def summary(self) -> str:
        return f"{len(self.entries)} in the trash"

    def rows(self) -> list[dict]:
        rows = []
        for e in self.entries:
            snap = e.get("snapshot") or {}
            holder = e.get("holder") or {}
            what = (
                notebook_name(holder.get("notebook")) if holder.get("kind") == KIND_IPYTHON
                else snap.get("project_dir", "(unreadable)")
            )
            rows.append({
                "session": self.short[e["session_id"]],
                "removed": f"{format_age(self._now - e['removed_at_ms'])} ago",
                "what": str(what),
                "restore": f"%opendev restore {self.short[e['session_id']]}",
            })
        return rows

    def to_text(self) -> str:
        if not self.entries:
            return "The trash is empty."
        return text_table(self.rows(), ("session", "removed", "what", "restore"))

    def _repr_html_(self) -> str:
        if not self.entries:
            return "<p>The trash is empty.</p>"
        return html_table(self.rows(), ("session", "removed", "what", "restore"))


class SessionView(_Rich):
    """One session in full: its fields and its cells (or tool results)."""

    def __init__(self, record: dict, status: str, path: str | None = None, lock: dict | None = None,
                 holder: object = None) -> None:
        self.record = dict(record)
        self.status = status
        self.path = path
        self.lock = lock if isinstance(lock, dict) else {}
        self.holder = holder
        self._now = now_ms()

    @property
    def kind(self) -> str:
        return kind_of(self.lock)

    def summary(self) -> str:
        return f"{self.record['session_id']} ({self.status})"

    def fields(self) -> list[tuple[str, str]]:
        r = self.record
        out = [("session", r["session_id"]), ("status", self.status)]
        if self.kind == KIND_IPYTHON:
            out += [
                ("kind", "notebook kernel (IPython)"),
                ("notebook", self.lock.get("notebook") or "(no notebook)"),
                ("saved", saved_at(r["snapshot_timestamp_ms"], self._now)),
                ("cells run", str(r["message_count"])),
                ("recorded", cell_range(r)),
            ]
            number = self.lock.get("historySession")
            if type(number) is int:
                where = self.lock.get("historyDb") or "the default database"
                out.append(("history", f"session {number} in {where}"))
        else:
            out += [
                ("saved", saved_at(r["snapshot_timestamp_ms"], self._now)),
                ("messages", str(r["message_count"])),
                ("cost", format_cost(r["cost_usd"])),
            ]
        out.append(("project", r["project_dir"]))
        if self.holder:
            out.append(("held by", describe_holder(self.holder)))
        if self.path:
            out.append(("file", self.path))
        return out

    def results(self) -> list[tuple[str, bool, str]]:
        """``(label, success, preview)`` per tool result."""
        out = []
        for t in self.record["last_tool_results"]:
            label = t["call_id"] if t["tool_name"] == "cell" else f"{t['tool_name']} {t['call_id']}"
            out.append((label, bool(t["success"]), t["output_preview"]))
        return out

    def _results_heading(self, n: int) -> str:
        noun = "cells" if self.kind == KIND_IPYTHON else "tool results"
        return f"{noun} ({n}):" if n else f"{noun}: none recorded"

    def to_text(self) -> str:
        fields = [(k, printable(v)) for k, v in self.fields()]
        width = max(len(k) for k, _ in fields)
        lines = [f"{k.ljust(width)}  {v}" for k, v in fields]
        results = self.results()
        lines.append(self._results_heading(len(results)))
        for label, ok, preview in results:
            lines.append(f"  {'ok ' if ok else 'ERR'} {printable(label)}")
            for line in preview.splitlines() or [""]:
                lines.append(f"      {printable(line, keep_layout=True)}")
        if self.kind == KIND_IPYTHON and self.status != "running":
            lines.append(f"Full sources: %opendev recover {self.record['session_id']}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style=\"text-align:left\">{html.escape(k)}</th><td style=\"text-align:left\">{html.escape(v)}</td></tr>"
            for k, v in self.fields()
        )
        results = self.results()
        trs = "".join(
            "<tr><td><code>{}</code></td><td>{}</td><td style=\"text-align:left\"><pre>{}</pre></td></tr>".format(
                html.escape(label),
                "ok" if ok else f"<b style=\"{_STYLE_BAD}\">error</b>",
                html.escape(preview),
            )
            for label, ok, preview in results
        )
        heading = html.escape(self._results_heading(len(results)))
        table = (
            f"<p>{heading}</p><table><thead><tr><th>cell</th><th>outcome</th><th>preview</th></tr></thead>"
            f"<tbody>{trs}</tbody></table>" if results else f"<p>{heading}</p>"
        )
        tail = ""
        if self.kind == KIND_IPYTHON and self.status != "running":
            tail = f"<p>Full sources: <code>%opendev recover {html.escape(self.record['session_id'])}</code></p>"
        return f"<div class=\"opendev-snapshot\"><table>{rows}</table>{table}{tail}</div>"

