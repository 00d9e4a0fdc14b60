"""A second store in another process, driven over a pipe (for the write-side tests).

``Peer(directory)`` starts ``python -c DRIVER`` with its own
:class:`SnapshotStore`; ``peer.call("save", record=..., claim=True)`` runs
the method there and returns its result, or raises ``PeerError`` whose
``name`` is the exception's class name (``SessionRunning``...). The peer
dies with ``kill()`` (SIGKILL: its locks are released by the OS).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

DRIVER = r"""
import json, sys, traceback
from opendev_snapshot.core import SnapshotStore
from opendev_snapshot.core.serial import UpdateLocks
store = SnapshotStore(sys.argv[1], **json.loads(sys.argv[2]))
held_update = {}
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    op, kw = req["op"], req.get("kw", {})
    try:
        if op == "append":
            value = store.record_tool_result(kw["sid"], kw["entry"], max_entries=kw.get("max_entries", 10_000))
        elif op == "update_hold":  # hold a session's update lock until update_release
            ctx = store._updates.hold(kw["sid"]); ctx.__enter__(); held_update[kw["sid"]] = ctx; value = True
        elif op == "update_release":
            held_update.pop(kw["sid"]).__exit__(None, None, None); value = True
        elif op == "cleanup":
            r = store.cleanup(kw["max_age_ms"]); value = r.session_ids
        elif op == "trash_files":
            moved, refused = store.trash_files(kw["names"]); value = [moved, [s.to_dict() for s in refused]]
        else:
            value = getattr(store, op)(**kw)
        out = {"ok": value}
    except Exception as exc:
        out = {"error": type(exc).__name__, "message": str(exc), "holder": getattr(exc, "holder", None)}
    print(json.dumps(out, default=str), flush=True)
"""


class PeerError(Exception):
    def __init__(self, name: str, message: str, holder) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.holder = holder


class Peer:
    def __init__(self, directory, **store_kwargs) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", DRIVER, os.fspath(directory), json.dumps(store_kwargs)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert json.loads(self.proc.stdout.readline()) == {"ready": True}

    @property
    def pid(self) -> int:
        return self.proc.pid

    def call(self, op: str, **kw):
        self.proc.stdin.write(json.dumps({"op": op, "kw": kw}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"peer died (exit {self.proc.wait(10)})")
        reply = json.loads(line)
        if "error" in reply:
            raise PeerError(reply["error"], reply["message"], reply["holder"])
        return reply["ok"]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> "Peer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
