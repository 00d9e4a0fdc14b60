"""The store's semantics: seed operations, liveness, hostile directories, cleanup, caches."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from opendev_snapshot.core import INTERRUPTED, RUNNING, SnapshotStore, new_record
from opendev_snapshot.core.errors import InvalidSnapshot, SessionNotFound, StorageError
from opendev_snapshot.core.index import INDEX_NAME
from opendev_snapshot.core.paths import resolve_snapshot_dir
from opendev_snapshot.core.store import now_ms

HOUR = 3_600_000


def rec(sid: str, project: str = "/home/u/proj", *, age_ms: int = 0, completed: bool = False, **extra) -> dict:
    record = new_record(sid, project)
    record["snapshot_timestamp_ms"] = now_ms() - age_ms
    record["completed"] = completed
    record.update(extra)
    return record


def ids(result) -> list:
    return [s["session_id"] for s in result.sessions]


# ------------------------------------------------------------ seed operations
def test_save_load_round_trip(store, snapshot_dir):
    r = rec("a", message_count=3, cost_usd=1.25)
    out = store.save(r)
    assert out == {
        "session_id": "a", "path": str(snapshot_dir / "a_session_snapshot.json"),
        "snapshot_timestamp_ms": r["snapshot_timestamp_ms"], "claimed": False,
    }
    assert store.load("a") == r
    assert store.load("missing") is None


def test_list_newest_first_incomplete_only(store):
    store.save(rec("old", age_ms=3 * HOUR))
    store.save(rec("new", age_ms=2 * HOUR))
    store.save(rec("done", completed=True))
    assert ids(store.list()) == ["new", "old"]
    assert ids(store.list(include_completed=True)) == ["done", "new", "old"]
    assert [s["status"] for s in store.list(include_completed=True).sessions] == ["completed", INTERRUPTED, INTERRUPTED]
    assert ids(store.list(limit=1)) == ["new"]


def test_listing_has_status_and_absolute_path(store, snapshot_dir):
    store.save(rec("a"))
    (listing,) = store.list().sessions
    assert listing["status"] == RUNNING  # lock-less and young
    assert listing["path"] == str(snapshot_dir / "a_session_snapshot.json")
    assert os.path.isabs(listing["path"])


def test_mark_completed_restamps_and_drops_lock(store, snapshot_dir):
    store.save(rec("a", age_ms=HOUR), claim=True)
    assert (snapshot_dir / "a_session_snapshot.lock").exists()
    before = now_ms()
    result = store.mark_completed("a")
    assert result["snapshot_timestamp_ms"] >= before
    assert store.load("a")["completed"] is True
    assert not (snapshot_dir / "a_session_snapshot.lock").exists()
    assert store.held_sessions() == []
    with pytest.raises(SessionNotFound):
        store.mark_completed("nope")


def test_record_tool_result_bounds_and_cuts(store):
    store.save(rec("a", age_ms=HOUR))
    for i in range(5):
        count = store.record_tool_result(
            "a", {"tool_name": "bash", "call_id": f"c{i}", "output_preview": "é" * 50, "success": i % 2 == 0},
            max_entries=3, preview_chars=7,
        )
    assert count == 3
    loaded = store.load("a")
    assert [t["call_id"] for t in loaded["last_tool_results"]] == ["c2", "c3", "c4"]
    assert loaded["last_tool_results"][0]["output_preview"] == "é" * 7
    assert now_ms() - loaded["snapshot_timestamp_ms"] < 60_000  # re-stamped
    with pytest.raises(SessionNotFound):
        store.record_tool_result("zzz", {"tool_name": "t", "call_id": "c", "output_preview": "", "success": True})
    with pytest.raises(InvalidSnapshot) as info:
        store.record_tool_result("a", {"tool_name": 1, "call_id": "c", "output_preview": "", "success": True})
    assert "tool_name" in info.value.field


def visible(directory) -> list:
    """The directory's entries but our hidden ones (index, trash, update lock)."""
    return sorted(n for n in os.listdir(directory) if not n.startswith("."))


