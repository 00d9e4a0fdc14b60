"""Start-up pre-scan: a forked child with a warm store, until the server's own store is warm.

Editors spawn the server on every workspace open, and what users see is
the time to the first ``opendev/recoverableSessions`` and to the first
listing. Importing pygls takes ~300 ms of one core; a cold scan of 10,000
snapshots ~60 ms more. A thread would fight the import for the GIL, so
(POSIX only) the server forks *before* importing pygls: the child opens the
snapshot directory with a watched store and scans it on the other core
while the parent imports, then answers listing questions over a private
pipe, one JSON line each way:

- ``interrupted``: the interrupted sessions of the workspace folders, for
  the on-open notification (sent by pygls' ``initialized`` handler);
- ``list``: a ``listIncomplete`` answer, for requests that arrive before the
  server's own store has scanned the directory (it does so in a thread
  right after the on-open notification).

The child never speaks LSP and never touches stdin/stdout. It answers
``{"fallback": ...}`` for anything unusual (an invalid param, a big
result, an error) and the parent then answers itself, so every error is
the parent's. It exits when the parent closes the pipe (once its own store
is warm) or dies; a daemon thread reaps it. ``OPENDEV_SNAPSHOT_NO_PRESCAN=1``
turns it off.
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
MAX_SESSIONS = 500  # a bigger listing costs more through the pipe than a scan of one's own


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


class Prescan:
    """The parent's handle on the child (see the module docstring)."""

    def __init__(self, pid: int, req_w: int, resp_r: int, directory: str) -> None:
        self.pid = pid
        self.req_w = req_w
        self.resp_r = resp_r
        self.directory = directory
        self._buf = b""
        self._lock = threading.Lock()

    @classmethod
    def start(cls, directory: str | None) -> "Prescan | None":
        if not directory or not hasattr(os, "fork") or os.environ.get(ENV_DISABLE):
            return None
        try:
            if not os.path.isdir(directory):
                return None  # nothing to scan: the parent's own listing is free
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

    # ------------------------------------------------------------ questions
    def serves(self, directory: str) -> bool:
        return self.req_w >= 0 and os.path.realpath(directory) == os.path.realpath(self.directory)

    def interrupted(self, stale_after_ms: int, folder_paths: list) -> list | None:
        """Interrupted sessions (wire listings) per folder, or None: list yourself."""
        result = self._ask({"op": "interrupted", "staleAfterMs": stale_after_ms, "folders": folder_paths})
        if not isinstance(result, list) or len(result) != len(folder_paths):
            return None
        return result

    def list_incomplete(self, stale_after_ms: int, project_dir, status, limit) -> dict | None:
        """A ``listIncomplete`` result, or None: answer it yourself."""
        result = self._ask(
            {"op": "list", "staleAfterMs": stale_after_ms, "projectDir": project_dir, "status": status, "limit": limit}
        )
        return result if isinstance(result, dict) else None

    def _ask(self, request: dict):
        with self._lock:
            if self.req_w < 0:
                return None
            try:
                os.write(self.req_w, json.dumps(request).encode() + b"\n")
                while b"\n" not in self._buf:
                    ready, _, _ = select.select([self.resp_r], [], [], QUERY_TIMEOUT_S)
                    if not ready:
                        log.warning("the pre-scan did not answer in %ss; listing without it", QUERY_TIMEOUT_S)
                        self._close_locked()
                        return None
                    chunk = os.read(self.resp_r, 1 << 20)
                    if not chunk:
                        self._close_locked()
                        return None
                    self._buf += chunk
                line, _, self._buf = self._buf.partition(b"\n")
                answer = json.loads(line)
            except (OSError, ValueError):
                log.debug("pre-scan unusable", exc_info=True)
                self._close_locked()
                return None
        if "fallback" in answer:
            log.debug("pre-scan: %s", answer["fallback"])
            return None
        return answer.get("ok")

    # ------------------------------------------------------------- lifetime
    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
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


def _child(directory: str, req_r: int, resp_w: int) -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    from ..core.store import SnapshotStore
    from .wire import list_result_to_wire

    # watch=True: each later question refreshes from the change feed (near
    # free) instead of lstat-ing every file again.
    store = SnapshotStore(directory, watch=True)
    store.refresh()
    requests = os.fdopen(req_r, "rb")
    try:
        for line in requests:  # ends when the parent closes the pipe or dies
            try:
                request = json.loads(line)
                store.stale_after_ms = int(request["staleAfterMs"])
                if request["op"] == "interrupted":
                    answer = {"ok": [interrupted_sessions(store, path) for path in request["folders"]]}
                elif request["op"] == "list":
                    result = store.list(project_dir=request["projectDir"], status=request["status"], limit=request["limit"])
                    if len(result.sessions) > MAX_SESSIONS:
                        answer = {"fallback": f"{len(result.sessions)} sessions"}
                    else:
                        answer = {"ok": list_result_to_wire(result)}
                else:
                    answer = {"fallback": "unknown question"}
            except Exception as exc:  # the parent answers (and reports) it itself
                answer = {"fallback": f"{type(exc).__name__}"}
            data = json.dumps(answer, separators=(",", ":")).encode() + b"\n"
            view = memoryview(data)
            while view:
                view = view[os.write(resp_w, view) :]
    finally:
        store.close()
