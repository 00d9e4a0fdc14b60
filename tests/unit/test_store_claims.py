"""Claims and the lock file's text (issue 9 finding 2; holder JSON; kind/notebook)."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from opendev_snapshot.core import INTERRUPTED, RUNNING, SnapshotStore
from opendev_snapshot.core.errors import SessionRunning
from opendev_snapshot.core.holder import describe_holder, parse_holder
from opendev_snapshot.core.records import now_ms

from storeproc import Peer

from helpers import LOCK, SNAP, aged_record


rec = aged_record


@pytest.fixture
def peer(snapshot_dir):
    with Peer(snapshot_dir) as p:
        yield p
    p.kill()


# ------------------------------------------------------------- finding 2
def test_a_claiming_save_that_cannot_claim_writes_nothing(store, snapshot_dir, peer):
    peer.call("save", record=rec("s", message_count=1), claim=True)
    before = (snapshot_dir / f"s{SNAP}").read_bytes()
    with pytest.raises(SessionRunning) as info:
        store.save(rec("s", message_count=2), claim=True)
    assert info.value.holder["pid"] == peer.pid
    assert (snapshot_dir / f"s{SNAP}").read_bytes() == before
    assert store.holds("s") is False


def test_force_writes_and_claimed_tells_the_truth(store, peer):
    peer.call("save", record=rec("s"), claim=True)
    out = store.save(rec("s", message_count=5), claim=True, force=True)
    assert out["claimed"] is False and store.load("s")["message_count"] == 5
    assert store.list().sessions[0]["status"] == RUNNING  # still the peer's
    peer.kill()
    assert store.save(rec("s"), claim=True)["claimed"] is True
    assert store.save(rec("s"))["claimed"] is True  # held from before
    store.release("s")
    assert store.save(rec("s"))["claimed"] is False


def test_a_claim_waits_for_a_removal_under_way_instead_of_failing(store, snapshot_dir, peer):
    """A removal holds the session's update lock while it holds the liveness
    lock for an instant; a claim meeting it waits, then succeeds."""
    store.save(rec("s"), claim=True)
    store.release("s")
    peer.call("update_hold", sid="s")  # the peer is "half-way through a removal"
    import fcntl

    fd = os.open(snapshot_dir / f"s{LOCK}", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # ... holding the liveness lock transiently
    result = {}
    claimer = threading.Thread(target=lambda: result.setdefault("claimed", store.claim("s")))
    claimer.start()
    time.sleep(0.3)
    assert claimer.is_alive(), "the claim did not wait for the update lock"
    os.close(fd)  # the removal is done with the liveness lock ...
    peer.call("update_release", sid="s")  # ... and with the update lock
    claimer.join(10)
    assert result == {"claimed": True}


def test_claims_and_probes_do_not_disturb_a_lockless_session(store, snapshot_dir):
    """The update lock lives in one hidden file: no lock file appears for a
    lock-less (Rust-written) session, which would flip it to interrupted."""
    store.save(rec("rust", age_ms=0))
    store.record_tool_result("rust", {"tool_name": "t", "call_id": "c", "output_preview": "p", "success": True})
    store.update("rust", lambda r: r.update(message_count=3))
    assert not (snapshot_dir / f"rust{LOCK}").exists()
    assert store.list().sessions[0]["status"] == RUNNING


# ------------------------------------------------------------ lock text
def test_lock_text_is_a_json_object_naming_the_holder(store, snapshot_dir):
    before = now_ms()
    store.save(rec("s"), claim=True)
    holder = json.loads((snapshot_dir / f"s{LOCK}").read_text())
    assert holder["pid"] == os.getpid() and holder["host"] == os.uname().nodename
    assert holder["kind"] == "opendev" and before <= holder["startedMs"] <= now_ms()
    assert store.lock_info("s") == holder == store.lock_holder("s")
    store.release("s")
    assert store.lock_holder("s") is None and store.lock_info("s") == holder


def test_ipython_holder_info_and_listing_kind(snapshot_dir):
    info = {"kind": "ipython", "notebook": "/p/a.ipynb", "historySession": 42, "historyDb": "/p/h.sqlite"}
    kernel = SnapshotStore(snapshot_dir, holder_info=info)
    kernel.save(rec("nb"), claim=True)
    plain = SnapshotStore(snapshot_dir)
    plain.save(rec("op"), claim=True)
    plain.save(rec("rust", age_ms=0))
    by_id = {s["session_id"]: s for s in plain.list().sessions}
    assert (by_id["nb"]["kind"], by_id["nb"]["notebook"]) == ("ipython", "/p/a.ipynb")
    assert (by_id["op"]["kind"], by_id["op"]["notebook"]) == ("opendev", None)
    assert (by_id["rust"]["kind"], by_id["rust"]["notebook"]) == ("opendev", None)
    holder = plain.lock_holder("nb")
    assert holder["historySession"] == 42 and holder["historyDb"] == "/p/h.sqlite" and holder["pid"] == os.getpid()
    assert describe_holder(holder).endswith("(IPython kernel of /p/a.ipynb)")
    kernel.close()
    assert {s["session_id"]: s["kind"] for s in plain.list().sessions}["nb"] == "ipython"  # released: text kept
    plain.close()


@pytest.mark.parametrize(
    "text,expected",
    [
        ("pid=123 host=box started=2026-01-02T03:04:05+0000\n", {"pid": 123, "host": "box", "startedMs": 1767323045000}),
        ("pid=77 host=h", {"pid": 77, "host": "h"}),
        ("pid=9 started=yesterday", {"pid": 9, "started": "yesterday"}),
        ("", None),
        ("{not json", None),
        ("[1, 2]", None),
        ('{"pid": 5, "kind": "ipython", "notebook": null}', {"pid": 5, "kind": "ipython", "notebook": None}),
    ],
    ids=["old-full", "old-no-start", "old-bad-start", "empty", "broken-json", "not-an-object", "json"],
)
def test_old_and_odd_lock_text_is_read_as_what_it_has(text, expected):
    assert parse_holder(text.encode()) == expected


def test_an_old_format_lock_file_is_listed_as_opendev(store, snapshot_dir):
    store.save(rec("old"))
    (snapshot_dir / f"old{LOCK}").write_text("pid=1 host=x started=2020-01-01T00:00:00+0000\n")
    (listing,) = store.list().sessions
    assert (listing["status"], listing["kind"], listing["notebook"]) == (INTERRUPTED, "opendev", None)
    assert store.lock_info("old")["pid"] == 1


def test_a_fifo_at_the_lock_path_is_never_opened_for_its_text(store, snapshot_dir):
    store.save(rec("f"))
    os.mkfifo(snapshot_dir / f"f{LOCK}")
    assert store.lock_info("f") is None and store.lock_holder("f") is None
    assert store.list().sessions[0]["kind"] == "opendev"


def test_a_transient_lock_leaves_the_holder_text_alone(snapshot_dir):
    from opendev_snapshot.core import liveness

    snapshot_dir.mkdir()
    path = str(snapshot_dir / f"s{LOCK}")
    (snapshot_dir / f"s{LOCK}").write_text('{"pid": 1, "kind": "ipython", "notebook": "/n.ipynb"}\n')
    lock = liveness.acquire(path, None)  # a removal's or a cleanup's instant
    assert lock is not None
    assert (snapshot_dir / f"s{LOCK}").read_text() == '{"pid": 1, "kind": "ipython", "notebook": "/n.ipynb"}\n'
    lock.release()
    claimed = liveness.acquire(path, b'{"pid": 2}\n')  # a claim writes its own
    assert (snapshot_dir / f"s{LOCK}").read_text() == '{"pid": 2}\n'
    claimed.release()


# --------------------------------------- hostile holder text (never on the wire raw)
HOSTILE_LOCK_TEXT = (
    b'{"pid": 123, "host": "\\ud800evil\\u001b[31m", "startedMs": 1e400, "kind": "ipython",'
    b' "notebook": "/n/\\u202egpj.ipynb", "\\udfffkey": [{"deep": "\\udc80\\u009b"}, NaN], "historySession": -Infinity}'
)


def strict_json(value) -> str:
    """What a strict parser (Emacs ``json-parse-string``, ``vim.json.decode``) accepts, or an exception."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8", "strict").decode()


