"""Concurrency: several servers and CLI invocations on the same sessions, one lister.

- server A claims the ``held-*`` sessions and keeps re-saving them;
- servers B and C save (claiming or not), record tool results, complete,
  remove, clean up (``maxAgeMs: 0``) and list the ``shared-*`` sessions, and
  save the ``held-*`` ones too (they cannot take A's lock);
- CLI invocations remove, show, clean up (``--max-age 0s``) and list;
- server L answers ``listIncomplete`` continuously, and a CLI ``list --json``
  loop runs beside it.

Checked: no listing ever skips a file (a torn read would be skipped), every
``held-*`` session is in every listing and ``running`` (A's lock is never
lost, not even to cleanup), every reply is a result or a fair ``-32001``
(or ``-32003`` for a claim or a removal of a running session),
no server or CLI prints a traceback, every file on disk parses, and A's
sessions turn ``interrupted`` only once A exits.

Length: ``OPENDEV_CONCURRENCY_SECONDS`` (default 8; 120 with
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

from reliability.framed import CONCURRENCY_SECONDS, Server, cli, cli_list

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(600 + 2 * CONCURRENCY_SECONDS)]

HELD = ("held-0", "held-1", "held-2")
SHARED = ("shared-0", "shared-1", "shared-2", "shared-3", "shared-4")
KNOWN = set(HELD) | set(SHARED)
SUFFIX = "_session_snapshot.json"


def snap(sid: str, rng: random.Random, **extra) -> dict:
    count = rng.randrange(10**6)
    record = {
        "sessionId": sid,
        "projectDir": f"/work/{sid}",
        "messageCount": count,
        "lastToolResults": [
            {"toolName": "t", "callId": str(count), "outputPreview": "x" * rng.choice((5, 5_000, 80_000)), "success": True}
        ],
    }
    record.update(extra)
    return record


class Failures:
    def __init__(self) -> None:
        self.items: list = []
        self.lock = threading.Lock()

    def add(self, text: str) -> None:
        with self.lock:
            if len(self.items) < 20:
                self.items.append(text)


def check_listing(result: dict, where: str, failures: Failures, held_required: bool = True) -> None:
    if result["skipped"]:
        failures.add(f"{where}: skipped {result['skipped']}")
    by_id = {}
    for s in result["sessions"]:
        by_id[s["sessionId"]] = s
        if s["sessionId"] not in KNOWN:
            failures.add(f"{where}: unknown session {s['sessionId']!r}")
        first = s["lastToolResults"][:1]
        if s["sessionId"] in HELD and not (first and first[0]["callId"] == str(s["messageCount"])):
            failures.add(f"{where}: {s['sessionId']} mixes two saves: {s['messageCount']} / {s['lastToolResults'][:1]}")
    if held_required:
        for sid in HELD:
            if sid not in by_id:
                failures.add(f"{where}: {sid}, held by a live server, is missing")
            elif by_id[sid]["status"] != "running":
                failures.add(f"{where}: {sid}, held by a live server, reads {by_id[sid]['status']}")


def server_worker(server: Server, rng: random.Random, stop: threading.Event, failures: Failures, stats: dict, name: str):
    try:
        while not stop.is_set():
            batch = []
            for _ in range(rng.randint(1, 6)):
                sid = rng.choice(SHARED)
                op = rng.random()
                if op < 0.30:
                    batch.append(("save", {**snap(sid, rng), "claim": rng.random() < 0.5}))
                elif op < 0.40:
                    held = rng.choice(HELD)
                    batch.append(("save", {**snap(held, rng), "claim": rng.random() < 0.5}))
                elif op < 0.52:
                    batch.append(("recordToolResult", {"sessionId": sid, "toolName": "t", "callId": "c", "outputPreview": "p" * 900, "success": False}))
                elif op < 0.62:
                    batch.append(("markCompleted", {"sessionId": sid}))
                elif op < 0.74:
                    batch.append(("remove", {"sessionId": sid}))
                elif op < 0.82:
                    batch.append(("cleanup", {"maxAgeMs": 0, "includeIncomplete": True}))
                elif op < 0.90:
                    batch.append(("load", {"sessionId": rng.choice(SHARED + HELD)}))
                else:
                    batch.append(("listIncomplete", {}))
            ids = [(server.send_request("opendev/snapshot." + m, p), m, p) for m, p in batch]
            for msg_id, method, params in ids:
                reply = server.wait_reply(msg_id)
                stats[name] = stats.get(name, 0) + 1
                if "error" in reply:
                    fair = (reply["error"]["code"] == -32001 and method in ("markCompleted", "recordToolResult")) or (
                        # running: held by another live server (a claim or a removal is refused, naming
                        # the holder), or saved moments ago without a lock file (removal refused, no holder)
                        reply["error"]["code"] == -32003 and method in ("save", "remove")
                        and (reply["error"].get("data") or {}).get("sessionId") == params.get("sessionId")
                    )
                    if not fair:
                        failures.add(f"{name} {method} {params.get('sessionId')}: {reply['error']}")
                elif method == "listIncomplete":
                    check_listing(reply["result"], f"{name} listIncomplete", failures)
                elif method == "cleanup":
                    gone = set(reply["result"]["sessionIds"]) & set(HELD)
                    if gone:
                        failures.add(f"{name} cleanup removed running sessions {gone}")
                elif method == "load" and reply["result"] is not None:
                    r = reply["result"]
                    if r["sessionId"] in HELD and r["lastToolResults"][0]["callId"] != str(r["messageCount"]):
                        failures.add(f"{name} load: mixed record {r['sessionId']}")
    except BaseException as exc:  # noqa: BLE001 - reported by the test
        failures.add(f"{name}: {type(exc).__name__}: {exc}")


def holder_worker(server: Server, rng: random.Random, stop: threading.Event, failures: Failures, stats: dict):
    try:
        while not stop.is_set():
            reply = server.request("opendev/snapshot.save", snap(rng.choice(HELD), rng))
            stats["A"] = stats.get("A", 0) + 1
            if "error" in reply:
                failures.add(f"A save: {reply['error']}")
            time.sleep(0.01)
    except BaseException as exc:  # noqa: BLE001
        failures.add(f"A: {type(exc).__name__}: {exc}")


def lister_worker(server: Server, stop: threading.Event, failures: Failures, stats: dict):
    try:
        while not stop.is_set():
            reply = server.request("opendev/snapshot.listIncomplete", {})
            stats["L"] = stats.get("L", 0) + 1
            if "error" in reply:
                failures.add(f"L listIncomplete: {reply['error']}")
            else:
                check_listing(reply["result"], "L listIncomplete", failures)
    except BaseException as exc:  # noqa: BLE001
        failures.add(f"L: {type(exc).__name__}: {exc}")


def cli_worker(directory, rng: random.Random, stop: threading.Event, failures: Failures, stats: dict, name: str):
    try:
        while not stop.is_set():
            op = rng.random()
            sid = rng.choice(SHARED)
            if op < 0.4:
                proc = cli(directory, "list", "--json", "--all")
                if proc.returncode != 0:
                    failures.add(f"{name} list: exit {proc.returncode}: {proc.stderr[-500:]}")
                else:
                    result = json.loads(proc.stdout)
                    check_listing(result, f"{name} list --all", failures)
            elif op < 0.6:
                proc = cli(directory, "remove", sid)
                fair = ("no session", "is running")  # gone meanwhile, or claimed by server B or C
                if proc.returncode not in (0, 1) or (proc.returncode == 1 and not any(f in proc.stderr for f in fair)):
                    failures.add(f"{name} remove: exit {proc.returncode}: {proc.stderr[-500:]}")
            elif op < 0.8:
                proc = cli(directory, "cleanup", "--max-age", "0s")
                if proc.returncode != 0 or any(f"  {h}\n" in proc.stdout for h in HELD):
                    failures.add(f"{name} cleanup: exit {proc.returncode}: {proc.stdout[-300:]} {proc.stderr[-500:]}")
            else:
                proc = cli(directory, "show", rng.choice(SHARED + HELD), "--json")
                if proc.returncode not in (0, 1) or (proc.returncode == 1 and "no session" not in proc.stderr):
                    failures.add(f"{name} show: exit {proc.returncode}: {proc.stderr[-500:]}")
            if "Traceback" in proc.stderr:
                failures.add(f"{name}: traceback: {proc.stderr[-1000:]}")
            stats[name] = stats.get(name, 0) + 1
    except BaseException as exc:  # noqa: BLE001
        failures.add(f"{name}: {type(exc).__name__}: {exc}")


MINIMUM = {"A": 10, "B": 10, "C": 10, "L": 5, "cli-1": 2, "cli-2": 2}


def enough(stats: dict) -> bool:
    return all(stats.get(name, 0) >= n for name, n in MINIMUM.items())


def test_servers_and_cli_share_sessions_without_torn_reads_or_lost_locks(tmp_path):
    directory = tmp_path / "snaps"
    rng = random.Random(7)
    failures = Failures()
    stats: dict = {}
    stop = threading.Event()
    logs = {n: tmp_path / f"server-{n}.log" for n in "ABCL"}
    servers = {n: Server(directory, stderr_path=logs[n]) for n in "ABCL"}
    threads = []
    try:
        for sid in HELD:  # A claims its sessions before anything else starts
            servers["A"].call("opendev/snapshot.save", snap(sid, rng))
        listing = cli_list(directory)
        check_listing(listing, "initial CLI list", failures)
        threads = [
            threading.Thread(target=holder_worker, args=(servers["A"], random.Random(1), stop, failures, stats)),
            threading.Thread(target=server_worker, args=(servers["B"], random.Random(2), stop, failures, stats, "B")),
            threading.Thread(target=server_worker, args=(servers["C"], random.Random(3), stop, failures, stats, "C")),
            threading.Thread(target=lister_worker, args=(servers["L"], stop, failures, stats)),
            threading.Thread(target=cli_worker, args=(directory, random.Random(4), stop, failures, stats, "cli-1")),
            threading.Thread(target=cli_worker, args=(directory, random.Random(5), stop, failures, stats, "cli-2")),
        ]
        for t in threads:
            t.start()
        # Run for the set time and until every worker did its share (a loaded
        # machine starts CLI processes slowly); the cap only bounds a stuck run.
        deadline = time.monotonic() + CONCURRENCY_SECONDS
        cap = deadline + 300
        while not failures.items and time.monotonic() < cap and (time.monotonic() < deadline or not enough(stats)):
            time.sleep(0.1)
        stop.set()
        for t in threads:
            t.join(60)
            assert not t.is_alive(), f"{t.name} is stuck"
        print(f"operations: {stats}")
        assert not failures.items, "\n".join(failures.items)
        assert enough(stats), stats

        # every file on disk is whole
        for name in os.listdir(directory):
            if name.endswith(SUFFIX):
                decode((directory / name).read_bytes())
            else:
                assert not name.endswith(".json"), name
        # A still holds its sessions; once A exits they read interrupted
        check_listing(cli_list(directory), "final CLI list", failures)
        assert not failures.items, "\n".join(failures.items)
        servers["A"].close()
        after = {s["sessionId"]: s["status"] for s in cli_list(directory)["sessions"]}
        assert all(after[sid] == "interrupted" for sid in HELD), after
        for n in "BCL":
            servers[n].close()
        for n, log in logs.items():
            text = log.read_text("utf-8", "replace")
            assert "Traceback" not in text and "internal error" not in text, f"server {n} log:\n{text[-3000:]}"
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        for server in servers.values():
            server.kill()
