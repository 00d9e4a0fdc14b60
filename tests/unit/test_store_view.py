"""A long-lived store's view (issue 9, findings 4 and 5).

The change feed misses things: the directory deleted and re-created while
something pins the old one, a symlinked directory re-pointed, a parent
renamed, a write through a hard link elsewhere, another host on a network
file system, a lock holder that opened its lock file read-only. Each case
here makes the change, runs one forced safety check (no test waits 10 s)
and asserts the listing is exact. The IN_CLOSE_NOWRITE cases assert that
a read-only holder's death is reported by the next ``refresh`` and that
probes (ours, another store's) never wake anyone into doing anything.
"""

from __future__ import annotations

import functools
import os
import select
import shutil
import subprocess
import sys
import textwrap

import pytest

from opendev_snapshot.core import INTERRUPTED, RUNNING, SnapshotStore
from opendev_snapshot.core import cache as cache_module
from opendev_snapshot.core import catalog as catalog_module
from opendev_snapshot.core import codec as codec_module
from opendev_snapshot.core import dirscan as dirscan_module
from opendev_snapshot.core.store import now_ms
from opendev_snapshot.core.watch import DirWatcher

from helpers import HOUR, LOCK, SNAP, aged_record, listed_ids


rec = functools.partial(aged_record, project="/home/u/proj")


ids = listed_ids


def save_elsewhere(directory, sid: str, **extra) -> None:
    """A save by another store (as another process would make it)."""
    with SnapshotStore(directory, use_index=False) as other:
        other.save(rec(sid, **extra))


def truth(directory) -> list:
    return ids(SnapshotStore(directory, use_index=False).list(include_completed=True))


@pytest.fixture
def watching(snapshot_dir):
    snapshot_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    s = SnapshotStore(snapshot_dir, watch=True)
    yield s
    s.close()


# ------------------------------------------------------------ finding 4
def test_directory_recreated_while_a_lock_fd_is_held(snapshot_dir, watching):
    watching.save(rec("held"), claim=True)  # an open lock fd pins the old directory
    assert ids(watching.list()) == ["held"]
    assert watching.watcher_fileno() is not None
    shutil.rmtree(snapshot_dir)
    snapshot_dir.mkdir(mode=0o700)
    save_elsewhere(snapshot_dir, "fresh")
    watching.list()  # whatever the feed says now, the safety check sets it right
    changed = watching.safety_check()
    assert "fresh" + SNAP in changed
    assert ids(watching.list()) == ["fresh"] == truth(snapshot_dir)
    assert all(watching.load(s["session_id"]) for s in watching.list().sessions)
    # the watch follows the new directory: the next save is seen without a safety check
    save_elsewhere(snapshot_dir, "later", age_ms=HOUR - 60_000)
    assert ids(watching.list()) == ["later", "fresh"]


def test_symlinked_directory_repointed(tmp_path):
    one, two, link = tmp_path / "one", tmp_path / "two", tmp_path / "link"
    save_elsewhere(one, "in-one")
    save_elsewhere(two, "in-two")
    link.symlink_to(one)
    with SnapshotStore(link, watch=True) as s:
        assert ids(s.list()) == ["in-one"]
        (tmp_path / "link.new").symlink_to(two)
        os.replace(tmp_path / "link.new", link)  # re-pointed atomically
        s.list()
        assert {"in-one" + SNAP, "in-two" + SNAP} <= s.safety_check()
        assert ids(s.list()) == ["in-two"]
        save_elsewhere(two, "two-later", age_ms=HOUR - 60_000)
        save_elsewhere(one, "one-later", age_ms=HOUR - 60_000)
        assert ids(s.list()) == ["two-later", "in-two"]  # watching two now, not one


def test_parent_renamed(tmp_path):
    directory = tmp_path / "parent" / "snaps"
    save_elsewhere(directory, "a")
    with SnapshotStore(directory, watch=True) as s:
        assert ids(s.list()) == ["a"]
        os.rename(tmp_path / "parent", tmp_path / "moved")
        directory.mkdir(parents=True, mode=0o700)
        save_elsewhere(directory, "b")
        s.list()
        s.safety_check()
        assert ids(s.list()) == ["b"] == truth(directory)
        save_elsewhere(tmp_path / "moved" / "snaps", "ghost", age_ms=HOUR - 60_000)
        save_elsewhere(directory, "c", age_ms=HOUR - 120_000)
        assert ids(s.list()) == ["c", "b"]


