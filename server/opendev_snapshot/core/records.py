"""The seed's record operations on plain snake_case dicts (no I/O).

``AppStateSnapshot::new``, ``record_tool_result`` and ``mark_completed``
of the Rust reference, plus the status names a listing reports.
"""

from __future__ import annotations

import time

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
