"""Crash: a real server, pipelined saves of several sessions, SIGKILL at random instants.

Each round starts ``opendev-snapshot serve``, streams ``opendev/snapshot.save``
requests for four sessions (message counts rising, payloads up to a few
hundred KB so writes take a while) without waiting for answers, and kills
the server's whole process group from a timer at a random instant: from
spawn (start-up included) in about half the rounds, from the server's
first acknowledged save in the others, so however slow the machine, rounds
kill servers that are writing. The death is expected at any point of the
round (a request half-written included). Then:

- every snapshot file parses (json and the store's strict decoder);
- no acknowledged save is lost: for each session the ``messageCount`` on
  disk is at least the highest one the server acknowledged;
- what is on disk is one whole save (``projectDir`` encodes the count);
- temporary files never appear as sessions (CLI ``list --json`` and the
  next server's ``listIncomplete``: exactly our sessions, nothing skipped),
  and ``cleanup`` sweeps them once older than one hour, not before.

Rounds: ``OPENDEV_TORTURE_ROUNDS`` (default 25; 300 with
``OPENDEV_RELIABILITY_FULL=1``).
"""

from __future__ import annotations

import json
import os
import random
import threading
import time

import pytest

from opendev_snapshot.core.codec import decode

from reliability.framed import CRASH_ROUNDS, Server, ServerDied, cli, cli_list

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(120 + 10 * CRASH_ROUNDS)]

SESSIONS = ("crash-a", "crash-b", "crash-c", "crash-d")
SUFFIX = "_session_snapshot.json"


def snapshot(sid: str, count: int, rng: random.Random) -> dict:
    size = rng.choice((10, 1_000, 50_000, 300_000))
    return {
        "sessionId": sid,
        "projectDir": f"/proj/{sid}/{count}",
        "messageCount": count,
        "costUsd": count / 100,
        "lastToolResults": [
            {"toolName": "bash", "callId": f"c{count}", "outputPreview": chr(97 + count % 26) * size, "success": True}
        ],
    }


def check_directory(directory, acked: dict, sent: dict) -> dict:
    """Every snapshot parses, holds one whole save, and is not older than the last ack."""
    on_disk = {}
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if not name.endswith(SUFFIX):
            assert not name.endswith(".json"), f"a temporary or stray file ends in .json: {name}"
            continue
        raw = open(path, "rb").read()
        json.loads(raw)  # any reader can parse it
        record = decode(raw)  # and it is a valid snapshot
        sid, count = record["session_id"], record["message_count"]
        assert name == sid + SUFFIX
        assert record["project_dir"] == f"/proj/{sid}/{count}", "a file mixes two saves"
        assert count <= sent.get(sid, -1), f"{sid}: {count} on disk was never sent"
        on_disk[sid] = count
    for sid, count in acked.items():
        assert sid in on_disk, f"acknowledged save of {sid} (messageCount {count}) is gone"
        assert on_disk[sid] >= count, f"{sid}: acknowledged messageCount {count}, disk has {on_disk[sid]}"
    return on_disk


def run_round(directory, rng: random.Random, next_count: int, acked: dict, sent: dict, stderr_path,
              *, after_first_ack: bool, timer_factory=threading.Timer) -> int:
    """One server's life: saves streamed at it until a timer SIGKILLs its group.

    The kill may land at any instant, even before the first request is
    written: every write and read of the round is inside the ``try`` that
    expects the death. ``after_first_ack`` starts the timer only once this
    server acknowledged a save (so the round certainly kills a server that
    is writing, however slowly the machine starts it); otherwise it starts
    at spawn and may kill the server while it starts up.
    """
    kill_after = rng.choice((rng.uniform(0.0, 0.5), rng.uniform(0.4, 1.5)))
    server = Server(directory, stderr_path=stderr_path)
    killed = threading.Event()

    def kill() -> None:
        killed.set()
        server.kill_group()

    timer = timer_factory(kill_after, kill)
    pending: dict = {}  # request id -> (session, count)
    list_id = None
    check_listing = rng.random() < 0.5
    if not after_first_ack:
        timer.start()
    try:
        try:
            if check_listing:
                list_id = server.send_request("opendev/snapshot.listIncomplete", {})
            while True:
                sid = rng.choice(SESSIONS)
                count = next_count
                next_count += 1
                if rng.random() < 0.1:
                    msg_id = server.send_request(
                        "opendev/snapshot.recordToolResult",
                        {"sessionId": sid, "toolName": "t", "callId": "x", "outputPreview": "p", "success": True},
                    )
                else:
                    sent[sid] = count  # counts only rise, so this is the highest sent
                    msg_id = server.send_request("opendev/snapshot.save", snapshot(sid, count, rng))
                    pending[msg_id] = (sid, count)
                server.drain(0)
                if collect(server, pending, acked, list_id) and not timer.is_alive() and not timer.finished.is_set():
                    timer.start()  # after_first_ack: this server has written; now it dies at a random instant
        except ServerDied:
            assert killed.is_set(), f"the server died by itself: {server.stderr_tail()}"
        # whatever the server wrote before it died was acknowledged: read it all
        server.drain_to_eof()
        collect(server, pending, acked, list_id)
    finally:
        timer.cancel()
        server.kill()
    return next_count


