"""Drive the real ``opendev-snapshot serve`` subprocess with pytest-lsp's client.

The client keeps custom params and results as plain dicts (the server's
own converter), records every ``opendev/*`` notification and every prompt,
and answers prompts by a policy the test chooses. ``send_raw`` writes a
hand-made frame (e.g. a request with no ``params`` key) and waits for its
answer. Every wait has a timeout, so a server that never answers fails the
test instead of hanging it.

Exactly one reply per request id: both clients here record every answer
the server sends, and a second answer to an id is a test failure (the
session fails at its end, ``RawClient`` at once), never an overwrite.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable

from lsprotocol import types
from pytest_lsp import LanguageClient, client_capabilities
from pytest_lsp.client import register_lsp_features
from pytest_lsp.protocol import LanguageClientProtocol

from opendev_snapshot.server.rpc import converter_factory

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = ("visual_studio_code", "neovim", "emacs")
RECOVERABLE = "opendev/recoverableSessions"
RECOVER = "opendev/recoverSession"
TIMEOUT = 10.0


def server_command(*extra: str) -> list:
    """``python -m opendev_snapshot [global options] serve``."""
    return [sys.executable, "-m", "opendev_snapshot", *extra, "serve"]


def server_env(snapshot_dir, **extra) -> dict:
    env = dict(os.environ)
    env["OPENDEV_SNAPSHOT_DIR"] = str(snapshot_dir)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "server"), env.get("PYTHONPATH", "")])
    env.update({k: str(v) for k, v in extra.items()})
    return env


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def file_uri(path) -> str:
    return Path(path).resolve().as_uri()


class Harness:
    def __init__(self, client: LanguageClient) -> None:
        self.client = client
        self.notes: dict[str, list] = {RECOVERABLE: [], RECOVER: []}
        self.prompts: list = []
        self.answer: Callable[[types.ShowMessageRequestParams], Any] = lambda p: None
        self._changed = asyncio.Condition()
        self.result: types.InitializeResult | None = None

    # ----------------------------------------------------------- recording
    async def _record(self, method: str, params) -> None:
        async with self._changed:
            self.notes.setdefault(method, []).append(params)
            self._changed.notify_all()

    async def _prompt(self, params: types.ShowMessageRequestParams):
        async with self._changed:
            self.prompts.append(params)
            self._changed.notify_all()
        title = self.answer(params)
        if asyncio.iscoroutine(title) or isinstance(title, asyncio.Future):
            title = await title
        return None if title is None else types.MessageActionItem(title=title)

    async def wait_until(self, predicate: Callable[[], Any], timeout: float = TIMEOUT, what: str = "condition"):
        """Wait for ``predicate()`` (woken by recorded messages, else polled)."""
        deadline = time.monotonic() + timeout
        while not (value := predicate()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            async with self._changed:
                try:
                    await asyncio.wait_for(self._changed.wait(), min(0.02, remaining))
                except asyncio.TimeoutError:
                    pass
        return value

    async def wait_note(self, method: str = RECOVERABLE, count: int = 1, timeout: float = TIMEOUT) -> list:
        await self.wait_until(lambda: len(self.notes.get(method, [])) >= count, timeout, f"{count} x {method}")
        return self.notes[method]

    async def wait_prompts(self, count: int, timeout: float = TIMEOUT) -> list:
        await self.wait_until(lambda: len(self.prompts) >= count, timeout, f"{count} prompts")
        return self.prompts

    # ------------------------------------------------------------ requests
    async def request(self, method: str, params: Any = None, timeout: float = TIMEOUT):
        return await asyncio.wait_for(self.client.protocol.send_request_async(method, params), timeout)

    async def command(self, name: str, *arguments, token=None, timeout: float = TIMEOUT):
        params = types.ExecuteCommandParams(command=name, arguments=list(arguments), work_done_token=token)
        return await asyncio.wait_for(self.client.workspace_execute_command_async(params), timeout)

    def notify(self, method: str, params: Any = None) -> None:
        self.client.protocol.notify(method, params)

    async def send_raw(self, message: dict | bytes, timeout: float = TIMEOUT, *, answer_id=None):
        """Write one hand-made frame; for requests (or ``answer_id``), wait for the answer.

        Returns ``("result", value)`` or ``("error", ResponseError)``.
        """
        protocol = self.client.protocol
        msg_id = message.get("id") if isinstance(message, dict) else answer_id
        future = None
        if msg_id is not None:
            future = asyncio.get_running_loop().create_future()
            protocol.raw_waiting[msg_id] = future
        body = message if isinstance(message, bytes) else json.dumps(message).encode()
        protocol.writer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        if future is None:
            return None
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"no answer within {timeout}s to {message!r}") from None

    async def wait_null_id_error(self, count: int = 1, timeout: float = TIMEOUT) -> list:
        """The errors the server sent with ``"id": null`` (unparsable or unidentifiable requests)."""
        errors = self.client.protocol.null_id_errors
        await self.wait_until(lambda: len(errors) >= count, timeout, f"{count} error(s) with id null")
        return errors

    def assert_one_reply_per_id(self) -> None:
        dupes = self.client.protocol.duplicates()
        assert not dupes, f"the server answered these request ids more than once: {dupes}"

    @property
    def process(self):
        return self.client._server

    async def shutdown(self, timeout: float = TIMEOUT) -> int:
        await asyncio.wait_for(self.client.shutdown_async(None), timeout)
        self.client.exit(None)
        return await asyncio.wait_for(self.process.wait(), timeout)


class CountingProtocol(LanguageClientProtocol):
    """pytest-lsp's client protocol that counts the server's answers per id,
    remembers the ids of the server's own requests, and hands answers to
    ``send_raw`` frames back to the harness."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.answered: dict = {}  # id -> number of answers
        self.server_request_ids: list = []
        self.raw_waiting: dict = {}  # id -> asyncio.Future (send_raw)
        self.null_id_errors: list = []  # answers with "id": null (parse errors, invalid requests)

    def handle_message(self, message):
        method = getattr(message, "method", None)
        msg_id = getattr(message, "id", None)
        if method is None and hasattr(message, "id"):  # an answer (result or error)
            if msg_id is None:
                self.null_id_errors.append(getattr(message, "error", None))
                return
            self.answered[msg_id] = self.answered.get(msg_id, 0) + 1
            waiter = self.raw_waiting.pop(msg_id, None) if msg_id is not None else None
            if waiter is not None:
                error = getattr(message, "error", None)
                if not waiter.done():
                    waiter.set_result(("error", error) if error is not None else ("result", message.result))
                return
        elif method is not None and hasattr(message, "id"):
            self.server_request_ids.append(msg_id)
        super().handle_message(message)

    def duplicates(self) -> dict:
        return {k: n for k, n in self.answered.items() if n > 1 and k is not None}


