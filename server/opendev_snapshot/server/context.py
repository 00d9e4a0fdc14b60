"""What the features share: the store, the parsed options, the open folders.

One object per server run, created by the composition root and handed to
each feature's ``register``; no module-level mutable state.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from ..core.errors import ConfigError
from ..core.paths import normalize_project, uri_to_path
from .options import DEFAULTS, InitOptions, OnceParser

log = logging.getLogger(__name__)


@dataclass
class Folder:
    uri: str
    name: str
    path: str  # normalised project directory

    def wire(self) -> dict:
        return {"uri": self.uri, "name": self.name}


def folder_from(uri: str, name: str | None = None) -> Folder | None:
    if not isinstance(uri, str) or not uri:
        return None
    path = uri_to_path(uri) if uri.startswith("file:") else uri
    if not path:
        return None
    norm = normalize_project(path)
    if not name:
        name = os.path.basename(norm.rstrip("/\\")) or norm
    return Folder(uri=uri, name=name, path=norm)


@dataclass
class ServerContext:
    cli_dir: str | None = None
    options: InitOptions = DEFAULTS
    option_problems: list = field(default_factory=list)
    folders: dict = field(default_factory=dict)  # uri -> Folder
    initialized: bool = False
    stopping: bool = False
    prescan: object = None  # prescan.Prescan or None
    recovery: object = None  # recovery.Recovery, set by its feature
    request_stop: object = None  # set by the transport: ends the server
    announced: dict | None = None  # folder uri -> sessions the fast start already notified
    threads: list = field(default_factory=list)  # helper threads to join before exiting
    parse_options: OnceParser = field(default_factory=OnceParser)
    _store: object = None
    _store_error: Exception | None = None
    _store_dir: str | None = None

    # ------------------------------------------------------------- store
    def snapshot_dir(self) -> str:
        from ..core.paths import resolve_snapshot_dir

        return os.fspath(resolve_snapshot_dir(self.cli_dir, self.options.snapshot_dir))

    @property
    def store(self):
        """The store, created on first use (raises ConfigError without a directory)."""
        if self._store is None:
            if self._store_error is not None:
                raise self._store_error
            from ..core.store import SnapshotStore

            try:
                directory = self.snapshot_dir()
            except ConfigError as exc:
                self._store_error = exc
                raise
            self._store = SnapshotStore(directory, stale_after_ms=self.options.stale_after_ms, watch=True)
            self._store_dir = directory
            log.info("snapshot directory: %s", directory)
        return self._store

    def configure(self, options: InitOptions, problems: list) -> None:
        """Apply ``initializationOptions``; re-open the store if its directory moved."""
        self.options = options
        self.option_problems = list(problems)
        self._store_error = None
        try:
            directory = self.snapshot_dir()
        except ConfigError as exc:
            self._store_error = exc
            self.close_store()
            return
        if self._store is not None and directory != self._store_dir:
            self.close_store()
        if self._store is not None:
            self._store.stale_after_ms = options.stale_after_ms

    def close_store(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            try:
                store.close()
            except Exception:  # pragma: no cover - best effort on the way out
                log.exception("closing the store failed")

    def release_locks(self) -> None:
        if self._store is not None:
            try:
                self._store.release_all()
            except Exception:  # pragma: no cover
                log.exception("releasing locks failed")