def test_remove(store, snapshot_dir):
    store.save(rec("a"), claim=True)
    assert store.remove("a") is True
    assert store.remove("a") is False
    assert visible(snapshot_dir) == []


@pytest.mark.parametrize("bad", ["../x", "/abs", "a/b", "", ".x", "nul\0"])
def test_operations_refuse_bad_ids_without_touching_files(store, tmp_path, bad):
    for call in (store.load, store.remove, store.claim, store.mark_completed):
        with pytest.raises(InvalidSnapshot):
            call(bad)
    assert list(tmp_path.rglob("*")) == []


# --------------------------------------------------------------- permissions
def test_modes_under_umask_022(tmp_path):
    old = os.umask(0o022)
    try:
        directory = tmp_path / "deep" / "er" / "snaps"
        s = SnapshotStore(directory)
        s.save(rec("a"), claim=True)
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(directory.parent).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(directory / "a_session_snapshot.json").st_mode) == 0o600
        assert stat.S_IMODE(os.stat(directory / "a_session_snapshot.lock").st_mode) == 0o600
        s.close()
    finally:
        os.umask(old)


def test_no_temporary_files_left_and_none_end_in_json(store, snapshot_dir):
    for i in range(20):
        store.save(rec("a", message_count=i))
    names = os.listdir(snapshot_dir)
    assert sorted(names) == [".opendev-update.lock", "a_session_snapshot.json"]


# ------------------------------------------------------------------- liveness
HOLDER = textwrap.dedent(
    """
    import sys, time
    from opendev_snapshot.core import SnapshotStore, new_record
    s = SnapshotStore(sys.argv[1])
    r = new_record(sys.argv[2], "/proj")
    r["snapshot_timestamp_ms"] -= 10 * 3600 * 1000   # old: only the lock says running
    s.save(r, claim=True)
    print("claimed", flush=True)
    time.sleep(60)
    """
)


def spawn_holder(directory: Path, sid: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory), sid], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "claimed"
    return proc


def test_claimed_by_live_child_is_running_then_interrupted_when_killed(store, snapshot_dir):
    proc = spawn_holder(snapshot_dir, "child")
    try:
        (listing,) = store.list().sessions
        assert listing["status"] == RUNNING
        assert store.lock_holder("child")["pid"] == proc.pid
        assert store.claim("child") is False  # somebody else holds it
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    (listing,) = store.list().sessions
    assert listing["status"] == INTERRUPTED
    assert store.lock_holder("child") is None
    assert (snapshot_dir / "child_session_snapshot.lock").exists()
    assert store.claim("child") is True
    assert store.list().sessions[0]["status"] == RUNNING


def test_release_keeps_lock_file_and_reads_interrupted(store, snapshot_dir):
    store.save(rec("a"), claim=True)
    assert store.list(status=RUNNING).sessions
    store.release("a")
    assert (snapshot_dir / "a_session_snapshot.lock").exists()
    assert ids(store.list(status=INTERRUPTED)) == ["a"]
    assert store.list(status=RUNNING).sessions == []


def test_close_releases_all_claims(snapshot_dir):
    s = SnapshotStore(snapshot_dir)
    s.save(rec("a"), claim=True)
    s.save(rec("b"), claim=True)
    s.close()
    other = SnapshotStore(snapshot_dir)
    assert sorted(x["status"] for x in other.list().sessions) == [INTERRUPTED, INTERRUPTED]


@pytest.mark.parametrize(
    "age_ms,expected",
    [(0, RUNNING), (119_000, RUNNING), (121_000, INTERRUPTED), (-HOUR, RUNNING)],
    ids=["fresh", "just-young", "stale", "future-counts-as-now"],
)
def test_lockless_status_by_age(snapshot_dir, age_ms, expected):
    s = SnapshotStore(snapshot_dir, stale_after_ms=120_000)
    s.save(rec("a", age_ms=age_ms))
    assert s.list().sessions[0]["status"] == expected


