"""End to end: exit codes, end of input, the editor's process dying, SIGTERM, logs."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
import time

import pytest
from server_harness import RawClient, seed, server_command, server_env, session

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def project(tmp_path):
    p = tmp_path / "project"
    p.mkdir()
    return p


async def test_shutdown_then_exit_is_0(snapshot_dir, project):
    async with session(snapshot_dir, folders=[project], init_options={"prompt": False}) as h:
        assert await h.shutdown() == 0


async def test_exit_without_shutdown_is_1(snapshot_dir, project):
    """pygls' ``start_io`` exits 0 here whatever happened; ``run_async`` lets its code through."""
    c = await RawClient.start(snapshot_dir)
    try:
        await c.initialize(os.getpid(), project, {"prompt": False})
        c.notify("exit")
        assert await c.wait(10) == 1
    finally:
        await c.aclose()


async def test_exit_releases_claimed_locks(snapshot_dir, project):
    c = await RawClient.start(snapshot_dir)
    try:
        await c.initialize(os.getpid(), project, {"prompt": False})
        reply = await c.request("opendev/snapshot.save", {"sessionId": "mine", "projectDir": str(project)})
        assert "result" in reply
        from opendev_snapshot.core import SnapshotStore

        with SnapshotStore(snapshot_dir) as s:
            assert s.list().sessions[0]["status"] == "running"
        c.notify("exit")
        assert await c.wait(10) == 1
        with SnapshotStore(snapshot_dir) as s:
            [listing] = s.list().sessions
            assert listing["status"] == "interrupted" and listing["completed"] is False
    finally:
        await c.aclose()


@pytest.mark.parametrize("after_shutdown", [False, True], ids=["eof", "shutdown-then-eof"])
async def test_end_of_input_exits(snapshot_dir, project, after_shutdown):
    c = await RawClient.start(snapshot_dir)
    try:
        await c.initialize(os.getpid(), project, {"prompt": False})
        if after_shutdown:
            assert (await c.request("shutdown"))["result"] is None
        c.proc.stdin.close()
        assert await c.wait(10) == (0 if after_shutdown else 1)
    finally:
        await c.aclose()


async def test_exits_when_process_id_dies(snapshot_dir, project):
    """The editor is gone but our stdin stays open: processId decides."""
    editor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    c = await RawClient.start(snapshot_dir)
    try:
        await c.initialize(editor.pid, project, {"prompt": False})
        await asyncio.sleep(0.3)
        assert c.proc.returncode is None
        editor.kill()
        editor.wait()
        t0 = time.monotonic()
        assert await c.wait(5) == 1
        assert time.monotonic() - t0 < 3.5
    finally:
        editor.kill()
        await c.aclose()


