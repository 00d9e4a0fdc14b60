"""Fuzz: hypothesis-generated JSON-RPC traffic against one real server process.

Each example sends one to four frames, pipelined: requests for the
contract's methods, ``workspace/executeCommand``, unknown methods and
notifications, with params of every JSON type (big integers, floats,
lone surrogates, nesting a few hundred levels deep, strings over 1 MiB,
raw ``NaN`` / ``Infinity`` / ``-Infinity`` tokens, invalid UTF-8 bytes)
and sometimes a broken frame (no, negative or non-numeric
``Content-Length``, a header without a colon, a length too short).

Checked: every well-framed request with a valid id gets exactly one reply,
a result or a JSON-RPC error with a known code (``-32602`` names a field);
a body that is not JSON (invalid UTF-8, raw bytes, nesting deeper than the
parser follows) gets one ``-32700`` with ``"id": null`` (JSON-RPC 2.0: its
id cannot be known, and guessing could answer another request twice);
no reply takes longer than the timeout; after each example the server
still answers a valid request; nothing is written outside the snapshot
directory (its parent and the server's cwd are compared before and
after), and nothing but snapshot, lock, index and temporary files appears
inside it.

Examples: ``OPENDEV_FUZZ_EXAMPLES`` (default 500; 5000 with
``OPENDEV_RELIABILITY_FULL=1``). Deterministic: ``derandomize=True``,
no example database.
"""

from __future__ import annotations

import json
import os
import re

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from reliability.framed import FUZZ_EXAMPLES, Server, frame, tree_state

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(120 + FUZZ_EXAMPLES)]

CONTRACT = [
    "opendev/snapshot.save",
    "opendev/snapshot.load",
    "opendev/snapshot.listIncomplete",
    "opendev/snapshot.cleanup",
    "opendev/snapshot.remove",
    "opendev/snapshot.markCompleted",
    "opendev/snapshot.recordToolResult",
]
COMMANDS = ["opendev.snapshot.recover", "opendev.snapshot.discard", "opendev.snapshot.listIncomplete", "opendev.snapshot.cleanup"]
FIELDS = [
    "sessionId", "session_id", "projectDir", "project_dir", "messageCount", "message_count",
    "lastToolResults", "last_tool_results", "snapshotTimestampMs", "snapshot_timestamp_ms",
    "completed", "costUsd", "cost_usd", "claim", "status", "limit", "maxAgeMs", "dryRun",
    "includeIncomplete", "toolName", "callId", "outputPreview", "success", "maxEntries",
    "workDoneToken", "tool_name", "call_id", "output_preview",
]
HOSTILE_IDS = ["fz", "fz-1", "fz.x", "Fz_2", "../x", "/abs", "a/b", "a\x00b", "x" * 129, "x" * 128, "", ".hidden", "..", "fz\n", "fz ", "é"]
KNOWN_CODES = {-32700, -32600, -32601, -32602, -32603, -32001, -32002, -32800}
ALLOWED_NAMES = re.compile(r"^(.+_session_snapshot\.(json|lock)|\..*\.tmp|\.opendev-index.*|\.opendev-update\.lock|\.trash(/.*)?)$")
VALID_METHODS = set(CONTRACT) | {"workspace/executeCommand"}