def test_status_filter(store):
    store.save(rec("live"), claim=True)
    store.save(rec("dead", age_ms=HOUR))
    assert ids(store.list(status=RUNNING)) == ["live"]
    assert ids(store.list(status=INTERRUPTED)) == ["dead"]
    with pytest.raises(InvalidSnapshot):
        store.list(status="bogus")


# ------------------------------------------------------------ project filter
def test_project_filter_normalises(store, tmp_path):
    real = tmp_path / "work" / "proj"
    (real / "sub").mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(real)
    store.save(rec("exact", str(real)))
    store.save(rec("inside", str(real / "sub")))
    store.save(rec("via-link", str(link) + "//sub/../"))
    store.save(rec("sibling", str(real) + "-other"))
    store.save(rec("parent", str(real.parent)))
    want = ["exact", "inside", "via-link"]
    for query in (str(real), str(real) + "/", str(link), "file://" + str(real).replace(" ", "%20"), str(real / "sub" / "..")):
        assert sorted(ids(store.list(project_dir=query))) == want, query


def test_project_filter_decodes_file_uri(store, tmp_path):
    spaced = tmp_path / "my proj"
    spaced.mkdir()
    store.save(rec("a", str(spaced)))
    assert ids(store.list(project_dir="file://" + str(spaced).replace(" ", "%20"))) == ["a"]


# ------------------------------------------------------------ hostile dirs
def run_bounded(fn, timeout=10):
    box = {}

    def target():
        box["value"] = fn()

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "listing hung"
    return box["value"]


def test_hostile_directory_lists_promptly_with_reasons(store, snapshot_dir, tmp_path):
    store.save(rec("good", age_ms=HOUR))
    outside = tmp_path / "outside_session_snapshot.json"
    SnapshotStore(tmp_path / "elsewhere").save(rec("outside", age_ms=HOUR))
    outside.write_bytes((tmp_path / "elsewhere" / "outside_session_snapshot.json").read_bytes())
    d = snapshot_dir
    os.mkfifo(d / "fifo_session_snapshot.json")
    (d / "out_session_snapshot.json").symlink_to(outside)
    (d / "in_session_snapshot.json").symlink_to(d / "good_session_snapshot.json")
    (d / "dangling_session_snapshot.json").symlink_to(d / "nothing")
    (d / "huge_session_snapshot.json").write_bytes(b" " * (5 * 1024 * 1024))
    (d / "trunc_session_snapshot.json").write_bytes((d / "good_session_snapshot.json").read_bytes()[:50])
    (d / "types_session_snapshot.json").write_bytes(
        (d / "good_session_snapshot.json").read_bytes().replace(b'"session_id": "good"', b'"session_id": 1')
    )
    (d / "dir_session_snapshot.json").mkdir()
    (d / "notes.json").write_bytes((d / "good_session_snapshot.json").read_bytes())
    (d / "x_session_snapshot.json.tmp").write_bytes((d / "good_session_snapshot.json").read_bytes())
    result = run_bounded(store.list)
    assert ids(result) == ["good"]
    reasons = {s.file: s.reason for s in result.skipped}
    assert set(reasons) == {
        "fifo_session_snapshot.json", "out_session_snapshot.json", "in_session_snapshot.json",
        "dangling_session_snapshot.json", "huge_session_snapshot.json", "trunc_session_snapshot.json",
        "types_session_snapshot.json", "dir_session_snapshot.json",
    }
    assert "FIFO" in reasons["fifo_session_snapshot.json"]
    assert "symbolic link" in reasons["out_session_snapshot.json"]
    assert "1 MiB" in reasons["huge_session_snapshot.json"]
    assert "directory" in reasons["dir_session_snapshot.json"]
    assert "session_id" in reasons["types_session_snapshot.json"]
    # cleanup never hangs either and never removes what it cannot read
    cleaned = run_bounded(lambda: store.cleanup(0))
    assert cleaned.session_ids == ["good"]
    assert (d / "trunc_session_snapshot.json").exists()
    assert os.path.exists(d / "fifo_session_snapshot.json")


def test_snapshot_dir_reached_through_symlink(tmp_path):
    real = tmp_path / "real"
    SnapshotStore(real).save(rec("a", age_ms=HOUR))
    (tmp_path / "alias").symlink_to(real)
    assert ids(SnapshotStore(tmp_path / "alias").list()) == ["a"]