async def test_exits_when_short_lived_parent_is_killed(snapshot_dir, project, tmp_path):
    """A parent that spawned us dies (and is reaped by its own parent)."""
    r_in, w_in = os.pipe()
    r_out, w_out = os.pipe()
    launcher = (
        "import subprocess, sys, os, time\n"
        "p = subprocess.Popen(sys.argv[1:], stdin=int(os.environ['IN_FD']), stdout=int(os.environ['OUT_FD']),"
        " pass_fds=(int(os.environ['IN_FD']), int(os.environ['OUT_FD'])))\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    env = server_env(snapshot_dir, IN_FD=r_in, OUT_FD=w_out)
    parent = subprocess.Popen(
        [sys.executable, "-c", launcher, *server_command()], env=env, stdout=subprocess.PIPE, text=True, pass_fds=(r_in, w_out)
    )
    os.close(r_in)
    os.close(w_out)
    server_pid = int(parent.stdout.readline())
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(r_out, "rb", 0))
    body = (
        b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"processId":%d,"capabilities":{},'
        b'"initializationOptions":{"prompt":false}}}' % parent.pid
    )
    os.write(w_in, b"Content-Length: %d\r\n\r\n" % len(body) + body)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert b"Content-Length" in head
    try:
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.kill(server_pid, 0)
            except ProcessLookupError:
                break
            # reap it if it became our child (it is not: it was re-parented to init)
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the server outlived its parent")
    finally:
        os.close(w_in)
        try:
            os.kill(server_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


async def test_nothing_but_frames_on_stdout_even_when_verbose(snapshot_dir, project):
    seed(snapshot_dir, "x", project)
    c = await RawClient.start(snapshot_dir, env=server_env(snapshot_dir), cmd=server_command("-v"), stderr=asyncio.subprocess.DEVNULL)
    try:
        await c.initialize(os.getpid(), project, {"prompt": False})
        note = await c.recv()
        assert note["method"] == "opendev/recoverableSessions"
        assert (await c.request("shutdown"))["result"] is None
        c.notify("exit")
        assert await c.wait() == 0
        rest = await c.proc.stdout.read()
        assert rest == b""
    finally:
        await c.aclose()


async def test_sigterm_releases_locks_and_exits(snapshot_dir, project):
    c = await RawClient.start(snapshot_dir)
    try:
        await c.initialize(os.getpid(), project, {"prompt": False})
        assert "result" in await c.request("opendev/snapshot.save", {"sessionId": "held", "projectDir": str(project)})
        c.proc.send_signal(signal.SIGTERM)
        assert await c.wait(10) == 1
        from opendev_snapshot.core import SnapshotStore

        with SnapshotStore(snapshot_dir) as s:
            [listing] = s.list().sessions
        assert listing["status"] == "interrupted" and listing["completed"] is False
    finally:
        await c.aclose()


async def test_log_file_is_0600_and_never_holds_previews(snapshot_dir, project, tmp_path):
    """Finding 5: ``serve --log-file F -v`` created F 0644 and logged whole bodies, previews included."""
    log_file = tmp_path / "server.log"
    secret = "ghp_" + "A" * 36
    old = os.umask(0o022)
    try:
        c = await RawClient.start(snapshot_dir, cmd=server_command("-v", "--log-file", str(log_file)),
                                  stderr=asyncio.subprocess.PIPE)
    finally:
        os.umask(old)
    try:
        await c.initialize(os.getpid(), project, {"prompt": False, "redactSecrets": False})
        assert "result" in await c.request("opendev/snapshot.save", {
            "sessionId": "logged", "projectDir": str(project), "claim": False,
            "lastToolResults": [{"toolName": "bash", "callId": "c", "outputPreview": f"token {secret} " + "x" * 5000, "success": True}]})
        assert (await c.request("opendev/snapshot.load", {"sessionId": "logged"}))["result"]["lastToolResults"]
        assert (await c.request("shutdown"))["result"] is None
        c.notify("exit")
        assert await c.wait() == 0
        err = await c.proc.stderr.read()
    finally:
        await c.aclose()
    assert stat.S_IMODE(os.stat(log_file).st_mode) == 0o600
    text = log_file.read_text()
    assert "opendev/snapshot.save" in text  # -v: the traffic is logged ...
    assert secret not in text and "x" * 300 not in text  # ... without previews, bodies cut
    assert err == b""  # and nothing went to stderr


async def test_bad_log_file_is_one_line_and_exit_1(snapshot_dir, tmp_path):
    """Through ``python -m opendev_snapshot.server`` (the CLI reports LogFileError for its own subcommands)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "opendev_snapshot.server", "--log-file", str(tmp_path), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=server_env(snapshot_dir))
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 1 and out == b""
    assert err.decode().startswith("opendev-snapshot: cannot open log file") and err.count(b"\n") == 1


@pytest.mark.parametrize("source", ["devnull", "regular-file"])
async def test_stdin_that_cannot_be_polled_reads_to_its_end(snapshot_dir, tmp_path, source):
    """``serve < /dev/null`` (or a file): epoll refuses such a descriptor, so the
    loop's pipe reader never saw the end of input and the server hung; it
    reads it with pygls' own reader instead and ends (exit 1: no shutdown)."""
    if source == "devnull":
        stdin = open(os.devnull, "rb")
    else:
        f = tmp_path / "input"
        f.write_bytes(b"")
        stdin = open(f, "rb")
    proc = await asyncio.create_subprocess_exec(
        *server_command(), stdin=stdin, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=server_env(snapshot_dir))
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 30)  # a hang detector, not a speed limit
    finally:
        stdin.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 1 and out == b""
    assert b"Traceback" not in err and b"Operation not permitted" not in err
