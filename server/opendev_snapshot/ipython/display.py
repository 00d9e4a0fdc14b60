"""Rich displays of sessions: HTML in a notebook, plain text in a terminal.

Each object carries both representations (``_repr_html_`` and
``_repr_pretty_``); the front end picks the one it can show. No IPython
import here.
"""

from __future__ import annotations

import html

from ..core.durations import format_age
from ..core.store import now_ms

COLUMNS = ("session", "status", "age", "messages", "results", "last", "cost", "project")
_STYLE_BAD = "color:#b00"


def _row(listing: dict, now: int) -> dict:
    results = listing.get("last_tool_results") or []
    return {
        "session": listing["session_id"],
        "status": listing.get("status", ""),
        "age": format_age(now - listing["snapshot_timestamp_ms"]),
        "messages": str(listing["message_count"]),
        "results": str(len(results)),
        "last": results[-1]["call_id"] if results else "",
        "cost": f"${float(listing.get('cost_usd', 0.0)):.2f}",
        "project": listing["project_dir"],
    }


def text_table(rows: list[dict], columns=COLUMNS) -> str:
    widths = {c: max([len(c)] + [len(r[c]) for r in rows]) for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip()]
    for r in rows:
        lines.append("  ".join(r[c].ljust(widths[c]) for c in columns).rstrip())
    return "\n".join(lines)


def html_table(rows: list[dict], columns=COLUMNS) -> str:
    head = "".join(f"<th style=\"text-align:left\">{html.escape(c)}</th>" for c in columns)
    body = []
    for r in rows:
        cells = []
        for c in columns:
            value = html.escape(r[c])
            if c == "session":
                value = f"<code>{value}</code>"
            elif c == "status" and r[c] == "interrupted":
                value = f"<b style=\"{_STYLE_BAD}\">{value}</b>"
            cells.append(f"<td style=\"text-align:left\">{value}</td>")
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
    """A listing of sessions (``ListResult.sessions`` dicts) and skipped files."""

    def __init__(self, sessions: list, skipped: list = (), *, title: str | None = None,
                 hint: str | None = None, empty: str = "No sessions.") -> None:
        self.sessions = list(sessions)
        self.skipped = [s.to_dict() if hasattr(s, "to_dict") else dict(s) for s in skipped]
        self.title = title
        self.hint = hint
        self.empty = empty
        self._now = now_ms()

    def __len__(self) -> int:
        return len(self.sessions)

    def summary(self) -> str:
        return f"{len(self.sessions)} session(s), {len(self.skipped)} skipped"

    def rows(self) -> list[dict]:
        return [_row(s, self._now) for s in self.sessions]

    def to_text(self) -> str:
        parts = []
        if self.title:
            parts.append(self.title)
        parts.append(text_table(self.rows()) if self.sessions else self.empty)
        for s in self.skipped:
            parts.append(f"skipped {s['file']}: {s['reason']}")
        if self.hint and self.sessions:
            parts.append(self.hint)
        return "\n".join(parts)

    def _repr_html_(self) -> str:
        parts = []
        if self.title:
            parts.append(f"<p><b>{html.escape(self.title)}</b></p>")
        parts.append(html_table(self.rows()) if self.sessions else f"<p>{html.escape(self.empty)}</p>")
        if self.skipped:
            items = "".join(
                f"<li><code>{html.escape(s['file'])}</code>: {html.escape(s['reason'])}</li>" for s in self.skipped
            )
            parts.append(f"<p>Skipped files:</p><ul>{items}</ul>")
        if self.hint and self.sessions:
            parts.append(f"<p>{html.escape(self.hint)}</p>")
        return "<div class=\"opendev-snapshot\">" + "".join(parts) + "</div>"


class SessionView(_Rich):
    """One session in full: its fields and its tool results."""

    FIELDS = ("session_id", "status", "message_count", "snapshot_timestamp_ms", "completed", "project_dir", "cost_usd")

    def __init__(self, record: dict, status: str, path: str | None = None, holder: str | None = None) -> None:
        self.record = dict(record)
        self.status = status
        self.path = path
        self.holder = holder
        self._now = now_ms()

    def summary(self) -> str:
        return f"{self.record['session_id']} ({self.status})"

    def fields(self) -> list[tuple[str, str]]:
        r = self.record
        out = [
            ("session", r["session_id"]),
            ("status", self.status),
            ("age", format_age(self._now - r["snapshot_timestamp_ms"])),
            ("messages", str(r["message_count"])),
            ("timestamp_ms", str(r["snapshot_timestamp_ms"])),
            ("cost", f"${float(r['cost_usd']):.4f}"),
            ("project", r["project_dir"]),
        ]
        if self.holder:
            out.append(("held by", self.holder))
        if self.path:
            out.append(("file", self.path))
        return out

    def to_text(self) -> str:
        width = max(len(k) for k, _ in self.fields())
        lines = [f"{k.ljust(width)}  {v}" for k, v in self.fields()]
        results = self.record["last_tool_results"]
        lines.append(f"tool results ({len(results)}):" if results else "tool results: none")
        for t in results:
            mark = "ok " if t["success"] else "ERR"
            lines.append(f"  {mark} {t['tool_name']} {t['call_id']}")
            for line in t["output_preview"].splitlines() or [""]:
                lines.append(f"      {line}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style=\"text-align:left\">{html.escape(k)}</th><td style=\"text-align:left\">{html.escape(v)}</td></tr>"
            for k, v in self.fields()
        )
        results = self.record["last_tool_results"]
        trs = "".join(
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td style=\"text-align:left\"><pre>{}</pre></td></tr>".format(
                html.escape(t["tool_name"]),
                html.escape(t["call_id"]),
                "ok" if t["success"] else f"<b style=\"{_STYLE_BAD}\">error</b>",
                html.escape(t["output_preview"]),
            )
            for t in results
        )
        table = (
            "<table><thead><tr><th>tool</th><th>call</th><th>outcome</th><th>preview</th></tr></thead>"
            f"<tbody>{trs}</tbody></table>" if results else "<p>No tool results.</p>"
        )
        return f"<div class=\"opendev-snapshot\"><table>{rows}</table>{table}</div>"
