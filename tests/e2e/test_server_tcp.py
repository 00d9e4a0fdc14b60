"""End to end: ``serve --tcp`` is closed by default (contract section 4, finding 4).

Loopback unless ``--allow-remote``; a token from start-up in
``initializationOptions.token``; an HTTP request, a missing or wrong token
closes the connection; nothing runs before a correct ``initialize``; a
port scanner or a failed login does not lock the editor out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import stat
import sys

import pytest
from server_harness import file_uri, seed, server_command, server_env

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 10.0


@pytest.fixture
def project(tmp_path):
    p = tmp_path / "project"
    p.mkdir()
    return p


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TcpServer:
    def __init__(self, proc, port: int, token: str) -> None:
        self.proc, self.port, self.token = proc, port, token

    async def connect(self) -> "Conn":
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        return Conn(reader, writer)

    async def wait(self, timeout: float = TIMEOUT) -> int:
        return await asyncio.wait_for(self.proc.wait(), timeout)


class Conn:
    """A raw JSON-RPC connection that fails on a second answer to any id."""

    def __init__(self, reader, writer) -> None:
        self.reader, self.writer = reader, writer
        self.answered: set = set()

    def send(self, obj) -> None:
        body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        self.writer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    async def recv(self, timeout: float = TIMEOUT) -> dict:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        n = int(re.search(rb"Content-Length: (\d+)", head).group(1))
        message = json.loads(await asyncio.wait_for(self.reader.readexactly(n), timeout))
        if "method" not in message and message.get("id") is not None:
            assert message["id"] not in self.answered, f"a second answer to {message['id']!r}"
            self.answered.add(message["id"])
        return message

    async def closed(self, timeout: float = TIMEOUT) -> bool:
        """True once the server has closed the connection (everything before it is discarded)."""
        try:
            while await asyncio.wait_for(self.reader.read(1 << 16), timeout):
                pass
        except (ConnectionResetError, BrokenPipeError):
            pass
        return True

    async def initialize(self, token, project, msg_id=1) -> dict:
        options = {"prompt": False}
        if token is not None:
            options["token"] = token
        self.send({"jsonrpc": "2.0", "id": msg_id, "method": "initialize", "params": {
            "processId": os.getpid(), "capabilities": {}, "rootUri": file_uri(project), "initializationOptions": options}})
        return await self.recv()

    def close(self) -> None:
        self.writer.close()


@contextlib.asynccontextmanager
async def tcp_server(snapshot_dir, *args):
    proc = None
    try:
        for _attempt in range(3):
            port = free_port()
            proc = await asyncio.create_subprocess_exec(
                *server_command(), "--tcp", "--port", str(port), *args,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
                env=server_env(snapshot_dir),
            )
            listening = token = None
            while token is None:
                line = (await asyncio.wait_for(proc.stderr.readline(), TIMEOUT)).decode()
                if not line:
                    break
                if m := re.search(r"listening on 127\.0\.0\.1:(\d+)", line):
                    listening = int(m.group(1))
                if m := re.search(r"token: (\S+)", line):
                    token = m.group(1)
            if token is not None:
                break
            await proc.wait()  # the port was taken meanwhile: try another
        assert listening == port and token
        yield TcpServer(proc, port, token)
    finally:
        if proc is not None and proc.returncode is None:  # also when it never got as far as listening
            proc.kill()
            await proc.wait()


async def run_editor(server: TcpServer, project, notes: int = 0) -> int:
    """A well-behaved editor: authenticate, list, shut down; returns the exit code."""
    c = await server.connect()
    reply = await c.initialize(server.token, project)
    assert "capabilities" in reply["result"], reply
    c.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
    c.send({"jsonrpc": "2.0", "id": 2, "method": "opendev/snapshot.listIncomplete", "params": {}})
    server.notes = []
    answered = False
    while not answered or len(server.notes) < notes:
        message = await c.recv()
        if message.get("id") == 2:
            assert "result" in message
            answered = True
        else:
            server.notes.append(message)
    c.send({"jsonrpc": "2.0", "id": 3, "method": "shutdown"})
    while (message := await c.recv()).get("id") != 3:
        server.notes.append(message)
    c.send({"jsonrpc": "2.0", "method": "exit"})
    code = await server.wait()
    c.close()
    return code


async def test_an_editor_with_the_token_is_served(snapshot_dir, project):
    seed(snapshot_dir, "over-tcp", project)
    async with tcp_server(snapshot_dir) as server:
        assert await run_editor(server, project, notes=1) == 0
        [note] = server.notes
        assert note["method"] == "opendev/recoverableSessions"
        assert note["params"]["sessions"][0]["sessionId"] == "over-tcp"


async def test_an_http_post_is_closed_and_deletes_nothing(snapshot_dir, project):
    """``curl --data-binary '{...cleanup maxAgeMs 0...}' http://127.0.0.1:PORT/`` used to delete everything."""
    seed(snapshot_dir, "precious", project)
    body = b'{"jsonrpc":"2.0","id":1,"method":"opendev/snapshot.cleanup","params":{"maxAgeMs":0}}'
    request = (b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
               b"Content-Length: %d\r\n\r\n" % len(body) + body)
    async with tcp_server(snapshot_dir) as server:
        c = await server.connect()
        c.writer.write(request)
        assert await c.closed()
        assert (snapshot_dir / "precious_session_snapshot.json").exists()
        assert await run_editor(server, project) == 0  # and the editor is not locked out


