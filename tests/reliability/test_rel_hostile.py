"""Hostile directory contents and hostile session ids, through the server and the CLI.

The directory holds a FIFO, a link to a snapshot outside, a dangling link,
a 5 MB file, truncated and wrong-typed JSON and a directory, all named like
snapshots, plus lock files that are a FIFO and a link. Listing, loading,
cleaning up, saving over and removing them answers promptly (a FIFO opened
for reading would block forever), reports each bad file in ``skipped``
with a reason (the lock files too), never follows a link and never writes
outside the directory. A file whose name is not valid UTF-8 and a copy of
a snapshot under another session's name are skipped with their reasons,
and no listing carries a lone surrogate. Hostile ids get ``-32602`` naming ``sessionId`` from every
method and command, and exit code 2 with a message from the CLI.
"""

from __future__ import annotations

import json
import os

import pytest

from opendev_snapshot.core import SnapshotStore, new_record

from reliability.framed import Server, cli, cli_list, tree_state

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(600)]

SUFFIX = "_session_snapshot.json"
PROMPT = 60.0  # seconds: a hang detector (a FIFO opened for reading blocks forever), not a speed requirement
HOSTILE_FILES = ("fifo", "link-in", "dangling", "huge", "trunc", "wrongtype", "dir", "nullbytes")
LOCK = "_session_snapshot.lock"
HOSTILE_LOCKS = ("lockfifo" + LOCK, "locklink" + LOCK)  # reported, never opened nor followed


