"""Two processes, one directory: a hypothesis state machine over the write side.

One store lives in this process, a second in a child process driven over a
pipe (``storeproc.Peer``). Rules save (claiming or not, forced or not),
claim, release, append (``record_tool_result``), remove (forced or not),
restore and clean up, each from either side. A model says what must be on
disk; the invariants, checked after every step:

- no acknowledged update is lost: each snapshot on disk holds exactly the
  tool results the model acknowledged since its last save;
- nothing running is ever removed without force: a removal or cleanup by
  one side of a session the other side holds is refused, and the file stays;
- every removal is restorable: the trash holds each removed session, and
  restoring it (when its id is free) brings back what was removed.
"""

from __future__ import annotations

import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from opendev_snapshot.core import SnapshotStore, new_record
from opendev_snapshot.core.errors import SessionExists, SessionNotFound, SessionRunning
from opendev_snapshot.core.records import now_ms

from storeproc import Peer, PeerError

IDS = ("s0", "s1", "s2")
SIDES = ("here", "peer")
OLD = 48 * 3_600_000  # saved "two days ago": lock-less snapshots read interrupted


class Side:
    """Both stores behind one calling convention; errors become their class name."""

    def __init__(self, store: SnapshotStore | None, peer: Peer | None) -> None:
        self.store, self.peer = store, peer

    def call(self, op: str, **kw):
        try:
            if self.peer is not None:
                return "ok", self.peer.call(op, **kw)
            if op == "append":
                return "ok", self.store.record_tool_result(kw["sid"], kw["entry"], max_entries=10_000)
            if op == "cleanup":
                return "ok", self.store.cleanup(kw["max_age_ms"]).session_ids
            return "ok", getattr(self.store, op)(**kw)
        except PeerError as exc:
            return exc.name, None
        except (SessionRunning, SessionExists, SessionNotFound) as exc:
            return type(exc).__name__, None


class TwoProcesses(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="ods-sm-")
        # stale_after_ms=0: a lock-less snapshot reads interrupted at once, so
        # only claims decide what is running (the age rule has its own tests)
        self.here = SnapshotStore(self.dir, stale_after_ms=0)
        self.peer = Peer(self.dir, stale_after_ms=0)
        self.sides = {"here": Side(self.here, None), "peer": Side(None, self.peer)}
        self.disk: dict = {}  # sid -> list of call ids expected on disk
        self.holder: dict = {}  # sid -> side holding its claim
        self.trash: dict = {}  # sid -> stack of call-id lists removed
        self.counter = 0

    def teardown(self) -> None:
        self.peer.kill()
        self.here.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _record(self, sid: str) -> dict:
        self.counter += 1
        record = new_record(sid, "/proj")
        record["snapshot_timestamp_ms"] = now_ms() - OLD
        record["last_tool_results"] = [
            {"tool_name": "t", "call_id": f"save-{self.counter}", "output_preview": "p", "success": True}
        ]
        return record

    def _other(self, side: str) -> str:
        return "peer" if side == "here" else "here"

    # ------------------------------------------------------------- rules
    @rule(sid=st.sampled_from(IDS), side=st.sampled_from(SIDES), claim=st.booleans(), force=st.booleans())
    def save(self, sid, side, claim, force):
        record = self._record(sid)
        outcome, result = self.sides[side].call("save", record=record, claim=claim, force=force)
        other_holds = self.holder.get(sid) == self._other(side)
        if claim and other_holds and not force:
            assert outcome == "SessionRunning", "a claim over a live holder was not refused"
            return
        assert outcome == "ok", outcome
        self.disk[sid] = [record["last_tool_results"][0]["call_id"]]
        if claim and not other_holds:
            self.holder[sid] = side
        assert result["claimed"] == (self.holder.get(sid) == side), "claimed is not the truth"

    @rule(sid=st.sampled_from(IDS), side=st.sampled_from(SIDES))
    def append(self, sid, side):
        self.counter += 1
        entry = {"tool_name": "t", "call_id": f"app-{self.counter}", "output_preview": "p", "success": True}
        outcome, _ = self.sides[side].call("append", sid=sid, entry=entry)
        if sid in self.disk:
            assert outcome == "ok"
            self.disk[sid].append(entry["call_id"])
        else:
            assert outcome == "SessionNotFound"

    @rule(sid=st.sampled_from(IDS), side=st.sampled_from(SIDES))
    def release(self, sid, side):
        self.sides[side].call("release", session_id=sid)
        if self.holder.get(sid) == side:
            del self.holder[sid]

    @rule(sid=st.sampled_from(IDS), side=st.sampled_from(SIDES), force=st.booleans())
    def remove(self, sid, side, force):
        outcome, result = self.sides[side].call("remove", session_id=sid, force=force)
        if self.holder.get(sid) == self._other(side) and not force and sid in self.disk:
            assert outcome == "SessionRunning", "removed a session another live process holds"
            return
        assert outcome == "ok", outcome
        assert result == (sid in self.disk)
        if sid in self.disk:
            self.trash.setdefault(sid, []).append(self.disk.pop(sid))
        if self.holder.get(sid) == side or (force and result):
            self.holder.pop(sid, None)  # own claim released; a forced removal deletes the lock file

    @rule(sid=st.sampled_from(IDS), side=st.sampled_from(SIDES))
    def restore(self, sid, side):
        outcome, result = self.sides[side].call("restore", session_id=sid)
        if not self.trash.get(sid):
            assert outcome in ("NotInTrash", "SessionNotFound")
        elif sid in self.disk:
            assert outcome == "SessionExists"
        else:
            assert outcome == "ok", outcome
            self.disk[sid] = self.trash[sid].pop()
            assert [t["call_id"] for t in result["last_tool_results"]] == self.disk[sid]

    @rule(side=st.sampled_from(SIDES))
    def cleanup(self, side):
        outcome, removed = self.sides[side].call("cleanup", max_age_ms=3_600_000)
        assert outcome == "ok"
        for sid in removed:
            assert self.holder.get(sid) is None, f"cleanup removed {sid}, held by {self.holder.get(sid)}"
            self.trash.setdefault(sid, []).append(self.disk.pop(sid))
        held = {sid for sid in self.holder if sid in self.disk}
        assert not held & set(removed)

    # --------------------------------------------------------- invariants
    @invariant()
    def disk_matches_the_model(self):
        for sid in IDS:
            record = self.here.load(sid)
            if sid in self.disk:
                assert record is not None, f"{sid} vanished"
                assert [t["call_id"] for t in record["last_tool_results"]] == self.disk[sid], "an acknowledged update was lost"
            else:
                assert record is None, f"{sid} is on disk but should not be"

    @invariant()
    def every_removal_is_in_the_trash(self):
        in_trash: dict = {}
        for entry in self.here.list_trash():
            in_trash.setdefault(entry["session_id"], []).append([t["call_id"] for t in entry["snapshot"]["last_tool_results"]])
        for sid, stack in self.trash.items():
            for removed in stack:
                assert removed in in_trash.get(sid, []), f"a removal of {sid} is not restorable"


TwoProcesses.TestCase.settings = settings(
    max_examples=int(__import__("os").environ.get("OPENDEV_STATEMACHINE_EXAMPLES", "25")),
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_two_processes = pytest.mark.timeout(300)(TwoProcesses.TestCase)
