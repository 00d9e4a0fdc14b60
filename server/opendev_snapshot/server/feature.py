"""What a feature is, and the workspace folders the lifecycle events carry.

The composition root (:mod:`.app`) owns the pygls handlers for the LSP
lifecycle and fans each event out to every feature, one after the other,
each failing alone (as esbonio's ``call_features``): a feature that raises
is logged and the others still get the event. Features share nothing
mutable: what one needs from another it asks through that feature's
methods (``server.get_feature(Storage).store``), and what the client said
at ``initialize`` arrives as the event's arguments.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..core.paths import normalize_project, uri_to_path


@dataclass(frozen=True)
class Folder:
    """A workspace folder (or the ``rootUri`` when there are none)."""

    uri: str
    name: str
    path: str  # the normalised project directory its sessions are matched against

    def wire(self) -> dict:
        return {"uri": self.uri, "name": self.name}


def folder_from(uri, name: str | None = None) -> Folder | None:
    if not isinstance(uri, str) or not uri:
        return None
    path = uri_to_path(uri) if uri.startswith("file:") else uri
    if not path:
        return None
    norm = normalize_project(path)
    if not name:
        name = os.path.basename(norm.rstrip("/\\")) or norm
    return Folder(uri=uri, name=name, path=norm)


def folders_of(params) -> list[Folder]:
    """``initialize``'s workspace folders; else ``rootUri`` (or ``rootPath``)."""
    out: dict[str, Folder] = {}
    for f in params.workspace_folders or []:
        folder = folder_from(f.uri, f.name)
        if folder is not None:
            out[folder.uri] = folder
    if not out:
        root = params.root_uri
        if not root and params.root_path:
            from pygls.uris import from_fs_path

            root = from_fs_path(params.root_path)
        folder = folder_from(root) if root else None
        if folder is not None:
            out[folder.uri] = folder
    return list(out.values())


class Feature:
    """One part of the server. Override the events you need; each may be a coroutine."""

    def __init__(self, server) -> None:
        self.server = server

    def initialize(self, settings, folders: list[Folder]) -> None:
        """``initialize``: the parsed ``initializationOptions`` and the open folders."""

    def initialized(self) -> None:
        """``initialized``: the client is ready for our notifications and requests."""

    def folders_changed(self, added: list[Folder], removed: list[Folder]) -> None:
        """``workspace/didChangeWorkspaceFolders``."""

    def shutdown(self) -> None:
        """``shutdown``: stop working, release what others may need."""

    def close(self) -> None:
        """The process is about to end (after ``exit``, end of input, or the editor's death)."""
