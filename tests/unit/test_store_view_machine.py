"""The listing view against the disk, driven by hypothesis with two processes.

A worker process saves, claims and releases sessions (holding some locks
read-only, as a holder may) and is SIGKILLed now and then; this process
unlinks files, writes in place through hard links elsewhere, re-points the
symlink the stores reach the directory through, re-creates the directory,
and plants hostile entries. A long-lived watching store (the view) must:

- after every change the change feed can see (saves, unlinks, claims, a
  holder's death, read-only ones too): report it from ``refresh()`` (what
  a server acts on) and list exactly what a fresh store lists;
- after one forced safety check, whatever happened (no test waits 10 s):
  report a change if there was one and list exactly what a fresh store
  lists.
A holder that takes a lock read-only makes no inotify event at all; that
is seen by the next listing (which probes every lock) or safety check, and
is the one change ``refresh()`` need not report.

Derandomized, no example database: the same runs every time.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from opendev_snapshot.core import SnapshotStore
from opendev_snapshot.core import cache as cache_module

SNAP = "_session_snapshot.json"
LOCK = "_session_snapshot.lock"
SIDS = ("a", "b", "c")
HOUR = 3_600_000

WORKER = textwrap.dedent(
    """
    import fcntl, json, os, sys
    from opendev_snapshot.core import SnapshotStore, new_record
    directory = sys.argv[1]
    store = SnapshotStore(directory, use_index=False)
    readonly = {}
    print(json.dumps("ready"), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        op, sid = cmd["op"], cmd.get("sid")
        try:
            if op == "save":
                r = new_record(sid, "/p/" + sid)
                r["snapshot_timestamp_ms"] -= cmd["age_ms"]
                r["completed"] = cmd["completed"]
                r["message_count"] = cmd["mc"]
                store.save(r)
                out = "ok"
            elif op == "claim":
                out = store.claim(sid)
            elif op == "release":
                out = store.release(sid)
            elif op == "ro_claim":  # a holder that opens its lock file read-only
                path = os.path.join(directory, sid + "_session_snapshot.lock")
                fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    readonly.setdefault(sid, []).append(fd)
                    out = True
                except OSError:
                    os.close(fd)
                    out = False
            elif op == "ro_release":
                for fd in readonly.pop(sid, []):
                    os.close(fd)
                out = "ok"
        except Exception as exc:
            out = type(exc).__name__ + ": " + str(exc)
        print(json.dumps(out), flush=True)
    """
)


class Worker:
    def __init__(self, directory) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(directory)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert json.loads(self.proc.stdout.readline()) == "ready"

    def do(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the worker died"
        return json.loads(line)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)  # its locks are released, its closes queued, before wait() returns
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass


def describe(store) -> tuple:
    result = store.list(include_completed=True)
    sessions = sorted((s["session_id"], s["status"], s["message_count"], s["completed"]) for s in result.sessions)
    return sessions, sorted((k.file, k.reason) for k in result.skipped)


class ViewMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = ViewMachine.base / f"run{ViewMachine.runs}"
        ViewMachine.runs += 1
        self.root.mkdir()
        self.generation = 0
        self.real = self._new_real()
        self.link = self.root / "link"
        self.link.symlink_to(self.real)
        self.outside = self.root / "outside"
        self.outside.mkdir()
        self.worker = Worker(self.link)
        self.view = SnapshotStore(self.link, watch=True)
        self.view.list()
        self.last = self.truth()
        self.stale = False  # something the feed cannot see happened since the last safety check
        self.unannounced = False  # a read-only claim: no event, seen by the next listing

    def _new_real(self):
        self.generation += 1
        path = self.root / f"real{self.generation}"
        path.mkdir(mode=0o700)
        return path

    def teardown(self) -> None:
        self.view.close()
        self.worker.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def truth(self) -> tuple:
        with SnapshotStore(self.link, use_index=False) as fresh:
            return describe(fresh)

    # ------------------------------------------------ what the feed sees
    @rule(sid=st.sampled_from(SIDS), old=st.booleans(), completed=st.booleans(), mc=st.integers(0, 99))
    def save(self, sid, old, completed, mc):
        assert self.worker.do(op="save", sid=sid, age_ms=HOUR if old else 1000, completed=completed, mc=mc) == "ok"

    @rule(sid=st.sampled_from(SIDS))
    def claim(self, sid):
        assert self.worker.do(op="claim", sid=sid) in (True, False)

    @rule(sid=st.sampled_from(SIDS))
    def release(self, sid):
        self.worker.do(op="release", sid=sid)

    @rule(sid=st.sampled_from(SIDS), mc=st.integers(0, 99))
    def session_held_read_only(self, sid, mc):
        """A session whose process saves it, then holds its lock read-only."""
        assert self.worker.do(op="save", sid=sid, age_ms=HOUR, completed=False, mc=mc) == "ok"
        if self.worker.do(op="ro_claim", sid=sid) is True:
            self.unannounced = True

    @rule(sid=st.sampled_from(SIDS))
    def release_read_only(self, sid):
        self.worker.do(op="ro_release", sid=sid)

    @rule()
    def kill_worker(self):
        self.worker.kill()
        self.worker = Worker(self.link)

    @rule(sid=st.sampled_from(SIDS))
    def unlink(self, sid):
        try:
            os.unlink(self.link / (sid + SNAP))
        except FileNotFoundError:
            pass

    @rule(sid=st.sampled_from(SIDS), source=st.sampled_from(SIDS))
    def copy_under_another_name(self, sid, source):
        try:
            data = (self.link / (source + SNAP)).read_bytes()
        except FileNotFoundError:
            return
        (self.link / (sid + SNAP)).write_bytes(data)  # in place when it exists: the feed sees it

    # ------------------------------------------------ what it cannot see
    @rule(sid=st.sampled_from(SIDS))
    def write_through_a_hard_link(self, sid):
        target = self.link / (sid + SNAP)
        alias = self.outside / "alias"
        try:
            os.link(target, alias)
        except FileNotFoundError:
            return
        data = alias.read_bytes()
        marker = b'"message_count": '
        start = data.find(marker) + len(marker)
        end = start
        while data[end : end + 1].isdigit():
            end += 1
        if start >= len(marker) and end > start:
            with open(alias, "r+b") as f:  # one more digit: the size changes, the key must too
                f.write(data[:start] + data[start:end] + b"7" + data[end:])
            self.stale = True
        os.unlink(alias)

    @rule()
    def repoint_the_symlink(self):
        new = self._new_real()
        for name in os.listdir(self.real):
            if name.endswith(SNAP) and os.path.isfile(self.real / name):
                shutil.copy2(self.real / name, new / name)
        (self.root / "link.new").symlink_to(new)
        os.replace(self.root / "link.new", self.link)
        self.real = new
        self.stale = True

    @rule()
    def recreate_the_directory(self):
        saved = {n: (self.real / n).read_bytes() for n in os.listdir(self.real)
                 if n.endswith(SNAP) and os.path.isfile(self.real / n) and not os.path.islink(self.real / n)}
        shutil.rmtree(self.real)  # the worker's and the view's lock handles still pin the old one
        self.real.mkdir(mode=0o700)
        for name, data in saved.items():
            (self.real / name).write_bytes(data)
        self.stale = True

    @rule(sid=st.sampled_from(SIDS), kind=st.sampled_from(["fifo", "not-utf8"]))
    def plant(self, sid, kind):
        if kind == "fifo":
            try:
                os.mkfifo(self.link / (sid + "-x" + LOCK))
            except FileExistsError:
                pass
        else:
            with open(os.path.join(os.fsencode(self.link), sid.encode() + b"\xff" + SNAP.encode()), "wb") as f:
                f.write(b"{}")

    # ------------------------------------------------ what must hold
    def check(self, changed: set) -> None:
        now = self.truth()
        if now != self.last and not self.unannounced:
            assert changed, f"the view changed ({self.last} -> {now}) and nothing was reported"
        assert describe(self.view) == now
        self.last = now
        self.unannounced = False

    @precondition(lambda self: not self.stale)
    @invariant()
    def the_feed_keeps_the_view_exact(self):
        self.check(self.view.refresh())

    @rule()
    def safety_check(self):
        self.stale = False
        self.check(self.view.safety_check())


@pytest.mark.slow
def test_the_view_is_exact_after_every_change_and_every_safety_check(tmp_path, monkeypatch):
    # files change size or inode in this machine, so the key comparison alone must do
    monkeypatch.setattr(cache_module, "RACY_NS", 0)
    ViewMachine.base = tmp_path
    ViewMachine.runs = 0
    run_state_machine_as_test(ViewMachine, settings=settings(
        max_examples=int(os.environ.get("OPENDEV_VIEW_MACHINE_EXAMPLES", "30")),
        stateful_step_count=25,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    ))