class Raw:
    """Literal bytes spliced into the JSON text (raw tokens, deep nesting, bad UTF-8)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"Raw({self.data[:60]!r}{'...' if len(self.data) > 60 else ''})"


def dumps(value) -> bytes:
    if isinstance(value, Raw):
        return value.data
    if isinstance(value, dict):
        return b"{" + b",".join(dumps(str(k)) + b":" + dumps(v) for k, v in value.items()) + b"}"
    if isinstance(value, list):
        return b"[" + b",".join(dumps(v) for v in value) + b"]"
    if isinstance(value, str):  # lone surrogates become invalid UTF-8 (CESU) bytes
        return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return json.dumps(value, allow_nan=True).encode()


# ---------------------------------------------------------------- values
texts = st.text(st.characters(exclude_categories=()), max_size=40)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 2**64 - 1, 2**64, 2**63, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
    st.sampled_from(HOSTILE_IDS),
    st.sampled_from([Raw(b"NaN"), Raw(b"Infinity"), Raw(b"-Infinity"), Raw(b"1e400"), Raw(b"-0"), Raw(b"1.0")]),
    st.binary(min_size=1, max_size=8).map(lambda b: Raw(b'"' + b.replace(b'"', b"").replace(b"\\", b"") + b'\xff\xc0"')),
)


def deep(depth: int, kind: int) -> Raw:
    if kind == 0:
        return Raw(b"[" * depth + b"]" * depth)
    return Raw(b'{"a":' * depth + b"null" + b"}" * depth)


def big(size: int, kind: int) -> str | Raw:
    if kind == 0:
        return "x" * size
    return Raw(b'"' + "é".encode() * (size // 2) + b'"')


values = st.recursive(
    leaves,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(FIELDS) | texts, children, max_size=4),
    max_leaves=12,
)
special = st.one_of(
    st.builds(deep, st.integers(min_value=50, max_value=900), st.integers(0, 1)),
    st.builds(big, st.sampled_from([1 << 20, (1 << 20) + 1, 3 << 20]), st.integers(0, 1)),
)
plausible = {
    "sessionId": st.sampled_from(HOSTILE_IDS),
    "projectDir": st.sampled_from(["/work/p", "file:///work/p", "relative", "", "/work/p/../q", "file://%2F"]) | texts,
    "messageCount": st.sampled_from([0, 3, -1, 2**64 - 1, 2**64, "3", True, 1.0, None]),
    "maxAgeMs": st.sampled_from([0, 1, 10**12, -5, 2**64, "7d", None, 1.5]),
    "limit": st.sampled_from([0, 1, 5, -1, None, "2", 2**64]),
    "status": st.sampled_from(["running", "interrupted", "completed", "", None, 1]),
    "claim": st.sampled_from([True, False, None, 0, "yes"]),
    "costUsd": st.sampled_from([0, 0.5, 1e308, Raw(b"NaN"), Raw(b"Infinity"), -1.0, "1"]),
}


@st.composite
def params(draw):
    kind = draw(st.integers(0, 99))
    if kind < 8:
        return draw(values)  # anything at all, including no object
    if kind < 12:
        return draw(special)
    chosen = draw(st.lists(st.sampled_from(FIELDS), max_size=7, unique=True))
    out = {}
    for name in ["sessionId", "projectDir"] + chosen:
        if draw(st.integers(0, 9)) == 0:
            continue  # sometimes leave a required field out
        strategy = plausible.get(name)
        if kind < 20:
            out[name] = draw(special)
        elif strategy is not None and draw(st.booleans()):
            out[name] = draw(strategy)
        elif name in ("lastToolResults", "last_tool_results"):
            out[name] = draw(st.lists(st.fixed_dictionaries({
                "toolName": texts, "callId": texts, "outputPreview": texts | special, "success": st.booleans() | values,
            }) | values, max_size=3))
        else:
            out[name] = draw(values)
    return out


@st.composite
def messages(draw):
    kind = draw(st.integers(0, 9))
    if kind < 6:
        method = draw(st.sampled_from(CONTRACT))
        body = {"params": draw(params())}
    elif kind < 8:
        method = "workspace/executeCommand"
        args = draw(st.lists(st.sampled_from(HOSTILE_IDS) | values | params(), max_size=3))
        body = {"params": {"command": draw(st.sampled_from(COMMANDS) | texts), "arguments": args}}
    else:
        method = draw(st.sampled_from(["opendev/snapshot.nope", "", "textDocument/hover", "$/cancelRequest", "$/setTrace"]) | texts)
        body = {"params": draw(values)}
    if draw(st.integers(0, 9)) == 0:
        body = {}  # no params key at all
    id_kind = draw(st.integers(0, 19))
    notification = id_kind == 0
    weird_id = {1: Raw(b"null"), 2: 1.5, 3: True, 4: {"a": 1}}.get(id_kind)
    framing = draw(st.sampled_from(
        ["ok"] * 12 + ["extra-header", "lowercase", "padded", "short", "non-numeric", "negative", "missing", "no-colon"]))
    return method, body, notification, weird_id, framing


BROKEN = {"short", "non-numeric", "negative", "missing", "no-colon"}


def parses(data: bytes) -> bool:
    """Whether the server's ``json.loads`` reads ``data``; on a fresh thread, whose stack is
    as shallow as the server's (deep nesting fails by recursion depth, which counts ours)."""
    import threading

    ok = []

    def attempt() -> None:
        try:
            json.loads(data)
        except (ValueError, RecursionError):
            return
        ok.append(True)

    thread = threading.Thread(target=attempt)
    thread.start()
    thread.join()
    return bool(ok)


def message_body(msg_id, method: str, body: dict, notification: bool, weird_id) -> bytes:
    message: dict = {"jsonrpc": "2.0"}
    if not notification:
        message["id"] = weird_id if weird_id is not None else msg_id
    message["method"] = method
    message.update(body)
    return dumps(message)