def make_box(tmp_path):
    box = tmp_path / "box"
    outside = box / "outside"
    directory = box / "snaps"
    outside.mkdir(parents=True)
    with SnapshotStore(directory, use_index=False) as store:
        for sid in ("good", "lockfifo", "locklink"):
            record = new_record(sid, "/work/hostile")
            record["snapshot_timestamp_ms"] -= 600_000  # lock-less and old: interrupted
            store.save(record)
    # a perfectly valid snapshot outside, reachable through a link inside
    with SnapshotStore(outside, use_index=False) as store:
        store.save(new_record("link-in", "/work/hostile"))
    os.mkfifo(directory / f"fifo{SUFFIX}")
    os.symlink(outside / f"link-in{SUFFIX}", directory / f"link-in{SUFFIX}")
    os.symlink(box / "nowhere", directory / f"dangling{SUFFIX}")
    good = (directory / f"good{SUFFIX}").read_bytes()
    (directory / f"huge{SUFFIX}").write_bytes(good[:-2] + b', "pad": "' + b"x" * (5 << 20) + b'"\n}')
    (directory / f"trunc{SUFFIX}").write_bytes(good[: len(good) // 2])
    (directory / f"wrongtype{SUFFIX}").write_bytes(good.replace(b'"message_count": 0', b'"message_count": "3"'))
    (directory / f"nullbytes{SUFFIX}").write_bytes(b"\0" * 300)
    (directory / f"dir{SUFFIX}").mkdir()
    os.mkfifo(directory / "lockfifo_session_snapshot.lock")
    (outside / "victim.lock").write_text("not yours")
    os.symlink(outside / "victim.lock", directory / "locklink_session_snapshot.lock")
    (directory / "notes.txt").write_text("not a snapshot")
    os.mkfifo(directory / "pipe.json")
    for name in os.listdir(directory):
        os.utime(directory / name, follow_symlinks=False)
    return box, directory, outside


def quick(server: Server, method: str, params) -> dict:
    return server.request(method, params, timeout=PROMPT)  # no answer within PROMPT: a hang


def test_hostile_directory_through_the_server_and_the_cli(tmp_path):
    box, directory, outside = make_box(tmp_path)
    outside_before = tree_state(outside)
    with Server(directory, stderr_path=tmp_path / "server.log") as server:
        listing = quick(server, "opendev/snapshot.listIncomplete", {})["result"]
        assert sorted(s["sessionId"] for s in listing["sessions"]) == ["good", "lockfifo", "locklink"], listing
        assert all(s["status"] == "interrupted" for s in listing["sessions"]), listing["sessions"]
        skipped = {item["file"]: item["reason"] for item in listing["skipped"]}
        assert set(skipped) == {f"{n}{SUFFIX}" for n in HOSTILE_FILES} | set(HOSTILE_LOCKS), skipped
        assert "FIFO" in skipped["lockfifo" + LOCK] and "symbolic link" in skipped["locklink" + LOCK], skipped
        assert all(isinstance(r, str) and r for r in skipped.values()), skipped

        # the CLI says the same, as promptly
        cli_listing = cli_list(directory, timeout=PROMPT)
        assert sorted(s["sessionId"] for s in cli_listing["sessions"]) == ["good", "lockfifo", "locklink"]
        assert {i["file"] for i in cli_listing["skipped"]} == set(skipped)
        human = cli(directory, "list", timeout=PROMPT)
        assert human.returncode == 0 and all(f"{n}{SUFFIX}" in human.stderr for n in HOSTILE_FILES), human.stderr

        # loading any of them: a storage failure saying why, never a hang
        for name in HOSTILE_FILES:
            reply = quick(server, "opendev/snapshot.load", {"sessionId": name})
            assert reply.get("error", {}).get("code") == -32002, (name, reply)
            shown = cli(directory, "show", name, timeout=PROMPT)
            assert shown.returncode == 1 and shown.stderr.strip(), (name, shown.returncode, shown.stderr)
            assert "Traceback" not in shown.stderr, shown.stderr
        for name in ("lockfifo", "locklink"):
            assert quick(server, "opendev/snapshot.load", {"sessionId": name})["result"]["sessionId"] == name
            assert cli(directory, "show", name, timeout=PROMPT).returncode == 0

        # cleanup removes the real, interrupted snapshots and touches nothing hostile
        dry = quick(server, "opendev/snapshot.cleanup", {"maxAgeMs": 0, "dryRun": True})["result"]
        assert sorted(dry["sessionIds"]) == ["good", "lockfifo", "locklink"], dry
        proc = cli(directory, "cleanup", "--max-age", "0s", timeout=PROMPT)
        assert proc.returncode == 0, proc.stderr
        for name in HOSTILE_FILES:
            assert os.path.lexists(directory / f"{name}{SUFFIX}"), f"cleanup removed {name}"

        # saving over a link replaces the link, never writes through it
        quick(server, "opendev/snapshot.save", {"sessionId": "link-in", "projectDir": "/work/hostile", "messageCount": 9})
        assert not os.path.islink(directory / f"link-in{SUFFIX}")
        assert json.loads((directory / f"link-in{SUFFIX}").read_text())["message_count"] == 9
        # removing goes for the name in the directory, not the target: the link itself to the trash
        assert quick(server, "opendev/snapshot.remove", {"sessionId": "dangling"})["result"] == {"removed": True}
        assert not os.path.lexists(directory / f"dangling{SUFFIX}")
        assert any(os.path.islink(p) for p in (directory / ".trash").iterdir())
        # a FIFO named like a snapshot: replaced by a save, not opened
        reply = quick(server, "opendev/snapshot.save", {"sessionId": "fifo", "projectDir": "/work/hostile"})
        assert "result" in reply or reply["error"]["code"] == -32002, reply
        server.assert_alive()
        server.close()
    assert tree_state(outside) == outside_before, "something outside the snapshot directory changed"
    assert (outside / "victim.lock").read_text() == "not yours"


def test_snapshot_directory_reached_through_a_symlink(tmp_path):
    real = tmp_path / "real"
    link = tmp_path / "link"
    with SnapshotStore(real, use_index=False) as store:
        store.save(new_record("via-link", "/work/hostile"))
    os.symlink(real, link)
    with Server(link, stderr_path=tmp_path / "server.log") as server:
        sessions = quick(server, "opendev/snapshot.listIncomplete", {})["result"]["sessions"]
        assert [s["sessionId"] for s in sessions] == ["via-link"]
        quick(server, "opendev/snapshot.save", {"sessionId": "second", "projectDir": "/work/hostile"})
    assert (real / f"second{SUFFIX}").is_file() and os.path.islink(link)
    assert sorted(s["sessionId"] for s in cli_list(link)["sessions"]) == ["second", "via-link"]


HOSTILE_IDS = {
    "dotdot": "../x",
    "dotdot-deep": "../../escaped",
    "absolute": "/abs",
    "slash": "a/b",
    "nul": "a\x00b",
    "129": "x" * 129,
    "empty": "",
    "dot": ".hidden",
    "dot-only": "..",
    "newline": "good\n",
    "space": "a b",
    "unicode": "é",
    "backslash": "a\\b",
}
SESSION_METHODS = {
    "opendev/snapshot.save": lambda sid: {"sessionId": sid, "projectDir": "/work/hostile"},
    "opendev/snapshot.load": lambda sid: {"sessionId": sid},
    "opendev/snapshot.remove": lambda sid: {"sessionId": sid},
    "opendev/snapshot.markCompleted": lambda sid: {"sessionId": sid},
    "opendev/snapshot.recordToolResult": lambda sid: {
        "sessionId": sid, "toolName": "t", "callId": "c", "outputPreview": "p", "success": True},
}


def test_hostile_ids_through_the_server_and_the_cli(tmp_path):
    box = tmp_path / "box"
    directory = box / "snaps"
    with SnapshotStore(directory, use_index=False) as store:
        store.save(new_record("good", "/work/hostile"))
    hostile = dict(HOSTILE_IDS, absolute=str(box / "abs-victim"))
    before = tree_state(box)
    with Server(directory, cwd=box, stderr_path=tmp_path / "server.log") as server:
        for label, sid in hostile.items():
            for method, make in SESSION_METHODS.items():
                for key in ("sessionId", "session_id"):
                    params = make(sid)
                    if key != "sessionId":
                        params[key] = params.pop("sessionId")
                    reply = quick(server, method, params)
                    error = reply.get("error")
                    assert error and error["code"] == -32602, (label, method, reply)
                    assert "sessionId" in error["message"], (label, method, error)
            for command in ("opendev.snapshot.discard", "opendev.snapshot.recover"):
                reply = quick(server, "workspace/executeCommand", {"command": command, "arguments": [sid]})
                error = reply.get("error")
                assert error and error["code"] == -32602 and "sessionId" in error["message"], (label, command, reply)
        server.assert_alive()
        server.close()
    for label, sid in hostile.items():
        if "\x00" in sid:
            continue  # cannot be a command-line argument at all
        for args in (("show", sid), ("show", sid, "--json"), ("remove", sid)):
            proc = cli(directory, *args, cwd=box)
            assert proc.returncode == 2, (label, args, proc.returncode, proc.stdout, proc.stderr)
            assert proc.stderr.strip() and "Traceback" not in proc.stderr, (label, args, proc.stderr)
            assert proc.stdout == "", (label, args, proc.stdout)
    after = tree_state(box)
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k) and not k.startswith("snaps")}
    assert not changed, f"written outside the snapshot directory: {changed}"
    assert sorted(os.listdir(directory)) in (["good" + SUFFIX], ["good" + SUFFIX, ".opendev-index"]) or all(
        n.startswith(("good", ".opendev-index")) or n == ".opendev-update.lock" for n in os.listdir(directory)
    ), os.listdir(directory)


