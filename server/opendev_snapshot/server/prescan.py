"""Start-up pre-scan in a forked child, so the on-open listing costs ~nothing.

It never speaks LSP: it answers one question over a private pipe (the
interrupted sessions of these folders), and the ``initialized`` handler
sends the notification with that answer.

Editors spawn the server on every workspace open, and the time to the
first ``opendev/recoverableSessions`` is what users see. Importing pygls
takes ~300 ms of one core; scanning 10,000 snapshots takes ~50 ms more.
A thread would fight the import for the GIL, so (POSIX only) the server
forks *before* importing pygls: the child scans the directory on the other
core while the parent imports, then waits for the workspace folders and
answers with their interrupted sessions as wire listings. The parent's own
store scans later, off the critical path, and the watch notifies anything
that changed in between (each session still at most once).

The child never touches stdin/stdout, exits when the parent closes its
pipe (or dies), and is reaped by a daemon thread. If anything goes wrong
the parent simply lists by itself.
"""

from __future__ import annotations

import json
import logging
import os
import select
import threading

log = logging.getLogger(__name__)

ENV_DISABLE = "OPENDEV_SNAPSHOT_NO_PRESCAN"
QUERY_TIMEOUT_S = 30.0


class Prescan:
    def __init__(self, pid: int, req_w: int, resp_r: int, directory: str) -> None:
        self.pid = pid
        self.req_w = req_w
        self.resp_r = resp_r
        self.directory = directory

    @classmethod
    def start(cls, directory: str | None) -> "Prescan | None":
        if not directory or not hasattr(os, "fork") or os.environ.get(ENV_DISABLE):
            return None
        try:
            if not os.path.isdir(directory):
                return None  # nothing to scan: the parent's list is free
            req_r, req_w = os.pipe()
            resp_r, resp_w = os.pipe()
            pid = os.fork()
        except OSError as exc:
            log.debug("no pre-scan: %s", exc)
            return None
        if pid == 0:  # child
            code = 0
            try:
                os.close(req_w)
                os.close(resp_r)
                _child(directory, req_r, resp_w)
            except BaseException:  # noqa: BLE001 - never return into the parent's code
                code = 1
            finally:
                os._exit(code)
        os.close(req_r)
        os.close(resp_w)
        return cls(pid, req_w, resp_r, directory)

    def query(self, directory: str, stale_after_ms: int, folder_paths: list) -> list | None:
        """Interrupted sessions (wire listings) per folder, or None to list yourself."""
        try:
            if os.path.realpath(directory) != os.path.realpath(self.directory) or not folder_paths:
                return None
            request = json.dumps({"staleAfterMs": stale_after_ms, "folders": folder_paths}).encode() + b"\n"
            os.write(self.req_w, request)
            chunks = []
            while True:
                ready, _, _ = select.select([self.resp_r], [], [], QUERY_TIMEOUT_S)
                if not ready:
                    log.warning("pre-scan timed out")
                    return None
                chunk = os.read(self.resp_r, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
                if chunk.endswith(b"\n"):
                    break
            data = b"".join(chunks)
            if not data:
                return None
            result = json.loads(data)
            if not isinstance(result, list) or len(result) != len(folder_paths):
                return None
            return result
        finally:
            self.close()

    def close(self) -> None:
        for name in ("req_w", "resp_r"):
            fd = getattr(self, name)
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
                setattr(self, name, -1)
        pid, self.pid = self.pid, 0
        if pid:
            threading.Thread(target=_reap, args=(pid,), name="prescan-reaper", daemon=True).start()


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except OSError:
        pass


def interrupted_sessions(store, project_dir: str) -> list:
    """The interrupted sessions of a folder as wire Listings (newest first).

    The one place this is computed: the pre-scan child, the on-open
    notification, added folders and the watch all call it.
    """
    from .wire import listing_to_wire

    result = store.list(project_dir=project_dir, status="interrupted")
    for skipped in result.skipped:
        log.debug("skipped %s: %s", skipped.file, skipped.reason)
    return [listing_to_wire(s) for s in result.sessions]


def _child(directory: str, req_r: int, resp_w: int) -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    from ..core.store import SnapshotStore

    store = SnapshotStore(directory)
    store.refresh()
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = os.read(req_r, 1 << 16)
        if not chunk:
            return  # the parent needs nothing (or died)
        buf += chunk
    request = json.loads(buf)
    store.stale_after_ms = int(request["staleAfterMs"])
    out = []
    for path in request["folders"]:
        out.append(interrupted_sessions(store, path))
    data = json.dumps(out, separators=(",", ":")).encode() + b"\n"
    view = memoryview(data)
    while view:
        view = view[os.write(resp_w, view) :]
    store.close()
