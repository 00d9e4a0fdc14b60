"""Cleanup by age: old snapshots to the trash (never a running one), stale
temporary files, orphan lock files, and the purge of old trash entries."""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from . import codec, liveness, trash
from .cache import read_snapshot_file, stat_key
from .durable import fsync_dir
from .errors import InvalidSnapshot, StorageError
from .index import INDEX_NAME
from .paths import LOCK_SUFFIX, SNAPSHOT_SUFFIX, session_id_from_name
from .records import INTERRUPTED, now_ms
from .validation import check_session_id, check_u64

from ._log import logger

if TYPE_CHECKING:
    from .store import SnapshotStore

TEMP_MAX_AGE_S = 3600


@dataclass(slots=True)
class CleanupResult:
    removed_count: int
    session_ids: list = field(default_factory=list)
    dry_run: bool = False
    temp_files_removed: int = 0
    lock_files_removed: int = 0
    purged_count: int = 0


def cleanup(
    store: "SnapshotStore",
    max_age_ms: int,
    *,
    dry_run: bool = False,
    include_incomplete: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> CleanupResult:
    """Move snapshots older than ``max_age_ms`` to the trash (never a
    running one), remove stale temporary files (> 1 h) and unlocked orphan
    lock files, purge trash entries older than ``store.trash_retention_ms``."""
    check_u64(max_age_ms, "maxAgeMs")
    directory = store._dir
    now = now_ms()
    cutoff = max(0, now - max_age_ms)
    try:
        with os.scandir(directory) as it:
            names = [e.name for e in it]
    except FileNotFoundError:
        return CleanupResult(0, [], dry_run)
    except OSError as exc:
        raise StorageError("cannot list snapshot directory", directory, exc) from exc
    present = set(names)
    removed: list = []
    temps = locks_removed = 0
    total = len(names)
    for i, name in enumerate(names):
        if progress is not None and (i & 63) == 0:
            progress(i, total)
        path = os.path.join(directory, name)
        if name.endswith(SNAPSHOT_SUFFIX):
            sid = _cleanup_snapshot(store, name, path, cutoff, now, dry_run, include_incomplete)
            if sid is not None:
                removed.append(sid)
        elif name.endswith(LOCK_SUFFIX):
            base = name[: -len(LOCK_SUFFIX)]
            if base + SNAPSHOT_SUFFIX not in present and _orphan_lock(store, base, path, dry_run):
                locks_removed += 1
        elif is_temp(name) and _old_regular(path, TEMP_MAX_AGE_S):
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
        fsync_dir(trash.trash_dir(directory))  # the moves, made durable once
        fsync_dir(directory)
    purged = trash.purge(directory, now - store.trash_retention_ms, dry_run=dry_run)
    removed.sort()
    return CleanupResult(len(removed), removed, dry_run, temps, locks_removed, purged)


def is_temp(name: str) -> bool:
    """Temporary names of :mod:`.durable` (snapshots, lock files, the index) and the seed's ``*.json.tmp``."""
    if name.endswith(".json.tmp"):
        return True
    return (
        name.startswith(".") and name.endswith(".tmp")
        and (SNAPSHOT_SUFFIX in name or LOCK_SUFFIX in name or INDEX_NAME in name)
    )


def _old_regular(path: str, max_age_s: float) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and time.time() - st.st_mtime > max_age_s


def _valid_id(session_id: str | None) -> bool:
    try:
        check_session_id(session_id)
        return True
    except InvalidSnapshot:
        return False


def _orphan_lock(store, base: str, path: str, dry_run: bool) -> bool:
    if not _valid_id(base) or liveness.probe(path) != liveness.UNLOCKED:
        return False
    if dry_run:
        return True
    with store._updates.hold(base):  # never while a claim or a save of it is under way
        if os.path.lexists(os.path.join(store._dir, base + SNAPSHOT_SUFFIX)):
            return False
        return liveness.remove_if_unlocked(path)


def _read(path: str):
    data, key, _why = read_snapshot_file(path)
    if data is None:
        return None, None  # unreadable or hostile: reported by list, never removed here
    try:
        return codec.decode(data), key
    except InvalidSnapshot:
        return None, None


def _cleanup_snapshot(store, name, path, cutoff, now, dry_run, include_incomplete) -> str | None:
    sid = session_id_from_name(name)
    if not _valid_id(sid):
        return None
    record, key = _read(path)
    if record is None or record["session_id"] != sid:
        return None  # not a usable snapshot of this name: list reports it skipped
    if record["snapshot_timestamp_ms"] >= cutoff:
        return None
    if not record["completed"] and not include_incomplete:
        return None
    if not record["completed"] and store.status_of(record, now=now) != INTERRUPTED:
        return None  # never remove a running session
    if dry_run:
        return sid
    with store._updates.hold(sid):
        if store.holds(sid) or not _same_file(path, key):
            return None  # ours, or rewritten since we decided: leave it
        lock_path = os.path.join(store._dir, sid + LOCK_SUFFIX)
        had_lock_file = os.path.lexists(lock_path)
        try:  # an instant's lock: nobody claims it half-way; its text stays
            lock = liveness.acquire(lock_path, None, attempts=1)
        except liveness.NotALockFile:  # no lock file: judged by age; what is there stays (claims refuse it)
            lock, had_lock_file = None, False
        except OSError:
            return None
        if lock is None and had_lock_file:
            return None  # claimed meanwhile: running again
        moved = False
        try:
            if not had_lock_file and not record["completed"] and store.running_by_age(record):
                return None
            text = liveness.read_text(lock_path) if had_lock_file else None
            trash.put(store._dir, name, lock_text=text, sync=False)
            moved = True
            return sid
        finally:
            if lock is not None:
                if (moved or not had_lock_file) and lock.still_linked():
                    try:
                        os.unlink(lock_path)  # its text is in the trash, or we created it just now
                    except OSError:
                        pass
                lock.release()


def _same_file(path: str, key: tuple | None) -> bool:
    try:
        return stat_key(os.lstat(path)) == key
    except OSError:
        return False