def test_a_hostile_holder_is_parsed_into_wire_safe_strings():
    holder = parse_holder(HOSTILE_LOCK_TEXT)
    strict_json(holder)  # no lone surrogate, no NaN or Infinity: it can go on the wire
    assert holder["pid"] == 123
    assert holder["host"] == "\\ud800evil\\e[31m"  # a lone surrogate: the string shown as core.text.printable does
    assert holder["notebook"] == "/n/\u202egpj.ipynb"  # a real path stays one: front doors escape it to show it
    assert holder["\\udfffkey"] == [{"deep": "\\udc80\\x9b"}, "nan"]
    assert holder["startedMs"] == "inf" and holder["historySession"] == "-inf"
    assert describe_holder(holder) == "pid 123 on \\ud800evil\\e[31m (IPython kernel of /n/\\u202egpj.ipynb)"


def test_deeply_nested_holder_text_is_no_crash():
    holder = parse_holder(b'{"pid": 1, "x": ' + b"[" * 2000 + b"]" * 2000 + b"}")
    assert holder is None or holder["pid"] == 1
    strict_json(holder)


def test_a_running_session_with_hostile_holder_text_is_refused_with_printable_text(store, snapshot_dir, peer):
    peer.call("save", record=rec("h"), claim=True)
    (snapshot_dir / f"h{LOCK}").write_bytes(HOSTILE_LOCK_TEXT)  # same inode: the peer's flock stays
    with pytest.raises(SessionRunning) as info:
        store.remove("h")
    strict_json(info.value.holder)
    assert "\x1b" not in str(info.value) and "\\ud800evil\\e[31m" in str(info.value)
    assert str(SessionRunning("h", {"pid": 1, "host": "box\x1b[2J"})).count("box\\e[2J") == 1
    assert store.lock_holder("h")["host"] == "\\ud800evil\\e[31m"


