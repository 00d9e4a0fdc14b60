"""Each correction of pygls 2.1.1 in ``server/rpc.py`` and ``server/streams.py``, tested twice.

Frames go through the real path: an ``asyncio.StreamReader`` read by
``pygls.io_.run_async`` into a pygls protocol, answers captured from the
protocol's writer. For every correction one test shows the pygls behaviour
it corrects is still there (stock ``LanguageServerProtocol``, stock
converter, stock reader: if pygls fixes it, that test fails and the
correction can go) and one shows ours answers as the contract says. Every
capture asserts exactly one answer per request id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading

import pytest
from lsprotocol import types
from pygls.io_ import run_async
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol, default_converter

from opendev_snapshot.server.rpc import SnapshotProtocol, converter_factory, parse_error_handler
from opendev_snapshot.server.streams import FrameReader


class Capture:
    def __init__(self) -> None:
        self.messages: list = []

    def write(self, data: bytes) -> None:
        head, _, body = data.partition(b"\r\n\r\n")
        assert int(head.split(b":")[1].split(b"\r\n")[0]) == len(body)
        self.messages.append(json.loads(body))

    def close(self) -> None:
        pass

    def answers(self, msg_id) -> list:
        return [m for m in self.messages if "method" not in m and m.get("id", "missing") == msg_id]

    def one_answer(self, msg_id) -> dict:
        found = self.answers(msg_id)
        assert len(found) == 1, f"{len(found)} answers to {msg_id!r}: {self.messages}"
        return found[0]


def build(stock: bool):
    """A server with a few test features; stock pygls or our protocol and converter."""
    if stock:
        server = LanguageServer("stock", "0", text_document_sync_kind=types.TextDocumentSyncKind.None_)
    else:
        server = LanguageServer(
            "ours", "0", text_document_sync_kind=types.TextDocumentSyncKind.None_,
            protocol_cls=SnapshotProtocol, converter_factory=converter_factory,
        )
    server.seen = {"initialized": 0, "echo": [], "token": []}

    @server.feature("x/echo")
    def echo(ls, params):
        ls.seen["echo"].append(params)
        return params

    @server.feature(types.INITIALIZED)
    def initialized(ls, params):
        ls.seen["initialized"] += 1

    @server.command("x.cmd")
    def cmd(ls, *args):
        ls.seen["token"].append(args)
        return "done"

    return server


def frame(obj) -> bytes:
    body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


async def exchange(server, data: bytes, *, wrap: bool = True, parse_errors: bool = True) -> Capture:
    """Feed ``data`` then end of input through run_async; return what the server wrote."""
    out = Capture()
    server.protocol.set_writer(out)
    stream = asyncio.StreamReader(limit=1 << 16)
    stream.feed_data(data)
    stream.feed_eof()
    handler = parse_error_handler(server.protocol) if parse_errors else None
    await run_async(
        stop_event=threading.Event(),
        reader=FrameReader(stream) if wrap else stream,
        protocol=server.protocol,
        error_handler=handler,
    )
    for _ in range(10):
        await asyncio.sleep(0)
    for msg_id in {m.get("id") for m in out.messages if "method" not in m and m.get("id") is not None}:
        out.one_answer(msg_id)
    return out


INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"processId": None, "capabilities": {}}}


# ------------------------------------------------------------ 1. converter
@pytest.mark.parametrize("stock", [True, False], ids=["stock", "ours"])
async def test_custom_params_stay_dicts(stock):
    server = build(stock)
    out = await exchange(server, frame({"jsonrpc": "2.0", "id": 4, "method": "x/echo", "params": {"class": 1, "def": {"1x": [1]}}}))
    result = out.one_answer(4).get("result")
    if stock:
        assert server.seen["echo"] and not isinstance(server.seen["echo"][0], dict)  # pygls' namedtuple Object
        assert result != {"class": 1, "def": {"1x": [1]}}
    else:
        assert server.seen["echo"] == [{"class": 1, "def": {"1x": [1]}}]
        assert result == {"class": 1, "def": {"1x": [1]}}


@pytest.mark.parametrize("stock", [True, False], ids=["stock", "ours"])
async def test_request_without_params_key_is_answered(stock):
    out = await exchange(build(stock), frame({"jsonrpc": "2.0", "id": 2, "method": "x/echo"}))
    if stock:
        assert out.answers(2) == []  # never answered
    else:
        assert out.one_answer(2)["result"] is None


@pytest.mark.parametrize("stock", [True, False], ids=["stock", "ours"])
def test_error_answers_keep_a_null_id(stock):
    converter = default_converter() if stock else converter_factory()
    message = types.ResponseErrorMessage(id=None, error=types.ResponseError(code=-32700, message="x"))
    data = converter.unstructure(message)
    if stock:
        assert "id" not in data
    else:
        assert data == {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "x"}}


# ---------------------------------------------------- 2. structure_message
BAD_CAPABILITIES = {
    "textDocument": {"textDocument": 5},
    "general.markdown": {"general": {"markdown": 5}},
    "window.showMessage": {"window": {"showMessage": 5}},
    "notebookDocument": {"notebookDocument": 7},
}


@pytest.mark.parametrize("stock", [True, False], ids=["stock", "ours"])
async def test_initialize_with_nested_bad_capabilities_gets_minus_32602(stock):
    data = b"".join(
        frame({**INIT, "id": i, "params": {"processId": None, "capabilities": caps}})
        for i, caps in enumerate(BAD_CAPABILITIES.values(), start=10)
    )
    out = await exchange(build(stock), data)
    for i, name in enumerate(BAD_CAPABILITIES, start=10):
        if stock:
            assert out.answers(i) == [], name  # the request is never answered
        else:
            error = out.one_answer(i)["error"]
            assert error["code"] == -32602 and "initialize" in error["message"], (name, error)


@pytest.mark.parametrize("stock, params", [(True, "absent"), (False, "absent"), (False, "null")],
                         ids=["stock-absent", "ours-absent", "ours-null"])
async def test_initialized_without_params_reaches_the_handler(stock, params):
    note = {"jsonrpc": "2.0", "method": "initialized"}
    if params == "null":
        note["params"] = None
    server = build(stock)
    out = await exchange(server, frame(INIT) + frame(note))
    assert "result" in out.one_answer(1)
    assert server.seen["initialized"] == (0 if stock else 1)


async def test_initialize_without_params_is_invalid_params():
    out = await exchange(build(False), frame({"jsonrpc": "2.0", "id": 3, "method": "initialize"}))
    assert out.one_answer(3)["error"]["code"] == -32602


# -------------------------------------------------------- 3. handle_message
@pytest.mark.parametrize(
    "body, msg_id, code",
    [
        (b'{"jsonrpc":"1.0","id":5,"method":"x/echo"}', 5, -32600),
        (b'{"jsonrpc":"2.0","id":true,"method":"x/echo"}', None, -32600),
        (b'{"jsonrpc":"2.0","id":null,"method":"x/echo"}', None, -32600),
        (b'{"jsonrpc":"2.0","id":{"a":1},"method":"x/echo"}', None, -32600),
        (b'{"jsonrpc":"2.0","id":5,"method":7}', 5, -32600),
        (b"[]", None, -32600),
        (b'[{"jsonrpc":"2.0","id":5,"method":"x/echo"}]', None, -32600),
        (b'{"no": "jsonrpc"}', None, -32600),
        (b"5", None, -32600),
    ],
    ids=["version", "bool-id", "null-id", "object-id", "method-type", "empty-batch", "batch", "not-jsonrpc", "scalar"],
)
@pytest.mark.parametrize("stock", [True, False], ids=["stock", "ours"])
async def test_invalid_requests_get_one_invalid_request_answer(stock, body, msg_id, code):
    out = await exchange(build(stock), frame(body))
    errors = [m for m in out.messages if "error" in m and m.get("id") == msg_id and m["error"]["code"] == code]
    if stock:
        assert errors == []  # dropped, or answered as if valid
    else:
        assert len(errors) == 1 and len(out.messages) == 1, out.messages


@pytest.mark.parametrize("stock", [True, False], ids=["stock", "ours"])
async def test_requests_after_shutdown_are_refused(stock):
    data = frame(INIT) + frame({"jsonrpc": "2.0", "id": 2, "method": "shutdown"}) + frame(
        {"jsonrpc": "2.0", "id": 3, "method": "x/echo", "params": {}}
    )
    out = await exchange(build(stock), data)
    assert out.one_answer(2)["result"] is None
    if stock:
        assert out.answers(3) == []  # the client waits forever
    else:
        assert out.one_answer(3)["error"]["code"] == -32600


@pytest.mark.parametrize("stock", [True, False], ids=["stock", "ours"])
async def test_an_unreadable_answer_fails_the_request_it_answers(stock):
    server = build(stock)
    out = Capture()
    server.protocol.set_writer(out)
    future = server.protocol.send_request(types.WINDOW_SHOW_MESSAGE_REQUEST, types.ShowMessageRequestParams(
        type=types.MessageType.Warning, message="?", actions=[types.MessageActionItem(title="A")]))
    [request] = out.messages
    answer = frame({"jsonrpc": "2.0", "id": request["id"], "result": 5})
    await exchange(server, answer)
    if stock:
        assert not future.done()  # pending forever
    else:
        assert isinstance(future.exception(timeout=0), Exception)


# ----------------------------------------------------- 4. what we advertise
@pytest.mark.parametrize("stock", [True, False], ids=["stock", "ours"])
async def test_open_close_is_not_asked_for(stock):
    out = await exchange(build(stock), frame(INIT))
    sync = out.one_answer(1)["result"]["capabilities"]["textDocumentSync"]
    assert sync["openClose"] is stock


# --------------------------------------------------------------- 5. commands
@pytest.mark.parametrize("stock", [True, False], ids=["stock", "ours"])
async def test_commands_get_the_work_done_token(stock):
    server = build(stock)
    params = {"command": "x.cmd", "arguments": ["a"], "workDoneToken": "tok"}
    out = await exchange(server, frame(INIT) + frame({"jsonrpc": "2.0", "id": 2, "method": "workspace/executeCommand", "params": params}))
    assert out.one_answer(2)["result"] == "done"
    if stock:
        assert server.seen["token"] == [("a",)]
    else:
        assert server.seen["token"] == [(["a"], "tok")]


async def test_unknown_command_names_the_field():
    params = {"command": "x.nope", "arguments": []}
    out = await exchange(build(False), frame({"jsonrpc": "2.0", "id": 2, "method": "workspace/executeCommand", "params": params}))
    error = out.one_answer(2)["error"]
    assert error["code"] == -32602 and error["data"] == {"field": "command"}


# ---------------------------------------------------------- parse errors
@pytest.mark.parametrize(
    "body",
    [b'{"jsonrpc":"2.0","id":5,"method":"x/echo","params":{', b"\xff\xfe{", b"[" * 100_000 + b"]" * 100_000],
    ids=["truncated", "invalid-utf8", "nested-too-deep"],
)
@pytest.mark.parametrize("stock", [True, False], ids=["stock", "ours"])
async def test_unparsable_bodies_get_minus_32700_with_null_id(stock, body):
    out = await exchange(build(stock), frame(body) + frame({"jsonrpc": "2.0", "id": 9, "method": "x/echo", "params": {}}),
                         parse_errors=not stock)
    if stock:
        assert [m for m in out.messages if m.get("id") is None] == []
    else:
        [error] = [m for m in out.messages if "error" in m]
        assert error["id"] is None and error["error"]["code"] == -32700
    assert "result" in out.one_answer(9)  # and the next message is served


# --------------------------------------------------------------- the reader
@pytest.mark.parametrize("wrap", [False, True], ids=["stock", "ours"])
async def test_header_names_in_any_case(wrap):
    body = json.dumps({"jsonrpc": "2.0", "id": 3, "method": "x/echo", "params": {}}).encode()
    data = b"content-length:%d\r\n\r\n" % len(body) + body + frame({"jsonrpc": "2.0", "id": 4, "method": "x/echo", "params": {}})
    out = await exchange(build(False), data, wrap=wrap)
    if wrap:
        assert "result" in out.one_answer(3) and "result" in out.one_answer(4)
    else:
        assert out.answers(3) == []  # pygls reads its body as headers, and loses it


@pytest.mark.parametrize("wrap", [False, True], ids=["stock", "ours"])
async def test_a_line_over_the_limit_does_not_end_the_server(wrap):
    data = b"x" * (1 << 17) + b"\r\n" + frame({"jsonrpc": "2.0", "id": 4, "method": "x/echo", "params": {}})
    if not wrap:
        with pytest.raises(ValueError):  # out of run_async: the server would end
            await exchange(build(False), data, wrap=False)
        return
    out = await exchange(build(False), data)
    assert "result" in out.one_answer(4)


@pytest.mark.parametrize("wrap", [False, True], ids=["stock", "ours"])
async def test_end_of_input_inside_a_body_ends_quietly(wrap):
    data = frame({"jsonrpc": "2.0", "id": 4, "method": "x/echo", "params": {}}) + b"Content-Length: 50\r\n\r\n{\"jsonrpc\""
    if not wrap:
        with pytest.raises(asyncio.IncompleteReadError):
            await exchange(build(False), data, wrap=False)
        return
    out = await exchange(build(False), data)
    assert "result" in out.one_answer(4)


async def test_a_connection_that_has_not_authenticated_ends_at_a_first_line_that_is_no_header():
    stream = asyncio.StreamReader()
    stream.feed_data(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
    stream.feed_eof()
    reader = FrameReader(stream, header_first=True)
    assert await reader.readline() == b"" and reader.refused_header


async def test_a_connection_that_has_not_authenticated_ends_at_a_big_body():
    stream = asyncio.StreamReader()
    stream.feed_data(b"content-length: 99999999\r\n\r\n")
    stream.feed_eof()
    reader = FrameReader(stream, header_first=True, max_body=1 << 20)
    assert await reader.readline() == b"" and not reader.refused_header


# -------------------------------------------------------------- exit codes
@pytest.mark.parametrize("shutdown, code", [(False, 1), (True, 0)], ids=["exit-alone", "shutdown-then-exit"])
async def test_exit_raises_system_exit_with_the_code_through_run_async(shutdown, code):
    """No override needed: pygls' ``exit`` raises SystemExit(code) and run_async lets it through."""
    data = frame(INIT)
    if shutdown:
        data += frame({"jsonrpc": "2.0", "id": 2, "method": "shutdown"})
    data += frame({"jsonrpc": "2.0", "method": "exit"})
    with pytest.raises(SystemExit) as info:
        await exchange(build(False), data)
    assert info.value.code == code


