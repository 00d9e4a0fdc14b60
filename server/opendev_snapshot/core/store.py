"""The durable, liveness-aware snapshot store (the seed's semantics, hardened).

Records are plain snake_case dicts (the seed's ``AppStateSnapshot`` fields)
so the listing path never imports pydantic; :mod:`.models` wraps them for
the front doors.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path
from typing import Callable

from . import codec, locks
from .errors import InvalidSnapshot, SessionNotFound, StorageError
from .cache import ListingCache, read_snapshot_file, stat_key
from .index import INDEX_NAME, load_index, write_index
from .paths import LOCK_SUFFIX, SNAPSHOT_SUFFIX, normalize_project, session_id_from_name, within
from .validation import check_session_id, check_str, check_tool_result, check_u64

from ._log import logger

RUNNING = "running"
INTERRUPTED = "interrupted"
COMPLETED = "completed"
DEFAULT_STALE_AFTER_MS = 120_000
TEMP_MAX_AGE_S = 3600
INDEX_MIN_INTERVAL_S = 5.0

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


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


def record_tool_result(record: dict, entry: dict, max_entries: int) -> None:
    """``record_tool_result``: append, keep the ``max_entries`` most recent."""
    results = record["last_tool_results"]
    results.append(entry)
    if len(results) > max_entries:
        del results[: len(results) - max_entries]


def mark_completed(record: dict) -> None:
    record["completed"] = True
    record["snapshot_timestamp_ms"] = now_ms()


class Skipped:
    __slots__ = ("file", "reason")

    def __init__(self, file: str, reason: str) -> None:
        self.file = file
        self.reason = reason

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Skipped) and (self.file, self.reason) == (other.file, other.reason)

    def __repr__(self) -> str:
        return f"Skipped(file={self.file!r}, reason={self.reason!r})"

    def to_dict(self) -> dict:
        return {"file": self.file, "reason": self.reason}


class ListResult:
    """``sessions``: listing dicts (record + status + path); ``skipped``: Skipped."""

    __slots__ = ("sessions", "skipped")

    def __init__(self, sessions: list, skipped: list | None = None) -> None:
        self.sessions = sessions
        self.skipped = skipped if skipped is not None else []

    def __repr__(self) -> str:
        return f"ListResult(sessions={self.sessions!r}, skipped={self.skipped!r})"


class CleanupResult:
    __slots__ = ("removed_count", "session_ids", "dry_run", "temp_files_removed", "lock_files_removed")

    def __init__(self, removed_count: int, session_ids: list, dry_run: bool, temp_files_removed: int = 0, lock_files_removed: int = 0) -> None:
        self.removed_count = removed_count
        self.session_ids = session_ids
        self.dry_run = dry_run
        self.temp_files_removed = temp_files_removed
        self.lock_files_removed = lock_files_removed

    def __repr__(self) -> str:
        return (
            f"CleanupResult(removed_count={self.removed_count}, session_ids={self.session_ids!r}, dry_run={self.dry_run}, "
            f"temp_files_removed={self.temp_files_removed}, lock_files_removed={self.lock_files_removed})"
        )


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
        self._cache = ListingCache(self._dir)
        self._held: dict[str, locks.HeldLock] = {}
        self._mutex = threading.RLock()
        self._want_watch = watch
        self._watcher = None
        self._scanned = False
        self._use_index = use_index
        self._index_loaded = False
        self._index_written_at = 0.0
        self._norm_cache: dict[str, str] = {}

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
        path = os.path.join(self._dir, session_id + SNAPSHOT_SUFFIX)
        self._atomic_write(path, data)
        return {
            "session_id": session_id,
            "path": path,
            "snapshot_timestamp_ms": record["snapshot_timestamp_ms"],
        }

    def _atomic_write(self, path: str, data: bytes) -> None:
        name = os.path.basename(path)
        tmp = os.path.join(self._dir, f".{name}.{os.getpid()}-{os.urandom(6).hex()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC | _O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise StorageError("cannot create temporary file in", self._dir, exc) from exc
        try:
            try:
                if hasattr(os, "fchmod"):
                    os.fchmod(fd, 0o600)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise StorageError("cannot write snapshot", path, exc) from exc
        self._fsync_dir()

    def _fsync_dir(self) -> None:
        if os.name == "nt":  # pragma: no cover - directories cannot be fsynced there
            return
        try:
            dfd = os.open(self._dir, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
        except OSError as exc:
            raise StorageError("cannot open snapshot directory for fsync", self._dir, exc) from exc
        try:
            os.fsync(dfd)
        except OSError as exc:
            raise StorageError("cannot fsync snapshot directory", self._dir, exc) from exc
        finally:
            os.close(dfd)

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
            mark_completed(record)
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
            record_tool_result(record, clean, max_entries)
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
                self._fsync_dir()
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
                lock = locks.acquire(path)
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

    def lock_holder(self, session_id: str) -> str | None:
        """The holder line of a live lock, or None when nobody holds it."""
        path = os.path.join(self._dir, check_session_id(session_id) + LOCK_SUFFIX)
        if locks.probe(path) != locks.LOCKED:
            return None
        return locks.read_holder(path) or "unknown holder"

    def status_of(self, record: dict, *, now: int | None = None) -> str:
        """``completed``, ``running`` or ``interrupted`` per the contract."""
        if record["completed"]:
            return COMPLETED
        session_id = record["session_id"]
        if isinstance(session_id, str) and session_id and "/" not in session_id and "\0" not in session_id:
            state = locks.probe(os.path.join(self._dir, session_id + LOCK_SUFFIX))
            if state == locks.LOCKED:
                return RUNNING
            if state == locks.UNLOCKED:
                return INTERRUPTED
        now = now_ms() if now is None else now
        ts = record["snapshot_timestamp_ms"]
        age = max(0, now - ts)
        return RUNNING if age < self.stale_after_ms else INTERRUPTED

    # --------------------------------------------------------------- listing
    def _start_watch(self) -> None:
        if self._want_watch and (self._watcher is None or not self._watcher.alive):
            from .watch import DirWatcher

            if self._watcher is not None:
                self._watcher.close()
            self._watcher = DirWatcher.create(self._dir)
            if self._watcher is not None:
                self._scanned = False  # events before the watch began are unknown

    def _normalize(self, project_dir: str) -> str:
        norm = self._norm_cache.get(project_dir)
        if norm is None:
            norm = normalize_project(project_dir) if isinstance(project_dir, str) else ""
            if len(self._norm_cache) > 100_000:
                self._norm_cache.clear()
            self._norm_cache[project_dir] = norm
        return norm

    def _load_index_once(self) -> None:
        if self._use_index and not self._index_loaded:
            self._index_loaded = True
            rows = load_index(self._dir)
            if rows is not None:
                self._cache.load_rows(*rows)

    def refresh(self, progress: Callable[[int, int], None] | None = None) -> set:
        """Bring the in-memory view up to date; returns the names that changed.

        With a live watcher only the names the kernel reported are looked
        at; otherwise every entry is ``lstat``-ed (files whose key is
        unchanged and not racy are not re-read). Lock file names are
        reported too (a holder closing it, e.g. by dying).
        """
        with self._mutex:
            self._start_watch()
            watcher = self._watcher
            cache = self._cache
            if watcher is not None and watcher.alive and self._scanned:
                from .watch import OVERFLOW

                names = watcher.drain()
                if names is not OVERFLOW:
                    # No racy re-reads here: the kernel reports in-place writes too.
                    scan_ns = time.time_ns()
                    changed = set()
                    for name in names:  # type: ignore[union-attr]
                        if name.endswith(SNAPSHOT_SUFFIX):
                            cache.examine(name, None, scan_ns)
                            cache.dirty = True
                            changed.add(name)
                        elif name.endswith(LOCK_SUFFIX):
                            changed.add(name)
                    self._maybe_write_index()
                    return changed
                self._scanned = False
            if watcher is not None and not watcher.alive:
                self._watcher = None
                self._start_watch()
                watcher = self._watcher
            if watcher is not None:
                watcher.drain()  # whatever it queued so far, the scan below covers
            self._load_index_once()
            try:
                changed, _parsed = cache.full_scan(time.time_ns(), progress)
            except FileNotFoundError:
                changed = set()
            except NotADirectoryError as exc:
                raise StorageError("snapshot directory is not a directory:", self._dir, exc) from exc
            except OSError as exc:
                raise StorageError("cannot list snapshot directory", self._dir, exc) from exc
            self._scanned = watcher is not None and watcher.alive
            self._maybe_write_index()
            return changed

    def _maybe_write_index(self) -> None:
        if not (self._use_index and self._cache.dirty):
            return
        now = time.monotonic()
        if self._index_written_at and now - self._index_written_at < INDEX_MIN_INTERVAL_S:
            return
        self.flush_index()
        self._index_written_at = now

    def flush_index(self) -> None:
        """Write the persistent index now if it is behind (e.g. on exit)."""
        with self._mutex:
            cache = self._cache
            if self._use_index and cache.dirty and os.path.isdir(self._dir):
                if write_index(self._dir, cache.index_rows()):
                    cache.dirty = False

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
        if status not in (None, RUNNING, INTERRUPTED, COMPLETED):
            raise InvalidSnapshot("status", "must be 'running' or 'interrupted'")
        if limit is not None and (type(limit) is not int or limit < 0):
            raise InvalidSnapshot("limit", "must be a non-negative integer")
        project = None
        if project_dir is not None:
            check_str(project_dir, "projectDir")
            project = normalize_project(project_dir)
        want_completed = include_completed or status == COMPLETED
        with self._mutex:
            self.refresh(progress)
            cache = self._cache
            if project is None:
                names = cache.meta.keys()
            else:
                names = [
                    name
                    for raw, group in cache.by_project.items()
                    if within(self._normalize(raw), project)
                    for name in group
                ]
            meta = cache.meta
            candidates = []
            for name in names:
                sid, completed, _project, ts = meta[name]
                if completed and not want_completed:
                    continue
                candidates.append((-ts, sid if isinstance(sid, str) else "", name))
            candidates.sort()
            now = now_ms()
            sessions = []
            for _ts, _sid, name in candidates:
                record = cache.full_record(name)
                if record is None:
                    continue  # vanished or turned bad since it was indexed
                if project is not None and not within(self._normalize(record["project_dir"]), project):
                    continue
                state = self.status_of(record, now=now)
                if state == COMPLETED and not want_completed:
                    continue
                if status is not None and state != status:
                    continue
                listing = dict(record)
                listing["status"] = state
                listing["path"] = os.path.join(self._dir, name)
                sessions.append(listing)
                if limit is not None and len(sessions) >= limit:
                    break
            sessions.sort(key=lambda r: (-r["snapshot_timestamp_ms"], r["session_id"]))
            skipped = [Skipped(name, reason) for name, reason in sorted(cache.errors.items())]
            self._maybe_write_index()
            return ListResult(sessions, skipped)

    def next_stale_deadline_ms(self, project_dir: str | None = None) -> int | None:
        """When the next lock-less incomplete snapshot turns interrupted."""
        project = normalize_project(project_dir) if project_dir else None
        now = now_ms()
        best = None
        with self._mutex:
            for _sid, completed, raw, ts in self._cache.meta.values():
                if completed:
                    continue
                if project is not None and not within(self._normalize(raw), project):
                    continue
                deadline = min(ts, now) + self.stale_after_ms
                if deadline > now and (best is None or deadline < best):
                    best = deadline
        return best

    def watcher_fileno(self) -> int | None:
        """A file descriptor that turns readable when the directory changes."""
        with self._mutex:
            self._start_watch()
            return self._watcher.fileno() if self._watcher is not None else None

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
        check_u64(max_age_ms, "maxAgeMs")
        now = now_ms()
        cutoff = max(0, now - max_age_ms)
        try:
            with os.scandir(self._dir) as it:
                names = [e.name for e in it]
        except FileNotFoundError:
            return CleanupResult(0, [], dry_run)
        except OSError as exc:
            raise StorageError("cannot list snapshot directory", self._dir, exc) from exc
        present = set(names)
        removed: list = []
        temps = locks_removed = 0
        total = len(names)
        with self._mutex:
            for i, name in enumerate(names):
                if progress is not None and (i & 63) == 0:
                    progress(i, total)
                path = os.path.join(self._dir, name)
                if name.endswith(SNAPSHOT_SUFFIX):
                    sid = self._cleanup_snapshot(name, path, cutoff, now, dry_run, include_incomplete)
                    if sid is not None:
                        removed.append(sid)
                elif name.endswith(LOCK_SUFFIX):
                    base = name[: -len(LOCK_SUFFIX)]
                    if base + SNAPSHOT_SUFFIX not in present and locks.probe(path) == locks.UNLOCKED:
                        if dry_run or locks.remove_if_unlocked(path):
                            locks_removed += 1
                elif _is_temp(name) and self._old_regular(path, TEMP_MAX_AGE_S):
                    if dry_run:
                        temps += 1
                    else:
                        try:
                            os.unlink(path)
                            temps += 1
                        except OSError as exc:
                            logger(__name__).warning("cannot remove temporary file %s: %s", path, exc)
            if progress is not None:
                progress(total, total)
            if removed and not dry_run:
                self._fsync_dir()
        removed.sort()
        return CleanupResult(len(removed), removed, dry_run, temps, locks_removed)

    @staticmethod
    def _old_regular(path: str, max_age_s: float) -> bool:
        try:
            st = os.lstat(path)
        except OSError:
            return False
        return stat.S_ISREG(st.st_mode) and time.time() - st.st_mtime > max_age_s

    def _cleanup_snapshot(self, name, path, cutoff, now, dry_run, include_incomplete) -> str | None:
        data, key, why = read_snapshot_file(path)
        if data is None:
            return None  # unreadable or hostile: reported by list, never removed
        try:
            record = codec.decode(data)
        except InvalidSnapshot:
            return None
        if record["snapshot_timestamp_ms"] >= cutoff:
            return None
        if not record["completed"] and not include_incomplete:
            return None
        sid = session_id_from_name(name) or record["session_id"]
        lock_path = os.path.join(self._dir, sid + LOCK_SUFFIX)
        if record["completed"]:
            if not dry_run:
                if not self._unlink_if_same(path, key):
                    return None
                locks.remove_if_unlocked(lock_path)
            return record["session_id"]
        if self.status_of(record, now=now) != INTERRUPTED:
            return None  # never remove a running session
        if dry_run:
            return record["session_id"]
        if sid in self._held:
            return None
        had_lock_file = os.path.lexists(lock_path)
        try:  # hold the lock while removing, so nobody claims it half-way
            lock = locks.acquire(lock_path, attempts=1)
        except OSError:
            return None
        if lock is None:
            return None  # claimed meanwhile: running again
        removed = False
        try:
            removed = self._unlink_if_same(path, key)
            return record["session_id"] if removed else None
        finally:
            if removed or not had_lock_file:
                try:
                    os.unlink(lock_path)
                except OSError:
                    pass
            lock.release()

    def _unlink_if_same(self, path: str, key: tuple | None) -> bool:
        try:
            st = os.lstat(path)
            if stat_key(st) != key:
                return False  # rewritten since we decided: leave it
            os.unlink(path)
            return True
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StorageError("cannot remove snapshot", path, exc) from exc

    # ------------------------------------------------------------- lifetime
    def close(self) -> None:
        """Release every held lock (sessions read ``interrupted``), stop watching."""
        with self._mutex:
            self.release_all()
            try:
                self.flush_index()
            except OSError:
                pass
            if self._watcher is not None:
                self._watcher.close()
                self._watcher = None

    def __enter__(self) -> "SnapshotStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_temp(name: str) -> bool:
    """Our temporary names and the seed's ``*.json.tmp``."""
    if name.endswith(".json.tmp"):
        return True
    if name.startswith(INDEX_NAME) and name.endswith(".tmp"):
        return True
    return name.startswith(".") and name.endswith(".tmp") and SNAPSHOT_SUFFIX in name
