"""initialize / shutdown / exit, and the watch on the editor's process.

- ``initialize``: parse ``initializationOptions`` once (wrong values are
  shown with ``window/showMessage`` right after the response, defaults
  used), pick the snapshot directory, remember the workspace folders (or
  ``rootUri``/``rootPath``), and start watching ``processId``.
- ``shutdown``: stop watching, release every session lock this server holds
  (they read ``interrupted``; nothing is marked completed).
- ``exit``: handled in :class:`.rpc.SnapshotProtocol` (exit code 0 after
  ``shutdown``, else 1); the composition root stops the transport.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from lsprotocol import types

from .context import folder_from

log = logging.getLogger(__name__)

PARENT_POLL_S = 1.0


def process_alive(pid: int) -> bool:
    """Whether ``pid`` still runs. Never ``os.kill(pid, 0)`` on Windows (it kills)."""
    if pid <= 0:
        return True
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import ctypes

        SYNCHRONIZE = 0x00100000
        PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
        if not handle:
            return ctypes.get_last_error() == 5  # access denied: it exists
        try:
            return kernel32.WaitForSingleObject(handle, 0) == 0x102  # WAIT_TIMEOUT
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return True


async def watch_process(pid: int, on_death, interval: float = PARENT_POLL_S) -> None:
    """Call ``on_death`` once the process ``pid`` is gone.

    When ``pid`` is our parent, being re-parented also counts as its death
    (a dead parent nobody reaped still answers ``kill(pid, 0)``).
    """
    was_parent = hasattr(os, "getppid") and os.getppid() == pid
    while True:
        await asyncio.sleep(interval)
        if (was_parent and os.getppid() != pid) or not process_alive(pid):
            log.warning("the editor process %s is gone; exiting", pid)
            on_death()
            return


def register(server, ctx) -> None:
    state = {"watch": None}

    def on_parent_death() -> None:
        if callable(ctx.request_stop):
            ctx.request_stop()

    @server.feature(types.INITIALIZE)
    def initialize(ls, params: types.InitializeParams):
        options, problems = ctx.parse_options(params.initialization_options)
        ctx.configure(options, problems)
        ctx.folders.clear()
        for folder in params.workspace_folders or []:
            f = folder_from(folder.uri, folder.name)
            if f is not None:
                ctx.folders[f.uri] = f
        if not ctx.folders:
            root = params.root_uri
            if not root and params.root_path:
                from pygls.uris import from_fs_path

                root = from_fs_path(params.root_path)
            f = folder_from(root) if root else None
            if f is not None:
                ctx.folders[f.uri] = f
        loop = asyncio.get_running_loop()
        if problems:
            loop.call_soon(_show_problems, ls, problems)
        if ctx._store_error is not None:
            loop.call_soon(_show_problems, ls, [str(ctx._store_error)], types.MessageType.Error)
        pid = params.process_id
        if isinstance(pid, int) and pid > 0 and state["watch"] is None:
            state["watch"] = asyncio.ensure_future(watch_process(pid, on_parent_death))

    @server.feature(types.SHUTDOWN)
    def shutdown(ls, params=None):
        ctx.stopping = True
        if ctx.recovery is not None:
            ctx.recovery.stop()
        ctx.release_locks()


def _show_problems(ls, problems: list, kind=types.MessageType.Warning) -> None:
    for problem in problems:
        log.warning("%s", problem)
        ls.window_show_message(types.ShowMessageParams(type=kind, message=f"opendev-snapshot: {problem}"))