# ------------------------------------------------------------------- logs
async def test_a_clients_mistakes_leave_warnings_not_tracebacks(caplog):
    from opendev_snapshot.server.errors import invalid_params
    from opendev_snapshot.server.rpc import QuietExpectedErrors

    QuietExpectedErrors.install()
    server = build(False)

    @server.feature("x/refuse")
    def refuse(ls, params):
        raise invalid_params("sessionId", "is required")

    @server.feature("x/crash")
    def crash(ls, params):
        raise ZeroDivisionError("a real bug")

    data = (frame({"jsonrpc": "2.0", "id": 1, "method": "x/refuse", "params": {}})
            + frame(b"{not json") + frame({**INIT, "id": 2, "params": {"capabilities": 5}})
            + frame({"jsonrpc": "2.0", "id": 3, "method": "x/crash", "params": {}}))
    with caplog.at_level(logging.DEBUG):
        out = await exchange(server, data)
    assert out.one_answer(1)["error"]["code"] == -32602 and out.one_answer(2)["error"]["code"] == -32602
    assert out.one_answer(3)["error"]["code"] == -32603
    tracebacks = [(r.name, type(r.exc_info[1]).__name__) for r in caplog.records if r.exc_info]
    assert tracebacks and all(kind == "ZeroDivisionError" for _name, kind in tracebacks), tracebacks  # only the real bug
    assert sum("answering" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING) >= 2


