"""A snapshot's status per the contract, and what a listing adds to it.

Status rule for ``completed == false``: lock file present and locked (by
any live process, this one included): ``running``; present and not
locked: ``interrupted``; no lock file (the Rust agent's snapshots):
``running`` while ``snapshot_timestamp_ms`` is younger than
``stale_after_ms`` (a timestamp in the future counts as now), else
``interrupted``. A listing adds ``kind`` and ``notebook`` from the lock
file's holder object (``opendev`` and None without one).
"""

from __future__ import annotations

import os

from . import liveness
from .paths import LOCK_SUFFIX
from .records import COMPLETED, INTERRUPTED, RUNNING, now_ms

KINDS = ("opendev", "ipython")


def running_by_age(record: dict, stale_after_ms: int, now: int | None = None) -> bool:
    now = now_ms() if now is None else now
    return max(0, now - record["snapshot_timestamp_ms"]) < stale_after_ms


def _lock_path(directory: str, session_id: object) -> str | None:
    if isinstance(session_id, str) and session_id and "/" not in session_id and "\0" not in session_id:
        return os.path.join(directory, session_id + LOCK_SUFFIX)
    return None


def _status(record: dict, state: str, stale_after_ms: int, now: int | None) -> str:
    if record["completed"]:
        return COMPLETED
    if state == liveness.LOCKED:
        return RUNNING
    if state == liveness.UNLOCKED:
        return INTERRUPTED
    return RUNNING if running_by_age(record, stale_after_ms, now) else INTERRUPTED


def status_of(directory: str, record: dict, stale_after_ms: int, now: int | None = None) -> str:
    if record["completed"]:
        return COMPLETED
    path = _lock_path(directory, record["session_id"])
    state = liveness.probe(path) if path else liveness.ABSENT
    return _status(record, state, stale_after_ms, now)


def describe(directory: str, record: dict, stale_after_ms: int, now: int | None = None) -> dict:
    """``{status, kind, notebook}`` with one open of the lock file."""
    path = _lock_path(directory, record["session_id"])
    state, info = liveness.inspect(path) if path else (liveness.ABSENT, None)
    info = info or {}
    return {
        "status": _status(record, state, stale_after_ms, now),
        "kind": info.get("kind") if info.get("kind") in KINDS else "opendev",
        "notebook": info.get("notebook") if isinstance(info.get("notebook"), str) else None,
    }