@pytest.mark.parametrize("token", [None, "wrong", ""], ids=["no-token", "wrong-token", "empty-token"])
async def test_a_bad_token_is_answered_once_then_closed(snapshot_dir, project, token):
    seed(snapshot_dir, "precious", project)
    async with tcp_server(snapshot_dir) as server:
        c = await server.connect()
        reply = await c.initialize(token, project)
        assert reply["error"]["code"] == -32600 and "token" in reply["error"]["message"]
        assert server.token not in json.dumps(reply)
        assert await c.closed()
        assert await run_editor(server, project) == 0


async def test_nothing_runs_before_a_correct_initialize(snapshot_dir, project):
    seed(snapshot_dir, "precious", project, age_ms=10 * 86_400_000)
    async with tcp_server(snapshot_dir) as server:
        c = await server.connect()
        c.send({"jsonrpc": "2.0", "id": 7, "method": "opendev/snapshot.cleanup", "params": {"maxAgeMs": 0}})
        c.send({"jsonrpc": "2.0", "method": "opendev/snapshot.remove", "params": {"sessionId": "precious"}})
        c.send({"jsonrpc": "2.0", "id": 8, "method": "opendev/snapshot.load", "params": {"sessionId": "precious"}})
        for expected in (7, 8):
            reply = await c.recv()
            assert reply["id"] == expected and reply["error"]["code"] == -32600
        assert (snapshot_dir / "precious_session_snapshot.json").exists()
        # the same connection may still authenticate
        reply = await c.initialize(server.token, project, msg_id=9)
        assert "capabilities" in reply["result"]
        c.send({"jsonrpc": "2.0", "id": 10, "method": "opendev/snapshot.load", "params": {"sessionId": "precious"}})
        assert (await c.recv())["result"]["sessionId"] == "precious"
        c.close()


async def test_a_port_scan_before_the_editor_locks_nobody_out(snapshot_dir, project):
    async with tcp_server(snapshot_dir) as server:
        for _ in range(20):  # connect and close, as a scanner does
            _r, w = await asyncio.open_connection("127.0.0.1", server.port)
            w.close()
        idle = [await server.connect() for _ in range(20)]  # and some that connect and say nothing
        assert await run_editor(server, project) == 0
        for conn in idle:
            assert await conn.closed()


async def test_one_editor_per_server(snapshot_dir, project):
    async with tcp_server(snapshot_dir) as server:
        editor = await server.connect()
        assert "result" in await editor.initialize(server.token, project)
        with contextlib.suppress(ConnectionError, OSError):
            late = await server.connect()
            late.send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"processId": None, "capabilities": {},
                       "initializationOptions": {"token": server.token}}})
            assert await late.closed()
        editor.send({"jsonrpc": "2.0", "id": 2, "method": "opendev/snapshot.listIncomplete", "params": {}})
        assert "result" in await editor.recv()
        editor.close()
        assert await server.wait() == 1  # the editor went away without shutdown