def encode_frame(msg_id, method: str, body: dict, notification: bool, weird_id, framing: str) -> bytes:
    data = message_body(msg_id, method, body, notification, weird_id)
    if framing == "ok":
        return frame(data)
    if framing == "extra-header":
        return b"Content-Length: %d\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n" % len(data) + data
    if framing == "lowercase":
        return b"content-length:%d\r\n\r\n" % len(data) + data
    if framing == "padded":  # declared longer, padded with whitespace: still one whole message
        return b"Content-Length: %d\r\n\r\n" % (len(data) + 7) + data + b" \t\n \r\n "
    if framing == "short":
        return b"Content-Length: %d\r\n\r\n" % max(0, len(data) - 3) + data + b"\r\n\r\n"
    if framing == "non-numeric":
        return b"Content-Length: twelve\r\n\r\n" + data + b"\r\n\r\n"
    if framing == "negative":
        return b"Content-Length: -%d\r\n\r\n" % len(data) + data + b"\r\n\r\n"
    if framing == "missing":
        return b"Content-Type: application/json\r\n\r\n" + data + b"\r\n\r\n"
    if framing == "no-colon":
        return b"Content-Length %d\r\n\r\n" % len(data) + data + b"\r\n\r\n"
    raise AssertionError(framing)


def check_reply(reply: dict, msg_id, method: str) -> None:
    assert reply.get("jsonrpc") == "2.0" and reply.get("id") == msg_id, reply
    assert ("result" in reply) != ("error" in reply), reply
    if "error" in reply:
        error = reply["error"]
        assert isinstance(error.get("code"), int) and isinstance(error.get("message"), str) and error["message"], reply
        assert error["code"] in KNOWN_CODES, reply
        assert error["code"] != -32603, f"internal error (an unhandled exception) for {method}: {error}"
        if error["code"] == -32602 and method in CONTRACT:
            field = (error.get("data") or {}).get("field")
            assert isinstance(field, str) and field in error["message"], f"-32602 without naming the field: {error}"
        if method in VALID_METHODS:
            assert error["code"] != -32002, f"storage failure in a healthy directory: {error}"


def test_fuzzed_json_rpc_traffic_is_always_answered(tmp_path):
    box = tmp_path / "box"
    snaps = box / "snaps"
    cwd = box / "cwd"
    cwd.mkdir(parents=True)
    snaps.mkdir(mode=0o700)
    (box / "bystander.txt").write_text("keep me")
    before = tree_state(box)
    log = tmp_path / "server.log"
    state = {"id": 1000, "examples": 0, "replies": 0, "frames": 0, "broken": 0, "max_frame": 0, "errors": {}}
    with Server(snaps, cwd=cwd, stderr_path=log) as server:
        init = server.request("initialize", {"processId": os.getpid(), "rootUri": cwd.as_uri(), "capabilities": {},
                                             "initializationOptions": {"prompt": False}})
        assert "result" in init, init
        server.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})

        @settings(max_examples=FUZZ_EXAMPLES, derandomize=True, database=None, deadline=None,
                  suppress_health_check=list(HealthCheck), print_blob=False,
                  phases=[Phase.explicit, Phase.generate])  # no shrinking: one server, each failure waits out a timeout
        @given(st.lists(messages(), min_size=1, max_size=4))
        def exchange(batch):
            state["examples"] += 1
            expected = []
            nulls = len(server.null_id)
            data = b""
            for method, body, notification, weird_id, framing in batch:
                state["id"] += 1
                msg_id = state["id"] if state["id"] % 2 else f"r{state['id']}"
                encoded = encode_frame(msg_id, method, body, notification, weird_id, framing)
                data += encoded
                state["frames"] += 1
                state["broken"] += framing in BROKEN
                state["max_frame"] = max(state["max_frame"], len(encoded))
                if framing in BROKEN:
                    continue
                if not parses(message_body(msg_id, method, body, notification, weird_id)):
                    nulls += 1  # unparsable: one -32700 with id null, request or not
                elif not notification and weird_id is not None:
                    nulls += 1  # an id that is not a string or an integer: -32600 with id null
                elif not notification:
                    expected.append((msg_id, method))
            server.write(data)
            for error in server.wait_null_id(nulls):
                assert error["error"]["code"] in (-32700, -32600), error
            for msg_id, method in expected:
                reply = server.wait_reply(msg_id)
                check_reply(reply, msg_id, method)
                code = reply.get("error", {}).get("code", "result")
                state["errors"][code] = state["errors"].get(code, 0) + 1
                state["replies"] += 1
            # still alive and answering a valid request
            state["id"] += 1
            ping = server.wait_reply(server_request(server, state["id"]))
            assert ping.get("result", "missing") is None, ping
            assert set(os.listdir(box)) == {"snaps", "cwd", "bystander.txt"}
            assert os.listdir(cwd) == []
            server.replies.clear()  # late answers to broken frames are fine

        exchange()
        server.close()
    after = tree_state(box)
    outside_before = {k: v for k, v in before.items() if not k.startswith("snaps")}
    outside_after = {k: v for k, v in after.items() if not k.startswith("snaps")}
    assert outside_after == outside_before, "the server wrote outside its snapshot directory"
    strays = [k for k in after if k.startswith("snaps/") and not ALLOWED_NAMES.match(k[len("snaps/"):])]
    assert not strays, strays
    text = log.read_text("utf-8", "replace")
    # pygls logs its own deserialisation tracebacks (the message is still
    # answered); these two lines mean a message escaped every handler.
    for marker in ("failed to handle a message", "unexpected error in a handler"):
        assert marker not in text, text[text.index(marker) - 200 :][:3000]
    print(f"fuzz: {state}")