def collect(server: Server, pending: dict, acked: dict, list_id) -> int:
    """Check the replies read so far; returns how many saves they acknowledged."""
    saves = 0
    for msg_id in list(server.replies):
        reply = server.replies.pop(msg_id)
        if msg_id == list_id:
            assert "result" in reply, reply
            listing = reply["result"]
            assert listing["skipped"] == [], listing["skipped"]
            assert {s["sessionId"] for s in listing["sessions"]} <= set(SESSIONS), listing["sessions"]
            continue
        if "error" in reply:
            # recordToolResult before the session's first save is a fair -32001
            assert reply["error"]["code"] == -32001 and msg_id not in pending, reply
            continue
        if msg_id in pending:
            sid, count = pending.pop(msg_id)
            assert reply["result"]["sessionId"] == sid
            acked[sid] = max(acked.get(sid, -1), count)
            saves += 1
    return saves


def temp_names(directory) -> list:
    return sorted(n for n in os.listdir(directory) if n.endswith(".tmp"))


def test_sigkill_during_pipelined_saves_loses_no_acknowledged_save(tmp_path):
    directory = tmp_path / "snaps"
    rng = random.Random(20240601)
    acked: dict = {}
    sent: dict = {}
    next_count = 0
    leftovers = 0
    total_acked = 0
    for round_no in range(CRASH_ROUNDS):
        before = dict(acked)
        after_first_ack = round_no == 0 or rng.random() < 0.5  # round 0: some save is certainly acknowledged
        next_count = run_round(directory, rng, next_count, acked, sent, tmp_path / f"server-{round_no % 2}.log",
                               after_first_ack=after_first_ack)
        total_acked += sum(1 for sid in acked if acked[sid] != before.get(sid))
        if directory.exists():
            check_directory(directory, acked, sent)
            leftovers = max(leftovers, len(temp_names(directory)))
    assert acked, "no save was ever acknowledged"
    print(f"{CRASH_ROUNDS} rounds, {next_count} requests sent, acked up to {acked}, "
          f"at most {leftovers} temporary file(s) left by kills")

    # Temporary files never show up as sessions. Plant the kinds a killed
    # writer leaves (ours and the seed's), torn halfway, next to whatever
    # the kills really left.
    planted = [
        f".{SESSIONS[0]}{SUFFIX}.99999-0123456789ab.tmp",
        f".{SESSIONS[1]}{SUFFIX}.4242-deadbeefcafe.tmp",
        f"{SESSIONS[2]}{SUFFIX}.tmp",  # the seed's temporary name
    ]
    for name in planted:
        (directory / name).write_bytes(b'{\n  "session_id": "' + SESSIONS[0].encode() + b'",\n  "message_c')
    temps = temp_names(directory)
    assert set(planted) <= set(temps)

    listing = cli_list(directory)
    assert sorted(s["sessionId"] for s in listing["sessions"]) == sorted(acked), listing
    assert listing["skipped"] == [], listing["skipped"]
    with Server(directory, stderr_path=tmp_path / "server-list.log") as server:
        result = server.call("opendev/snapshot.listIncomplete", {})
        assert sorted(s["sessionId"] for s in result["sessions"]) == sorted(acked)
        assert all(s["status"] == "interrupted" for s in result["sessions"]), result
        assert result["skipped"] == []
        # a young temporary file is somebody's write in progress: kept
        assert server.call("opendev/snapshot.cleanup", {"maxAgeMs": 10**12}) == {
            "removedCount": 0, "sessionIds": [], "dryRun": False}
        assert temp_names(directory) == temps
        server.close()

    # One hour and a bit later: swept by cleanup, sessions untouched.
    old = time.time() - 3700
    for name in temps:
        os.utime(directory / name, (old, old))
    proc = cli(directory, "cleanup", "--max-age", "7d", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert temp_names(directory) == temps, "a dry run removed files"
    proc = cli(directory, "cleanup", "--max-age", "7d")
    assert proc.returncode == 0, proc.stderr
    assert "Moved 0 sessions to the trash" in proc.stdout and f"{len(temps)} stale temporary file(s)" in proc.stdout, proc.stdout
    assert temp_names(directory) == []
    check_directory(directory, acked, sent)
    assert sorted(s["sessionId"] for s in cli_list(directory)["sessions"]) == sorted(acked)


class KillAtOnce(threading.Timer):
    """A timer that fires inside ``start()``: the kill lands before anything is written."""

    def start(self) -> None:
        self.finished.set()
        self.function(*self.args, **self.kwargs)

    def is_alive(self) -> bool:
        return False


@pytest.mark.parametrize("after_first_ack", [False, True], ids=["at-spawn", "at-first-ack"])
def test_a_kill_at_the_edges_of_a_round_is_expected(tmp_path, after_first_ack):
    """Finding 12: the kill may come before the round's first request is
    written (or right after the first acknowledgement); the round expects it."""
    directory = tmp_path / "snaps"
    acked: dict = {}
    sent: dict = {}
    next_count = 0
    for seed in (0, 3):  # with (0) and without (3) the listing request first
        next_count = run_round(directory, random.Random(seed), next_count, acked, sent, tmp_path / "server.log",
                               after_first_ack=after_first_ack, timer_factory=KillAtOnce)
        if directory.exists():
            check_directory(directory, acked, sent)
    assert bool(acked) == after_first_ack
