"""The editor's process: the server exits by itself when it dies (contract section 4).

``processId`` from ``initialize`` (pygls keeps it as ``server.process_id``)
is polled every second; when our parent is that process, being re-parented
also counts as its death (a dead parent nobody reaped still answers
``kill(pid, 0)``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from .feature import Feature

log = logging.getLogger(__name__)

POLL_S = 1.0


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
    except OSError:  # EPERM: it exists, owned by someone else
        return True
    return True


async def watch_process(pid: int, on_death, interval: float = POLL_S) -> None:
    """Call ``on_death`` once the process ``pid`` is gone."""
    was_parent = hasattr(os, "getppid") and os.getppid() == pid
    while True:
        await asyncio.sleep(interval)
        if (was_parent and os.getppid() != pid) or not process_alive(pid):
            log.warning("the editor process %s is gone; exiting", pid)
            on_death()
            return


class EditorWatch(Feature):
    def __init__(self, server) -> None:
        super().__init__(server)
        self._task: asyncio.Task | None = None

    def initialize(self, settings, folders) -> None:
        pid = self.server.process_id
        if type(pid) is int and pid > 0 and self._task is None:
            self._task = asyncio.ensure_future(watch_process(pid, lambda: self.server.request_stop(1)))

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
