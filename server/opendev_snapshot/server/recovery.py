"""``opendev/recoverableSessions``: on open, for added folders, and while running.

Contract section 4. On ``initialized`` each workspace folder (or
``rootUri``) with interrupted sessions of its project gets one
notification (from the start-up pre-scan when it has the answer); so does
each folder added later. Then the directory is watched:

- the store's change feed (inotify) sits in the event loop (``add_reader``):
  nothing runs while nothing changes; a change (a snapshot written, a lock
  holder gone) triggers one debounced check that re-reads only what changed;
- a timer fires when the next lock-less snapshot ages past ``staleAfterMs``;
- every 10 s the store's safety check (``safety_check()``) catches what a
  change feed cannot see (a network file system, the directory replaced or
  re-pointed); every 2 s without a change feed, every 1 s while the
  directory does not exist.

Each session is notified at most once per folder per server run, and
offered to :class:`.prompts.Prompts`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from .feature import Feature, Folder
from .names import RECOVERABLE_SESSIONS
from .options import DEFAULTS
from .prompts import Prompts
from .storage import Storage

log = logging.getLogger(__name__)

DEBOUNCE_S = 0.05
SAFETY_S = 10.0
POLL_NO_WATCH_S = 2.0
POLL_NO_DIR_S = 1.0


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Recovery(Feature):
    def __init__(self, server) -> None:
        super().__init__(server)
        self.storage = server.get_feature(Storage)
        self.prompts = server.get_feature(Prompts)
        self.settings = DEFAULTS
        self.folders: dict[str, Folder] = {}
        self.notified: set[tuple[str, str]] = set()  # (folder uri, session id)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd: int | None = None
        self._handles: dict[str, asyncio.Handle | None] = {"check": None, "deadline": None, "safety": None}
        self._deadline_ms: int | None = None
        self._watching = False
        self._warm = False  # has the store scanned the directory itself?

    # --------------------------------------------------------------- events
    def initialize(self, settings, folders) -> None:
        self.settings = settings
        self.folders = {f.uri: f for f in folders}

    def initialized(self) -> None:
        """The on-open notifications (from the pre-scan's answer when it has one), then the watch."""
        try:
            if self.folders:
                self._announce_all(list(self.folders.values()))
        finally:
            self._start()

    def folders_changed(self, added, removed) -> None:
        for folder in removed:
            self.folders.pop(folder.uri, None)
            self.notified = {k for k in self.notified if k[0] != folder.uri}
        for folder in added:
            self.folders[folder.uri] = folder
            self._announce_listed(folder)

    def shutdown(self) -> None:
        self._stop()

    close = shutdown

    # -------------------------------------------------------------- announce
    def announce(self, folder: Folder, sessions: list) -> None:
        """Notify (and offer prompts for) the sessions of ``folder`` not notified yet."""
        if folder.uri not in self.folders:
            return
        fresh = [s for s in sessions if (folder.uri, s["sessionId"]) not in self.notified]
        if not fresh:
            return
        self.notified.update((folder.uri, s["sessionId"]) for s in fresh)
        self.server.protocol.notify(RECOVERABLE_SESSIONS, {"workspaceFolder": folder.wire(), "sessions": fresh})
        log.info("notified %d interrupted session(s) for %s", len(fresh), folder.uri)
        self.prompts.offer(fresh)

    def _announce_listed(self, folder: Folder) -> None:
        self._announce_all([folder])

    def _announce_all(self, folders: list) -> None:
        try:
            lists = self.storage.interrupted([f.path for f in folders])
        except Exception as exc:
            log.warning("cannot list the sessions of %s: %s", ", ".join(f.uri for f in folders), exc)
            return
        for folder, sessions in zip(folders, lists):
            self.announce(folder, sessions)

    # ----------------------------------------------------------------- watch
    def _start(self) -> None:
        """Start watching once the store has scanned the directory itself (off the
        loop); the on-open list may have come from the pre-scan, so one forced
        check then notifies anything that changed in between."""
        if self._watching:
            return
        self._loop = asyncio.get_running_loop()
        self._watching = True
        loop = self._loop

        def done() -> None:
            try:
                loop.call_soon_threadsafe(self._warmed)
            except RuntimeError:  # the loop is gone: the server is ending
                pass

        self.storage.warm_up(done)

    def _warmed(self) -> None:
        self._warm = True
        self.check(force=True)

    def _stop(self) -> None:
        self._watching = False
        for name, handle in self._handles.items():
            if handle is not None:
                handle.cancel()
            self._handles[name] = None
        self._unwatch_fd()

    def _unwatch_fd(self) -> None:
        if self._fd is not None and self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.remove_reader(self._fd)
            except Exception:
                pass
        self._fd = None

    def _on_readable(self) -> None:
        # Level-triggered: stop listening until the check drains the feed.
        self._unwatch_fd()
        if self._watching and self._loop is not None and self._handles["check"] is None:
            self._handles["check"] = self._loop.call_later(DEBOUNCE_S, self._run_check)

    def _run_check(self) -> None:
        self._handles["check"] = None
        self.check()

    def _deadline_due(self) -> None:
        self._handles["deadline"] = None
        self.check(force=True)

    def _timer(self, name: str, delay: float, callback, *, sooner_only: bool) -> None:
        """(Re)schedule timer ``name``; ``sooner_only`` keeps an earlier one."""
        handle = self._handles[name]
        if handle is not None:
            if sooner_only and handle.when() <= self._loop.time() + delay:
                return
            handle.cancel()
        self._handles[name] = self._loop.call_later(delay, callback)

    def safety_tick(self) -> None:
        """The 10-second check: the store compares the directory itself, then we look again."""
        self._handles["safety"] = None
        if not self._watching or not self._warm:
            self._rearm()
            return
        try:
            self.storage.store.safety_check()
        except Exception:
            log.debug("safety check failed", exc_info=True)
        self.check(force=True)

    def check(self, force: bool = False) -> None:
        """Look for newly interrupted sessions of the open folders."""
        if not self._watching:
            return
        try:
            store = self.storage.store
            changed = store.refresh() if self._warm else set()
            due = self._deadline_ms is not None and _now_ms() >= self._deadline_ms
            if self._warm and (changed or due or force):
                for folder in list(self.folders.values()):
                    self._announce_listed(folder)
        except Exception:
            log.exception("watch check failed")
        self._rearm()

    def _rearm(self) -> None:
        """Re-register the change feed, the ageing timer and the safety check."""
        if not self._watching or self._loop is None:
            return
        store = None
        fd = None
        directory_exists = False
        try:
            store = self.storage.store
            directory_exists = os.path.isdir(store.directory)
            if directory_exists and self._warm:
                fd = store.watcher_fileno()
        except Exception:
            store = None
        if fd != self._fd:
            self._unwatch_fd()
        if fd is not None and self._fd is None:
            try:
                self._loop.add_reader(fd, self._on_readable)
                self._fd = fd
            except Exception:
                log.debug("cannot watch fd %s", fd, exc_info=True)
        # the ageing timer
        self._deadline_ms = None
        deadline = None
        if store is not None and self._warm:
            try:
                deadline = store.next_stale_deadline_ms()
            except Exception:
                deadline = None
        if deadline is not None:
            self._deadline_ms = deadline
            delay = max(0.0, (deadline - _now_ms()) / 1000.0) + 0.02
            self._timer("deadline", delay, self._deadline_due, sooner_only=False)
        elif self._handles["deadline"] is not None:
            self._handles["deadline"].cancel()
            self._handles["deadline"] = None
        # the safety net
        if not directory_exists:
            interval = POLL_NO_DIR_S
        elif self._fd is None:
            interval = POLL_NO_WATCH_S
        else:
            interval = SAFETY_S
        # Kept when due sooner: a busy change feed never postpones it.
        self._timer("safety", interval, self.safety_tick, sooner_only=True)
