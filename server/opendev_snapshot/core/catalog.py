"""The listing view of one snapshot directory, kept in step with the disk.

A :class:`Catalog` owns the per-name cache (:mod:`.cache`), the persistent
index (:mod:`.index`, a hint a fresh process starts from) and, for
long-lived processes, the change feed (:mod:`.watch`) and the handles on
locks known held (:mod:`.lockwatch`). ``refresh`` brings the cache up to
date (from the feed when it is attached, else by ``lstat``-ing every
name); ``list`` filters, orders and describes what the cache holds, asking
the caller's ``describe`` for each session's liveness (``status``, ``kind``,
``notebook``: the store's hook, see ``SnapshotStore.describe``).

The view is never staler than :data:`SAFETY_INTERVAL_S`: ``safety_check``
(called on a timer by the server, and by ``refresh`` itself once the last
one is that old) does not trust the feed. It checks that the path still
names the directory being watched (re-attaching the watch when the
directory was deleted and re-created, a symlink re-pointed or a parent
renamed), ``lstat``s every name and re-reads the files whose key changed
(a write through a hard link, a change on another host of a network file
system), and re-checks the locks it knows held.
"""

from __future__ import annotations

import os
import time
from typing import Callable

from .cache import ListingCache
from .errors import StorageError
from .index import load_index, write_index
from .listing import ListResult, Projects, Skipped, check_query, skipped
from .lockwatch import UNLOCKED, LockTracker
from .paths import LOCK_SUFFIX, SNAPSHOT_SUFFIX
from .records import COMPLETED, RUNNING, now_ms
from .watch import IN_CLOSE_NOWRITE, OVERFLOW, DirWatcher

__all__ = ["Catalog", "ListResult", "Skipped"]

INDEX_MIN_INTERVAL_S = 5.0
SAFETY_INTERVAL_S = 10.0