async def test_token_file_is_0600_and_holds_the_token(snapshot_dir, project, tmp_path):
    token_file = tmp_path / "token"
    old = os.umask(0o000)
    try:
        async with tcp_server(snapshot_dir, "--token-file", str(token_file)) as server:
            assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
            assert token_file.read_text().strip() == server.token
            assert await run_editor(server, project) == 0
    finally:
        os.umask(old)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--host", "0.0.0.0"], "not a loopback address"),
        (["--port", "0"], "invalid port"),
        (["--port", "70000"], "invalid port"),
        (["--token-file", "/tmp/x"], None),  # without --tcp
    ],
    ids=["any-address", "port-0", "port-too-big", "token-file-without-tcp"],
)
async def test_unsafe_or_bad_settings_are_refused_with_one_line(snapshot_dir, args, message):
    tcp = [] if "--token-file" in args else ["--tcp"]
    proc = await asyncio.create_subprocess_exec(
        *server_command(), *tcp, *args, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=server_env(snapshot_dir))
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2 and out == b""
    text = err.decode()
    assert "Traceback" not in text
    if message:
        assert message in text


@pytest.mark.parametrize("tcp", [True, False], ids=["tcp", "without-tcp"])
@pytest.mark.parametrize("what", ["empty", "blank", "directory"])
async def test_a_token_file_that_cannot_be_one_is_refused_with_one_line(snapshot_dir, tmp_path, what, tcp):
    token_file = {"empty": "", "blank": "  ", "directory": str(tmp_path)}[what]
    proc = await asyncio.create_subprocess_exec(
        *server_command(), *(["--tcp", "--port", str(free_port())] if tcp else []), "--token-file", token_file,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=server_env(snapshot_dir), cwd=tmp_path)  # a regression writes "  " here, not into the checkout
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2 and out == b"", err
    lines = err.decode().splitlines()
    assert len(lines) == 1 and "--token-file" in lines[0], lines
    assert ("directory" if what == "directory" else "empty") in lines[0]
    assert "listening" not in lines[0] and "token:" not in lines[0]


async def test_a_link_at_the_token_file_is_replaced_never_followed(snapshot_dir, project, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("not yours\n")
    os.chmod(elsewhere, 0o644)
    token_file = tmp_path / "token"
    os.symlink(elsewhere, token_file)
    async with tcp_server(snapshot_dir, "--token-file", str(token_file)) as server:
        st = os.lstat(token_file)
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
        assert token_file.read_text() == server.token + "\n"
        assert elsewhere.read_text() == "not yours\n" and stat.S_IMODE(os.stat(elsewhere).st_mode) == 0o644
        assert [n for n in os.listdir(tmp_path) if n.endswith(".tmp")] == []
        assert await run_editor(server, project) == 0


def test_the_token_file_is_written_whole_under_an_unpredictable_name(tmp_path, monkeypatch):
    """Through the core's durable write: a name planted where the temporary
    file would go does not stop it, and a failed write leaves no file."""
    from opendev_snapshot.server import tcp

    token_file = tmp_path / "token"
    os.symlink(tmp_path / "trap", tmp_path / f".token.{os.getpid()}.tmp")  # the old predictable name
    tcp.write_token_file(str(token_file), "t0k3n")
    assert token_file.read_text() == "t0k3n\n" and stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    assert not (tmp_path / "trap").exists()

    def no_space(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(tcp.TcpConfigError, match="No space left on device"):
        tcp.write_token_file(str(tmp_path / "second"), "t0k3n")
    assert sorted(os.listdir(tmp_path)) == sorted(["token", f".token.{os.getpid()}.tmp"])  # nothing half-written


async def test_allow_remote_binds_what_was_asked(snapshot_dir, project):
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        *server_command(), "--tcp", "--host", "0.0.0.0", "--port", str(port), "--allow-remote",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env=server_env(snapshot_dir))
    try:
        warning = (await asyncio.wait_for(proc.stderr.readline(), TIMEOUT)).decode()
        assert "warning" in warning and "other machines" in warning
        line = (await asyncio.wait_for(proc.stderr.readline(), TIMEOUT)).decode()
        assert f"listening on 0.0.0.0:{port}" in line
    finally:
        proc.kill()
        await proc.wait()


def test_the_check_sees_loopback_names():
    from opendev_snapshot.server.tcp import is_loopback

    assert is_loopback("127.0.0.1", 1) and is_loopback("::1", 1) and is_loopback("localhost", 1)
    assert not is_loopback("0.0.0.0", 1)


if sys.platform == "win32":  # pragma: no cover
    pytestmark = pytest.mark.skip(reason="the TCP tests use POSIX process handling")
