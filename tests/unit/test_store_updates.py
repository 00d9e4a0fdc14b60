"""Serialised read-modify-write across processes (issue 9 finding 3)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from opendev_snapshot.core import SnapshotStore, new_record
from opendev_snapshot.core.errors import InvalidSnapshot, SessionNotFound, StorageError
from opendev_snapshot.core.serial import UpdateLocks, offset_of

APPENDER = textwrap.dedent(
    """
    import sys
    from opendev_snapshot.core import SnapshotStore
    directory, tag, n, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    store = SnapshotStore(directory)
    print("ready", flush=True)
    sys.stdin.readline()  # everyone starts together
    for i in range(n):
        count = store.record_tool_result(
            "shared", {"tool_name": tag, "call_id": f"{tag}-{i}", "output_preview": "x" * 300, "success": True},
            max_entries=100_000,
        )
        print(f"ack {tag}-{i} {count}", flush=True)
    """
)


def test_appends_from_several_processes_are_all_on_disk(snapshot_dir):
    store = SnapshotStore(snapshot_dir)
    store.save(new_record("shared", "/proj"))
    procs, n = [], 40
    for tag in ("a", "b", "c"):
        proc = subprocess.Popen(
            [sys.executable, "-c", APPENDER, str(snapshot_dir), tag, str(n), "go"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert proc.stdout.readline().strip() == "ready"
        procs.append(proc)
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    acked = set()
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        acked |= {line.split()[1] for line in out.splitlines() if line.startswith("ack ")}
    assert len(acked) == 3 * n
    on_disk = [t["call_id"] for t in store.load("shared")["last_tool_results"]]
    assert sorted(on_disk) == sorted(acked), f"{len(acked) - len(on_disk)} acknowledged appends lost"
    for tag in "abc":  # each process's own appends stay in its order
        mine = [c for c in on_disk if c.startswith(tag + "-")]
        assert mine == [f"{tag}-{i}" for i in range(n)]
    store.close()


def test_update_runs_fn_on_the_current_record_and_saves(store):
    store.save(new_record("s", "/p"))
    out = store.update("s", lambda r: r.update(message_count=r["message_count"] + 5))
    assert out["message_count"] == 5 and store.load("s")["message_count"] == 5
    with pytest.raises(SessionNotFound):
        store.update("missing", lambda r: None)
    with pytest.raises(InvalidSnapshot):
        store.update("s", lambda r: r.update(session_id="other"))
    with pytest.raises(InvalidSnapshot):
        store.update("s", lambda r: r.update(message_count=-1))
    assert store.load("s")["message_count"] == 5  # a refused update writes nothing


def test_update_lock_is_per_session_and_times_out_with_a_clear_error(snapshot_dir):
    snapshot_dir.mkdir()
    holder = UpdateLocks(str(snapshot_dir))
    waiter = UpdateLocks(str(snapshot_dir), timeout=0.2)
    with holder.hold("a"):
        with waiter.hold("b"):
            pass  # another session is not blocked
        with pytest.raises(StorageError, match="timed out after 0.2 s waiting for another process's update of session 'a'"):
            with waiter.hold("a"):
                pass
    with waiter.hold("a"):
        pass
    assert offset_of("a") % 2 == 0 and offset_of("a") < 2**62


def test_update_lock_follows_a_replaced_directory(snapshot_dir, tmp_path):
    """The directory deleted and re-created: the lock is taken on the new file,
    so processes that open it afresh are still serialised with us."""
    snapshot_dir.mkdir()
    locks = UpdateLocks(str(snapshot_dir), timeout=0.2)
    with locks.hold("a"):
        pass
    old = tmp_path / "old"
    snapshot_dir.rename(old)
    snapshot_dir.mkdir()
    fresh = UpdateLocks(str(snapshot_dir), timeout=0.2)
    with locks.hold("a"):
        with pytest.raises(StorageError, match="timed out"):
            with fresh.hold("a"):
                pass
