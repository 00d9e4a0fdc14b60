"""The save path's system calls: only what durability and the locks need.

A save is ~0.5 ms of fsync on a good disk, and every extra call (and the
Python around it, run with caches a fsync has let other processes cool)
shows in ``bench/README.md``'s ratio against a raw durable write. The
directory is not ``stat``-ed before each save (it is created when a save
finds it missing), temporary names need no random bytes or pid lookup per
save, and none of that changes what a save does with a missing directory,
a removed one or a file in its place.
"""

from __future__ import annotations

import os
import stat

import pytest

from opendev_snapshot.core import SnapshotStore, new_record
from opendev_snapshot.core import durable
from opendev_snapshot.core.errors import StorageError


def rec(sid: str = "s") -> dict:
    return new_record(sid, "/p")


def test_first_save_creates_missing_parents_0700(tmp_path):
    directory = tmp_path / "a" / "b" / "snaps"
    with SnapshotStore(directory) as store:
        store.save(rec(), claim=True)
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert (directory / "s_session_snapshot.json").is_file()


@pytest.mark.parametrize("claim", [False, True])
def test_save_after_the_directory_was_removed_makes_it_again(tmp_path, claim):
    directory = tmp_path / "snaps"
    with SnapshotStore(directory) as store:
        store.save(rec("one"))
        for name in os.listdir(directory):
            os.unlink(directory / name)
        os.rmdir(directory)
        out = store.save(rec("two"), claim=claim)
        assert out["claimed"] is claim
        assert sorted(n for n in os.listdir(directory) if not n.startswith(".")) == (
            ["two_session_snapshot.json", "two_session_snapshot.lock"] if claim else ["two_session_snapshot.json"]
        )


def test_save_into_a_file_says_so_and_leaves_it(tmp_path):
    path = tmp_path / "snaps"
    path.write_text("not a directory")
    with SnapshotStore(path) as store:
        with pytest.raises(StorageError, match="not a directory"):
            store.save(rec())
    assert path.read_text() == "not a directory"


def test_a_save_into_an_existing_directory_makes_no_extra_calls(tmp_path, monkeypatch):
    directory = tmp_path / "snaps"
    with SnapshotStore(directory) as store:
        store.save(rec(), claim=True)
        seen = []
        real_stat = os.stat

        def counting_stat(path, *a, **k):
            seen.append(os.fspath(path))
            return real_stat(path, *a, **k)

        def refuse(*a, **k):
            raise AssertionError("a system call per save that is not needed")

        monkeypatch.setattr(os, "stat", counting_stat)
        monkeypatch.setattr(os, "urandom", refuse)
        monkeypatch.setattr(os, "getpid", refuse)
        for _ in range(3):
            store.save(rec(), claim=True)
        monkeypatch.undo()
        assert str(directory) not in seen
    assert len({durable.temp_name("x") for _ in range(1000)}) == 1000


def test_temporary_names_differ_in_a_forked_child(tmp_path):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.write(write, durable.temp_name("x").encode())
        finally:
            os._exit(0)
    os.close(write)
    child_name = os.read(read, 200).decode()
    os.close(read)
    os.waitpid(pid, 0)
    mine = durable.temp_name("x")
    assert child_name != mine and child_name.startswith(".x.") and child_name.endswith(".tmp")
    assert f".{pid}-" in child_name and f".{os.getpid()}-" in mine


# ------------------------------------------ a watched store's own writes
def _count_decodes(monkeypatch) -> list:
    from opendev_snapshot.core import codec

    calls = []
    real = codec.decode

    def counting(data):
        calls.append(len(data))
        return real(data)

    monkeypatch.setattr(codec, "decode", counting)
    return calls


def test_a_watched_store_does_not_parse_again_what_it_just_saved(tmp_path, monkeypatch):
    directory = tmp_path / "snaps"
    with SnapshotStore(directory, watch=True) as store:
        store.save(rec("a"))
        assert [s["session_id"] for s in store.list().sessions] == ["a"]  # scanned
        decodes = _count_decodes(monkeypatch)
        r = rec("a")
        r["message_count"] = 7
        r["last_tool_results"] = [{"tool_name": "t", "call_id": "c", "output_preview": "key AKIAABCDEFGHIJKLMNOP", "success": True}]
        store.save(r, claim=True)
        [listed] = store.list().sessions  # the change feed reports the save: the record written is taken as it is
        assert decodes == []
        assert listed["message_count"] == 7
        assert listed["last_tool_results"][0]["output_preview"] == "key [REDACTED:aws-access-key-id]"


def test_a_file_changed_after_our_save_is_parsed_as_it_is_now(tmp_path, monkeypatch):
    directory = tmp_path / "snaps"
    with SnapshotStore(directory, watch=True) as store:
        store.save(rec("a"))
        store.list()
        decodes = _count_decodes(monkeypatch)
        store.save(rec("a"))
        other = rec("a")
        other["message_count"] = 99
        with SnapshotStore(directory) as writer:  # another process' save, before our store looks
            writer.save(other)
        [listed] = store.list().sessions
        assert listed["message_count"] == 99 and len(decodes) == 1


def test_an_update_is_validated_once_and_its_answer_is_the_callers_own(tmp_path, monkeypatch):
    directory = tmp_path / "snaps"
    with SnapshotStore(directory, watch=True) as store:
        store.save(rec("a"), claim=True)
        store.list()
        decodes = _count_decodes(monkeypatch)
        store.record_tool_result("a", {"tool_name": "t", "call_id": "c1", "output_preview": "one", "success": True})
        answer = store.update("a", lambda r: r.update(message_count=5))
        [listed] = store.list().sessions
        assert len(decodes) == 2  # each update's own load; the change feed's report parses nothing again
        answer["last_tool_results"][0]["output_preview"] = "changed by the caller"
        answer["last_tool_results"].append({"x": 1})
        [again] = store.list().sessions
        assert listed["message_count"] == again["message_count"] == 5
        assert again["last_tool_results"] == [{"tool_name": "t", "call_id": "c1", "output_preview": "one", "success": True}]