def test_in_place_write_through_a_hard_link(tmp_path, watching, snapshot_dir, monkeypatch):
    monkeypatch.setattr(cache_module, "RACY_NS", 0)  # the key comparison alone must catch it
    watching.save(rec("a", message_count=11))
    assert watching.list().sessions[0]["message_count"] == 11
    outside = tmp_path / "outside"
    outside.mkdir()
    os.link(snapshot_dir / ("a" + SNAP), outside / "alias.json")
    data = (outside / "alias.json").read_bytes()
    with open(outside / "alias.json", "r+b") as f:  # in place, through another directory
        f.write(data.replace(b'"message_count": 11', b'"message_count": 123'))
    watching.list()
    assert watching.safety_check() == {"a" + SNAP}
    assert watching.list().sessions[0]["message_count"] == 123


class SilentWatcher(DirWatcher):
    """inotify on NFS: other hosts' changes never show up; statfs says "nfs"."""

    def drain(self):
        super().drain()
        return {}

    def _fs_type(self, path):
        return 0x6969  # NFS_SUPER_MAGIC


def test_network_file_system_silent_feed(snapshot_dir, monkeypatch):
    monkeypatch.setattr(catalog_module, "DirWatcher", SilentWatcher)
    snapshot_dir.mkdir(mode=0o700)
    with SnapshotStore(snapshot_dir, watch=True) as s:
        assert s.list().sessions == [] and s.watcher_fileno() is not None
        save_elsewhere(snapshot_dir, "remote")
        s.list()
        assert "remote" + SNAP in s.safety_check()
        assert ids(s.list()) == ["remote"]
        # a long-lived store that nobody gives a timer: the listing runs the check itself
        save_elsewhere(snapshot_dir, "remote-2", age_ms=HOUR - 60_000)
        monkeypatch.setattr(catalog_module, "SAFETY_INTERVAL_S", 0.0)
        assert ids(s.list()) == ["remote-2", "remote"]


def test_no_inotify_at_all_lists_exactly(snapshot_dir, monkeypatch):
    monkeypatch.setattr(DirWatcher, "create", classmethod(lambda cls: None))
    with SnapshotStore(snapshot_dir, watch=True) as s:
        assert s.watcher_fileno() is None
        for i in range(3):
            save_elsewhere(snapshot_dir, f"s{i}", age_ms=HOUR - 60_000 * i)
            assert ids(s.list()) == [f"s{j}" for j in range(i, -1, -1)]
        s.safety_check()
        assert ids(s.list()) == ["s2", "s1", "s0"]


class NfsWatcher(DirWatcher):
    """inotify that works, on a file system statfs calls NFS."""

    def _fs_type(self, path):
        return 0x6969


