"""Durability under SIGKILL and concurrency: no torn file is ever seen.

Round counts are bounded for CI; set OPENDEV_TORTURE_ROUNDS for a longer run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from opendev_snapshot.core import SnapshotStore
from opendev_snapshot.core.codec import decode

ROUNDS = int(os.environ.get("OPENDEV_TORTURE_ROUNDS", "25"))

WRITER = textwrap.dedent(
    """
    import sys
    from opendev_snapshot.core import SnapshotStore, new_record
    directory, tag = sys.argv[1], sys.argv[2]
    s = SnapshotStore(directory, use_index=False)
    i = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    print("ready", flush=True)
    while True:
        for sid in ("alpha", "beta", "gamma"):
            r = new_record(sid, "/proj/" + tag)
            r["message_count"] = i
            r["last_tool_results"] = [
                {"tool_name": tag, "call_id": str(i), "output_preview": tag * (50 + i % 400), "success": i % 2 == 0}
            ]
            s.save(r, claim=False)
        i += 1
    """
)


def _check_versions(directory, tag_max: dict) -> None:
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if name.endswith("_session_snapshot.json"):
            with open(path, "rb") as f:
                record = decode(f.read())  # raises on any torn or partial file
            entry = record["last_tool_results"][0]
            tag = entry["tool_name"]
            i = int(entry["call_id"])
            assert record["message_count"] == i
            assert entry["output_preview"] == tag * (50 + i % 400), "content from two versions mixed"
            assert record["project_dir"] == "/proj/" + tag
            tag_max[tag] = max(tag_max.get(tag, 0), i)
        else:
            assert name.endswith(".tmp") or name.startswith(".opendev-index") or name == ".opendev-update.lock", f"unexpected file {name}"
            assert not name.endswith(".json")


@pytest.mark.slow
def test_writer_killed_at_random_instants_never_corrupts(tmp_path):
    rng = random.Random(1234)
    directory = tmp_path / "snaps"
    seen: dict = {}
    start = 0
    for _round in range(ROUNDS):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(directory), "w", str(start)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.03))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        before = seen.get("w", -1)
        _check_versions(directory, seen)
        assert seen.get("w", -1) >= before  # never goes back to an older version
        start = seen.get("w", 0) + 1
    # temporaries left by killed writers never show up as sessions
    listing = SnapshotStore(directory).list()
    assert sorted(s["session_id"] for s in listing.sessions) == ["alpha", "beta", "gamma"]
    assert listing.skipped == []


@pytest.mark.slow
def test_concurrent_writers_and_listers_never_see_partial_files(tmp_path):
    directory = tmp_path / "snaps"
    SnapshotStore(directory).ensure_dir()
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(directory), tag], stdout=subprocess.PIPE, text=True)
        for tag in ("x", "y", "z")
    ]
    try:
        for w in writers:
            assert w.stdout.readline().strip() == "ready"
        warm = SnapshotStore(directory, watch=True)
        deadline = time.monotonic() + 3.0
        listings = 0
        tags: dict = {}
        while time.monotonic() < deadline:
            for s in (warm, SnapshotStore(directory)):
                result = s.list()
                assert result.skipped == [], result.skipped
                assert sorted(x["session_id"] for x in result.sessions) in ([], ["alpha"], ["alpha", "beta"], ["alpha", "beta", "gamma"])
                for listing in result.sessions:
                    entry = listing["last_tool_results"][0]
                    assert entry["output_preview"] == entry["tool_name"] * (50 + int(entry["call_id"]) % 400)
                listings += 1
            _check_versions(directory, tags)
        assert listings > 10
        assert set(tags) <= {"x", "y", "z"} and tags
        warm.close()
    finally:
        for w in writers:
            w.kill()
            w.wait(10)


def test_json_module_agrees_with_written_files(tmp_path):
    """A sanity check that what survives a crash is plain JSON to any reader."""
    directory = tmp_path / "snaps"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(directory), "j"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    proc.kill()
    proc.wait(10)
    files = sorted(directory.glob("*_session_snapshot.json"))
    assert files
    for path in files:
        assert json.loads(path.read_text("utf-8"))["project_dir"] == "/proj/j"
