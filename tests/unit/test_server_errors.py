"""One place maps failures to JSON-RPC errors: codes, camelCase fields, messages."""

from __future__ import annotations

import errno

import pytest
from pydantic import ValidationError
from pygls.exceptions import JsonRpcException

from opendev_snapshot.core.errors import ConfigError, InvalidSnapshot, SessionNotFound, StorageError
from opendev_snapshot.core.models import RecordToolResultParams, SaveParams
from opendev_snapshot.server.errors import camel, rpc_errors, to_rpc_error


@pytest.mark.parametrize(
    "name, expected",
    [("session_id", "sessionId"), ("last_tool_results", "lastToolResults"), ("x", "x"), ("max_age_ms", "maxAgeMs")],
)
def test_camel(name, expected):
    assert camel(name) == expected


def validation_error(model, data) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    return info.value


@pytest.mark.parametrize(
    "model, data, field",
    [
        (SaveParams, {"projectDir": "/p"}, "sessionId"),
        (SaveParams, {"session_id": "a", "project_dir": "/p", "message_count": "1"}, "messageCount"),
        (SaveParams, {"sessionId": "a", "projectDir": "/p", "lastToolResults": [{"toolName": "t"}]}, "lastToolResults[0].callId"),
        (SaveParams, {"sessionId": ".hidden", "projectDir": "/p"}, "sessionId"),
        (RecordToolResultParams, {"sessionId": "a", "toolName": "t", "callId": "c", "outputPreview": "o", "success": "y"}, "success"),
    ],
)
def test_validation_errors_name_the_camel_case_field(model, data, field):
    err = to_rpc_error(validation_error(model, data))
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
    ],
    ids=["invalid", "invalid-object", "not-found", "disk-full", "permission", "config", "oserror", "unexpected"],
)
def test_core_errors_map_to_contract_codes(exc, code, needle):
    err = to_rpc_error(exc)
    assert isinstance(err, JsonRpcException)
    assert err.code == code
    assert needle in err.message


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
