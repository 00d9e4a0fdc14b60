"""End to end: the start-up paths (fast handshake, pre-scan) and their fallbacks."""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from server_harness import RECOVERABLE, RawClient, file_uri, seed, server_env, session

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def project(tmp_path):
    p = tmp_path / "project"
    p.mkdir()
    return p


@pytest.mark.parametrize(
    "env",
    [{}, {"OPENDEV_SNAPSHOT_NO_FAST_START": "1"}, {"OPENDEV_SNAPSHOT_NO_PRESCAN": "1"},
     {"OPENDEV_SNAPSHOT_NO_FAST_START": "1", "OPENDEV_SNAPSHOT_NO_PRESCAN": "1"}],
    ids=["fast+prescan", "pygls-handshake", "fast-no-prescan", "plain"],
)
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
        await asyncio.sleep(1.0)  # the post-start check must not notify or prompt again
        assert len(h.notes[RECOVERABLE]) == 1 and len(h.prompts) == 1
        assert await h.shutdown() == 0


async def test_pause_between_initialize_and_initialized(snapshot_dir, project):
    seed(snapshot_dir, "paused", project)
    c = await RawClient.start(snapshot_dir)
    try:
        reply = await c.request("initialize", {"processId": os.getpid(), "capabilities": {}, "rootUri": file_uri(project),
                                               "initializationOptions": {"prompt": False}})
        assert "capabilities" in reply["result"]
        await asyncio.sleep(1.5)  # pygls has long loaded: it takes over the reading
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
        while len(seen) < 4:
            msg = await c.recv()
            seen[msg.get("id", msg.get("method"))] = msg
        assert "capabilities" in seen[1]["result"]
        assert seen[RECOVERABLE]["params"]["sessions"][0]["sessionId"] == "burst"
        assert seen[2]["result"]["sessionId"] == "burst"
        assert seen[3]["result"] is None
        assert await c.wait() == 0
    finally:
        await c.aclose()


async def test_first_message_not_initialize_is_served_by_pygls(snapshot_dir, project):
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


async def test_root_path_only_takes_the_pygls_path(snapshot_dir, project):
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


async def test_malformed_initialize_gets_pygls_error(snapshot_dir, project):
    c = await RawClient.start(snapshot_dir)
    try:
        reply = await c.request("initialize", {"processId": "me", "capabilities": {}})
        assert reply["error"]["code"] == -32602
        reply = await c.request("initialize", {"processId": None, "capabilities": {}, "rootUri": file_uri(project)})
        assert "capabilities" in reply["result"]
    finally:
        await c.aclose()


async def test_input_ends_right_after_initialize(snapshot_dir, project):
    """stdin closes right after initialize (before initialized): exit 1, no hang, no crash."""
    c = await RawClient.start(snapshot_dir, stderr=asyncio.subprocess.PIPE)
    try:
        c.send({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"processId": os.getpid(), "capabilities": {}, "rootUri": file_uri(project)}})
        c.proc.stdin.close()
        c.proc.stdout.feed_eof()
        assert await c.wait(15) == 1
        err = (await c.proc.stderr.read()).decode()
        assert "Fatal Python error" not in err and "Traceback" not in err
    finally:
        await c.aclose()
