"""``opendev/recoverableSessions``: on open, for added folders, and while running.

On ``initialized`` each workspace folder (or ``rootUri``) with interrupted
sessions of its project gets one notification; so does each folder added
later. Then the directory is watched (contract section 4):

- the store's inotify descriptor sits in the event loop (``add_reader``):
  nothing runs while nothing changes; a change (a snapshot written, a lock
  holder gone: its ``IN_CLOSE_WRITE``) triggers one debounced check that
  re-reads only the changed names;
- a timer fires when the next lock-less snapshot ages past ``staleAfterMs``;
- a slow safety check (every 10 s; every 2 s without inotify) covers
  anything a change feed cannot see;
- a missing directory is looked for every second and watched once it
  appears.

Each session is notified at most once per folder per server run and
prompted at most once per run.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time

from .context import Folder, folder_from
from .names import RECOVERABLE_SESSIONS
from .prompts import Prompts

log = logging.getLogger(__name__)

DEBOUNCE_S = 0.05
SAFETY_S = 10.0
POLL_NO_WATCH_S = 2.0
POLL_NO_DIR_S = 1.0


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Recovery:
    def __init__(self, server, ctx) -> None:
        self.server = server
        self.ctx = ctx
        self.prompts = Prompts(server, ctx)
        self.notified: set = set()  # (folder uri, session id)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd: int | None = None
        self._check_handle = None
        self._deadline_handle = None
        self._safety_handle = None
        self._deadline_ms: int | None = None
        self._watching = False
        self._warm = False  # has this process scanned the directory itself?

    # ------------------------------------------------------------ announce
    def announce(self, folder: Folder, sessions: list) -> None:
        """Notify (and prompt) the sessions of ``folder`` not yet notified."""
        if self.ctx.stopping or folder.uri not in self.ctx.folders:
            return
        fresh = [s for s in sessions if (folder.uri, s["sessionId"]) not in self.notified]
        if not fresh:
            return
        for s in fresh:
            self.notified.add((folder.uri, s["sessionId"]))
        self.server.protocol.notify(RECOVERABLE_SESSIONS, {"workspaceFolder": folder.wire(), "sessions": fresh})
        log.info("notified %d interrupted session(s) for %s", len(fresh), folder.uri)
        self.prompts.offer(fresh)

    def interrupted_of(self, folder: Folder) -> list:
        from ..core.wire import listing_to_wire

        result = self.ctx.store.list(project_dir=folder.path, status="interrupted")
        for skipped in result.skipped:
            log.debug("skipped %s: %s", skipped.file, skipped.reason)
        return [listing_to_wire(s) for s in result.sessions]

    def open_folders(self, folders: list) -> None:
        """The on-open notifications (from the pre-scan when it has them).

        Folders the fast start (:mod:`.handshake`) already announced are only
        recorded as notified here, and their prompts sent.
        """
        announced, self.ctx.announced = self.ctx.announced or {}, None
        for folder in folders:
            if folder.uri in announced:
                sessions = announced[folder.uri]
                for s in sessions:
                    self.notified.add((folder.uri, s["sessionId"]))
                if sessions:
                    self.prompts.offer(sessions)
        folders = [f for f in folders if f.uri not in announced]
        prelisted = None
        prescan, self.ctx.prescan = self.ctx.prescan, None
        if prescan is not None:
            try:
                prelisted = prescan.query(
                    self.ctx.snapshot_dir(), self.ctx.options.stale_after_ms, [f.path for f in folders]
                )
            except Exception:
                log.debug("pre-scan unusable", exc_info=True)
                prelisted = None
        for i, folder in enumerate(folders):
            try:
                sessions = prelisted[i] if prelisted is not None else self.interrupted_of(folder)
            except Exception as exc:
                log.warning("cannot list sessions for %s: %s", folder.uri, exc)
                continue
            self.announce(folder, sessions)

    def add_folders(self, added: list) -> None:
        for folder in added:
            self.ctx.folders[folder.uri] = folder
            try:
                self.announce(folder, self.interrupted_of(folder))
            except Exception as exc:
                log.warning("cannot list sessions for %s: %s", folder.uri, exc)

    def remove_folders(self, uris: list) -> None:
        for uri in uris:
            self.ctx.folders.pop(uri, None)
            self.notified = {k for k in self.notified if k[0] != uri}

    # --------------------------------------------------------------- watch
    def start(self) -> None:
        """Start watching. The store is (re)scanned off the loop first; the
        on-open list may have come from the pre-scan child, so one forced
        check then notifies anything that changed in between."""
        self._loop = asyncio.get_running_loop()
        self._watching = True

        def warm_up() -> None:
            try:
                self.ctx.store.watcher_fileno()  # watch first, so nothing slips between
                self.ctx.store.refresh()
            except Exception:
                log.debug("warm-up scan failed", exc_info=True)
            loop = self._loop
            if loop is not None and not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(self._warmed)
                except RuntimeError:
                    pass

        threading.Thread(target=warm_up, name="warm-up", daemon=True).start()

    def _warmed(self) -> None:
        self._warm = True
        self.check(force=True)

    def stop(self) -> None:
        self._watching = False
        for handle in (self._check_handle, self._deadline_handle, self._safety_handle):
            if handle is not None:
                handle.cancel()
        self._check_handle = self._deadline_handle = self._safety_handle = None
        self._unwatch_fd()
        self.prompts.cancel_all()

    def _unwatch_fd(self) -> None:
        if self._fd is not None and self._loop is not None:
            try:
                self._loop.remove_reader(self._fd)
            except Exception:
                pass
        self._fd = None

    def _on_readable(self) -> None:
        # Level-triggered: stop listening until the check drains the queue.
        self._unwatch_fd()
        self._schedule_check(DEBOUNCE_S)

    def _schedule_check(self, delay: float, force: bool = False) -> None:
        if not self._watching or self._loop is None:
            return
        if self._check_handle is not None:
            if not force:
                return
            self._check_handle.cancel()
        self._check_handle = self._loop.call_later(delay, self._run_check, force)

    def _run_check(self, force: bool) -> None:
        self._check_handle = None
        self.check(force=force)

    def check(self, force: bool = False) -> None:
        """Look for newly interrupted sessions of the open folders."""
        if not self._watching or self.ctx.stopping:
            return
        try:
            store = self.ctx.store
            changed = store.refresh() if self._warm else set()
            due = self._deadline_ms is not None and _now_ms() >= self._deadline_ms
            if self._warm and (changed or due or force):
                for folder in list(self.ctx.folders.values()):
                    try:
                        self.announce(folder, self.interrupted_of(folder))
                    except Exception as exc:
                        log.warning("cannot list sessions for %s: %s", folder.uri, exc)
        except Exception:
            log.exception("watch check failed")
        self._rearm()

    def _rearm(self) -> None:
        """Re-register the change feed, the ageing timer and the safety check."""
        if not self._watching or self._loop is None:
            return
        loop = self._loop
        fd = None
        try:
            store = self.ctx.store
            if os.path.isdir(store.directory):
                fd = store.watcher_fileno()
        except Exception:
            store = None
        if fd != self._fd:
            self._unwatch_fd()
        if fd is not None and self._fd is None and self._warm:
            try:
                loop.add_reader(fd, self._on_readable)
                self._fd = fd
            except Exception:
                log.debug("cannot watch fd %s", fd, exc_info=True)
        # ageing timer
        if self._deadline_handle is not None:
            self._deadline_handle.cancel()
            self._deadline_handle = None
        self._deadline_ms = None
        if store is not None and self._warm:
            try:
                deadline = store.next_stale_deadline_ms()
            except Exception:
                deadline = None
            if deadline is not None:
                self._deadline_ms = deadline
                delay = max(0.0, (deadline - _now_ms()) / 1000.0) + 0.02
                self._deadline_handle = loop.call_later(delay, self._schedule_check, 0.0, True)
        # safety net
        if self._safety_handle is not None:
            self._safety_handle.cancel()
        if store is None or not os.path.isdir(store.directory):
            interval = POLL_NO_DIR_S
        elif self._fd is None:
            interval = POLL_NO_WATCH_S
        else:
            interval = SAFETY_S
        self._safety_handle = loop.call_later(interval, self._schedule_check, 0.0, True)


def register(server, ctx) -> None:
    from lsprotocol import types

    recovery = Recovery(server, ctx)
    ctx.recovery = recovery

    @server.feature(types.INITIALIZED)
    def initialized(ls, params):
        ctx.initialized = True
        try:
            recovery.open_folders(list(ctx.folders.values()))
        finally:
            recovery.start()
            from .methods import prewarm_models

            ctx.threads.append(prewarm_models())

    @server.feature(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
    def folders_changed(ls, params: types.DidChangeWorkspaceFoldersParams):
        event = params.event
        recovery.remove_folders([f.uri for f in (event.removed or [])])
        added = [folder_from(f.uri, f.name) for f in (event.added or [])]
        recovery.add_folders([f for f in added if f is not None])
