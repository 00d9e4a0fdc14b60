"""Removal: liveness first, then the trash (issue 9 findings 1 and 10, the trash)."""

from __future__ import annotations

import json
import os
import socket
import stat

import pytest

from opendev_snapshot.core import INTERRUPTED, RUNNING, SnapshotStore
from opendev_snapshot.core.errors import (
    AmbiguousId,
    InvalidSnapshot,
    NotInTrash,
    SessionExists,
    SessionNotFound,
    SessionRunning,
    StorageError,
)
from opendev_snapshot.core.records import now_ms
from opendev_snapshot.core.trash import TRASH_NAME

from storeproc import Peer, PeerError

from helpers import HOUR, LOCK, SNAP, aged_record


rec = aged_record


def visible(directory) -> list:
    return sorted(n for n in os.listdir(directory) if not n.startswith("."))


@pytest.fixture
def peer(snapshot_dir):
    with Peer(snapshot_dir) as p:
        yield p
    p.kill()


# ------------------------------------------------------------- finding 1
def test_remove_refuses_a_session_another_live_process_holds(store, snapshot_dir, peer):
    peer.call("save", record=rec("live"), claim=True)
    with pytest.raises(SessionRunning) as info:
        store.remove("live")
    assert info.value.session_id == "live"
    assert info.value.holder["pid"] == peer.pid and info.value.holder["kind"] == "opendev"
    assert (snapshot_dir / f"live{SNAP}").exists() and (snapshot_dir / f"live{LOCK}").exists()
    assert store.list().sessions[0]["status"] == RUNNING
    assert peer.call("record_tool_result", session_id="live",
                     entry={"tool_name": "t", "call_id": "c", "output_preview": "p", "success": True}) == 1


def test_remove_refuses_a_lockless_session_that_is_young(store, snapshot_dir):
    store.save(rec("rust", age_ms=0))  # as the Rust agent writes it: no lock file
    with pytest.raises(SessionRunning) as info:
        store.remove("rust")
    assert info.value.holder is None
    assert visible(snapshot_dir) == [f"rust{SNAP}"]  # no lock file left behind either


def test_a_young_completed_session_is_not_running_and_is_removed(store, snapshot_dir):
    store.save(rec("done", age_ms=0, completed=True))
    assert store.remove("done") is True and visible(snapshot_dir) == []


def test_force_removes_a_running_session_and_keeps_its_holder_text(store, snapshot_dir, peer):
    peer.call("save", record=rec("live"), claim=True)
    assert store.remove("live", force=True) is True
    assert visible(snapshot_dir) == []
    (entry,) = store.list_trash()
    assert entry["session_id"] == "live" and entry["holder"]["pid"] == peer.pid


def test_own_session_is_removed_and_released(store, snapshot_dir):
    store.save(rec("mine"), claim=True)
    assert store.remove("mine") is True
    assert store.held_sessions() == [] and visible(snapshot_dir) == []


def test_interrupted_session_is_removed_after_its_holder_died(store, snapshot_dir, peer):
    peer.call("save", record=rec("dead"), claim=True)
    peer.kill()
    assert store.list().sessions[0]["status"] == INTERRUPTED
    assert store.remove("dead") is True


def test_removal_keeps_the_lock_text_it_found(store, snapshot_dir, peer):
    peer.call("save", record=rec("s"), claim=True)
    peer.call("release", session_id="s")
    before = (snapshot_dir / f"s{LOCK}").read_bytes()
    assert store.remove("s") is True
    (entry,) = store.list_trash()
    assert entry["holder"] == json.loads(before)  # the transient lock did not rewrite it


# ------------------------------------------------------------- finding 10
def test_a_file_naming_another_session_is_not_removed_as_that_session(store, snapshot_dir, peer):
    peer.call("save", record=rec("abc"), claim=True)
    backup = (snapshot_dir / f"abc{SNAP}").read_bytes()
    (snapshot_dir / f"abc-backup{SNAP}").write_bytes(backup)  # content says "abc"
    with pytest.raises(StorageError, match="its content is session 'abc'"):
        store.load("abc-backup")
    store.cleanup(0)  # cleanup leaves it alone: it is listed as skipped
    assert (snapshot_dir / f"abc-backup{SNAP}").exists()
    assert store.remove("abc-backup") is True  # by its name, as the file it is
    assert visible(snapshot_dir) == [f"abc{SNAP}", f"abc{LOCK}"]  # abc's file and lock untouched
    assert store.list().sessions[0]["status"] == RUNNING
    assert peer.call("load", session_id="abc")["session_id"] == "abc"
    (entry,) = store.list_trash()
    assert entry["file"] == f"abc-backup{SNAP}" and entry["snapshot"] is None  # not a snapshot of abc-backup
    with pytest.raises(NotInTrash):
        store.restore("abc-backup")  # only usable snapshots come back; the file stays in the trash