def test_missing_directory_lists_empty(tmp_path):
    s = SnapshotStore(tmp_path / "nope")
    assert s.list().sessions == [] and s.list().skipped == []
    assert not (tmp_path / "nope").exists()


def test_directory_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    s = SnapshotStore(tmp_path / "f")
    with pytest.raises(StorageError):
        s.save(rec("a"))
    with pytest.raises(StorageError):
        s.list()


FSIZE_CHILD = textwrap.dedent(
    """
    import resource, signal, sys
    from opendev_snapshot.core import SnapshotStore, new_record
    from opendev_snapshot.core.errors import StorageError
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    s = SnapshotStore(sys.argv[1])
    r = new_record("a", "/p")
    r["last_tool_results"] = [dict(tool_name="t", call_id="c", output_preview="x" * 5000, success=True)]
    resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
    try:
        s.save(r)
    except StorageError as exc:
        print("StorageError:", exc)
        sys.exit(3)
    """
)


def test_write_failure_is_a_storage_error_and_keeps_the_old_file(store, snapshot_dir):
    store.save(rec("a", message_count=7))
    before = (snapshot_dir / "a_session_snapshot.json").read_bytes()
    proc = subprocess.run([sys.executable, "-c", FSIZE_CHILD, str(snapshot_dir)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 3, proc.stderr
    assert "cannot write snapshot" in proc.stdout and "too large" in proc.stdout.lower()
    assert (snapshot_dir / "a_session_snapshot.json").read_bytes() == before
    assert visible(snapshot_dir) == ["a_session_snapshot.json"]  # no temporary left
    assert not [n for n in os.listdir(snapshot_dir) if n.endswith(".tmp")]


def test_corrupt_file_load_is_a_storage_error(store, snapshot_dir):
    store.save(rec("a"))
    (snapshot_dir / "a_session_snapshot.json").write_text("{")
    with pytest.raises(StorageError) as info:
        store.load("a")
    assert "corrupt" in str(info.value)


# --------------------------------------------------------------------- cleanup
def test_cleanup_semantics(snapshot_dir):
    s = SnapshotStore(snapshot_dir)
    s.save(rec("old-done", age_ms=48 * HOUR, completed=True))
    s.save(rec("old-dead", age_ms=48 * HOUR), claim=True)
    s.release("old-dead")
    s.save(rec("old-live", age_ms=48 * HOUR), claim=True)
    s.save(rec("old-lockless", age_ms=48 * HOUR))
    s.save(rec("young", age_ms=HOUR))
    dry = s.cleanup(24 * HOUR, dry_run=True)
    assert dry.dry_run and dry.session_ids == ["old-dead", "old-done", "old-lockless"]
    assert len(visible(snapshot_dir)) == 7  # nothing removed (5 snapshots, 2 lock files)
    keep = s.cleanup(24 * HOUR, include_incomplete=False)
    assert keep.session_ids == ["old-done"]
    res = s.cleanup(24 * HOUR)
    assert res.removed_count == 2 and res.session_ids == ["old-dead", "old-lockless"]
    assert visible(snapshot_dir) == [
        "old-live_session_snapshot.json", "old-live_session_snapshot.lock", "young_session_snapshot.json",
    ]
    s.close()


def test_cleanup_sweeps_stale_temporaries_and_orphan_locks(store, snapshot_dir):
    store.save(rec("a", age_ms=HOUR))
    old = time.time() - 2 * 3600
    for name in (".a_session_snapshot.json.1-abc.tmp", "a_session_snapshot.json.tmp"):
        (snapshot_dir / name).write_text("{")
        os.utime(snapshot_dir / name, (old, old))
    (snapshot_dir / ".b_session_snapshot.json.2-def.tmp").write_text("{")  # fresh: in flight
    (snapshot_dir / "orphan_session_snapshot.lock").write_text("pid=1")
    store.claim("held-orphan")  # locked, no snapshot: must stay
    assert ids(store.list()) == ["a"]  # temporaries never show up as sessions
    res = store.cleanup(10 * 24 * HOUR)
    assert res.session_ids == [] and res.temp_files_removed == 2 and res.lock_files_removed == 1
    assert sorted(n for n in os.listdir(snapshot_dir) if n not in (INDEX_NAME, ".opendev-update.lock")) == [
        ".b_session_snapshot.json.2-def.tmp", "a_session_snapshot.json", "held-orphan_session_snapshot.lock",
    ]


def test_cleanup_rejects_bad_age(store):
    with pytest.raises(InvalidSnapshot):
        store.cleanup(-1)


# ------------------------------------------------------------ caches & index
def count_decodes(monkeypatch) -> list:
    from opendev_snapshot.core import codec

    calls = []
    real = codec.decode

    def counting(data):
        calls.append(1)
        return real(data)

    monkeypatch.setattr(codec, "decode", counting)
    return calls


def test_fresh_store_uses_index_but_sees_changes(snapshot_dir, monkeypatch):
    from opendev_snapshot.core import cache

    monkeypatch.setattr(cache, "RACY_NS", 0)  # pretend the files are old
    s = SnapshotStore(snapshot_dir)
    for i in range(20):
        s.save(rec(f"s{i}", "/p/one" if i < 3 else "/p/other", age_ms=HOUR + i * 60_000))
    assert len(s.list().sessions) == 20
    s.flush_index()
    assert (snapshot_dir / INDEX_NAME).exists()
    calls = count_decodes(monkeypatch)
    assert ids(SnapshotStore(snapshot_dir).list(project_dir="/p/one")) == ["s0", "s1", "s2"]
    assert len(calls) == 3  # only the listed files are read, not all 20
    # an in-place rewrite (not via rename) in a later tick is seen by a fresh process
    time.sleep(0.02)
    target = snapshot_dir / "s0_session_snapshot.json"
    data = target.read_bytes().replace(b'"completed": false', b'"completed": true ')
    with open(target, "r+b") as f:
        f.write(data)
    assert ids(SnapshotStore(snapshot_dir).list(project_dir="/p/one")) == ["s1", "s2"]


def test_racy_entries_stay_out_of_the_index(snapshot_dir, monkeypatch):
    s = SnapshotStore(snapshot_dir)
    s.save(rec("fresh", age_ms=HOUR))
    s.list()
    s.flush_index()
    calls = count_decodes(monkeypatch)
    # same-tick in-place rewrite of the same size: only ctime/mtime could tell, and they may not
    target = snapshot_dir / "fresh_session_snapshot.json"
    with open(target, "r+b") as f:
        f.write(target.read_bytes().replace(b'"completed": false', b'"completed": true '))
    assert SnapshotStore(snapshot_dir).list().sessions == []
    assert len(calls) == 1


def test_corrupt_index_is_ignored(snapshot_dir):
    s = SnapshotStore(snapshot_dir)
    s.save(rec("a", age_ms=HOUR))
    s.list()
    s.flush_index()
    (snapshot_dir / INDEX_NAME).write_bytes(b"garbage")
    os.chmod(snapshot_dir / INDEX_NAME, 0o600)
    assert ids(SnapshotStore(snapshot_dir).list()) == ["a"]


def test_index_lies_are_caught_by_stat_keys(snapshot_dir):
    """An index claiming a different project for an unchanged key is only trusted
    while the file's stat key matches; a rename-based save changes the key."""
    s = SnapshotStore(snapshot_dir)
    s.save(rec("a", "/p1", age_ms=HOUR))
    assert ids(s.list(project_dir="/p1")) == ["a"]
    s.save(rec("a", "/p2", age_ms=HOUR))
    fresh = SnapshotStore(snapshot_dir)
    assert ids(fresh.list(project_dir="/p2")) == ["a"]
    assert ids(fresh.list(project_dir="/p1")) == []


@pytest.mark.parametrize("watch", [True, False], ids=["inotify", "stat-scan"])
def test_warm_listing_reflects_every_change(snapshot_dir, watch):
    s = SnapshotStore(snapshot_dir, watch=watch)
    other = SnapshotStore(snapshot_dir)
    assert s.list().sessions == []
    other.save(rec("a", age_ms=HOUR))
    assert ids(s.list()) == ["a"]
    other.save(rec("b", age_ms=HOUR - 1))
    other.save(rec("a", age_ms=HOUR, completed=True))
    assert ids(s.list()) == ["b"]
    other.remove("b")
    assert ids(s.list()) == []
    # many same-tick rewrites are never missed
    for i in range(30):
        other.save(rec("c", age_ms=HOUR, message_count=i))
        assert s.list().sessions[0]["message_count"] == i
    # an in-place rewrite of the same size in the same tick
    path = snapshot_dir / "c_session_snapshot.json"
    data = path.read_bytes()
    with open(path, "r+b") as f:
        f.write(data.replace(b'"message_count": 29', b'"message_count": 31'))
    assert s.list().sessions[0]["message_count"] == 31
    s.close()


def test_watch_reports_lock_holder_death(snapshot_dir):
    s = SnapshotStore(snapshot_dir, watch=True)
    proc = spawn_holder(snapshot_dir, "w")
    s.refresh()
    assert s.watcher_fileno() is not None
    proc.kill()
    proc.wait(10)
    deadline = time.monotonic() + 5
    changed = set()
    while time.monotonic() < deadline and "w_session_snapshot.lock" not in changed:
        changed |= s.refresh()
        time.sleep(0.05)
    assert "w_session_snapshot.lock" in changed
    assert s.list().sessions[0]["status"] == INTERRUPTED
    s.close()


def test_next_stale_deadline(snapshot_dir):
    s = SnapshotStore(snapshot_dir, stale_after_ms=120_000)
    s.save(rec("a", age_ms=100_000))
    s.save(rec("b", age_ms=10_000))
    s.list()
    deadline = s.next_stale_deadline_ms()
    assert deadline is not None and abs(deadline - (now_ms() + 20_000)) < 2_000


# --------------------------------------------------------------------- paths
def test_snapshot_dir_precedence(tmp_path):
    env = {"OPENDEV_SNAPSHOT_DIR": str(tmp_path / "env"), "HOME": str(tmp_path / "home")}
    assert resolve_snapshot_dir("cli", "init", env) == Path(os.path.abspath("cli"))
    assert resolve_snapshot_dir(None, str(tmp_path / "init"), env) == tmp_path / "init"
    assert resolve_snapshot_dir(None, None, env) == tmp_path / "env"
    assert resolve_snapshot_dir(None, None, {"HOME": str(tmp_path / "h")}) == tmp_path / "h" / ".opendev" / "data" / "recovery"


def test_no_home_is_a_clear_error(monkeypatch):
    from opendev_snapshot.core import paths
    from opendev_snapshot.core.errors import ConfigError

    monkeypatch.setattr(paths, "_home", lambda env: None)
    with pytest.raises(ConfigError) as info:
        resolve_snapshot_dir(None, None, {})
    assert "OPENDEV_SNAPSHOT_DIR" in str(info.value)


def test_cleanup_leaves_a_session_rewritten_meanwhile(snapshot_dir, monkeypatch):
    s = SnapshotStore(snapshot_dir)
    s.save(rec("dead", age_ms=48 * HOUR), claim=True)
    s.release("dead")
    from opendev_snapshot.core import cleanup as cleanup_module

    real = cleanup_module._same_file
    monkeypatch.setattr(cleanup_module, "_same_file", lambda path, key: real(path, ("changed",)))
    holder_text = (snapshot_dir / "dead_session_snapshot.lock").read_bytes()
    assert s.cleanup(HOUR).session_ids == []
    assert (snapshot_dir / "dead_session_snapshot.lock").read_bytes() == holder_text  # not rewritten by cleanup
    assert (snapshot_dir / "dead_session_snapshot.json").exists()
    assert (snapshot_dir / "dead_session_snapshot.lock").exists()  # its lock file is not ours to drop
    assert s.list().sessions[0]["status"] == INTERRUPTED