def make_client() -> LanguageClient:
    client = LanguageClient(converter_factory=converter_factory, protocol_cls=CountingProtocol)
    register_lsp_features(client)
    return client


def seed(snapshot_dir, session_id: str, project: str, *, age_ms: int = 600_000, lock: str | None = None, **fields) -> dict:
    """Write a snapshot with the core store (in this process).

    ``lock``: None (lock-less: status by age), ``"released"`` (a lock file
    nobody holds: interrupted).
    """
    from opendev_snapshot.core import SnapshotStore, new_record

    record = new_record(session_id, str(project))
    record["snapshot_timestamp_ms"] = now_ms() - age_ms
    record.update(fields)
    with SnapshotStore(snapshot_dir, use_index=False) as store:
        store.save(record)
        if lock == "released":
            assert store.claim(session_id)
            store.release(session_id)
    return record


@contextlib.asynccontextmanager
async def session(
    snapshot_dir,
    *,
    client: str = "visual_studio_code",
    folders: list | None = None,
    root: str | Path | None = None,
    init_options: Any = None,
    answer: Callable | None = None,
    process_id: int | None = None,
    env: dict | None = None,
    cmd: list | None = None,
    initialize: bool = True,
):
    """A started, initialized server; shut down (with a timeout) afterwards."""
    lsp = make_client()
    harness = Harness(lsp)
    if answer is not None:
        harness.answer = answer

    async def on_recoverable(ls, params):
        await harness._record(RECOVERABLE, params)

    async def on_recover(ls, params):
        await harness._record(RECOVER, params)

    async def on_prompt(ls, params):
        return await harness._prompt(params)

    lsp.feature(RECOVERABLE)(on_recoverable)
    lsp.feature(RECOVER)(on_recover)
    lsp.feature(types.WINDOW_SHOW_MESSAGE_REQUEST)(on_prompt)
    await lsp.start_io(*(cmd or server_command()), env=env or server_env(snapshot_dir))
    try:
        if initialize:
            workspace_folders = None
            root_uri = None
            if folders is not None:
                workspace_folders = [
                    types.WorkspaceFolder(uri=file_uri(f), name=Path(f).name) for f in folders
                ]
                root_uri = workspace_folders[0].uri if workspace_folders else None
            if root is not None:
                root_uri = file_uri(root)
            params = types.InitializeParams(
                capabilities=client_capabilities(client),
                process_id=process_id if process_id is not None else os.getpid(),
                root_uri=root_uri,
                workspace_folders=workspace_folders,
                initialization_options=init_options,
            )
            harness.result = await asyncio.wait_for(lsp.initialize_session(params), TIMEOUT)
        yield harness
        harness.assert_one_reply_per_id()
    finally:
        proc = lsp._server
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(lsp.shutdown_session(), 5)
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(lsp.stop(), 5)


