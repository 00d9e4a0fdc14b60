"""The fast start answers ``initialize`` exactly as pygls would."""

from __future__ import annotations

import asyncio
import json

import pytest
from lsprotocol import types
from lsprotocol.converters import get_converter
from pytest_lsp import client_capabilities

from opendev_snapshot.server import handshake
from opendev_snapshot.server.app import create_server
from opendev_snapshot.server.context import ServerContext
from opendev_snapshot.server.transport import Dispatcher


class Capture:
    def __init__(self):
        self.frames = []

    def write(self, data: bytes):
        self.frames.append(json.loads(data.partition(b"\r\n\r\n")[2]))

    def close(self):
        pass


def client_params(profile: str | None, **extra) -> dict:
    caps = get_converter().unstructure(client_capabilities(profile)) if profile else {}
    params = {"processId": 1234, "capabilities": caps, "rootUri": "file:///tmp/p"}
    params.update(extra)
    return params


async def pygls_result(tmp_path, params: dict) -> dict:
    ctx = ServerContext(cli_dir=str(tmp_path / "d"))
    server = create_server(ctx)
    out = Capture()
    server.protocol.set_writer(out)
    Dispatcher(server.protocol).dispatch(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}).encode())
    await asyncio.sleep(0)
    ctx.close_store()
    [reply] = [f for f in out.frames if f.get("id") == 1]
    return reply["result"]


@pytest.mark.parametrize(
    "params",
    [
        client_params("visual_studio_code"),
        client_params("neovim"),
        client_params("emacs"),
        client_params(None),
        client_params(None, capabilities={"general": {"positionEncodings": ["utf-32", "utf-8"]}}),
        client_params(None, capabilities={"general": {"positionEncodings": ["made-up"]}}),
    ],
    ids=["vscode", "neovim", "emacs", "bare", "utf-32", "unknown-encoding"],
)
async def test_fast_initialize_result_is_pygls_result(tmp_path, params):
    assert handshake.fast_path_params(params)
    assert handshake.initialize_result(params) == await pygls_result(tmp_path, params)


@pytest.mark.parametrize(
    "params, fast",
    [
        ({"processId": None, "capabilities": {}}, True),
        ({"processId": 5, "capabilities": {}, "workspaceFolders": [{"uri": "file:///a", "name": "a"}]}, True),
        ({"processId": 5, "capabilities": {}, "rootPath": "/a", "rootUri": "file:///a"}, True),
        ({"processId": 5, "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}, "trace": "off"}, True),
        ({"processId": 5}, False),  # capabilities missing: pygls answers -32602
        ({"processId": "5", "capabilities": {}}, False),
        ({"processId": True, "capabilities": {}}, False),
        ({"processId": 5, "capabilities": {}, "rootPath": "/a"}, False),  # pygls derives the URI
        ({"processId": 5, "capabilities": {}, "workspaceFolders": [{"uri": 1, "name": "a"}]}, False),
        ({"processId": 5, "capabilities": {}, "workspaceFolders": {}}, False),
        ({"processId": 5, "capabilities": {}, "trace": "loud"}, False),
        ({"processId": 5, "capabilities": {"general": {"positionEncodings": "utf-8"}}}, False),
        ({"processId": 5, "capabilities": {}, "clientInfo": {"version": "1"}}, False),
        ([], False),
        (None, False),
    ],
)
def test_only_plain_params_take_the_fast_path(params, fast):
    assert handshake.fast_path_params(params) is fast


def test_handshake_imports_nothing_heavy():
    import subprocess
    import sys

    code = (
        "import sys; import opendev_snapshot.server.app, opendev_snapshot.server.handshake; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pygls', 'lsprotocol', 'pydantic', 'cattrs', 'asyncio')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