async def test_plain_results_are_sent_as_they_are_and_typed_ones_through_the_converter():
    """The response/notification hooks skip cattrs' walk of plain dicts, nothing else changes."""
    server = build(False)
    big = {"sessions": [{"sessionId": f"s{i}", "lastToolResults": [{"outputPreview": "x" * 50}] * 10} for i in range(50)]}

    @server.feature("x/big")
    def big_result(ls, params):
        return big

    @server.feature("x/typed")
    def typed_result(ls, params):
        return {"range": types.Range(start=types.Position(line=1, character=2), end=types.Position(line=3, character=4)),
                "kind": types.MessageType.Warning, "none": None}

    out = await exchange(server, frame(INIT) + frame({"jsonrpc": "2.0", "id": 2, "method": "x/big", "params": {}})
                         + frame({"jsonrpc": "2.0", "id": 3, "method": "x/typed", "params": {}}))
    assert out.one_answer(2) == {"jsonrpc": "2.0", "id": 2, "result": big}
    assert out.one_answer(3)["result"] == {"range": {"start": {"line": 1, "character": 2}, "end": {"line": 3, "character": 4}},
                                           "kind": 2, "none": None}
    server.protocol.notify("x/note", {"a": [1, {"b": None}]})
    assert out.messages[-1] == {"jsonrpc": "2.0", "method": "x/note", "params": {"a": [1, {"b": None}]}}


@pytest.mark.parametrize("stock", [True, False], ids=["stock", "ours"])
async def test_an_async_initialize_handler_is_answered_once(stock):
    """Finding 3: the old fast start answered id 1 itself, and again when an async handler finished."""
    server = build(stock)
    seen = []

    @server.feature(types.INITIALIZE)
    async def initialize(ls, params):
        await asyncio.sleep(0.01)
        seen.append(params.process_id)

    out = await exchange(server, frame({**INIT, "params": {"processId": 7, "capabilities": {}}}))
    for _ in range(50):
        if out.answers(1):
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert "capabilities" in out.one_answer(1)["result"] and seen == [7]
