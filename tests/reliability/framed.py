"""A small JSON-RPC client with raw ``Content-Length`` framing over a server's pipes.

Synchronous on purpose: the tests decide exactly which bytes go out and
when (pipelining many requests, broken headers, invalid UTF-8), and every
read and write has a deadline, so a server that hangs fails the test
instead of hanging it. Also: the reliability knobs and small helpers to run
the CLI and to start ``opendev-snapshot serve``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "server"

# ------------------------------------------------------------------ knobs
# Default: a bounded run for CI. OPENDEV_RELIABILITY_FULL=1 scales every
# test up (hundreds of crash rounds, thousands of fuzz examples); the
# individual knobs below override either mode.
FULL = os.environ.get("OPENDEV_RELIABILITY_FULL", "") not in ("", "0")


def knob(name: str, bounded: int, full: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else (full if FULL else bounded)


CRASH_ROUNDS = knob("OPENDEV_TORTURE_ROUNDS", 25, 300)
CONCURRENCY_SECONDS = knob("OPENDEV_CONCURRENCY_SECONDS", 8, 120)
FUZZ_EXAMPLES = knob("OPENDEV_FUZZ_EXAMPLES", 500, 5000)

# A hang detector, not a speed requirement: a reply that never comes waits
# this long. Generous, so a two-core machine busy with other suites (a
# server starting up under load, a fsync stuck behind other writers) is
# never mistaken for a hang.
TIMEOUT = 60.0


def env_for(snapshot_dir, **extra) -> dict:
    env = dict(os.environ)
    if snapshot_dir is not None:
        env["OPENDEV_SNAPSHOT_DIR"] = str(snapshot_dir)
    else:
        env.pop("OPENDEV_SNAPSHOT_DIR", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SERVER), env.get("PYTHONPATH", "")) if p)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def cli(snapshot_dir, *args, timeout: float = TIMEOUT, cwd=None, env=None) -> subprocess.CompletedProcess:
    """Run ``python -m opendev_snapshot --dir DIR ARGS``; never hangs."""
    cmd = [sys.executable, "-m", "opendev_snapshot"]
    if snapshot_dir is not None:
        cmd += ["--dir", str(snapshot_dir)]
    return subprocess.run(
        cmd + [str(a) for a in args],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        cwd=cwd,
        env=env or env_for(None),
        stdin=subprocess.DEVNULL,
    )


def cli_list(snapshot_dir, *args, **kwargs) -> dict:
    proc = cli(snapshot_dir, "list", "--json", *args, **kwargs)
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    return json.loads(proc.stdout)


def frame(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def encode(message) -> bytes:
    return json.dumps(message, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")


class ServerDied(AssertionError):
    pass


class Server:
    """``opendev-snapshot serve`` on pipes, in its own process group."""

    def __init__(self, snapshot_dir, *, args=(), cwd=None, env=None, preexec_fn=None, stderr_path=None) -> None:
        cmd = [sys.executable, "-m", "opendev_snapshot", *args, "serve"]
        self.stderr_path = stderr_path
        self._stderr = open(stderr_path, "wb") if stderr_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=cwd,
            env=env or env_for(snapshot_dir),
            preexec_fn=preexec_fn,
            start_new_session=True,  # killpg reaches the pre-scan child too
        )
        self.wfd = self.proc.stdin.fileno()
        self.rfd = self.proc.stdout.fileno()
        for fd in (self.wfd, self.rfd):
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        self.buf = bytearray()
        self.next_id = 10**9  # above every id a test writes by hand (a reused id would read as a second answer)
        self.replies: dict = {}  # id -> reply, read but not yet claimed
        self.answered: set = set()  # every id answered so far: a second answer is a failure
        self.null_id: list = []  # answers with "id": null (unparsable or unidentifiable requests)
        self.others: list = []  # notifications and server requests

    # ----------------------------------------------------------- writing
    def write(self, data: bytes, timeout: float = TIMEOUT) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + timeout
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"server did not read its input within {timeout}s")
            _, writable, _ = select.select([], [self.wfd], [], min(remaining, 0.5))
            if not writable:
                # keep draining its output so it can never block on us
                self._pump(0)
                continue
            try:
                view = view[os.write(self.wfd, view) :]
            except BlockingIOError:
                continue
            except BrokenPipeError:
                raise ServerDied(f"server closed its input (exit {self.proc.poll()}): {self.stderr_tail()}") from None

    def send(self, message: dict, timeout: float = TIMEOUT) -> None:
        self.write(frame(encode(message)), timeout)

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def send_request(self, method: str, params=None, *, omit_params: bool = False) -> int:
        msg_id = self.new_id()
        message = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if not omit_params:
            message["params"] = params
        self.send(message)
        return msg_id

    # ----------------------------------------------------------- reading
    def _pump(self, timeout: float) -> bool:
        """Read what is available (waiting up to ``timeout``); False on EOF."""
        readable, _, _ = select.select([self.rfd], [], [], max(0.0, timeout))
        if not readable:
            return True
        try:
            chunk = os.read(self.rfd, 1 << 20)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        self.buf += chunk
        self._parse()
        return True

    def _parse(self) -> None:
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            length = None
            for line in bytes(self.buf[:end]).split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            assert length is not None, f"server wrote a frame without Content-Length: {bytes(self.buf[:200])!r}"
            if len(self.buf) < end + 4 + length:
                return
            body = bytes(self.buf[end + 4 : end + 4 + length])
            del self.buf[: end + 4 + length]
            message = json.loads(body)  # the server's own output must always be valid JSON
            if "method" not in message and "id" in message:
                msg_id = message["id"]
                if msg_id is None:  # JSON-RPC: the request's id could not be known
                    self.null_id.append(message)
                    continue
                key = json.dumps(msg_id)
                assert key not in self.answered, f"the server answered request {msg_id!r} twice: {message}"
                self.answered.add(key)
                self.replies[msg_id] = message
            else:
                self.others.append(message)
                if "id" in message and "method" in message:  # a server request: answer null
                    self.send({"jsonrpc": "2.0", "id": message["id"], "result": None})

    def wait_reply(self, msg_id, timeout: float = TIMEOUT) -> dict:
        deadline = time.monotonic() + timeout
        while msg_id not in self.replies:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no reply to request {msg_id!r} within {timeout}s")
            if not self._pump(remaining):
                raise ServerDied(f"server closed its output (exit {self.proc.poll()}) before replying to {msg_id!r}: {self.stderr_tail()}")
        return self.replies.pop(msg_id)

    def wait_null_id(self, count: int, timeout: float = TIMEOUT) -> list:
        """Wait until ``count`` answers with ``"id": null`` have arrived in all."""
        deadline = time.monotonic() + timeout
        while len(self.null_id) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{len(self.null_id)} of {count} answers with id null within {timeout}s")
            if not self._pump(remaining):
                raise ServerDied(f"server closed its output (exit {self.proc.poll()}): {self.stderr_tail()}")
        return self.null_id

    def request(self, method: str, params=None, timeout: float = TIMEOUT, **kwargs) -> dict:
        """Send one request and return the whole reply (``result`` or ``error``)."""
        return self.wait_reply(self.send_request(method, params, **kwargs), timeout)

    def call(self, method: str, params=None, timeout: float = TIMEOUT):
        reply = self.request(method, params, timeout)
        assert "error" not in reply, reply
        return reply["result"]

    def drain(self, timeout: float = 0.0) -> None:
        deadline = time.monotonic() + timeout
        while self._pump(max(0.0, deadline - time.monotonic())) and time.monotonic() < deadline:
            pass

    def assert_alive(self) -> None:
        reply = self.request("opendev/snapshot.listIncomplete", {})
        assert "result" in reply and isinstance(reply["result"]["sessions"], list), reply

    # ----------------------------------------------------------- lifetime
    def stderr_tail(self, n: int = 2000) -> str:
        if not self.stderr_path:
            return ""
        with contextlib.suppress(OSError):
            return Path(self.stderr_path).read_bytes()[-n:].decode("utf-8", "replace")
        return ""

    def kill_group(self) -> None:
        """SIGKILL the server and its children; safe from another thread."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def drain_to_eof(self, timeout: float = TIMEOUT) -> None:
        """Read everything the (dead or dying) server wrote."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if not self._pump(0.2):
                    return
            except (ServerDied, OSError):
                return
        raise AssertionError(f"server output still open {timeout}s after it should have ended")

    def kill(self) -> None:
        self.kill_group()
        with contextlib.suppress(Exception):
            self.proc.wait(TIMEOUT)
        self._close()

    def close(self, timeout: float = TIMEOUT) -> int | None:
        """End of input, then wait (killing it if it does not exit)."""
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"server did not exit within {timeout}s of end of input") from None
        finally:
            self._close()

    def _close(self) -> None:
        for f in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                f.close()
        if self._stderr is not subprocess.DEVNULL:
            with contextlib.suppress(OSError):
                self._stderr.close()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.kill()
        else:
            self._close()


def tree_state(path) -> dict:
    """name -> (type, size, mtime_ns) of everything under ``path`` (links not followed)."""
    out = {}
    base = Path(path)
    for dirpath, dirnames, filenames in os.walk(base):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            out[str(p.relative_to(base))] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out
