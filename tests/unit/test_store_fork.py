"""A child forked by a lock holder never keeps a dead holder running (issue 9 finding 6)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from opendev_snapshot.core import INTERRUPTED, RUNNING

HOLDER = textwrap.dedent(
    """
    import multiprocessing, os, subprocess, sys, time
    from opendev_snapshot.core import SnapshotStore, new_record
    directory, mode = sys.argv[1], sys.argv[2]
    store = SnapshotStore(directory)
    record = new_record("forked", "/proj")
    record["snapshot_timestamp_ms"] -= 10 * 3600 * 1000  # old: only the lock says running
    store.save(record, claim=True)

    def say(line):  # one write(2) per line: parent and child share the pipe
        os.write(1, (line + "\\n").encode())

    def child_report():
        # what the child believes about the claim, then outlive the parent
        say(f"child holds={store.holds('forked')} held={store.held_sessions()}")
        time.sleep(120)

    if mode == "multiprocessing":
        child = multiprocessing.get_context("fork").Process(target=child_report, daemon=False)
        child.start()
        pid = child.pid
    elif mode == "os.fork":
        pid = os.fork()
        if pid == 0:
            try:
                child_report()
            finally:
                os._exit(0)
    else:  # subprocess without close_fds, with a preexec_fn (fork, Python runs, then exec)
        child = subprocess.Popen(
            [sys.executable, "-c", "import time; print('child holds=n/a', flush=True); time.sleep(120)"],
            close_fds=False, preexec_fn=lambda: None,
        )
        pid = child.pid
    say(f"pid {pid}")
    time.sleep(120)
    """
)


@pytest.mark.parametrize("mode", ["multiprocessing", "os.fork", "subprocess"])
def test_child_of_a_killed_holder_does_not_keep_the_session_running(store, snapshot_dir, mode):
    errors = snapshot_dir.parent / "holder.err"
    with open(errors, "w") as err:
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(snapshot_dir), mode], stdout=subprocess.PIPE, stderr=err, text=True
        )
    child_pid = None
    try:
        lines = []
        while len(lines) < 2:  # the holder's "pid N" and the child's report, in either order
            line = holder.stdout.readline()
            assert line, f"holder ended early: {lines} {errors.read_text()}"
            lines.append(line.strip())
        child_pid = int(next(line for line in lines if line.startswith("pid ")).split()[1])
        report = next(line for line in lines if line.startswith("child "))
        if mode != "subprocess":
            assert report == "child holds=False held=[]"  # the child knows it holds nothing
        assert store.list().sessions[0]["status"] == RUNNING
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        os.kill(child_pid, 0)  # the child lives on ...
        (listing,) = store.list().sessions
        assert listing["status"] == INTERRUPTED  # ... and the session reads interrupted
        assert store.claim("forked") is True
        os.kill(child_pid, 0)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)
        if child_pid is not None:
            try:
                os.kill(child_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