def test_an_unusable_file_is_removed_as_it_is_after_its_own_liveness_check(store, snapshot_dir, peer):
    snapshot_dir.mkdir(exist_ok=True)
    (snapshot_dir / f"bad{SNAP}").write_text("{")
    os.symlink("/nonexistent", snapshot_dir / f"dangling{SNAP}")
    peer.call("claim", session_id="bad")  # a live process holds bad's lock
    with pytest.raises(SessionRunning):
        store.remove("bad")
    assert store.remove("dangling") is True
    assert not os.path.lexists(snapshot_dir / f"dangling{SNAP}")
    assert store.remove("bad", force=True) is True and visible(snapshot_dir) == []


# ------------------------------------------------------------------ trash
def test_remove_moves_to_a_private_trash_and_restore_brings_it_back(store, snapshot_dir):
    original = rec("s", message_count=4)
    store.save(original, claim=True)
    store.release("s")
    lock_text = (snapshot_dir / f"s{LOCK}").read_bytes()
    assert store.remove("s") is True and store.load("s") is None
    trash = snapshot_dir / TRASH_NAME
    assert stat.S_IMODE(os.lstat(trash).st_mode) == 0o700
    (entry,) = store.list_trash()
    assert entry["snapshot"] == original and entry["file"] == f"s{SNAP}"
    assert now_ms() - entry["removed_at_ms"] < 60_000
    listing = store.restore("s")
    assert store.load("s") == original
    assert listing["session_id"] == "s" and listing["status"] == INTERRUPTED  # lock text back, unlocked
    assert listing["path"] == str(snapshot_dir / f"s{SNAP}") and listing["kind"] == "opendev"
    assert (snapshot_dir / f"s{LOCK}").read_bytes() == lock_text
    assert store.list_trash() == [] and os.listdir(trash) == []


def test_restore_refuses_when_the_id_exists_again_or_is_not_in_the_trash(store):
    with pytest.raises(NotInTrash):
        store.restore("never")
    store.save(rec("s"))
    store.remove("s")
    store.save(rec("s", message_count=9))
    with pytest.raises(SessionExists):
        store.restore("s")
    assert store.load("s")["message_count"] == 9
    with pytest.raises(SessionNotFound):  # NotInTrash is a SessionNotFound (-32001)
        store.restore("other")


def test_removals_in_one_instant_keep_their_order(store, monkeypatch):
    # A frozen clock: every removal lands in the same millisecond (and
    # nanosecond); the trash must still know which came last. The clock is
    # frozen at the real now, and the process' last stamp is put back after
    # the test (monkeypatch), so no later removal in this process is stamped
    # ahead of another process' (a future stamp once made the two-process
    # state machine restore an older copy).
    from opendev_snapshot.core import trash

    frozen = trash.time.time_ns()
    monkeypatch.setattr(trash, "_last_stamp", trash._last_stamp)
    monkeypatch.setattr(trash.time, "time_ns", lambda: frozen)
    for count in range(1, 13):
        store.save(rec("s", message_count=count))
        store.remove("s")
    assert [e["snapshot"]["message_count"] for e in store.list_trash()] == list(range(12, 0, -1))
    assert store.restore("s")["message_count"] == 12


def test_removals_by_two_processes_keep_their_order(store, peer):
    # Each process stamps its own removals; the trash must still order them
    # as they happened, whatever ran in this process before (the test above
    # freezes the clock).
    for count, side in ((1, "here"), (2, "peer"), (3, "here"), (4, "peer")):
        store.save(rec("s", message_count=count))
        if side == "here":
            store.remove("s")
        else:
            peer.call("remove", session_id="s")
    assert [e["snapshot"]["message_count"] for e in store.list_trash()] == [4, 3, 2, 1]
    assert store.restore("s")["message_count"] == 4


def test_restore_takes_the_newest_entry_and_list_is_newest_first(store):
    for count in (1, 2, 3):
        store.save(rec("s", message_count=count))
        store.remove("s")
    assert [e["snapshot"]["message_count"] for e in store.list_trash()] == [3, 2, 1]
    assert store.restore("s")["message_count"] == 3
    store.remove("s")
    assert [e["snapshot"]["message_count"] for e in store.list_trash()] == [3, 2, 1]


def test_cleanup_moves_to_the_trash_and_purges_only_old_entries(snapshot_dir):
    s = SnapshotStore(snapshot_dir, trash_retention_ms=HOUR)
    s.save(rec("old", age_ms=48 * HOUR))
    result = s.cleanup(24 * HOUR)
    assert result.session_ids == ["old"] and result.purged_count == 0
    assert [e["session_id"] for e in s.list_trash()] == ["old"]
    (name,) = [n for n in os.listdir(snapshot_dir / TRASH_NAME)]
    aged = name.replace(name[:13], f"{now_ms() - 2 * HOUR:013d}", 1)  # as if removed two hours ago
    os.rename(snapshot_dir / TRASH_NAME / name, snapshot_dir / TRASH_NAME / aged)
    assert s.cleanup(24 * HOUR, dry_run=True).purged_count == 1
    assert len(s.list_trash()) == 1
    assert s.cleanup(24 * HOUR).purged_count == 1
    assert s.list_trash() == [] and os.listdir(snapshot_dir / TRASH_NAME) == []
    s.close()