def test_names_that_are_not_utf8_and_copies_under_another_name(tmp_path):
    directory = tmp_path / "snaps"
    with SnapshotStore(directory, use_index=False) as store:
        record = new_record("abc", "/work/hostile")
        record["snapshot_timestamp_ms"] -= 600_000
        store.save(record)
    good = (directory / f"abc{SUFFIX}").read_bytes()
    (directory / f"abc-backup{SUFFIX}").write_bytes(good)  # abc's content under another name
    raw_name = b"caf\xe9-\xff" + SUFFIX.encode()
    with open(os.path.join(os.fsencode(directory), raw_name), "wb") as f:
        f.write(good)
    printable = "caf\\xe9-\\xff" + SUFFIX
    want_skipped = {f"abc-backup{SUFFIX}", printable}
    with Server(directory, stderr_path=tmp_path / "server.log") as server:
        reply = quick(server, "opendev/snapshot.listIncomplete", {})
        listing = reply["result"]
        assert [s["sessionId"] for s in listing["sessions"]] == ["abc"], listing  # once, from its own file
        reasons = {item["file"]: item["reason"] for item in listing["skipped"]}
        assert set(reasons) == want_skipped, reasons
        assert "differs from its file name" in reasons[f"abc-backup{SUFFIX}"]
        assert "UTF-8" in reasons[printable]
        server.assert_alive()
        server.close()
    proc = cli(directory, "list", "--json")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, (proc.returncode, proc.stderr)
    listing = json.loads(proc.stdout)
    assert [s["sessionId"] for s in listing["sessions"]] == ["abc"]
    assert {item["file"] for item in listing["skipped"]} == want_skipped
    human = cli(directory, "list")
    assert human.returncode == 0 and printable in human.stderr, human.stderr
