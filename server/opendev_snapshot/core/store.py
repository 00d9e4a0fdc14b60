"""``SnapshotStore``: one snapshot directory, the facade the front doors use.

It composes the pieces, each in its own module: validation and the codec
(what a snapshot is), :mod:`.redact`, :mod:`.writes` (save, update and
the writes built on it), :mod:`.durable` (the one atomic, fsynced write),
:mod:`.serial` (the per-session update lock every write runs under),
:mod:`.claims` and :mod:`.liveness` (who holds a session), :mod:`.status`,
:mod:`.removal` and :mod:`.trash`, :mod:`.catalog` (the listing view) and
:mod:`.cleanup`. Records are plain snake_case dicts (the seed's
``AppStateSnapshot`` fields) so the listing path never imports pydantic.
``docs/CORE_API.md`` is the reference.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable

from . import liveness, removal, status, writes
from .catalog import Catalog, ListResult, Skipped
from .cleanup import CleanupResult, cleanup
from .durable import ensure_dir
from .forksafe import forget_in_child
from .claims import Claims
from .paths import LOCK_SUFFIX, SNAPSHOT_SUFFIX
from .records import COMPLETED, DEFAULT_STALE_AFTER_MS, INTERRUPTED, RUNNING, new_record, now_ms
from .serial import UpdateLocks
from .validation import check_session_id, check_u64

__all__ = [
    "COMPLETED", "INTERRUPTED", "RUNNING", "CleanupResult", "ListResult", "Skipped", "SnapshotStore", "new_record", "now_ms",
]

DEFAULT_TRASH_RETENTION_MS = 7 * 24 * 3600 * 1000


class SnapshotStore:
    """One snapshot directory (see ``docs/CORE_API.md``)."""

    def __init__(
        self, directory: str | os.PathLike, *, stale_after_ms: int = DEFAULT_STALE_AFTER_MS, watch: bool = False,
        use_index: bool = True, redact_secrets: bool = True, trash_retention_ms: int = DEFAULT_TRASH_RETENTION_MS,
        holder_info: dict | None = None,
    ) -> None:
        self.directory = Path(directory)
        self._dir = os.fspath(self.directory)
        self.stale_after_ms = stale_after_ms
        self.redact_secrets = redact_secrets
        self.trash_retention_ms = check_u64(trash_retention_ms, "trash_retention_ms")
        self._claims = Claims(self._dir, dict(holder_info) if holder_info else {"kind": "opendev"})
        self._mutex = threading.RLock()
        self._updates = UpdateLocks(self._dir)
        self._catalog = Catalog(self._dir, self.describe, watch=watch, use_index=use_index)
        forget_in_child(self)

    def forget_after_fork(self) -> None:
        """In a forked child (:mod:`.forksafe`): the lock fds are closed, so
        nothing is held; a mutex another thread held at the fork is replaced."""
        self._mutex = threading.RLock()
        self._claims.forget_after_fork()
        self._updates.forget_after_fork()

    # ------------------------------------------------------------------ paths
    def snapshot_path(self, session_id: str) -> Path:
        check_session_id(session_id)
        return self.directory / f"{session_id}{SNAPSHOT_SUFFIX}"

    def lock_path(self, session_id: str) -> Path:
        check_session_id(session_id)
        return self.directory / f"{session_id}{LOCK_SUFFIX}"

    def _lock(self, session_id: str) -> str:
        return os.path.join(self._dir, session_id + LOCK_SUFFIX)

    def ensure_dir(self) -> None:
        """Create the directory (and missing parents) with mode 0700."""
        ensure_dir(self._dir)

    # ------------------------------------------------------------------ write
    def save(self, record: dict, *, claim: bool = False, force: bool = False) -> dict:
        """Validate, redact previews, write durably (fsync file and directory).

        ``claim`` takes the session's lock *before* writing; when another
        live process holds it: :class:`SessionRunning` and nothing written,
        unless ``force`` (written, ``claimed`` False). ``claimed`` is always
        whether this store holds the lock after the call.
        """
        return writes.save(self, record, claim, force)

    def update(self, session_id: str, fn: Callable[[dict], object]) -> dict:
        """Load, ``fn(record)`` (mutates it), save: serialised across processes."""
        return writes.update(self, session_id, fn)

    def record_tool_result(self, session_id: str, entry: dict, *, max_entries: int = 10, preview_chars: int = 500) -> int:
        """Append a tool result (preview redacted, then cut), re-stamp, save; returns count."""
        return writes.record_tool_result(self, session_id, entry, max_entries, preview_chars)

    def mark_completed(self, session_id: str) -> dict:
        """Complete a session: re-stamp, save durably, delete its lock file."""
        return writes.mark_completed(self, session_id)

    # ------------------------------------------------------------------- read
    def load(self, session_id: str) -> dict | None:
        """The session's snapshot, or None when there is no file.

        A file that exists but is not a usable snapshot of this id (corrupt,
        not a regular file, its content another session) raises
        :class:`StorageError` naming the reason.
        """
        check_session_id(session_id)
        return removal.read_usable(os.path.join(self._dir, session_id + SNAPSHOT_SUFFIX), session_id)

    def resolve_id(self, text: str, *, in_trash: bool = False) -> str:
        """An exact id, else the one id ``text`` is a prefix of (``AmbiguousId``, ``SessionNotFound``)."""
        return removal.resolve_id(self, text, in_trash)

    # ------------------------------------------------------- removal & trash
    def remove(self, session_id: str, *, force: bool = False) -> bool:
        """Move the snapshot and its lock text to the trash; False if absent.

        :class:`SessionRunning` when another live process holds it (or it is
        lock-less and young), unless ``force``.
        """
        return removal.remove(self, session_id, force)

    def restore(self, session_id: str) -> dict:
        """The newest trash entry of ``session_id`` back in place; its listing."""
        return removal.restore(self, session_id)

    def list_trash(self) -> list:
        """Trash entries, newest first (see ``docs/CORE_API.md``)."""
        return removal.list_trash(self)

    def trash_files(self, names) -> tuple:
        """Move skipped (unusable) entries to the trash: ``(moved, refused)``."""
        with self._mutex:
            return removal.trash_files(self, names)

    # ---------------------------------------------------------------- claims
    def claim(self, session_id: str) -> bool:
        """Hold the session's liveness lock; False if another live process does."""
        check_session_id(session_id)
        self.ensure_dir()
        with self._mutex, self._updates.hold(session_id):
            return self._claims.claim(session_id)

    def release(self, session_id: str) -> bool:
        """Stop holding the lock but keep the lock file: reads ``interrupted``."""
        with self._mutex:
            return self._claims.release(session_id)

    def release_all(self) -> None:
        with self._mutex:
            self._claims.release_all()

    def held_sessions(self) -> list:
        return self._claims.held()

    def holds(self, session_id: str) -> bool:
        """True while this store holds the session's lock."""
        return self._claims.holds(session_id)

    @property
    def holder_info(self) -> dict:
        """What this store writes into the lock files it claims (a copy)."""
        return dict(self._claims.holder_info)

    def set_holder_info(self, info: dict) -> list:
        """Claim with ``info`` from now on and rewrite the held locks' text in place.

        For a holder whose description changes while it runs (a kernel whose
        notebook was renamed). A no-op when ``info`` is unchanged; the locks stay
        held and keep their ``startedMs``. Returns the session ids rewritten.
        """
        if not isinstance(info, dict):
            raise TypeError("holder_info must be a dict")
        with self._mutex:
            return self._claims.set_holder_info(info)

    def _drop_lock(self, session_id: str, *, only_if_unlocked: bool = False) -> None:
        self._claims.drop(session_id, only_if_unlocked=only_if_unlocked)

    def lock_info(self, session_id: str) -> dict | None:
        """The lock file's holder object (live or not), or None."""
        return liveness.read_info(self._lock(check_session_id(session_id)))

    def lock_holder(self, session_id: str) -> dict | None:
        """The holder object while a live process holds the lock, else None."""
        state, info = liveness.inspect(self._lock(check_session_id(session_id)))
        if state != liveness.LOCKED:
            return None
        return info if info is not None else {}

    # ---------------------------------------------------------------- status
    def running_by_age(self, record: dict, now: int | None = None) -> bool:
        """The contract's rule for a snapshot without a lock file."""
        return status.running_by_age(record, self.stale_after_ms, now)

    def status_of(self, record: dict, *, now: int | None = None) -> str:
        """``completed``, ``running`` or ``interrupted`` per the contract."""
        return status.status_of(self._dir, record, self.stale_after_ms, now)

    def describe(self, record: dict, *, now: int | None = None) -> dict:
        """``{status, kind, notebook}``: what a listing adds to a record."""
        return status.describe(self._dir, record, self.stale_after_ms, now)

    def listing(self, record: dict) -> dict:
        """A listing dict: the record plus ``status``, ``kind``, ``notebook``, ``path``."""
        listing = dict(record)
        listing.update(self.describe(record))
        listing["path"] = os.path.join(self._dir, record["session_id"] + SNAPSHOT_SUFFIX)
        return listing

    # --------------------------------------------------------------- listing
    def refresh(self, progress: Callable[[int, int], None] | None = None) -> set:
        """Bring the listing view up to date; returns the names that changed."""
        with self._mutex:
            return self._catalog.refresh(progress)

    def list(self, *, project_dir=None, status=None, include_completed=False, limit=None, progress=None) -> ListResult:
        """Sessions newest first (incomplete only unless asked), plus skipped files."""
        with self._mutex:
            return self._catalog.list(
                project_dir=project_dir, status=status, include_completed=include_completed, limit=limit, progress=progress
            )

    def safety_check(self, progress: Callable[[int, int], None] | None = None) -> set:
        """The 10-second check: compare the directory itself with the view
        (identity and entries), re-attach the watch if it names another
        directory now; returns the names that changed."""
        with self._mutex:
            return self._catalog.safety_check(progress)

    def flush_index(self) -> None:
        """Write the persistent index now if it is behind (e.g. on exit)."""
        with self._mutex:
            self._catalog.flush_index()

    def next_stale_deadline_ms(self, project_dir: str | None = None) -> int | None:
        """When the next lock-less incomplete snapshot turns interrupted."""
        with self._mutex:
            return self._catalog.next_stale_deadline_ms(self.stale_after_ms, project_dir)

    def watcher_fileno(self) -> int | None:
        """A file descriptor that turns readable when the directory changes."""
        with self._mutex:
            return self._catalog.watcher_fileno()

    # --------------------------------------------------------------- cleanup
    def cleanup(
        self, max_age_ms: int, *, dry_run: bool = False, include_incomplete: bool = True,
        progress: Callable[[int, int], None] | None = None,
    ) -> CleanupResult:
        """Snapshots older than ``max_age_ms`` to the trash (never a running one), stale
        temporary files (> 1 h) and orphan lock files removed, old trash entries purged."""
        with self._mutex:
            return cleanup(self, max_age_ms, dry_run=dry_run, include_incomplete=include_incomplete, progress=progress)

    # ------------------------------------------------------------- lifetime
    def close(self) -> None:
        """Release every held lock (sessions read ``interrupted``), stop watching."""
        with self._mutex:
            self.release_all()
            self._catalog.close()

    def __enter__(self) -> "SnapshotStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
