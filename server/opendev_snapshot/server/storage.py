"""The store feature: one :class:`SnapshotStore` for the server's directory.

The directory follows the contract's precedence: ``--dir`` >
``initializationOptions.snapshotDir`` > ``OPENDEV_SNAPSHOT_DIR`` > the
default. The store is opened on first use (a request may come before
``initialize``) and re-opened when ``initialize`` names another directory.
``shutdown`` releases every session this server holds (they read
``interrupted``; nothing is completed implicitly); the end of the process
closes the store.

Listings: until :meth:`warm_up` has scanned the directory in a thread, the
start-up pre-scan child (:mod:`.prescan`) answers them from its own warm
store when it can; afterwards (or when it cannot) the store does.
"""

from __future__ import annotations

import logging
import os
import threading

from ..core.errors import ConfigError
from .feature import Feature
from .options import DEFAULTS
from .prescan import interrupted_sessions
from .wire import list_result_to_wire

log = logging.getLogger(__name__)


class Storage(Feature):
    def __init__(self, server, cli_dir: str | None = None, prescan=None) -> None:
        super().__init__(server)
        self.cli_dir = cli_dir
        self._prescan = prescan
        self.warm = False  # has this process scanned the directory itself?
        self._warm_thread: threading.Thread | None = None
        self.settings = DEFAULTS
        self._store = None
        self._opened_with: tuple | None = None  # (directory, redact_secrets, trash_retention_ms)
        self._lock = threading.Lock()

    # ------------------------------------------------------------ the store
    def directory(self) -> str:
        """The snapshot directory (raises :class:`ConfigError` when there is none)."""
        from ..core.paths import resolve_snapshot_dir

        return os.fspath(resolve_snapshot_dir(self.cli_dir, self.settings.snapshot_dir))

    @property
    def store(self):
        """The store, opened on first use (raises ConfigError without a directory)."""
        with self._lock:
            if self._store is None:
                from ..core.store import SnapshotStore

                directory = self.directory()
                self._store = SnapshotStore(
                    directory,
                    stale_after_ms=self.settings.stale_after_ms,
                    watch=True,
                    redact_secrets=self.settings.redact_secrets,
                    trash_retention_ms=self.settings.trash_retention_ms,
                    holder_info={"kind": "opendev"},
                )
                self._opened_with = self._identity(directory)
                log.info("snapshot directory: %s", directory)
            return self._store

    def _identity(self, directory: str) -> tuple:
        return (directory, self.settings.redact_secrets, self.settings.trash_retention_ms)

    def problem(self) -> str | None:
        """Why there is no snapshot directory, if there is none."""
        try:
            self.directory()
        except ConfigError as exc:
            return str(exc)
        return None

    # -------------------------------------------------------------- listings
    def _helper(self):
        """The pre-scan child, while it can answer for this directory and our store is not warm."""
        prescan = self._prescan
        if prescan is None or self.warm:
            return None
        try:
            return prescan if prescan.serves(self.directory()) else None
        except ConfigError:
            return None

    def interrupted(self, folder_paths: list) -> list:
        """Per folder, its interrupted sessions as wire Listings."""
        helper = self._helper()
        if helper is not None:
            answer = helper.interrupted(self.settings.stale_after_ms, folder_paths)
            if answer is not None:
                return answer
        store = self.store
        return [interrupted_sessions(store, path) for path in folder_paths]

    def list_incomplete(self, project_dir=None, status=None, limit=None) -> dict:
        """``listIncomplete``'s result (params already mapped by :mod:`.params`)."""
        helper = self._helper()
        if helper is not None:
            answer = helper.list_incomplete(self.settings.stale_after_ms, project_dir, status, limit)
            if answer is not None:
                return answer
        return list_result_to_wire(self.store.list(project_dir=project_dir, status=status, limit=limit))

    def warm_up(self, done) -> None:
        """Scan the directory off the loop (watch first, so nothing slips between),
        then stop asking the pre-scan and call ``done()`` from the thread."""
        if self._warm_thread is not None:
            return

        def work() -> None:
            try:
                store = self.store
                store.watcher_fileno()
                store.refresh()
                self.warm = True
            except Exception:
                log.debug("warm-up scan failed", exc_info=True)
            self._close_prescan()
            done()

        self._warm_thread = threading.Thread(target=work, name="warm-up", daemon=True)
        self._warm_thread.start()

    def _close_prescan(self) -> None:
        prescan, self._prescan = self._prescan, None
        if prescan is not None:
            prescan.close()

    # --------------------------------------------------------------- events
    def initialize(self, settings, folders) -> None:
        self.settings = settings
        with self._lock:
            store = self._store
            if store is None:
                return
            try:
                same = self._identity(self.directory()) == self._opened_with
            except ConfigError:
                same = False
            if same:
                store.stale_after_ms = settings.stale_after_ms
                return
            self._store = None  # re-opened with the new settings on next use
        log.info("initialize changed the snapshot directory or its settings: re-opening the store")
        store.close()

    def shutdown(self) -> None:
        with self._lock:
            store = self._store
        if store is not None:
            store.release_all()

    def close(self) -> None:
        self._close_prescan()
        thread = self._warm_thread
        if thread is not None:
            thread.join(timeout=10)
        with self._lock:
            store, self._store = self._store, None
        if store is not None:
            store.close()
