"""The listing view of one snapshot directory, kept in step with the disk.

A :class:`Catalog` owns the per-name cache (:mod:`.cache`), the persistent
index (:mod:`.index`, a hint a fresh process starts from) and, for
long-lived processes, the change feed (:mod:`.watch`). ``refresh`` brings
the cache up to date (from the feed when it is alive, else by ``lstat``-ing
every name); ``list`` filters, orders and describes what the cache holds,
asking the caller's ``describe`` for each session's liveness (``status``,
``kind``, ``notebook``: the store's hook, see ``SnapshotStore.describe``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable

from .cache import ListingCache
from .errors import InvalidSnapshot, StorageError
from .index import load_index, write_index
from .paths import LOCK_SUFFIX, SNAPSHOT_SUFFIX, normalize_project, within
from .records import COMPLETED, INTERRUPTED, RUNNING, now_ms
from .validation import check_str

INDEX_MIN_INTERVAL_S = 5.0


@dataclass(frozen=True, slots=True)
class Skipped:
    """A directory entry that is not listed, and why."""

    file: str
    reason: str

    def to_dict(self) -> dict:
        return {"file": self.file, "reason": self.reason}


@dataclass(slots=True)
class ListResult:
    """``sessions``: listing dicts (record + status, kind, notebook, path); ``skipped``: :class:`Skipped`."""

    sessions: list
    skipped: list = field(default_factory=list)


class Catalog:
    """What this process knows of one directory (see the module docstring)."""

    def __init__(self, directory: str, describe: Callable, *, watch: bool = False, use_index: bool = True) -> None:
        self._dir = directory
        self._describe = describe
        self._cache = ListingCache(directory)
        self._want_watch = watch
        self._watcher = None
        self._scanned = False
        self._use_index = use_index
        self._index_loaded = False
        self._index_written_at = 0.0
        self._norm_cache: dict[str, str] = {}

    # ---------------------------------------------------------------- watch
    def _start_watch(self) -> None:
        if self._want_watch and (self._watcher is None or not self._watcher.alive):
            from .watch import DirWatcher

            if self._watcher is not None:
                self._watcher.close()
            self._watcher = DirWatcher.create(self._dir)
            if self._watcher is not None:
                self._scanned = False  # events before the watch began are unknown

    def watcher_fileno(self) -> int | None:
        """A file descriptor that turns readable when the directory changes."""
        self._start_watch()
        return self._watcher.fileno() if self._watcher is not None else None

    # -------------------------------------------------------------- refresh
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
        """Bring the view up to date; returns the names that changed.

        With a live watcher only the names the kernel reported are looked
        at; otherwise every entry is ``lstat``-ed (files whose key is
        unchanged and not racy are not re-read). Lock file names are
        reported too (a holder closing it, e.g. by dying).
        """
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
        cache = self._cache
        if self._use_index and cache.dirty and os.path.isdir(self._dir):
            if write_index(self._dir, cache.index_rows()):
                cache.dirty = False

    # -------------------------------------------------------------- listing
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
            if limit is not None and len(sessions) >= limit:
                break
            record = cache.full_record(name)
            if record is None:
                continue  # vanished or turned bad since it was indexed
            if project is not None and not within(self._normalize(record["project_dir"]), project):
                continue
            described = self._describe(record, now=now)
            state = described["status"]
            if state == COMPLETED and not want_completed:
                continue
            if status is not None and state != status:
                continue
            listing = dict(record)
            listing.update(described)
            listing["path"] = os.path.join(self._dir, name)
            sessions.append(listing)
        sessions.sort(key=lambda r: (-r["snapshot_timestamp_ms"], r["session_id"]))
        skipped = [Skipped(name, reason) for name, reason in sorted(cache.errors.items())]
        self._maybe_write_index()
        return ListResult(sessions, skipped)

    def next_stale_deadline_ms(self, stale_after_ms: int, project_dir: str | None = None) -> int | None:
        """When the next lock-less incomplete snapshot turns interrupted."""
        project = normalize_project(project_dir) if project_dir else None
        now = now_ms()
        best = None
        for _sid, completed, raw, ts in self._cache.meta.values():
            if completed:
                continue
            if project is not None and not within(self._normalize(raw), project):
                continue
            deadline = min(ts, now) + stale_after_ms
            if deadline > now and (best is None or deadline < best):
                best = deadline
        return best

    def close(self) -> None:
        """Flush the index and stop watching."""
        try:
            self.flush_index()
        except OSError:
            pass
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
