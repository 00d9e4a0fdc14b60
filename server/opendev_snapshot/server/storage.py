"""The store feature: one :class:`SnapshotStore` for the server's directory.

The directory follows the contract's precedence: ``--dir`` >
``initializationOptions.snapshotDir`` > ``OPENDEV_SNAPSHOT_DIR`` > the
default. The store is opened on first use (a request may come before
``initialize``) and re-opened when ``initialize`` names another directory.
``shutdown`` releases every session this server holds (they read
``interrupted``; nothing is completed implicitly); the end of the process
closes the store.
"""

from __future__ import annotations

import logging
import os
import threading

from ..core.errors import ConfigError
from .feature import Feature
from .options import DEFAULTS

log = logging.getLogger(__name__)


class Storage(Feature):
    def __init__(self, server, cli_dir: str | None = None) -> None:
        super().__init__(server)
        self.cli_dir = cli_dir
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
        with self._lock:
            store, self._store = self._store, None
        if store is not None:
            store.close()
