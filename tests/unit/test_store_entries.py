"""Hostile directory entries (issue 9, findings 8, 9 and 10, the listing side).

- Something that is not a regular file at a *lock* path (a FIFO, a socket,
  a link, a directory) is never opened nor followed, and is reported in
  ``skipped``; the session itself is judged as one without a lock file.
  An inotify spy on the directory proves nothing opened the FIFO (opening
  it would release a writer blocked on it).
- A name that is not valid UTF-8 is skipped with a reason; ``file`` is
  printable (``\\xNN``), ``name`` the real name, and nothing that reaches
  JSON carries a lone surrogate.
- A file whose ``session_id`` is not its name is skipped: listed once (from
  its own file), never following the other session's lock.
Each is checked in a fresh store, a watching store and a store starting
from the persistent index.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from opendev_snapshot.core import INTERRUPTED, RUNNING, SnapshotStore
from opendev_snapshot.core import liveness

from helpers import HOUR, LOCK, SNAP, aged_record, listed_ids, OpenSpy


rec = functools.partial(aged_record, project="/home/u/proj")


ids = listed_ids


STORES = ["fresh", "watching", "from-index"]


def make_store(kind: str, directory, monkeypatch):
    if kind == "from-index":
        from opendev_snapshot.core import cache

        monkeypatch.setattr(cache, "RACY_NS", 0)  # so the index vouches for every file
        with SnapshotStore(directory) as first:
            first.list(include_completed=True)
            first.flush_index()
    store = SnapshotStore(directory, watch=kind == "watching")
    if kind == "watching":
        store.list()
    return store


# ------------------------------------------------------------ finding 8
BLOCKED_WRITER = textwrap.dedent(
    """
    import os, sys
    print("opening", flush=True)
    fd = os.open(sys.argv[1], os.O_WRONLY)  # blocks until somebody opens the FIFO for reading
    os.write(fd, b"released")
    """
)


def plant(kind: str, path) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.close()
    elif kind == "link":
        target = path.parent.parent / "elsewhere.lock"
        target.write_text("{}")
        os.symlink(target, path)
    elif kind == "directory":
        path.mkdir()


@pytest.mark.parametrize("kind", ["fifo", "socket", "link", "directory"])
@pytest.mark.parametrize("store_kind", STORES)
def test_no_lock_file_at_the_lock_path_is_never_opened_and_is_reported(snapshot_dir, monkeypatch, kind, store_kind):
    with SnapshotStore(snapshot_dir) as writer:
        writer.save(rec("old"))  # lock-less and old: interrupted
        writer.save(rec("young", age_ms=1000))  # lock-less and young: running
    for sid in ("old", "young"):
        plant(kind, snapshot_dir / (sid + LOCK))
    store = make_store(store_kind, snapshot_dir, monkeypatch)
    spy = OpenSpy(snapshot_dir)
    try:
        result = store.list()
        assert {s["session_id"]: s["status"] for s in result.sessions} == {"old": INTERRUPTED, "young": RUNNING}
        reasons = {s.file: s.reason for s in result.skipped}
        assert set(reasons) == {"old" + LOCK, "young" + LOCK}, reasons
        word = {"fifo": "FIFO", "socket": "socket", "link": "symbolic link", "directory": "directory"}[kind]
        assert word in reasons["old" + LOCK]
        assert store.lock_holder("old") is None
        assert liveness.probe(str(snapshot_dir / ("old" + LOCK))) == liveness.FOREIGN
        store.refresh()
        store.safety_check()
        assert {"old" + LOCK, "young" + LOCK}.isdisjoint(spy.touched()), "a lock path that is not a file was opened"
    finally:
        spy.close()
        store.close()


def test_a_writer_blocked_on_a_fifo_at_the_lock_path_stays_blocked(snapshot_dir):
    with SnapshotStore(snapshot_dir) as writer:
        writer.save(rec("victim"))
    fifo = snapshot_dir / ("victim" + LOCK)
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "-c", BLOCKED_WRITER, str(fifo)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"opening\n"
        spy = OpenSpy(snapshot_dir)
        with SnapshotStore(snapshot_dir, watch=True) as store:
            for _ in range(3):
                assert ids(store.list()) == ["victim"]
                store.safety_check()
            store.status_of(store.load("victim"))
        assert "victim" + LOCK not in spy.touched()  # nobody opened it: the writer is still blocked
        spy.close()
        assert proc.poll() is None
        # now we release it ourselves: that is what a listing used to do
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        try:
            assert proc.wait(30) == 0
        finally:
            os.close(fd)
    finally:
        proc.kill()
        proc.wait(30)
        proc.stdout.close()


# ------------------------------------------------------------ finding 9
RAW = b"caf\xe9-\xff" + SNAP.encode()
PRINTABLE = "caf\\xe9-\\xff" + SNAP


@pytest.mark.parametrize("store_kind", STORES)
def test_a_name_that_is_not_utf8_is_skipped_printably(snapshot_dir, monkeypatch, store_kind):
    with SnapshotStore(snapshot_dir) as writer:
        writer.save(rec("good"))
    content = (snapshot_dir / ("good" + SNAP)).read_bytes()
    with open(os.path.join(os.fsencode(snapshot_dir), RAW), "wb") as f:
        f.write(content)
    with open(os.path.join(os.fsencode(snapshot_dir), b"x\xfe" + LOCK.encode()), "wb") as f:
        f.write(b"{}")
    store = make_store(store_kind, snapshot_dir, monkeypatch)
    try:
        result = store.list()
        assert ids(result) == ["good"]
        skipped = {s.file: s for s in result.skipped}
        assert set(skipped) == {PRINTABLE, "x\\xfe" + LOCK}
        assert "UTF-8" in skipped[PRINTABLE].reason
        assert os.fsencode(skipped[PRINTABLE].name) == RAW  # the real name, for trash_files
        text = json.dumps({"skipped": [s.to_dict() for s in result.skipped], "sessions": result.sessions}, ensure_ascii=False)
        text.encode("utf-8")  # no lone surrogate anywhere
    finally:
        store.close()


def test_cli_list_json_with_a_name_that_is_not_utf8(snapshot_dir):
    with SnapshotStore(snapshot_dir) as writer:
        writer.save(rec("good"))
    with open(os.path.join(os.fsencode(snapshot_dir), RAW), "wb") as f:
        f.write((snapshot_dir / ("good" + SNAP)).read_bytes())
    proc = subprocess.run(
        [sys.executable, "-m", "opendev_snapshot", "--dir", str(snapshot_dir), "list", "--json"],
        capture_output=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
    listing = json.loads(proc.stdout.decode("utf-8"))  # strict UTF-8: no surrogates got through
    assert [s["sessionId"] for s in listing["sessions"]] == ["good"]
    assert [s["file"] for s in listing["skipped"]] == [PRINTABLE]


# ------------------------------------------------------------ finding 10
HOLDER = textwrap.dedent(
    """
    import sys, time
    from opendev_snapshot.core import SnapshotStore
    assert SnapshotStore(sys.argv[1]).claim(sys.argv[2])
    print("claimed", flush=True)
    time.sleep(300)
    """
)


@pytest.mark.parametrize("store_kind", STORES)
def test_a_copy_under_another_name_is_skipped(snapshot_dir, monkeypatch, store_kind):
    with SnapshotStore(snapshot_dir) as writer:
        writer.save(rec("abc"))
        writer.save(rec("lone"))
    content = (snapshot_dir / ("abc" + SNAP)).read_bytes()
    (snapshot_dir / ("abc-backup" + SNAP)).write_bytes(content)
    (snapshot_dir / ("renamed" + SNAP)).write_bytes((snapshot_dir / ("lone" + SNAP)).read_bytes())
    os.unlink(snapshot_dir / ("lone" + SNAP))  # its only file now carries another name
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(snapshot_dir), "abc"], stdout=subprocess.PIPE, text=True)
    store = None
    try:
        assert proc.stdout.readline().strip() == "claimed"
        store = make_store(store_kind, snapshot_dir, monkeypatch)
        result = store.list()
        assert [(s["session_id"], s["status"], os.path.basename(s["path"])) for s in result.sessions] == [
            ("abc", RUNNING, "abc" + SNAP)
        ]
        reasons = {s.file: s.reason for s in result.skipped}
        assert reasons == {
            "abc-backup" + SNAP: "session_id 'abc' differs from its file name",
            "renamed" + SNAP: "session_id 'lone' differs from its file name",
        }
        assert ids(store.list(status=INTERRUPTED)) == []
    finally:
        if store is not None:
            store.close()
        proc.kill()
        proc.wait(30)
        proc.stdout.close()


def test_a_watching_store_sees_a_file_turn_into_a_copy(snapshot_dir):
    with SnapshotStore(snapshot_dir, watch=True) as store:
        store.save(rec("a"))
        store.save(rec("b", age_ms=HOUR + 60_000))
        assert ids(store.list()) == ["a", "b"]
        (snapshot_dir / ("b" + SNAP)).write_bytes((snapshot_dir / ("a" + SNAP)).read_bytes())  # in place
        result = store.list()
        assert ids(result) == ["a"]
        assert [s.file for s in result.skipped] == ["b" + SNAP]
