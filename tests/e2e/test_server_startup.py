"""End to end: start-up through pygls (with and without the pre-scan) and the handshake's edge cases.

Every raw exchange here goes through ``RawClient``, which fails on a
second answer to any request id.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import pytest
from server_harness import RECOVERABLE, RawClient, file_uri, seed, server_env, session

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def project(tmp_path):
    p = tmp_path / "project"
    p.mkdir()
    return p


@pytest.mark.parametrize("env", [{}, {"OPENDEV_SNAPSHOT_NO_PRESCAN": "1"}], ids=["prescan", "no-prescan"])
async def test_every_start_path_notifies_and_prompts_once(snapshot_dir, project, env):
    seed(snapshot_dir, "crashed", project)
    async with session(
        snapshot_dir, folders=[project], env=server_env(snapshot_dir, **env), answer=lambda p: "Later"
    ) as h:
        [note] = await h.wait_note()
        assert [s["sessionId"] for s in note["sessions"]] == ["crashed"]
        await h.wait_prompts(1)
        res = await h.request("opendev/snapshot.listIncomplete", {"projectDir": str(project)})
        assert [s["sessionId"] for s in res["sessions"]] == ["crashed"]
        # the warm-up check after start must not notify or prompt again: wait for
        # the server to have answered a request sent after its forced check
        await h.request("opendev/snapshot.listIncomplete", {})
        assert len(h.notes[RECOVERABLE]) == 1 and len(h.prompts) == 1
        assert await h.shutdown() == 0


async def test_pause_between_initialize_and_initialized(snapshot_dir, project):
    seed(snapshot_dir, "paused", project)
    c = await RawClient.start(snapshot_dir)
    try:
        reply = await c.request("initialize", {"processId": os.getpid(), "capabilities": {}, "rootUri": file_uri(project),
                                               "initializationOptions": {"prompt": False}})
        assert "capabilities" in reply["result"]
        await asyncio.sleep(0.5)
        c.notify("initialized", {})
        note = await c.recv()
        assert note["method"] == RECOVERABLE and note["params"]["sessions"][0]["sessionId"] == "paused"
        assert (await c.request("shutdown"))["result"] is None
        c.notify("exit")
        assert await c.wait() == 0
    finally:
        await c.aclose()


async def test_handshake_and_requests_in_one_write(snapshot_dir, project):
    seed(snapshot_dir, "burst", project)
    c = await RawClient.start(snapshot_dir)
    try:
        msgs = [
            {"jsonrpc": "2.0", "id": 1, "method": "initialize",
             "params": {"processId": os.getpid(), "capabilities": {}, "rootUri": file_uri(project),
                        "initializationOptions": {"prompt": False}}},
            {"jsonrpc": "2.0", "method": "initialized", "params": {}},
            {"jsonrpc": "2.0", "id": 2, "method": "opendev/snapshot.load", "params": {"sessionId": "burst"}},
            {"jsonrpc": "2.0", "id": 3, "method": "shutdown"},
            {"jsonrpc": "2.0", "method": "exit"},
        ]
        blob = b""
        for m in msgs:
            body = json.dumps(m).encode()
            blob += b"Content-Length: %d\r\n\r\n" % len(body) + body
        c.proc.stdin.write(blob)
        seen = {}
        while len(seen) < 3:
            msg = await c.recv()
            seen[msg.get("id", msg.get("method"))] = msg
        assert "capabilities" in seen[1]["result"]
        assert seen[2]["result"]["sessionId"] == "burst"
        assert seen[3]["result"] is None
        rest = await c.drain()  # nothing answered twice (drain checks)
        assert all("id" not in m or "method" in m for m in rest), rest
        assert await c.wait() == 0
    finally:
        await c.aclose()


async def test_first_message_not_initialize_is_served(snapshot_dir, project):
    seed(snapshot_dir, "early", project)
    c = await RawClient.start(snapshot_dir)
    try:
        reply = await c.request("opendev/snapshot.listIncomplete", {"projectDir": str(project)})
        assert [s["sessionId"] for s in reply["result"]["sessions"]] == ["early"]
        await c.initialize(os.getpid(), project, {"prompt": False})
        note = await c.recv()
        assert note["method"] == RECOVERABLE
    finally:
        await c.aclose()


async def test_root_path_only(snapshot_dir, project):
    seed(snapshot_dir, "by-path", project)
    c = await RawClient.start(snapshot_dir)
    try:
        reply = await c.request("initialize", {"processId": os.getpid(), "capabilities": {}, "rootPath": str(project),
                                               "initializationOptions": {"prompt": False}})
        assert "capabilities" in reply["result"]
        c.notify("initialized", {})
        note = await c.recv()
        assert note["method"] == RECOVERABLE
        assert note["params"]["workspaceFolder"]["name"] == project.name
        assert note["params"]["sessions"][0]["sessionId"] == "by-path"
    finally:
        await c.aclose()


async def test_malformed_initialize_gets_invalid_params_then_a_good_one_works(snapshot_dir, project):
    c = await RawClient.start(snapshot_dir)
    try:
        reply = await c.request("initialize", {"processId": "me", "capabilities": {}})
        assert reply["error"]["code"] == -32602
        reply = await c.request("initialize", {"processId": None, "capabilities": {}, "rootUri": file_uri(project)})
        assert "capabilities" in reply["result"]
    finally:
        await c.aclose()


@pytest.mark.parametrize(
    "capabilities",
    [{"textDocument": 5}, {"general": {"markdown": 5}}, {"window": {"showMessage": 5}}, {"notebookDocument": 7}],
    ids=["textDocument", "general.markdown", "window.showMessage", "notebookDocument"],
)
async def test_nested_bad_capabilities_are_refused_never_half_initialised(snapshot_dir, project, capabilities):
    """Finding 1: the old fast start answered success here and ran without folders,
    prompts, watch or processId watch. Now: -32602, and the next good
    initialize gives a fully working server (the processId watch included)."""
    seed(snapshot_dir, "waiting", project)
    editor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    c = await RawClient.start(snapshot_dir)
    try:
        reply = await c.request("initialize", {"processId": editor.pid, "capabilities": capabilities,
                                               "rootUri": file_uri(project), "initializationOptions": {"prompt": False}})
        assert reply["error"]["code"] == -32602, reply
        reply = await c.request("initialize", {"processId": editor.pid, "capabilities": {},
                                               "rootUri": file_uri(project), "initializationOptions": {"prompt": False}})
        assert "capabilities" in reply["result"]
        c.notify("initialized", {})
        note = await c.recv()
        assert note["method"] == RECOVERABLE and note["params"]["sessions"][0]["sessionId"] == "waiting"
        editor.kill()
        editor.wait()
        assert await c.wait(5) == 1  # the processId watch runs
    finally:
        editor.kill()
        await c.aclose()


async def test_initialized_without_params_starts_everything(snapshot_dir, project):
    """Finding 2: ``initialized`` with no ``params`` key (legal JSON-RPC) was dropped."""
    seed(snapshot_dir, "first", project)
    c = await RawClient.start(snapshot_dir)
    try:
        await c.request("initialize", {"processId": os.getpid(), "capabilities": {}, "rootUri": file_uri(project),
                                       "initializationOptions": {"prompt": False}})
        c.send({"jsonrpc": "2.0", "method": "initialized"})  # no params key
        note = await c.recv()
        assert note["method"] == RECOVERABLE and note["params"]["sessions"][0]["sessionId"] == "first"
        seed(snapshot_dir, "later", project, lock="released")  # the watch runs too
        note = await c.recv(timeout=5)
        assert note["method"] == RECOVERABLE and [s["sessionId"] for s in note["params"]["sessions"]] == ["later"]
    finally:
        await c.aclose()


async def test_input_ends_right_after_initialize(snapshot_dir, project):
    """stdin closes right after initialize (before initialized): exit 1, no hang, no crash."""
    c = await RawClient.start(snapshot_dir, stderr=asyncio.subprocess.PIPE)
    try:
        c.send({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"processId": os.getpid(), "capabilities": {}, "rootUri": file_uri(project)}})
        c.proc.stdin.close()
        assert await c.wait(15) == 1
        err = (await c.proc.stderr.read()).decode()
        assert "Fatal Python error" not in err and "Traceback" not in err
    finally:
        await c.aclose()


def test_importing_the_server_package_is_free():
    """The CLI imports ``server.wire`` and ``server.args`` on every run: no pygls, no pydantic."""
    code = (
        "import sys; import opendev_snapshot.cli, opendev_snapshot.server.wire, opendev_snapshot.server.args; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pygls', 'lsprotocol', 'pydantic', 'cattrs')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=server_env("/nonexistent")).stdout.strip()
    assert out == "[]"


def test_the_running_server_never_imports_pydantic(snapshot_dir, project, tmp_path):
    """pydantic would cost ~80 ms of start-up and ~11 MiB: the server validates through the core."""
    script = tmp_path / "probe.py"
    script.write_text(
        "import runpy, sys, atexit\n"
        "atexit.register(lambda: sys.__stderr__.write('PYDANTIC=%s\\n' % ('pydantic' in sys.modules)))\n"
        "sys.argv = ['opendev-snapshot', 'serve']\n"
        "runpy.run_module('opendev_snapshot', run_name='__main__')\n"
    )
    seed(snapshot_dir, "s", project)
    frames = b""
    for m in [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"processId": None, "capabilities": {}, "rootUri": file_uri(project)}},
        {"jsonrpc": "2.0", "method": "initialized", "params": {}},
        {"jsonrpc": "2.0", "id": 2, "method": "opendev/snapshot.save", "params": {"sessionId": "p", "projectDir": str(project)}},
        {"jsonrpc": "2.0", "id": 3, "method": "opendev/snapshot.recordToolResult",
         "params": {"sessionId": "p", "toolName": "t", "callId": "c", "outputPreview": "o", "success": True}},
        {"jsonrpc": "2.0", "id": 4, "method": "opendev/snapshot.listIncomplete", "params": {}},
        {"jsonrpc": "2.0", "id": 5, "method": "shutdown"},
        {"jsonrpc": "2.0", "method": "exit"},
    ]:
        body = json.dumps(m).encode()
        frames += b"Content-Length: %d\r\n\r\n" % len(body) + body
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, str(script)], input=frames, capture_output=True, timeout=30, env=server_env(snapshot_dir))
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert b"PYDANTIC=False" in proc.stderr, proc.stderr.decode()[-2000:]
    assert time.monotonic() - t0 < 30
