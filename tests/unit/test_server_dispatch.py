"""The transport's dispatcher over the real pygls protocol, without a subprocess.

Each case feeds raw message bodies and checks that every request gets
exactly one answer, also where stock pygls 2.1.1 would stay silent.
"""

from __future__ import annotations

import asyncio
import json

import attrs
import pytest

from opendev_snapshot.server.app import create_server
from opendev_snapshot.server.context import ServerContext
from opendev_snapshot.server.transport import Dispatcher


@attrs.define
class Params:
    session_id: str


@attrs.define
class TypedRequest:
    id: int
    params: Params
    method: str = "x/typed"
    jsonrpc: str = "2.0"


class Capture:
    def __init__(self):
        self.frames = []

    def write(self, data: bytes):
        head, _, body = data.partition(b"\r\n\r\n")
        assert int(head.split(b":")[1].split(b"\r\n")[0]) == len(body)
        self.frames.append(json.loads(body))

    def close(self):
        pass


@pytest.fixture
def wired(tmp_path):
    ctx = ServerContext(cli_dir=str(tmp_path / "snaps"))
    server = create_server(ctx)
    out = Capture()
    server.protocol.set_writer(out)
    yield server, Dispatcher(server.protocol), out
    ctx.close_store()


def feed(dispatcher, obj):
    dispatcher.dispatch(obj if isinstance(obj, bytes) else json.dumps(obj).encode())


async def settle():
    for _ in range(5):
        await asyncio.sleep(0)


def answers(out, msg_id):
    return [f for f in out.frames if f.get("id") == msg_id and "method" not in f]


async def test_missing_params_key_is_answered(wired):
    server, d, out = wired
    feed(d, {"jsonrpc": "2.0", "id": 1, "method": "opendev/snapshot.listIncomplete"})
    feed(d, {"jsonrpc": "2.0", "id": 2, "method": "opendev/snapshot.remove"})
    await settle()
    [ok] = answers(out, 1)
    assert ok["result"] == {"sessions": [], "skipped": []}
    [err] = answers(out, 2)
    assert err["error"]["code"] == -32602 and err["error"]["data"] == {"field": "sessionId"}


async def test_typed_custom_params_failing_while_read_still_get_an_answer(wired):
    """If a method's params are typed (get_message_type), a bad message fails
    while it is structured; stock pygls then sends nothing. We answer -32602."""
    server, d, out = wired
    protocol = server.protocol
    original = protocol.get_message_type
    protocol.get_message_type = lambda m: TypedRequest if m == "x/typed" else original(m)
    feed(d, {"jsonrpc": "2.0", "id": 3, "method": "x/typed", "params": {"session_id": ["not", "a", "str"], "x": {}}})
    await settle()
    [err] = answers(out, 3)
    assert err["error"]["code"] == -32602


async def test_params_with_python_keywords_stay_a_dict(wired):
    server, d, out = wired
    seen = []

    @server.feature("x/echo")
    def echo(ls, params):
        seen.append(params)
        return params

    feed(d, {"jsonrpc": "2.0", "id": 4, "method": "x/echo", "params": {"class": 1, "def": {"1x": [1]}}})
    await settle()
    assert seen == [{"class": 1, "def": {"1x": [1]}}]
    assert answers(out, 4)[0]["result"] == {"class": 1, "def": {"1x": [1]}}


@pytest.mark.parametrize(
    "body, code",
    [
        (b'{"jsonrpc":"2.0","id":5,"method":"opendev/snapshot.load","params":{', -32700),
        (b'{"jsonrpc":"1.0","id":5,"method":"opendev/snapshot.load"}', -32600),
        (b'{"jsonrpc":"2.0","id":5,"method":7}', -32600),
        (b'{"jsonrpc":"2.0","id":5,"method":"opendev/snapshot.load","params":[1]}', -32602),
        (b'{"jsonrpc":"2.0","id":5,"method":"initialize","params":{"capabilities":5}}', -32602),
        (b'{"jsonrpc":"2.0","id":5,"method":"no/such/method","params":{}}', -32601),
    ],
    ids=["parse", "version", "method-type", "positional", "typed-lsp", "unknown"],
)
async def test_bad_messages_get_one_error_answer(wired, body, code):
    server, d, out = wired
    feed(d, body)
    await settle()
    [err] = answers(out, 5)
    assert err["error"]["code"] == code


@pytest.mark.parametrize(
    "body, code",
    [
        (b"[1, 2", -32700),
        (b"[]", -32600),
        (b'{"no": "jsonrpc"}', -32600),
        (b'{"jsonrpc":"2.0","id":true,"method":"opendev/snapshot.load"}', -32600),
        (b'{"jsonrpc":"2.0","id":null,"method":"opendev/snapshot.load"}', -32600),
        (b'{"jsonrpc":"2.0","id":7,"method":"x","params":' + b"[" * 5000 + b"]" * 5000 + b"}", -32700),
    ],
    ids=["truncated", "empty-batch", "not-jsonrpc", "bool-id", "null-id", "nested-too-deep"],
)
async def test_unidentifiable_requests_are_answered_with_null_id(wired, body, code):
    """JSON-RPC 2.0 section 5: when the id cannot be known, the error goes with "id": null."""
    server, d, out = wired
    feed(d, body)
    await settle()
    [reply] = [m for m in out.frames]
    assert reply["error"]["code"] == code
    assert "id" in reply and reply["id"] in (None, 7)


async def test_handler_crash_is_answered_and_server_carries_on(wired):
    server, d, out = wired

    @server.feature("x/crash")
    def crash(ls, params):
        raise ZeroDivisionError("nope")

    feed(d, {"jsonrpc": "2.0", "id": 6, "method": "x/crash", "params": {}})
    feed(d, {"jsonrpc": "2.0", "id": 7, "method": "opendev/snapshot.listIncomplete", "params": {}})
    await settle()
    assert answers(out, 6)[0]["error"]["code"] == -32603
    assert "result" in answers(out, 7)[0]


async def test_exit_records_the_code_instead_of_sys_exit(wired):
    server, d, out = wired
    stopped = []
    server.protocol.on_exit = stopped.append
    feed(d, {"jsonrpc": "2.0", "method": "exit"})  # no shutdown before: 1
    await settle()
    assert server.protocol.exit_code == 1 and stopped == [1]


async def test_shutdown_then_exit_records_0(wired):
    server, d, out = wired
    feed(d, {"jsonrpc": "2.0", "id": 8, "method": "shutdown"})
    await settle()
    assert answers(out, 8)[0]["result"] is None
    feed(d, {"jsonrpc": "2.0", "method": "exit"})
    await settle()
    assert server.protocol.exit_code == 0
