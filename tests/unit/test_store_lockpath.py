"""Something that is not a regular file at a lock path means "no lock file", everywhere.

Issue 9 finding 8 (a FIFO planted at a lock path) was fixed for listing
(``test_store_entries.py``); these are the write side: claims, removal,
cleanup, completion, ``update`` and the per-session update lock. For a
FIFO, a symbolic link to a file elsewhere and a directory:

- a claim refuses with a clear error (it never blocks, never follows);
- removal and cleanup judge the session by its age like a lock-less one
  and leave the planted thing where it is;
- nobody opens the planted thing or the target of the link (an inotify
  spy on both directories says so), and nothing hangs (every operation
  runs under an alarm).
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat

import pytest

from opendev_snapshot.core import INTERRUPTED, RUNNING, SnapshotStore
from opendev_snapshot.core.errors import SessionRunning, StorageError
from opendev_snapshot.core.serial import UPDATE_LOCK_NAME

from helpers import LOCK, aged_record, OpenSpy


KINDS = ["fifo", "link", "directory"]
WORD = {"fifo": "FIFO", "link": "symbolic link", "directory": "directory"}
TARGET_TEXT = '{"pid": 1, "kind": "opendev"}\n'


rec = aged_record


@contextlib.contextmanager
def no_hang(seconds: int = 10):
    """Raise instead of blocking (an ``open`` of a FIFO waiting for its other end)."""

    def fire(*_):
        raise TimeoutError(f"blocked for {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


class Planted:
    """A FIFO, a link to a file elsewhere, or a directory at a path, and spies on both places."""

    def __init__(self, kind: str, path, elsewhere) -> None:
        self.kind, self.path = kind, path
        self.target = elsewhere / f"{path.name}.target"
        elsewhere.mkdir(exist_ok=True)
        self.target.write_text(TARGET_TEXT)
        os.chmod(self.target, 0o644)
        if kind == "fifo":
            os.mkfifo(path, 0o644)
        elif kind == "link":
            os.symlink(self.target, path)
        else:
            path.mkdir(mode=0o755)
        self.mode = os.lstat(path).st_mode
        self.spies = [OpenSpy(path.parent), OpenSpy(elsewhere)]

    def assert_untouched(self, *, still_there: bool = True) -> None:
        touched = set().union(*(spy.touched() for spy in self.spies))
        assert {self.path.name, self.target.name}.isdisjoint(touched), f"opened: {touched}"
        if still_there:
            assert os.lstat(self.path).st_mode == self.mode, "the planted thing was changed or replaced"
        assert self.target.read_text() == TARGET_TEXT and stat.S_IMODE(os.stat(self.target).st_mode) == 0o644
        for spy in self.spies:
            spy.touched()  # our own read above is no one else's

    def close(self) -> None:
        for spy in self.spies:
            spy.close()


@pytest.fixture
def plant(tmp_path):
    planted = []

    def make(kind: str, path) -> Planted:
        planted.append(Planted(kind, path, tmp_path / "elsewhere"))
        return planted[-1]

    yield make
    for p in planted:
        p.close()


def saved(snapshot_dir, *records) -> SnapshotStore:
    with SnapshotStore(snapshot_dir) as writer:
        for record in records:
            writer.save(record)
    return SnapshotStore(snapshot_dir)


def old_and_young(snapshot_dir, plant, kind) -> tuple:
    """A store with a lock-less session an hour old and one a second old, each with ``kind`` at its lock path."""
    store = saved(snapshot_dir, rec("old"), rec("young", age_ms=1000))
    return store, plant(kind, snapshot_dir / f"old{LOCK}"), plant(kind, snapshot_dir / f"young{LOCK}")


# ------------------------------------------------------------------ claims
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("how", ["claim", "save-claim"])
def test_a_claim_refuses_clearly_and_opens_nothing(snapshot_dir, plant, kind, how):
    store = saved(snapshot_dir, rec("s"))
    planted = plant(kind, snapshot_dir / f"s{LOCK}")
    with no_hang(), pytest.raises(StorageError) as info:
        store.claim("s") if how == "claim" else store.save(rec("s"), claim=True)
    message = str(info.value)
    assert "cannot claim session 's'" in message and WORD[kind] in message and f"s{LOCK}" in message
    assert not store.holds("s")
    planted.assert_untouched()
    store.close()


# ----------------------------------------------------------------- removal
@pytest.mark.parametrize("kind", KINDS)
def test_remove_judges_by_age_and_leaves_the_planted_thing(snapshot_dir, plant, kind):
    store, old, young = old_and_young(snapshot_dir, plant, kind)
    with no_hang():
        assert store.status_of(store.load("old")) == INTERRUPTED
        assert store.status_of(store.load("young")) == RUNNING
        assert store.remove("old") is True
        with pytest.raises(SessionRunning) as info:
            store.remove("young")
        assert info.value.holder is None  # no lock file: running by its age
        assert store.load("young") is not None
        assert [e["session_id"] for e in store.list_trash()] == ["old"]
        assert store.list_trash()[0]["holder"] is None
    old.assert_untouched()
    young.assert_untouched()
    with no_hang():
        assert store.remove("young", force=True) is True
    young.assert_untouched()
    store.close()


# ----------------------------------------------------------------- cleanup
@pytest.mark.parametrize("kind", KINDS)
def test_cleanup_judges_by_age_and_leaves_the_planted_thing(snapshot_dir, plant, kind):
    store, old, young = old_and_young(snapshot_dir, plant, kind)
    orphan = plant(kind, snapshot_dir / f"orphan{LOCK}")
    with no_hang():
        assert store.cleanup(60_000, dry_run=True).session_ids == ["old"]
        result = store.cleanup(60_000)
    assert result.session_ids == ["old"] and result.lock_files_removed == 0
    assert store.load("young") is not None and store.load("old") is None
    for planted in (old, young, orphan):
        planted.assert_untouched()
    store.close()


# ------------------------------------------------- completion and updates
@pytest.mark.parametrize("kind", KINDS)
def test_update_and_completion_leave_the_planted_thing(snapshot_dir, plant, kind):
    store = saved(snapshot_dir, rec("s"))
    planted = plant(kind, snapshot_dir / f"s{LOCK}")
    with no_hang():
        assert store.record_tool_result("s", {"tool_name": "t", "call_id": "c", "output_preview": "", "success": True}) == 1
        store.mark_completed("s")
        assert store.load("s")["completed"] is True
    planted.assert_untouched()  # not ours: completing deletes only a lock file
    store.close()


# --------------------------------------------------------- the update lock
@pytest.mark.parametrize("kind", KINDS)
def test_a_planted_update_lock_is_a_clear_error_never_opened(snapshot_dir, plant, kind):
    store = saved(snapshot_dir, rec("s"))
    store.close()
    os.unlink(snapshot_dir / UPDATE_LOCK_NAME)
    planted = plant(kind, snapshot_dir / UPDATE_LOCK_NAME)
    store = SnapshotStore(snapshot_dir)
    for action in (
        lambda: store.update("s", lambda record: None),
        lambda: store.save(rec("s")),
        lambda: store.claim("s"),
        lambda: store.remove("s"),
    ):
        with no_hang(), pytest.raises(StorageError) as info:
            action()
        assert "update lock" in str(info.value) and WORD[kind] in str(info.value), str(info.value)
    assert store.load("s") is not None and not store.holds("s")
    planted.assert_untouched()
    store.close()