# ------------------------------------------------- the lock text follows its holder
def test_set_holder_info_rewrites_the_held_lock_in_place_and_keeps_it(snapshot_dir, peer):
    info = {"kind": "ipython", "notebook": "/p/a.ipynb", "historySession": 3}
    store = SnapshotStore(snapshot_dir, holder_info=info)
    try:
        store.save(rec("s"), claim=True)
        lock = snapshot_dir / f"s{LOCK}"
        before, ino = parse_holder(lock.read_bytes()), lock.stat().st_ino
        assert store.set_holder_info({**info, "notebook": "/p/renamed.ipynb"}) == ["s"]
        after = parse_holder(lock.read_bytes())
        assert after == {**before, "notebook": "/p/renamed.ipynb"}  # pid, host, startedMs, kind kept
        assert lock.stat().st_ino == ino and store.holds("s")  # the same file, still ours
        assert store.list().sessions[0]["status"] == RUNNING
        assert peer.call("claim", session_id="s") is False  # another process still cannot take it
        assert store.lock_info("s")["notebook"] == "/p/renamed.ipynb"
        assert store.list().sessions[0]["notebook"] == "/p/renamed.ipynb"
        # a shorter text leaves no tail of the longer one
        assert store.set_holder_info({"kind": "ipython", "notebook": "/x"}) == ["s"]
        assert json.loads(lock.read_text()) == {k: before[k] for k in ("pid", "host", "startedMs")} | {
            "kind": "ipython", "notebook": "/x"}
        # later claims use the new text
        store.save(rec("t"), claim=True)
        assert store.lock_info("t")["notebook"] == "/x"
    finally:
        store.close()
    assert peer.call("claim", session_id="s") is True  # released by close, as before


def test_set_holder_info_unchanged_writes_nothing(snapshot_dir):
    info = {"kind": "ipython", "notebook": "/p/a.ipynb", "historySession": 3}
    store = SnapshotStore(snapshot_dir, holder_info=info)
    try:
        store.save(rec("s"), claim=True)
        lock = snapshot_dir / f"s{LOCK}"
        os.utime(lock, ns=(1_000_000_000, 1_000_000_000))
        assert store.set_holder_info(dict(info)) == []
        assert lock.stat().st_mtime_ns == 1_000_000_000
        assert store.holder_info == info
    finally:
        store.close()


def test_set_holder_info_never_touches_a_lock_it_no_longer_holds(snapshot_dir):
    store = SnapshotStore(snapshot_dir, holder_info={"kind": "ipython", "notebook": "/a"})
    try:
        store.save(rec("s"), claim=True)
        store.mark_completed("s")  # deletes the lock file
        store.save(rec("r"), claim=True)
        store.release("r")  # keeps the lock file: interrupted
        text = (snapshot_dir / f"r{LOCK}").read_bytes()
        assert store.set_holder_info({"kind": "ipython", "notebook": "/b"}) == []
        assert not (snapshot_dir / f"s{LOCK}").exists()
        assert (snapshot_dir / f"r{LOCK}").read_bytes() == text
    finally:
        store.close()
