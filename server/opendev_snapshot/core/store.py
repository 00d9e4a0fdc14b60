"""The durable, liveness-aware snapshot store (the seed's semantics, hardened).

Records are plain snake_case dicts (the seed's ``AppStateSnapshot`` fields)
so the listing path never imports pydantic; :mod:`.models` wraps them for
the front doors.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from . import codec, locks
from .errors import InvalidSnapshot, SessionNotFound, StorageError
from .index import INDEX_NAME, RACY_NS, load_index, write_index
from .paths import LOCK_SUFFIX, SNAPSHOT_SUFFIX, normalize_project, session_id_from_name, within
from .validation import MAX_ENCODED_BYTES, check_session_id, check_str, check_tool_result, check_u64

log = logging.getLogger(__name__)

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


@dataclass
class Skipped:
    file: str
    reason: str

    def to_dict(self) -> dict:
        return {"file": self.file, "reason": self.reason}


@dataclass
class ListResult:
    sessions: list  # of listing dicts: record + status + path
    skipped: list = field(default_factory=list)  # of Skipped


@dataclass
class CleanupResult:
    removed_count: int
    session_ids: list
    dry_run: bool
    temp_files_removed: int = 0
    lock_files_removed: int = 0


class _Entry:
    """What the store knows about one ``*_session_snapshot.json`` name."""

    __slots__ = ("key", "session_id", "completed", "project", "ts", "record", "error", "racy")

    def __init__(self, key, session_id=None, completed=False, project="", ts=0, record=None, error=None, racy=False):
        self.key = key
        self.session_id = session_id
        self.completed = completed
        self.project = project
        self.ts = ts
        self.record = record
        self.error = error
        self.racy = racy


def _key(st: os.stat_result) -> tuple:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _kind_reason(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "symbolic link, not followed"
    if stat.S_ISDIR(mode):
        return "a directory, not a snapshot file"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe), not opened"
    if stat.S_ISSOCK(mode):
        return "a socket, not opened"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device, not opened"
    return "not a regular file"


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
        self._entries: dict[str, _Entry] = {}
        self._skipped_kinds: dict[str, str] = {}
        self._held: dict[str, locks.HeldLock] = {}
        self._mutex = threading.RLock()
        self._want_watch = watch
        self._watcher = None
        self._scanned = False
        self._use_index = use_index
        self._index_loaded = False
        self._index_written_at = 0.0
        self._dirty_index = False
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
        tmp = os.path.join(self._dir, f".{name}.{os.getpid()}-{secrets.token_hex(6)}.tmp")
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
    def _read_file(self, path: str) -> tuple[bytes | None, tuple | None, str | None]:
        """Read a snapshot file safely: (data, key, error reason)."""
        try:
            fd = os.open(path, os.O_RDONLY | _O_CLOEXEC | _O_NOFOLLOW | _O_NONBLOCK)
        except FileNotFoundError:
            return None, None, None
        except OSError as exc:
            if os.path.islink(path):
                return None, None, "symbolic link, not followed"
            return None, None, f"unreadable: {exc.strerror or exc}"
        try:
            st = os.fstat(fd)
            reason = _kind_reason(st.st_mode)
            if reason:
                return None, None, reason
            if st.st_size > MAX_ENCODED_BYTES:
                return None, _key(st), f"larger than 1 MiB ({st.st_size} bytes), not read"
            chunks = []
            remaining = MAX_ENCODED_BYTES + 1
            while remaining > 0:
                chunk = os.read(fd, min(remaining, 1 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
                remaining -= len(chunk)
            data = b"".join(chunks)
            if len(data) > MAX_ENCODED_BYTES:
                return None, _key(st), "larger than 1 MiB, not read"
            return data, _key(os.fstat(fd)), None
        except OSError as exc:
            return None, None, f"unreadable: {exc.strerror or exc}"
        finally:
            os.close(fd)

    def load(self, session_id: str) -> dict | None:
        """The session's snapshot, or None when there is no file.

        A file that exists but cannot be read as a snapshot raises
        :class:`StorageError` naming the reason.
        """
        check_session_id(session_id)
        path = os.path.join(self._dir, session_id + SNAPSHOT_SUFFIX)
        data, _key_, reason = self._read_file(path)
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
            log.warning("cannot remove lock file %s: %s", lock, exc)
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

    def _parse(self, name: str, key: tuple | None, data: bytes | None, reason: str | None, scan_ns: int) -> _Entry:
        if reason is not None:
            return _Entry(key, error=reason)
        try:
            record = codec.decode(data or b"")
        except InvalidSnapshot as exc:
            return _Entry(key, error=str(exc))
        racy = key is not None and key[3] >= scan_ns - RACY_NS
        return _Entry(
            key,
            session_id=record["session_id"],
            completed=record["completed"],
            project=record["project_dir"],
            ts=record["snapshot_timestamp_ms"],
            record=record,
            racy=racy,
        )

    def _refresh_name(self, name: str, scan_ns: int) -> int:
        """Re-examine one snapshot-named entry; returns 1 if a file was parsed."""
        path = os.path.join(self._dir, name)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            self._entries.pop(name, None)
            return 0
        except OSError as exc:
            self._entries[name] = _Entry(None, error=f"unreadable: {exc.strerror or exc}")
            return 0
        return self._refresh_stat(name, path, st, scan_ns)

    def _refresh_stat(self, name: str, path: str, st: os.stat_result, scan_ns: int) -> int:
        reason = _kind_reason(st.st_mode)
        key = _key(st)
        if reason is not None:
            self._entries[name] = _Entry(key, error=reason)
            return 0
        if st.st_size > MAX_ENCODED_BYTES:
            self._entries[name] = _Entry(key, error=f"larger than 1 MiB ({st.st_size} bytes), not read")
            return 0
        old = self._entries.get(name)
        if old is not None and old.key == key and not old.racy:
            return 0
        data, key2, why = self._read_file(path)
        if data is None and why is None:  # vanished meanwhile
            self._entries.pop(name, None)
            return 0
        self._entries[name] = self._parse(name, key2 or key, data, why, scan_ns)
        return 1

    def _full_scan(self, progress: Callable[[int, int], None] | None = None) -> int:
        scan_ns = time.time_ns()
        if not self._index_loaded and self._use_index:
            self._index_loaded = True
            for name, (key, sid, completed, project, ts) in load_index(self._dir).items():
                self._entries[name] = _Entry(key, session_id=sid, completed=completed, project=project, ts=ts)
        try:
            with os.scandir(self._dir) as it:
                names = [e.name for e in it if e.name.endswith(SNAPSHOT_SUFFIX)]
        except FileNotFoundError:
            self._entries.clear()
            return 0
        except NotADirectoryError as exc:
            raise StorageError("snapshot directory is not a directory:", self._dir, exc) from exc
        except OSError as exc:
            raise StorageError("cannot list snapshot directory", self._dir, exc) from exc
        present = set(names)
        for gone in [n for n in self._entries if n not in present]:
            del self._entries[gone]
        parsed = 0
        total = len(names)
        dfd = None
        try:
            if os.stat in os.supports_dir_fd:
                dfd = os.open(self._dir, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
        except OSError:
            dfd = None
        try:
            for i, name in enumerate(names):
                try:
                    if dfd is not None:
                        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                    else:
                        st = os.lstat(os.path.join(self._dir, name))
                except FileNotFoundError:
                    self._entries.pop(name, None)
                    continue
                except OSError as exc:
                    self._entries[name] = _Entry(None, error=f"unreadable: {exc.strerror or exc}")
                    continue
                parsed += self._refresh_stat(name, os.path.join(self._dir, name), st, scan_ns)
                if progress is not None and (i & 255) == 0:
                    progress(i, total)
        finally:
            if dfd is not None:
                os.close(dfd)
        if progress is not None:
            progress(total, total)
        if parsed:
            self._dirty_index = True
        return parsed

    def refresh(self, progress: Callable[[int, int], None] | None = None) -> set:
        """Bring the in-memory view up to date; returns the names that changed.

        With a live watcher only the names the kernel reported are looked
        at; otherwise every entry is ``lstat``-ed (files whose key is
        unchanged and not racy are not re-read).
        """
        with self._mutex:
            self._start_watch()
            watcher = self._watcher
            changed: set = set()
            if watcher is not None and watcher.alive and self._scanned:
                from .watch import OVERFLOW

                names = watcher.drain()
                if names is OVERFLOW:
                    self._scanned = False
                else:
                    scan_ns = time.time_ns()
                    racy = [n for n, e in self._entries.items() if e.racy]
                    for name in set(names) | set(racy):  # type: ignore[arg-type]
                        if name.endswith(SNAPSHOT_SUFFIX):
                            if self._refresh_name(name, scan_ns):
                                self._dirty_index = True
                            changed.add(name)
                        elif name.endswith(LOCK_SUFFIX):
                            changed.add(name)
            if watcher is None or not watcher.alive or not self._scanned:
                if watcher is not None and not watcher.alive:
                    self._watcher = None
                    self._start_watch()
                    watcher = self._watcher
                if watcher is not None:
                    watcher.drain()  # events before the scan are covered by it
                before = {n: e.key for n, e in self._entries.items()}
                self._full_scan(progress)
                self._scanned = True
                changed = {n for n, e in self._entries.items() if before.get(n) != e.key}
                changed |= set(before) - set(self._entries)
            self._maybe_write_index()
            return changed

    def _maybe_write_index(self) -> None:
        if not (self._use_index and self._dirty_index):
            return
        now = time.monotonic()
        if self._index_written_at and now - self._index_written_at < INDEX_MIN_INTERVAL_S:
            return
        if write_index(self._dir, self._entries):
            self._index_written_at = now
            self._dirty_index = False

    def flush_index(self) -> None:
        """Write the persistent index now if it is behind (e.g. on exit)."""
        with self._mutex:
            if self._use_index and self._dirty_index and write_index(self._dir, self._entries):
                self._dirty_index = False

    def _full_record(self, name: str, entry: _Entry) -> dict | None:
        if entry.record is not None:
            return entry.record
        path = os.path.join(self._dir, name)
        data, key, why = self._read_file(path)
        if data is None:
            entry.error = why or "vanished while listing"
            return None
        try:
            record = codec.decode(data)
        except InvalidSnapshot as exc:
            entry.error = str(exc)
            return None
        if key != entry.key:  # changed since indexed: take what is there now
            entry.key = key
            entry.completed = record["completed"]
            entry.project = record["project_dir"]
            entry.ts = record["snapshot_timestamp_ms"]
            entry.session_id = record["session_id"]
            self._dirty_index = True
        if not record["completed"]:
            entry.record = record
        return record

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
        with self._mutex:
            self.refresh(progress)
            candidates = []
            skipped = []
            for name, entry in self._entries.items():
                if entry.error is not None:
                    skipped.append(Skipped(name, entry.error))
                    continue
                if entry.completed and not (include_completed or status == COMPLETED):
                    continue
                if project is not None and not within(self._normalize(entry.project), project):
                    continue
                candidates.append((entry.ts, entry.session_id or "", name, entry))
            candidates.sort(key=lambda c: (-c[0], c[1]))
            now = now_ms()
            sessions = []
            for _ts, _sid, name, entry in candidates:
                record = self._full_record(name, entry)
                if record is None:
                    skipped.append(Skipped(name, entry.error or "unreadable"))
                    continue
                if project is not None and not within(self._normalize(record["project_dir"]), project):
                    continue
                state = self.status_of(record, now=now)
                if state == COMPLETED and not (include_completed or status == COMPLETED):
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
            skipped.sort(key=lambda s: s.file)
            self._maybe_write_index()
            return ListResult(sessions, skipped)

    def next_stale_deadline_ms(self, project_dir: str | None = None) -> int | None:
        """When the next lock-less incomplete snapshot turns interrupted."""
        project = normalize_project(project_dir) if project_dir else None
        now = now_ms()
        best = None
        with self._mutex:
            for entry in self._entries.values():
                if entry.error is not None or entry.completed:
                    continue
                if project is not None and not within(self._normalize(entry.project), project):
                    continue
                deadline = min(entry.ts, now) + self.stale_after_ms
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
                            log.warning("cannot remove temporary file %s: %s", path, exc)
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
        data, key, why = self._read_file(path)
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
        try:  # hold the lock while removing, so nobody claims it half-way
            lock = locks.acquire(lock_path, attempts=1)
        except OSError:
            return None
        if lock is None:
            return None  # claimed meanwhile: running again
        try:
            if not self._unlink_if_same(path, key):
                return None
            return record["session_id"]
        finally:
            try:
                os.unlink(lock_path)
            except OSError:
                pass
            lock.release()

    def _unlink_if_same(self, path: str, key: tuple | None) -> bool:
        try:
            st = os.lstat(path)
            if _key(st) != key:
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


def iter_tool_results(record: dict) -> Iterable[dict]:
    return iter(record["last_tool_results"])
