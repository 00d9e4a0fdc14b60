"""The seed's record operations on plain snake_case dicts (no I/O).

``AppStateSnapshot::new``, ``record_tool_result`` and ``mark_completed``
of the Rust reference, plus the status names a listing reports.
"""

from __future__ import annotations

import time
from typing import Callable

from .errors import InvalidSnapshot
from .validation import check_tool_result, check_u64

RUNNING = "running"
INTERRUPTED = "interrupted"
COMPLETED = "completed"
DEFAULT_STALE_AFTER_MS = 120_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_record(session_id: str, project_dir: str) -> dict:
    """``AppStateSnapshot::new``: zero counts, no results, stamped now."""
    return {
        "session_id": session_id,
        "message_count": 0,
        "last_tool_results": [],
        "snapshot_timestamp_ms": now_ms(),
        "completed": False,
        "project_dir": project_dir,
        "cost_usd": 0.0,
    }


def append_tool_result(record: dict, entry: dict, max_entries: int) -> None:
    """The seed's ``record_tool_result``: append, keep the ``max_entries`` most recent."""
    results = record["last_tool_results"]
    results.append(entry)
    if len(results) > max_entries:
        del results[: len(results) - max_entries]


def complete_record(record: dict) -> None:
    """The seed's ``mark_completed``: completed, re-stamped."""
    record["completed"] = True
    record["snapshot_timestamp_ms"] = now_ms()


def tool_result_entry(entry: dict, max_entries: int, preview_chars: int, redact: Callable[[str], str] | None) -> dict:
    """A validated tool result whose preview is redacted, then cut to ``preview_chars``.

    Redacting before the cut keeps a token the cut would split whole, so it
    is still recognised; a long output is redacted over a window a little
    wider than the preview.
    """
    clean = check_tool_result(entry, "entry")
    check_u64(max_entries, "max_entries")
    if type(preview_chars) is not int or preview_chars < 0:
        raise InvalidSnapshot("preview_chars", "must be a non-negative integer")
    preview = clean["output_preview"]
    if redact is not None:
        preview = redact(preview[: preview_chars + 1024] if len(preview) > 4096 else preview)
    clean["output_preview"] = preview[:preview_chars]
    return clean
