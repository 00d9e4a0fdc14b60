"""This kernel's own session: id, per-cell tool results, durable saves.

No IPython import here: the shell and the execution result are used by
duck typing, so this logic is testable (and reusable) without a kernel.
The magics in :mod:`.magics` only parse arguments and call into this.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import time

from ..core.errors import SessionNotFound, SessionRunning, SnapshotError
from ..core.records import append_tool_result, new_record, now_ms
from ..core.store import SnapshotStore
from ..core.validation import SESSION_ID_MAX

TOOL_NAME = "cell"
DEFAULT_MAX_TOOL_RESULTS = 10
DEFAULT_PREVIEW_CHARS = 500
_INVALID = re.compile(r"[^A-Za-z0-9._-]")
_process_id: tuple[int, str] | None = None
log = logging.getLogger(__name__)


def sanitize_session_id(text: str) -> str:
    """Map any text onto the contract's charset: ``A-Za-z0-9._-``, <= 128, no leading '.'."""
    clean = _INVALID.sub("_", text).lstrip(".")[:SESSION_ID_MAX]
    return clean or "ipython"


def process_session_id() -> str:
    """A session id stable for this process (a terminal IPython has no kernel session)."""
    global _process_id
    pid = os.getpid()
    if _process_id is None or _process_id[0] != pid:  # recomputed in a forked child
        _process_id = (pid, f"ipython-{pid}-{time.time_ns() // 1_000_000}-{secrets.token_hex(3)}")
    return _process_id[1]


def kernel_session_id(shell: object) -> str:
    """The session id of the kernel ``shell`` runs in.

    In ipykernel this is the kernel's own message session (``kernel.session.session``,
    a fresh uuid per kernel process, so a restarted kernel never overwrites the
    snapshot of the one that died); in a terminal IPython, :func:`process_session_id`.
    """
    kernel = getattr(shell, "kernel", None)
    raw = getattr(getattr(kernel, "session", None), "session", None)
    if isinstance(raw, str) and raw.strip():
        return sanitize_session_id(f"ipykernel-{raw.strip()}")
    return process_session_id()


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    if limit <= 1:
        return text[:limit]
    return text[: limit - 1] + "\u2026"


def _safe_repr(value: object, limit: int) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not break the snapshot
        text = f"<unrepresentable {type(value).__name__}: {type(exc).__name__}>"
    return _cut(text, max(limit, 1))


def describe_outcome(result: object, limit: int = DEFAULT_PREVIEW_CHARS) -> tuple[str, bool]:
    """(outcome text, success) of an IPython ``ExecutionResult``-like object."""
    error = getattr(result, "error_before_exec", None) or getattr(result, "error_in_exec", None)
    if error is not None:
        message = str(error).strip()
        text = f"{type(error).__name__}: {message}" if message else type(error).__name__
        return "error: " + _cut(text, max(limit, 1)), False
    value = getattr(result, "result", None)
    if value is not None:
        return "out: " + _safe_repr(value, limit), True
    return "ok", True


def cell_entry(execution_count: int, source: str, outcome: str, success: bool, preview_chars: int) -> dict:
    """One tool result for one executed cell: ``cell`` / ``In[N]`` / source head + outcome."""
    budget = max(preview_chars, 0)
    source = (source or "").strip("\n").rstrip()
    head = _cut(source, max(budget // 2, 1)) if source else ""
    preview = f"{head}\n-> {outcome}" if head else f"-> {outcome}"
    return {
        "tool_name": TOOL_NAME,
        "call_id": f"In[{execution_count}]",
        "output_preview": preview[:budget],
        "success": bool(success),
    }


class SessionRemoved(SnapshotError):
    """This kernel's snapshot was removed by another process (to the trash): not written again."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(
            f"session {session_id} was moved to the trash by another process; "
            f"%opendev restore {session_id} brings it back"
        )


class KernelSession:
    """The snapshot of one kernel's session in one store.

    From its first save the session's liveness lock is held for as long as
    the store is open (the kernel's life), so the session reads
    ``running`` while the kernel lives and ``interrupted`` once it dies
    without :meth:`complete`. Every write is a serialised read-modify-write
    of what is on disk (``store.update``): a cell's result is appended to
    the snapshot as it is there, so another writer's update is never lost.
    """

    def __init__(self, store: SnapshotStore, session_id: str, project_dir: str, holder=None) -> None:
        self.store = store
        self.session_id = session_id
        self.project_dir = project_dir
        self.saved = False  # written at least once by this kernel
        self.holder = holder  # () -> the lock file's object now (the notebook may have been renamed)

    @property
    def held(self) -> bool:
        return self.store.holds(self.session_id)

    @property
    def path(self) -> str:
        return str(self.store.snapshot_path(self.session_id))

    def _refresh_holder(self) -> None:
        """Make the lock's text say what the kernel is now (written only when that changed).

        Before the snapshot is written, so a reader that re-reads the session
        because its snapshot changed also sees the new text.
        """
        if self.holder is None:
            return
        try:
            self.store.set_holder_info(self.holder())
        except Exception as exc:  # display text only: never a reason to lose a save
            log.debug("cannot refresh the lock text of %s: %s", self.session_id, exc)

    def _claim(self) -> None:
        if not self.store.holds(self.session_id) and not self.store.claim(self.session_id):
            raise SessionRunning(self.session_id, self.store.lock_info(self.session_id))

    def _write(self, change) -> dict:
        """Apply ``change(record)`` to the snapshot on disk (or to a new one), holding the lock."""
        self._refresh_holder()
        self._claim()

        def apply(record: dict) -> None:
            change(record)
            record["completed"] = False
            record["snapshot_timestamp_ms"] = now_ms()

        try:
            record = self.store.update(self.session_id, apply)
        except SessionNotFound:
            if self.saved:  # someone removed it (to the trash) meanwhile: respect that
                self.saved = False
                raise SessionRemoved(self.session_id) from None
            record = new_record(self.session_id, self.project_dir)
            apply(record)
            self.store.save(record, claim=True)
        self.saved = True
        return record

    def save(self, message_count: int | None = None) -> dict:
        """Write the session now (durably, holding its lock); returns the record as saved."""

        def change(record: dict) -> None:
            if message_count is not None:
                record["message_count"] = max(int(message_count), 0)

        return self._write(change)

    def record_cell(
        self,
        execution_count: int,
        source: str,
        outcome: str,
        success: bool,
        *,
        max_entries: int = DEFAULT_MAX_TOOL_RESULTS,
        preview_chars: int = DEFAULT_PREVIEW_CHARS,
    ) -> dict:
        """Append the cell's tool result (oldest dropped past ``max_entries``) to what is on disk."""
        entry = cell_entry(execution_count, source, outcome, success, preview_chars)

        def change(record: dict) -> None:
            append_tool_result(record, entry, max(int(max_entries), 0))
            record["message_count"] = max(int(execution_count), 0)

        return self._write(change)

    def complete(self) -> dict:
        """Mark the session completed (deletes its lock file, releasing the lock)."""
        return self.store.mark_completed(self.session_id)

    def forget(self) -> None:
        """After a discard: nothing of this session is held or on disk any more."""
        self.saved = False
