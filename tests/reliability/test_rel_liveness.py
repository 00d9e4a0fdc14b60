"""Finding 1 through every front door: a running session is not removed.

A real server (A) claims a session and keeps it. Another real server (B),
its ``discard`` command and the command line are asked to remove it: each
refuses (``-32003`` naming A as the holder; exit 1 with one line on
stderr), and A's next save still works. Forced, it goes to the trash with
A's lock text, and ``restore`` brings it back whole.
"""

from __future__ import annotations

import pytest

from opendev_snapshot.core import SnapshotStore

from reliability.framed import Server, cli

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(120)]


def snap(sid: str, count: int) -> dict:
    return {"sessionId": sid, "projectDir": "/work/p", "messageCount": count,
            "snapshotTimestampMs": 1_000_000, "lastToolResults": []}


def test_a_running_session_is_refused_by_server_command_and_cli(tmp_path):
    directory = tmp_path / "snaps"
    a, b = Server(directory), Server(directory)
    try:
        a.call("opendev/snapshot.save", snap("live", 1))  # claims by default
        refused = b.request("opendev/snapshot.remove", {"sessionId": "live"})["error"]
        assert refused["code"] == -32003 and refused["data"]["holder"]["pid"] == a.proc.pid
        assert refused["data"]["holder"]["kind"] == "opendev"
        refused = b.request("workspace/executeCommand", {"command": "opendev.snapshot.discard", "arguments": ["live"]})["error"]
        assert refused["code"] == -32003
        proc = cli(directory, "remove", "live")
        assert proc.returncode == 1 and proc.stdout == ""
        assert proc.stderr.count("\n") == 1 and "is running in another process" in proc.stderr and "Traceback" not in proc.stderr
        claim = b.request("opendev/snapshot.save", {**snap("live", 9), "claim": True})["error"]
        assert claim["code"] == -32003  # B cannot take A's session either
        a.call("opendev/snapshot.save", snap("live", 2))  # A carries on
        assert b.call("opendev/snapshot.load", {"sessionId": "live"})["messageCount"] == 2
        # force (the server's and the CLI's flags are theirs to add): through the core
        store = SnapshotStore(directory)
        assert store.remove("live", force=True) is True
        assert b.call("opendev/snapshot.load", {"sessionId": "live"}) is None
        (entry,) = store.list_trash()
        assert entry["holder"]["pid"] == a.proc.pid
    finally:
        a.close()
        b.close()
    listing = store.restore("live")
    assert listing["message_count"] == 2 and listing["status"] == "interrupted"  # A exited: released