class RawClient:
    """Plain JSON-RPC over a subprocess' pipes (for exit codes and transport tests)."""

    def __init__(self, proc) -> None:
        self.proc = proc
        self._next = 0
        self.answered: set = set()
        self.backlog: list = []  # messages read while waiting for something else
        self.last_frame = b""  # the raw body of the message read last, as it came on the wire

    @classmethod
    async def start(cls, snapshot_dir, *args, env=None, cmd=None, **kwargs) -> "RawClient":
        proc = await asyncio.create_subprocess_exec(
            *(cmd or server_command()),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env or server_env(snapshot_dir),
            **kwargs,
        )
        return cls(proc)

    def send(self, message: dict) -> None:
        body = json.dumps(message).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    async def recv(self, timeout: float = TIMEOUT) -> dict:
        if self.backlog:
            return self.backlog.pop(0)

        async def read():
            head = await self.proc.stdout.readuntil(b"\r\n\r\n")
            length = None
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            assert length is not None, head
            self.last_frame = await self.proc.stdout.readexactly(length)
            message = json.loads(self.last_frame)
            if "method" not in message and message.get("id") is not None:
                assert message["id"] not in self.answered, f"a second answer to request {message['id']!r}: {message}"
                self.answered.add(message["id"])
            return message

        return await asyncio.wait_for(read(), timeout)

    async def drain(self, timeout: float = TIMEOUT) -> list:
        """Every message until end of output (each checked by ``recv``)."""
        out = []
        while True:
            try:
                out.append(await self.recv(timeout))
            except asyncio.IncompleteReadError:
                return out

    async def request(self, method: str, params=None, timeout: float = TIMEOUT) -> dict:
        self._next += 1
        msg_id = self._next
        message = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        while True:
            reply = await self.recv(timeout)
            if reply.get("id") == msg_id and "method" not in reply:
                return reply

    async def request_with_id(self, msg_id, method: str, params=None, timeout: float = TIMEOUT) -> dict:
        """A request with the caller's id; notifications and server requests read meanwhile are kept."""
        message = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        while True:
            reply = await self.recv(timeout)
            if reply.get("id") == msg_id and "method" not in reply:
                return reply
            self.backlog.append(reply)

    def notify(self, method: str, params=None) -> None:
        message = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)

    async def initialize(self, process_id=None, root=None, options=None) -> dict:
        params = {"processId": process_id, "capabilities": {}, "rootUri": file_uri(root) if root else None}
        if options is not None:
            params["initializationOptions"] = options
        reply = await self.request("initialize", params)
        self.notify("initialized", {})
        return reply

    async def wait(self, timeout: float = TIMEOUT) -> int:
        return await asyncio.wait_for(self.proc.wait(), timeout)

    def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()

    async def aclose(self) -> None:
        """Kill if still running and reap, so no transport outlives the test's loop."""
        self.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.proc.wait(), 5)