@pytest.mark.parametrize("fs", ["local", "nfs"])
def test_safety_check_reads_only_what_changed(snapshot_dir, monkeypatch, fs):
    if fs == "nfs":
        monkeypatch.setattr(catalog_module, "DirWatcher", NfsWatcher)
    monkeypatch.setattr(cache_module, "RACY_NS", 0)  # files and the directory: nothing is "just written"
    monkeypatch.setattr(dirscan_module, "DIR_RACY_NS", 0)
    snapshot_dir.mkdir(mode=0o700)
    watching = SnapshotStore(snapshot_dir, watch=True)
    for i in range(30):
        watching.save(rec(f"s{i}", age_ms=HOUR + i))
    watching.list()  # (writes the index: the directory changed once more)
    watching.safety_check()
    decodes, listings = [], []
    real_decode, real_scandir = codec_module.decode, os.scandir
    monkeypatch.setattr(codec_module, "decode", lambda data: decodes.append(1) or real_decode(data))
    monkeypatch.setattr(os, "scandir", lambda path: listings.append(path) or real_scandir(path))
    assert watching.safety_check() == set()
    assert decodes == [] and listings == []  # a quiet directory: one stat of it, one lstat per file
    save_elsewhere(snapshot_dir, "new")
    st = os.stat(snapshot_dir)  # (a kernel with coarse timestamps could give the same tick: make it differ)
    os.utime(snapshot_dir, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert watching.safety_check() == {"new" + SNAP}
    assert len(decodes) == 1
    # a local feed reports every name: no listing; on NFS the directory is listed again
    assert len(listings) == (1 if fs == "nfs" else 0)
    assert ids(watching.list())[:1] == ["new"]
    watching.close()


def test_view_of_a_directory_that_goes_and_comes_back(snapshot_dir, watching):
    watching.save(rec("a"))
    assert ids(watching.list()) == ["a"]
    shutil.rmtree(snapshot_dir)
    assert watching.list().sessions == [] and watching.watcher_fileno() is None
    save_elsewhere(snapshot_dir, "b")
    assert ids(watching.list()) == ["b"]
    assert watching.watcher_fileno() is not None
    save_elsewhere(snapshot_dir, "c", age_ms=HOUR - 60_000)
    assert ids(watching.list()) == ["c", "b"]


# ------------------------------------------------------------ finding 5
READ_ONLY_HOLDER = textwrap.dedent(
    """
    import fcntl, os, sys, time
    fds = []
    for path in sys.argv[1:]:
        fd = os.open(path, os.O_RDONLY)  # flock works on a read-only descriptor
        fcntl.flock(fd, fcntl.LOCK_EX)
        fds.append(fd)
    print("locked", flush=True)
    time.sleep(300)
    """
)

WRITER_HOLDER = textwrap.dedent(
    """
    import sys, time
    from opendev_snapshot.core import SnapshotStore
    s = SnapshotStore(sys.argv[1])
    for sid in sys.argv[2:]:
        assert s.claim(sid)
    print("locked", flush=True)
    time.sleep(300)
    """
)


def spawn(script: str, *args) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", script, *map(str, args)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait(30)
    proc.stdout.close()


def read_only_holder(directory, *sids) -> subprocess.Popen:
    for sid in sids:
        path = directory / (sid + LOCK)
        path.write_text('{"pid": 0}')
        os.chmod(path, 0o600)
    return spawn(READ_ONLY_HOLDER, *(directory / (sid + LOCK) for sid in sids))


def test_read_only_holder_death_is_reported_by_the_next_refresh(snapshot_dir, watching):
    watching.save(rec("ro"))  # old and lock-less: only the lock can say running
    proc = read_only_holder(snapshot_dir, "ro")
    try:
        assert watching.list().sessions[0]["status"] == RUNNING
    finally:
        stop(proc)  # the kernel queued its IN_CLOSE_NOWRITE before wait() returned
    assert "ro" + LOCK in watching.refresh()
    assert watching.list().sessions[0]["status"] == INTERRUPTED


def readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def test_probes_never_feed_back_nor_ping_pong(snapshot_dir, watching):
    for sid in ("w1", "w2", "r1", "dead"):
        watching.save(rec(sid))
    watching.save(rec("done", completed=True))
    (snapshot_dir / ("dead" + LOCK)).write_text("{}")  # a lock file nobody holds
    writer = spawn(WRITER_HOLDER, snapshot_dir, "w1", "w2")
    reader = read_only_holder(snapshot_dir, "r1")
    other = SnapshotStore(snapshot_dir, watch=True)
    try:
        for store in (watching, other):
            store.list(include_completed=True)
        for store in (watching, other):
            store.refresh()
        for _round in range(3):
            for me, peer in ((watching, other), (other, watching)):
                statuses = {s["session_id"]: s["status"] for s in me.list(include_completed=True).sessions}
                assert statuses == {"w1": RUNNING, "w2": RUNNING, "r1": RUNNING, "dead": INTERRUPTED, "done": "completed"}
                assert readable(peer.watcher_fileno())  # our probes and reads did reach the peer's feed...
                assert peer.refresh() == set()  # ...and it has nothing to do about them
                assert me.refresh() == set()  # nor have we about our own
                assert not readable(peer.watcher_fileno()) and not readable(me.watcher_fileno())
        stop(reader)
        assert watching.refresh() == {"r1" + LOCK} == other.refresh()
    finally:
        other.close()
        stop(writer)
        if reader.poll() is None:
            stop(reader)
    assert watching.refresh() == {"w1" + LOCK, "w2" + LOCK}  # a read-write holder's death: IN_CLOSE_WRITE


def test_lock_handles_are_not_inherited_by_a_forked_child(snapshot_dir, watching):
    watching.save(rec("ro"))
    proc = read_only_holder(snapshot_dir, "ro")
    try:
        assert watching.list().sessions[0]["status"] == RUNNING
        held = [int(fd) for fd in os.listdir("/proc/self/fd")
                if os.path.realpath(f"/proc/self/fd/{fd}") == str(snapshot_dir / ("ro" + LOCK))]
        assert held, "the store keeps a handle on the lock it knows held"
        pid = os.fork()
        if pid == 0:  # the child: none of those handles may still be open
            code = 0
            for fd in held:
                try:
                    os.fstat(fd)
                    code = 1
                except OSError:
                    pass
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        stop(proc)


def test_the_ageing_deadline_follows_every_change(watching):
    watching.save(rec("a", age_ms=100_000))
    watching.list()
    first = watching.next_stale_deadline_ms()
    assert first is not None and abs(first - (now_ms() + 20_000)) < 5_000
    assert watching.next_stale_deadline_ms() == first  # asked again: the same answer
    watching.save(rec("b", age_ms=115_000))
    watching.refresh()
    second = watching.next_stale_deadline_ms()
    assert second is not None and second < first and abs(second - (now_ms() + 5_000)) < 5_000
    watching.save(rec("b", age_ms=115_000, completed=True))
    watching.refresh()
    assert watching.next_stale_deadline_ms() == first
