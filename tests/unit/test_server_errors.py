"""One place maps failures to JSON-RPC errors: codes, camelCase fields, messages."""

from __future__ import annotations

import errno

import pytest
from pygls.exceptions import JsonRpcException

from opendev_snapshot.core.errors import (
    ConfigError,
    InvalidSnapshot,
    NotInTrash,
    SessionExists,
    SessionNotFound,
    SessionRunning,
    StorageError,
)
from opendev_snapshot.server.errors import camel, rpc_errors, to_rpc_error, wire_field


@pytest.mark.parametrize(
    "name, expected",
    [("session_id", "sessionId"), ("last_tool_results", "lastToolResults"), ("x", "x"), ("max_age_ms", "maxAgeMs")],
)
def test_camel(name, expected):
    assert camel(name) == expected


@pytest.mark.parametrize(
    "method, raw, field",
    [
        ("save", {"projectDir": "/p"}, "sessionId"),
        ("save", {"session_id": "a", "project_dir": "/p", "message_count": "1"}, "messageCount"),
        ("save", {"sessionId": "a", "projectDir": "/p", "lastToolResults": [{"toolName": "t"}]}, "lastToolResults[0].callId"),
        ("save", {"sessionId": ".hidden", "projectDir": "/p"}, "sessionId"),
        ("save", {"sessionId": "a", "projectDir": "/p", "force": "yes"}, "force"),
        ("record", {"sessionId": "a", "toolName": "t", "callId": "c", "outputPreview": "o", "success": "y"}, "success"),
        ("record", {"sessionId": "a", "toolName": "t", "callId": "c", "outputPreview": "o", "success": True, "maxEntries": -1}, "maxEntries"),
        ("record", {"sessionId": "../a", "toolName": "t", "callId": "c", "outputPreview": "o", "success": True}, "sessionId"),
    ],
)
def test_core_validation_errors_name_the_camel_case_field(tmp_path, method, raw, field):
    """The params go through the server's mapping and the core's one validation."""
    from opendev_snapshot.core import SnapshotStore
    from opendev_snapshot.server import params

    with SnapshotStore(tmp_path / "d") as store:
        with pytest.raises(Exception) as info:
            if method == "save":
                record, claim, force = params.save(raw)
                store.save(record, claim=claim, force=force)
            else:
                sid, entry, max_entries = params.record_tool_result(raw)
                store.record_tool_result(sid, entry, max_entries=10 if max_entries is None else max_entries)
    err = to_rpc_error(info.value)
    assert err.code == -32602
    assert err.data == {"field": field}
    assert f": {field}:" in err.message


@pytest.mark.parametrize(
    "exc, code, needle",
    [
        (InvalidSnapshot("cost_usd", "must be a finite number"), -32602, "costUsd"),
        (InvalidSnapshot("", "a snapshot must be a JSON object"), -32602, "params"),
        (SessionNotFound("ghost"), -32001, "ghost"),
        (StorageError("cannot write snapshot", "/d/x.json", OSError(errno.ENOSPC, "No space left on device")), -32002, "No space left"),
        (StorageError("cannot write snapshot", "/d/x.json", PermissionError(errno.EACCES, "Permission denied")), -32002, "Permission denied"),
        (ConfigError("no home directory"), -32002, "no home directory"),
        (PermissionError(errno.EACCES, "Permission denied", "/d"), -32002, "Permission denied"),
        (RuntimeError("boom"), -32603, "boom"),
        (SessionRunning("busy", {"pid": 42, "host": "h"}), -32003, "pid 42 on h"),
        (SessionExists("back"), -32003, "back"),
        (NotInTrash("gone"), -32001, "not in the trash"),
    ],
    ids=["invalid", "invalid-object", "not-found", "disk-full", "permission", "config", "oserror", "unexpected",
         "running", "exists", "not-in-trash"],
)
def test_core_errors_map_to_contract_codes(exc, code, needle):
    err = to_rpc_error(exc)
    assert isinstance(err, JsonRpcException)
    assert err.code == code
    assert needle in err.message


def test_running_carries_the_holder():
    holder = {"pid": 42, "host": "h", "startedMs": 1, "kind": "opendev"}
    err = to_rpc_error(SessionRunning("busy", holder))
    assert err.data == {"sessionId": "busy", "holder": holder}
    assert to_rpc_error(SessionRunning("busy", None)).data == {"sessionId": "busy", "holder": None}


@pytest.mark.parametrize(
    "core, wire",
    [("entry.tool_name", "toolName"), ("last_tool_results[0].call_id", "lastToolResults[0].callId"), ("", "params"),
     ("max_entries", "maxEntries"), ("maxAgeMs", "maxAgeMs")],
)
def test_wire_field(core, wire):
    assert wire_field(core) == wire


def test_storage_error_data_carries_path_and_errno():
    err = to_rpc_error(StorageError("cannot write snapshot", "/d/x.json", OSError(errno.ENOSPC, "No space")))
    assert err.data == {"path": "/d/x.json", "errno": errno.ENOSPC}


def test_decorator_converts_sync_and_async():
    @rpc_errors
    def sync(ls, params):
        raise SessionNotFound("a")

    @rpc_errors
    async def asynchronous(ls, params):
        raise SessionNotFound("b")

    with pytest.raises(JsonRpcException) as info:
        sync(None, None)
    assert info.value.code == -32001
    import asyncio

    with pytest.raises(JsonRpcException) as info:
        asyncio.run(asynchronous(None, None))
    assert info.value.code == -32001
    import inspect

    assert list(inspect.signature(sync).parameters)[0] == "ls"  # pygls injects the server by this name


@pytest.mark.parametrize(
    "exc",
    [
        StorageError("snapshot file is corrupt (x):", "/d/caf\udce9/s_session_snapshot.json"),  # a non-UTF-8 path
        SessionRunning("s", {"pid": "\ud800", "host": "\udfff\x1b[31m", "x\udc80": ["\ud801"]}),  # not via parse_holder
        JsonRpcException(code=-32002, message="a\udcff", data={"path": "/d/\udcff"}),
        ValueError("internal \ud800"),
    ],
    ids=["storage-path", "holder", "rpc-exception", "internal"],
)
def test_no_error_carries_a_lone_surrogate(exc):
    import json

    err = to_rpc_error(exc)
    body = json.dumps({"message": err.message, "data": err.data}, ensure_ascii=False)
    body.encode("utf-8", "strict")  # a lone surrogate would raise here (and be "\ud800" on the wire)
    assert "\x1b" not in body
