"""Cleanup by age: old snapshots (never a running one), stale temporary
files and orphan lock files."""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from . import codec, liveness
from .cache import read_snapshot_file, stat_key
from .durable import fsync_dir
from .errors import InvalidSnapshot, StorageError
from .index import INDEX_NAME
from .paths import LOCK_SUFFIX, SNAPSHOT_SUFFIX, session_id_from_name
from .records import INTERRUPTED, now_ms
from .validation import check_u64

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


def cleanup(
    store: "SnapshotStore",
    max_age_ms: int,
    *,
    dry_run: bool = False,
    include_incomplete: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> CleanupResult:
    """Remove snapshots older than ``max_age_ms`` (never a running one),
    stale temporary files (> 1 h) and unlocked orphan lock files."""
    check_u64(max_age_ms, "maxAgeMs")
    directory = os.fspath(store.directory)
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
            if base + SNAPSHOT_SUFFIX not in present and liveness.probe(path) == liveness.UNLOCKED:
                if dry_run or liveness.remove_if_unlocked(path):
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
        fsync_dir(directory)
    removed.sort()
    return CleanupResult(len(removed), removed, dry_run, temps, locks_removed)


def is_temp(name: str) -> bool:
    """Temporary names of :mod:`.durable` (snapshots, the index) and the seed's ``*.json.tmp``."""
    if name.endswith(".json.tmp"):
        return True
    return name.startswith(".") and name.endswith(".tmp") and (SNAPSHOT_SUFFIX in name or INDEX_NAME in name)


def _old_regular(path: str, max_age_s: float) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and time.time() - st.st_mtime > max_age_s


def _cleanup_snapshot(store, name, path, cutoff, now, dry_run, include_incomplete) -> str | None:
    data, key, _why = read_snapshot_file(path)
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
    lock_path = os.path.join(os.fspath(store.directory), sid + LOCK_SUFFIX)
    if record["completed"]:
        if not dry_run:
            if not _unlink_if_same(path, key):
                return None
            liveness.remove_if_unlocked(lock_path)
        return record["session_id"]
    if store.status_of(record, now=now) != INTERRUPTED:
        return None  # never remove a running session
    if dry_run:
        return record["session_id"]
    if store.holds(sid):
        return None
    had_lock_file = os.path.lexists(lock_path)
    try:  # hold the lock while removing, so nobody claims it half-way
        lock = liveness.acquire(lock_path, attempts=1)
    except OSError:
        return None
    if lock is None:
        return None  # claimed meanwhile: running again
    removed = False
    try:
        removed = _unlink_if_same(path, key)
        return record["session_id"] if removed else None
    finally:
        if removed or not had_lock_file:
            try:
                os.unlink(lock_path)
            except OSError:
                pass
        lock.release()


def _unlink_if_same(path: str, key: tuple | None) -> bool:
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
