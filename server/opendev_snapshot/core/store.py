"""``SnapshotStore``: one snapshot directory, the facade the front doors use.

It composes the pieces, each in its own module: the codec and validation
(what a snapshot is), :mod:`.durable` (the one atomic, fsynced write),
:mod:`.liveness` (who holds a session), :mod:`.catalog` (the listing
view) and :mod:`.cleanup`. Records are plain snake_case dicts (the seed's
``AppStateSnapshot`` fields) so the listing path never imports pydantic.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from typing import Callable

from . import codec, liveness
from .cache import read_snapshot_file
from .catalog import Catalog, ListResult, Skipped
from .cleanup import CleanupResult, cleanup
from .durable import fsync_dir, write_atomic
from .errors import InvalidSnapshot, SessionNotFound, StorageError
from .paths import LOCK_SUFFIX, SNAPSHOT_SUFFIX
from .records import (
    COMPLETED,
    DEFAULT_STALE_AFTER_MS,
    INTERRUPTED,
    RUNNING,
    append_tool_result,
    complete_record,
    new_record,
    now_ms,
)
from .validation import check_session_id, check_tool_result, check_u64

from ._log import logger

__all__ = [
    "COMPLETED",
    "INTERRUPTED",
    "RUNNING",
    "CleanupResult",
    "ListResult",
    "Skipped",
    "SnapshotStore",
    "new_record",
    "now_ms",
]


class SnapshotStore:
    """One snapshot directory: save, load, list, remove, clean up, claim."""

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        stale_after_ms: int = DEFAULT_STALE_AFTER_MS,
        watch: bool = False,
        use_index: bool = True,
    ) -> None:
        self.directory = Path(directory)
        self._dir = os.fspath(self.directory)
        self.stale_after_ms = stale_after_ms
        self._held: dict[str, liveness.HeldLock] = {}
        self._mutex = threading.RLock()
        self._catalog = Catalog(self._dir, self.status_of, watch=watch, use_index=use_index)

    # ------------------------------------------------------------------ paths
    def snapshot_path(self, session_id: str) -> Path:
        check_session_id(session_id)
        return self.directory / f"{session_id}{SNAPSHOT_SUFFIX}"

    def lock_path(self, session_id: str) -> Path:
        check_session_id(session_id)
        return self.directory / f"{session_id}{LOCK_SUFFIX}"

    def ensure_dir(self) -> None:
        """Create the directory (and missing parents) with mode 0700."""
        try:
            st = os.stat(self._dir)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StorageError("cannot access snapshot directory", self._dir, exc) from exc
        else:
            if not stat.S_ISDIR(st.st_mode):
                raise StorageError("snapshot directory is not a directory:", self._dir)
            return
        missing = []
        path = self.directory
        while not path.exists():
            missing.append(path)
            if path.parent == path:
                break
            path = path.parent
        for item in reversed(missing):
            try:
                os.mkdir(item, 0o700)
                os.chmod(item, 0o700)
            except FileExistsError:
                continue
            except OSError as exc:
                raise StorageError("cannot create snapshot directory", item, exc) from exc

    # ------------------------------------------------------------------ write
    def save(self, record: dict, *, claim: bool = False) -> dict:
        """Validate, then write durably; returns sessionId/path/timestamp.

        With ``claim`` the session's lock is taken *before* the write, so a
        resumed session never flickers to ``interrupted``.
        """
        data = codec.encode(record)  # validates strictly; refuses > 1 MiB
        session_id = record["session_id"]
        self.ensure_dir()
        if claim:
            self.claim(session_id)
        path = write_atomic(self._dir, session_id + SNAPSHOT_SUFFIX, data, what="snapshot")
        return {
            "session_id": session_id,
            "path": path,
            "snapshot_timestamp_ms": record["snapshot_timestamp_ms"],
        }

    # ------------------------------------------------------------------- read
    def load(self, session_id: str) -> dict | None:
        """The session's snapshot, or None when there is no file.

        A file that exists but cannot be read as a snapshot raises
        :class:`StorageError` naming the reason.
        """
        check_session_id(session_id)
        path = os.path.join(self._dir, session_id + SNAPSHOT_SUFFIX)
        data, _key_, reason = read_snapshot_file(path)
        if reason:
            raise StorageError(f"snapshot file is not usable ({reason}):", path)
        if data is None:
            return None
        try:
            return codec.decode(data)
        except InvalidSnapshot as exc:
            raise StorageError(f"snapshot file is corrupt ({exc}):", path) from None

    def _require(self, session_id: str) -> dict:
        record = self.load(session_id)
        if record is None:
            raise SessionNotFound(session_id)
        return record

    # ------------------------------------------------------------ operations
    def mark_completed(self, session_id: str) -> dict:
        """Complete a session: re-stamp, save durably, delete its lock file."""
        with self._mutex:
            record = self._require(session_id)
            complete_record(record)
            result = self.save(record)
            self._drop_lock(session_id)
            return result

    def record_tool_result(
        self,
        session_id: str,
        entry: dict,
        *,
        max_entries: int = 10,
        preview_chars: int = 500,
    ) -> int:
        """Append a tool result (preview cut), re-stamp, save; returns count."""
        clean = check_tool_result(entry, "entry")
        check_u64(max_entries, "max_entries")
        if type(preview_chars) is not int or preview_chars < 0:
            raise InvalidSnapshot("preview_chars", "must be a non-negative integer")
        clean["output_preview"] = clean["output_preview"][:preview_chars]
        with self._mutex:
            record = self._require(session_id)
            append_tool_result(record, clean, max_entries)
            record["snapshot_timestamp_ms"] = now_ms()
            self.save(record)
            return len(record["last_tool_results"])

    def remove(self, session_id: str) -> bool:
        """Delete the session's snapshot and lock file; True if it existed."""
        check_session_id(session_id)
        path = os.path.join(self._dir, session_id + SNAPSHOT_SUFFIX)
        with self._mutex:
            try:
                os.unlink(path)
                removed = True
            except FileNotFoundError:
                removed = False
            except OSError as exc:
                raise StorageError("cannot remove snapshot", path, exc) from exc
            self._drop_lock(session_id)
            if removed:
                fsync_dir(self._dir)
            return removed

    def _drop_lock(self, session_id: str) -> None:
        lock = os.path.join(self._dir, session_id + LOCK_SUFFIX)
        held = self._held.pop(session_id, None)
        try:
            if held is None or held.still_linked():
                os.unlink(lock)
        except FileNotFoundError:
            pass
        except OSError as exc:
            logger(__name__).warning("cannot remove lock file %s: %s", lock, exc)
        finally:
            if held is not None:
                held.release()

    # ---------------------------------------------------------------- claims
    def claim(self, session_id: str) -> bool:
        """Hold the session's liveness lock; False if another process does."""
        check_session_id(session_id)
        with self._mutex:
            held = self._held.get(session_id)
            if held is not None and held.still_linked():
                return True
            if held is not None:
                held.release()
                del self._held[session_id]
            self.ensure_dir()
            path = os.path.join(self._dir, session_id + LOCK_SUFFIX)
            try:
                lock = liveness.acquire(path)
            except OSError as exc:
                raise StorageError("cannot lock session", path, exc) from exc
            if lock is None:
                return False
            self._held[session_id] = lock
            return True

    def release(self, session_id: str) -> bool:
        """Stop holding the lock but keep the lock file: reads ``interrupted``."""
        with self._mutex:
            held = self._held.pop(session_id, None)
            if held is None:
                return False
            held.release()
            return True

    def release_all(self) -> None:
        with self._mutex:
            for session_id in list(self._held):
                self.release(session_id)

    def held_sessions(self) -> list:
        return sorted(self._held)

    def holds(self, session_id: str) -> bool:
        """True while this store holds the session's lock."""
        return session_id in self._held

    def lock_holder(self, session_id: str) -> str | None:
        """The holder line of a live lock, or None when nobody holds it."""
        path = os.path.join(self._dir, check_session_id(session_id) + LOCK_SUFFIX)
        if liveness.probe(path) != liveness.LOCKED:
            return None
        return liveness.read_holder(path) or "unknown holder"

    def status_of(self, record: dict, *, now: int | None = None) -> str:
        """``completed``, ``running`` or ``interrupted`` per the contract."""
        if record["completed"]:
            return COMPLETED
        session_id = record["session_id"]
        if isinstance(session_id, str) and session_id and "/" not in session_id and "\0" not in session_id:
            state = liveness.probe(os.path.join(self._dir, session_id + LOCK_SUFFIX))
            if state == liveness.LOCKED:
                return RUNNING
            if state == liveness.UNLOCKED:
                return INTERRUPTED
        now = now_ms() if now is None else now
        ts = record["snapshot_timestamp_ms"]
        age = max(0, now - ts)
        return RUNNING if age < self.stale_after_ms else INTERRUPTED

    # --------------------------------------------------------------- listing
    def refresh(self, progress: Callable[[int, int], None] | None = None) -> set:
        """Bring the listing view up to date; returns the names that changed."""
        with self._mutex:
            return self._catalog.refresh(progress)

    def list(
        self,
        *,
        project_dir: str | None = None,
        status: str | None = None,
        include_completed: bool = False,
        limit: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> ListResult:
        """Sessions newest first (incomplete only unless asked), plus skipped files."""
        with self._mutex:
            return self._catalog.list(
                project_dir=project_dir,
                status=status,
                include_completed=include_completed,
                limit=limit,
                progress=progress,
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
        self,
        max_age_ms: int,
        *,
        dry_run: bool = False,
        include_incomplete: bool = True,
        progress: Callable[[int, int], None] | None = None,
    ) -> CleanupResult:
        """Remove snapshots older than ``max_age_ms`` (never a running one),
        stale temporary files (> 1 h) and unlocked orphan lock files."""
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
