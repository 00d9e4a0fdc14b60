"""Durability proven by the order of the real system calls (issue 9 finding 11).

A child process saves (or removes, cleans up, restores) under ``strace -f -y``;
the trace must show, for a save: the temporary file's data fsynced *before*
the rename over the target, and the directory fsynced *after* the rename
and *before* the call returned (the child's ``ACK`` write). For a move into
the trash: the rename, then both directories fsynced before the ``ACK``.
Each check is also run against a child whose ``os.fsync`` skips files or
directories, to show that the check fails when an fsync is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    shutil.which("strace") is None, reason="strace is not installed (.ci/apt-packages.txt installs it for CI)"
)

CHILD = textwrap.dedent(
    """
    import os, stat, sys
    from opendev_snapshot.core import SnapshotStore, new_record
    directory, op, sabotage = sys.argv[1], sys.argv[2], sys.argv[3]
    real_fsync = os.fsync
    def fsync(fd):
        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
        if (sabotage == "files" and not is_dir) or (sabotage == "directories" and is_dir):
            return None
        return real_fsync(fd)
    os.fsync = fsync
    store = SnapshotStore(directory)
    record = new_record("a", "/proj")
    record["snapshot_timestamp_ms"] -= 48 * 3600 * 1000
    if op != "save":
        store.save(record, claim=True)
        store.release("a")
    if op == "restore":
        store.remove("a")
    os.write(1, b"BEGIN\\n")
    if op == "save":
        store.save(record)
    elif op == "remove":
        store.remove("a")
    elif op == "cleanup":
        assert store.cleanup(3600 * 1000).session_ids == ["a"]
    elif op == "restore":
        store.restore("a")
    os.write(1, b"ACK\\n")
    """
)

CALL = re.compile(r"^\d+\s+(\w+)\((.*)\)\s+=\s+(-?\d+)")
FD_PATH = re.compile(r"^\d+<(.*)>")
STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')


def trace(directory, op: str, sabotage: str, tmp_path) -> list:
    """``(syscall, args)`` between the child's BEGIN and ACK, ACK last."""
    out = tmp_path / f"trace-{op}-{sabotage}.txt"
    proc = subprocess.run(
        ["strace", "-f", "-qq", "-y", "-s", "512", "-o", str(out),
         "-e", "trace=fsync,fdatasync,rename,renameat,renameat2,link,linkat,write",
         sys.executable, "-c", CHILD, str(directory), op, sabotage],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    events, started = [], False
    for line in out.read_text().splitlines():
        m = CALL.match(line)
        if not m or int(m.group(3)) < 0:
            continue
        name, args = m.group(1), m.group(2)
        if name == "write":
            if '"BEGIN\\n"' in args:
                started = True
            elif '"ACK\\n"' in args and started:
                events.append(("ACK", ()))
                break
            continue
        if not started:
            continue
        if name in ("fsync", "fdatasync"):
            fd = FD_PATH.match(args)
            events.append(("fsync", (fd.group(1) if fd else args,)))
        else:  # rename, renameat, renameat2, link, linkat: the two quoted (absolute) paths
            events.append((re.sub(r"at2?$", "", name), tuple(STRING.findall(args))))
    assert events and events[-1][0] == "ACK", f"no ACK in the trace: {events}"
    return events


def first(events, pred) -> int:
    return next((i for i, e in enumerate(events) if pred(e)), -1)


def save_problems(directory, events) -> list:
    d = str(directory)
    target = os.path.join(d, "a_session_snapshot.json")
    r = first(events, lambda e: e[0].startswith("rename") and e[1][-1:] == (target,))
    if r < 0:
        return ["no rename onto the snapshot"]
    tmp = events[r][1][0]
    problems = []
    if first(events[:r], lambda e: e == ("fsync", (tmp,))) < 0:
        problems.append("the data was not fsynced before the rename")
    if first(events[r:], lambda e: e == ("fsync", (d,))) < 0:
        problems.append("the directory was not fsynced after the rename, before the call returned")
    return problems


def move_problems(directory, events, into_trash: bool) -> list:
    d, t = str(directory), os.path.join(str(directory), ".trash")
    snap = os.path.join(d, "a_session_snapshot.json")
    if into_trash:
        r = first(events, lambda e: e[0].startswith("rename") and e[1][:1] == (snap,) and e[1][1].startswith(t + "/"))
    else:
        r = first(events, lambda e: e[0].startswith(("rename", "link")) and e[1][-1:] == (snap,))
    if r < 0:
        return ["no move found"]
    problems = []
    for directory_path in (d, t):
        if first(events[r:], lambda e: e == ("fsync", (directory_path,))) < 0:
            problems.append(f"{directory_path} was not fsynced after the move, before the call returned")
    if into_trash and first(events[:r], lambda e: e[0] == "fsync" and e[1][0].endswith(".holder")) < 0:
        problems.append("the lock text was not fsynced before the snapshot moved")
    if not into_trash:  # the lock file's text comes back too, linked in before the last directory fsync
        lock = first(events, lambda e: e[0] == "link" and e[1][-1:] == (os.path.join(d, "a_session_snapshot.lock"),))
        last_dir_sync = max((i for i, e in enumerate(events) if e == ("fsync", (d,))), default=-1)
        if lock < 0 or lock > last_dir_sync:
            problems.append(f"{d} was not fsynced after the move of the lock file, before the call returned")
    return problems


@pytest.mark.parametrize("sabotage", ["none", "files", "directories"])
def test_save_fsyncs_data_before_rename_and_directory_before_returning(tmp_path, sabotage):
    directory = tmp_path / "snaps"
    problems = save_problems(directory, trace(directory, "save", sabotage, tmp_path))
    if sabotage == "none":
        assert problems == []
    elif sabotage == "files":
        assert problems == ["the data was not fsynced before the rename"]
    else:
        assert problems == ["the directory was not fsynced after the rename, before the call returned"]


@pytest.mark.parametrize("op", ["remove", "cleanup", "restore"])
@pytest.mark.parametrize("sabotage", ["none", "directories"])
def test_moves_to_and_from_the_trash_are_durable_before_returning(tmp_path, op, sabotage):
    directory = tmp_path / "snaps"
    problems = move_problems(directory, trace(directory, op, sabotage, tmp_path), into_trash=op != "restore")
    if sabotage == "none":
        assert problems == []
    else:
        assert problems and all("was not fsynced after the move" in p for p in problems)