class Catalog:
    """What this process knows of one directory (see the module docstring)."""

    def __init__(self, directory: str, describe: Callable, *, watch: bool = False, use_index: bool = True) -> None:
        self._dir = directory
        self._describe = describe
        self._cache = ListingCache(directory)
        self._want_watch = watch
        self._watcher: DirWatcher | None = None
        self._locks = LockTracker(directory)
        self._scanned = False  # has the cache been scanned since the watch was attached?
        self._use_index = use_index
        self._index_loaded = False
        self._index_written_at = 0.0
        self._safety_at = time.monotonic()
        self._projects = Projects()

    # ---------------------------------------------------------------- watch
    def _attach(self) -> bool:
        """True while the feed watches the directory the path names."""
        if not self._want_watch:
            return False
        if self._watcher is None:
            self._watcher = DirWatcher.create()
            if self._watcher is None:
                self._want_watch = False  # no inotify here: stat scans
                return False
            self._locks.watcher = self._watcher
        if not self._watcher.attached:
            self._scanned = False  # what happened before the watch began is unknown
            self._locks.close()
            if not self._watcher.attach(self._dir):
                return False
        return True

    def watcher_fileno(self) -> int | None:
        """A file descriptor that turns readable when the directory changes
        (the same one for the catalog's lifetime); None when not watching."""
        return self._watcher.fileno() if self._attach() else None

    def _identity_changed(self) -> bool:
        """True when the path no longer names the watched directory."""
        watcher = self._watcher
        if watcher is None or not watcher.attached:
            return False
        try:
            st = os.stat(self._dir)
            return (st.st_dev, st.st_ino) != watcher.identity
        except OSError:
            return True

    # -------------------------------------------------------------- refresh
    def refresh(self, progress: Callable[[int, int], None] | None = None) -> set:
        """Bring the view up to date; returns the names that changed.

        With an attached feed only the names the kernel reported are looked
        at; otherwise every entry is ``lstat``-ed (files whose key is
        unchanged and not racy are not re-read). Lock file names are
        reported too (a holder closing it, e.g. by dying). Runs the safety
        check instead when the last one is :data:`SAFETY_INTERVAL_S` old.
        """
        if time.monotonic() - self._safety_at >= SAFETY_INTERVAL_S:
            return self.safety_check(progress)
        if self._attach() and self._scanned:
            events = self._watcher.drain()
            if events is not OVERFLOW:
                return self._apply(events)
            self._scanned = False
            self._attach()
        return self._scan(progress)

    def wrote(self, name: str, data: bytes, record: dict) -> None:
        """The store wrote ``record`` as ``data`` to ``name`` (see :meth:`.ownwrites.OwnWrites.wrote`)."""
        self._cache.own.wrote(name, data, record)

    def _apply(self, events: dict) -> set:
        """Take in what the feed reported (no racy re-reads here: the kernel
        reports in-place writes through this directory too)."""
        cache = self._cache
        scan_ns = time.time_ns()
        changed = set()
        for name, mask in events.items():
            written = mask & ~IN_CLOSE_NOWRITE  # anything but somebody closing a read-only handle
            if name.endswith(SNAPSHOT_SUFFIX):
                if written:
                    cache.examine(name, None, scan_ns)
                    cache.dirty = True
                    changed.add(name)
            elif name.endswith(LOCK_SUFFIX):
                if written:
                    self._locks.forget(name)
                    cache.examine_lock(name)
                    changed.add(name)
                elif self._locks.still_locked(name) is False:
                    changed.add(name)  # a holder that had it open read-only is gone
        self._maybe_write_index()
        return changed

    def _scan(self, progress, *, trust_names: bool = False) -> set:
        watcher = self._watcher
        attached = watcher is not None and watcher.attached
        fed = set()
        if attached:
            events = watcher.drain()
            if events is OVERFLOW:
                trust_names = False
            elif trust_names:
                fed = self._apply(events)  # the names it reports are the directory's
            else:
                for name in events:  # the listing below covers the rest
                    if name.endswith(LOCK_SUFFIX):
                        self._cache.examine_lock(name)
        if self._use_index and not self._index_loaded:
            self._index_loaded = True
            rows = load_index(self._dir)
            if rows is not None:
                self._cache.load_rows(*rows)
        try:
            changed, _parsed = self._cache.full_scan(time.time_ns(), progress, trust_names=trust_names)
        except FileNotFoundError:
            changed = set()
        except NotADirectoryError as exc:
            raise StorageError("snapshot directory is not a directory:", self._dir, exc) from exc
        except OSError as exc:
            raise StorageError("cannot list snapshot directory", self._dir, exc) from exc
        self._scanned = attached and watcher.attached
        self._maybe_write_index()
        return changed | fed

    def safety_check(self, progress: Callable[[int, int], None] | None = None) -> set:
        """Compare the directory itself with the view; returns the names that changed.

        Re-attaches the feed when the path names another directory (or the
        feed lost its directory), ``lstat``s every name (unchanged files are
        not re-read), and re-checks the locks known held.
        """
        self._safety_at = time.monotonic()
        changed = set()
        # A local file system's feed reports every name change in the watched
        # directory: the names are known, only their files need an lstat.
        trust = self._scanned and self._watcher is not None and self._watcher.attached and self._watcher.local
        if self._identity_changed():
            self._watcher.detach()
            changed |= self._cache.forget_all()
            trust = False
        self._attach()
        changed |= self._locks.recheck()
        self._scanned = False
        return changed | self._scan(progress, trust_names=trust)

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
        project, want_completed = check_query(project_dir, status, limit, include_completed)
        self.refresh(progress)
        cache = self._cache
        now = now_ms()
        track = self._watcher is not None and self._watcher.attached
        sessions = []
        for name in self._projects.candidates(cache, project, want_completed):
            if limit is not None and len(sessions) >= limit:
                break
            record = cache.full_record(name)
            if record is None or not self._projects.holds(record["project_dir"], project):
                continue  # vanished or turned bad since it was indexed
            described = self._describe(record, now=now)
            if described["status"] == RUNNING and track and self._locks.track(record["session_id"] + LOCK_SUFFIX) == UNLOCKED:
                described = self._describe(record, now=now)  # its holder went away just now
            state = described["status"]
            if (state == COMPLETED and not want_completed) or (status is not None and state != status):
                continue
            listing = dict(record)
            listing.update(described)
            listing["path"] = os.path.join(self._dir, name)
            sessions.append(listing)
        sessions.sort(key=lambda r: (-r["snapshot_timestamp_ms"], r["session_id"]))
        self._maybe_write_index()
        return ListResult(sessions, skipped(cache))

    def next_stale_deadline_ms(self, stale_after_ms: int, project_dir: str | None = None) -> int | None:
        """When the next lock-less incomplete snapshot turns interrupted."""
        return self._projects.next_stale_deadline_ms(self._cache, stale_after_ms, project_dir)

    def close(self) -> None:
        """Flush the index, stop watching, let go of the lock handles."""
        try:
            self.flush_index()
        except OSError:
            pass
        self._locks.close()
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
            self._locks.watcher = None
        self._want_watch = False