def test_trash_retention_default_is_a_week(store):
    assert store.trash_retention_ms == 7 * 24 * HOUR


def test_trash_files_moves_hostile_entries_as_they_are(store, snapshot_dir):
    store.save(rec("good"))
    os.mkfifo(snapshot_dir / f"fifo{SNAP}")
    os.mkfifo(snapshot_dir / f"fifolock{LOCK}")
    os.symlink("/etc/passwd", snapshot_dir / f"link{SNAP}")
    os.mkdir(snapshot_dir / f"dir{SNAP}")
    (snapshot_dir / f"dir{SNAP}" / "inner").write_text("x")
    (snapshot_dir / f"corrupt{SNAP}").write_text("{")
    bad_name = os.fsdecode(b"bad\xff" + SNAP.encode())
    (snapshot_dir / os.fsencode(bad_name).decode("utf-8", "surrogateescape")).write_bytes(b"{}")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(snapshot_dir / f"sock{SNAP}"))
    names = [f"fifo{SNAP}", f"fifolock{LOCK}", f"link{SNAP}", f"dir{SNAP}", f"corrupt{SNAP}", bad_name, f"sock{SNAP}"]
    moved, refused = store.trash_files(names)
    sock.close()
    assert refused == [] and len(moved) == len(names)
    assert r"bad\xff" + SNAP in moved  # printable
    assert visible(snapshot_dir) == [f"good{SNAP}"]
    in_trash = {n.partition("@")[2]: os.lstat(snapshot_dir / TRASH_NAME / n) for n in os.listdir(snapshot_dir / TRASH_NAME)}
    assert stat.S_ISFIFO(in_trash[f"fifo{SNAP}"].st_mode) and stat.S_ISLNK(in_trash[f"link{SNAP}"].st_mode)
    assert stat.S_ISDIR(in_trash[f"dir{SNAP}"].st_mode) and stat.S_ISSOCK(in_trash[f"sock{SNAP}"].st_mode)
    assert os.path.exists("/etc/passwd")
    assert {e["file"] for e in store.list_trash()} >= {f"fifo{SNAP}", f"corrupt{SNAP}"}


def test_trash_files_refuses_what_is_not_an_unusable_entry(store, snapshot_dir):
    store.save(rec("good"), claim=True)
    moved, refused = store.trash_files([f"good{SNAP}", f"good{LOCK}", "../x", ".trash", ".opendev-update.lock", "missing"])
    assert moved == []
    reasons = {r.file: r.reason for r in refused}
    assert "remove it by its id" in reasons[f"good{SNAP}"]
    assert "lock file" in reasons[f"good{LOCK}"]
    assert "not a name" in reasons["../x"] and "own files" in reasons[".trash"]
    assert reasons["missing"] == "no such file"
    assert visible(snapshot_dir) == [f"good{SNAP}", f"good{LOCK}"]


def test_a_symlinked_trash_is_never_followed(store, snapshot_dir, tmp_path):
    store.save(rec("s"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, snapshot_dir / TRASH_NAME)
    with pytest.raises(StorageError, match="not a directory"):
        store.remove("s")
    assert store.load("s") is not None and os.listdir(elsewhere) == []


# -------------------------------------------------------------- resolve_id
def test_resolve_id_exact_then_unique_prefix(store):
    for sid in ("abc", "abcd", "xyz-1"):
        store.save(rec(sid))
    assert store.resolve_id("abc") == "abc"  # exact wins over being a prefix
    assert store.resolve_id("xy") == "xyz-1"
    with pytest.raises(AmbiguousId) as info:
        store.resolve_id("ab")
    assert info.value.matches == ["abc", "abcd"]
    with pytest.raises(SessionNotFound):
        store.resolve_id("q")
    with pytest.raises(InvalidSnapshot):
        store.resolve_id("../a")
    store.remove("xyz-1")
    with pytest.raises(SessionNotFound):
        store.resolve_id("xy")
    assert store.resolve_id("xy", in_trash=True) == "xyz-1"


def test_remove_from_another_process_is_refused_for_our_claim(store, snapshot_dir, peer):
    store.save(rec("ours"), claim=True)
    with pytest.raises(PeerError) as info:
        peer.call("remove", session_id="ours")
    assert info.value.name == "SessionRunning" and info.value.holder["pid"] == os.getpid()
    assert store.load("ours") is not None


def test_a_trashed_file_whose_name_is_no_session_id_has_none(store, snapshot_dir):
    """Its name came from disk: ``bad\\xff`` (a lone surrogate in Python) or an
    ESC must never reach listTrash's ``sessionId`` (strict JSON parsers drop
    the whole reply)."""
    store.save(rec("good"))
    names = [os.fsdecode(b"bad\xff" + SNAP.encode()), f"esc\x1b[2J{SNAP}", f".hidden{SNAP}"]
    for name in names:
        (snapshot_dir / name).write_text("{}")
    moved, refused = store.trash_files(names)
    assert refused == [] and len(moved) == 3
    assert [e["session_id"] for e in store.list_trash()] == [None, None, None]
    with pytest.raises(SessionNotFound):
        store.resolve_id("bad", in_trash=True)
