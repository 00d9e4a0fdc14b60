"""The start-up pre-scan child: a real fork with a real store, asked over its pipe."""

from __future__ import annotations

import os
import time

import pytest

from opendev_snapshot.core import SnapshotStore, new_record
from opendev_snapshot.server.prescan import MAX_SESSIONS, Prescan, interrupted_sessions
from opendev_snapshot.server.wire import list_result_to_wire

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the pre-scan forks (POSIX only)")


def seed(directory, sid: str, project: str, age_ms: int = 600_000, **fields) -> None:
    record = new_record(sid, project)
    record["snapshot_timestamp_ms"] = int(time.time() * 1000) - age_ms
    record.update(fields)
    with SnapshotStore(directory, use_index=False) as store:
        store.save(record)


@pytest.fixture
def prescan(snapshot_dir):
    snapshot_dir.mkdir(mode=0o700)
    seed(snapshot_dir, "old", "/w/a", age_ms=900_000)
    seed(snapshot_dir, "new", "/w/a/sub", age_ms=300_000)
    seed(snapshot_dir, "fresh", "/w/a", age_ms=1_000)
    seed(snapshot_dir, "other", "/w/b")
    child = Prescan.start(str(snapshot_dir))
    assert child is not None
    yield child
    child.close()


def test_answers_what_the_parent_would_compute(prescan, snapshot_dir):
    with SnapshotStore(snapshot_dir, use_index=False) as store:
        expected = [interrupted_sessions(store, "/w/a"), interrupted_sessions(store, "/w/c")]
        listed = list_result_to_wire(store.list(project_dir="/w/a"))
    assert prescan.interrupted(120_000, ["/w/a", "/w/c"]) == expected
    assert [s["sessionId"] for s in expected[0]] == ["new", "old"]
    assert prescan.list_incomplete(120_000, "/w/a", None, None) == listed
    assert prescan.interrupted(1_000_000, ["/w/a"]) == [[]]  # staleAfterMs of the question applies


def test_sees_changes_made_after_its_scan(prescan, snapshot_dir):
    assert prescan.interrupted(120_000, ["/w/b"])[0][0]["sessionId"] == "other"
    seed(snapshot_dir, "later", "/w/b", age_ms=200_000)
    assert [s["sessionId"] for s in prescan.interrupted(120_000, ["/w/b"])[0]] == ["later", "other"]


def test_leaves_the_unusual_to_the_parent(prescan, snapshot_dir):
    assert prescan.list_incomplete(120_000, 5, None, None) is None  # invalid: the parent reports it
    assert prescan.list_incomplete(120_000, None, None, -1) is None
    for i in range(MAX_SESSIONS + 1):
        seed(snapshot_dir, f"bulk-{i}", "/w/big")
    assert prescan.list_incomplete(120_000, "/w/big", None, None) is None  # cheaper to scan oneself
    assert prescan.interrupted(120_000, ["/w/a"]) is not None  # and it still answers


def test_serves_only_its_directory_and_ends_with_its_pipe(prescan, snapshot_dir, tmp_path):
    assert prescan.serves(str(snapshot_dir)) and not prescan.serves(str(tmp_path))
    pid = prescan.pid
    prescan.close()
    assert not prescan.serves(str(snapshot_dir))
    assert prescan.interrupted(120_000, ["/w/a"]) is None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.02)
    else:
        pytest.fail("the pre-scan child outlived its pipe")


def test_off_by_environment_and_without_a_directory(snapshot_dir, monkeypatch, tmp_path):
    assert Prescan.start(str(tmp_path / "missing")) is None
    monkeypatch.setenv("OPENDEV_SNAPSHOT_NO_PRESCAN", "1")
    assert Prescan.start(str(tmp_path)) is None