def server_request(server: Server, msg_id) -> object:
    server.send({"jsonrpc": "2.0", "id": msg_id, "method": "opendev/snapshot.load", "params": {"sessionId": "fuzz-ping"}})
    return msg_id


# A well-framed request whose params nest far deeper than json.loads can
# follow (RecursionError): as the first message and later, it is answered
# (-32700 with "id": null: the parser never got to the id) and the server
# carries on.
@pytest.mark.parametrize(("position", "depth"), [("first", 1_000), ("later", 100_000)])
def test_deeply_nested_params_get_an_answer(tmp_path, position, depth):
    with Server(tmp_path / "snaps", stderr_path=tmp_path / "server.log") as server:
        if position == "later":
            server.assert_alive()
        body = b'{"jsonrpc":"2.0","id":"deep","method":"opendev/snapshot.save","params":{"sessionId":"a","projectDir":"/x","extra":%s}}' % (
            b"[" * depth + b"]" * depth)
        server.write(frame(body))
        [reply] = server.wait_null_id(1)
        assert reply["error"]["code"] == -32700, reply
        server.assert_alive()


# Hostile first frames on a fresh server (pygls is still loading when they
# arrive): each must be answered (with its id when it parses, else with
# "id": null) and leave the server serving.
FIRST_FRAMES = {
    "invalid-utf8": frame(b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"processId":null,"rootUri":"file:///\xff\xfe","capabilities":{}}}'),
    "nan-params": frame(b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"processId":NaN,"capabilities":{}}}'),
    "not-an-object": frame(b'[1,2,3]'),
    "truncated-json": frame(b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"processId":'),
    "initialize-wrong-types": frame(b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"processId":"x","rootUri":7,"capabilities":[],"workspaceFolders":{"a":1},"initializationOptions":{"snapshotDir":5,"prompt":"no","maxPrompts":-1}}}'),
    "initialize-no-params": frame(b'{"jsonrpc":"2.0","id":1,"method":"initialize"}'),
    "notification-first": frame(b'{"jsonrpc":"2.0","method":"initialized","params":{}}'),
    "save-before-initialize": frame(b'{"jsonrpc":"2.0","id":1,"method":"opendev/snapshot.save","params":{"sessionId":"../x","projectDir":"/x"}}'),
    "broken-header": b"Content-Length: nope\r\n\r\n{}\r\n\r\n",
    "huge-string": frame(b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"processId":null,"capabilities":{},"rootUri":"' + b"x" * (3 << 20) + b'"}}'),
    "initialize-then-garbage": frame(b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"processId":null,"capabilities":{}}}') + frame(b'\xff\xff{'),
}


UNPARSABLE = {"invalid-utf8", "truncated-json"}


@pytest.mark.parametrize("name", list(FIRST_FRAMES))
def test_hostile_first_frames_are_answered_and_the_server_keeps_serving(tmp_path, name):
    box = tmp_path / "box"
    box.mkdir()
    with Server(box / "snaps", cwd=box, stderr_path=tmp_path / "server.log") as server:
        server.write(FIRST_FRAMES[name])
        if name in UNPARSABLE:
            [reply] = server.wait_null_id(1)
            assert reply["error"]["code"] == -32700, reply
        elif b'"id":1' in FIRST_FRAMES[name] and name != "broken-header":
            reply = server.wait_reply(1)
            assert ("result" in reply) != ("error" in reply), reply
        server.assert_alive()
        reply = server.request("opendev/snapshot.save", {"sessionId": "after", "projectDir": "/x"})
        assert "result" in reply, reply
        server.close()
    assert sorted(os.listdir(box)) == ["snaps"]
