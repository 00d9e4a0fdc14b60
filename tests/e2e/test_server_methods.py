"""End to end: the nine methods, their errors, and pygls' message traps.

The real server runs as a subprocess (its directory set through
``OPENDEV_SNAPSHOT_DIR``) and is driven by pytest-lsp's client, with the
capabilities of VS Code, Neovim and Emacs where the client matters.
"""

from __future__ import annotations

import json
import os
import re

import pytest
from server_harness import CLIENTS, RawClient, now_ms, seed, session

from opendev_snapshot.core import SnapshotStore

pytestmark = pytest.mark.timeout(60)

SAVE = "opendev/snapshot.save"
LOAD = "opendev/snapshot.load"
LIST = "opendev/snapshot.listIncomplete"
CLEANUP = "opendev/snapshot.cleanup"
REMOVE = "opendev/snapshot.remove"
COMPLETE = "opendev/snapshot.markCompleted"
RECORD = "opendev/snapshot.recordToolResult"
LIST_TRASH = "opendev/snapshot.listTrash"
RESTORE = "opendev/snapshot.restore"
SNAPSHOT_KEYS = [
    "sessionId",
    "messageCount",
    "lastToolResults",
    "snapshotTimestampMs",
    "completed",
    "projectDir",
    "costUsd",
]


@pytest.fixture
def project(tmp_path):
    p = tmp_path / "project"
    p.mkdir()
    return p


async def error_of(h, method, params, raw_absent=False):
    msg = {"jsonrpc": "2.0", "id": f"e-{method}-{id(params)}", "method": method}
    if not raw_absent:
        msg["params"] = params
    kind, value = await h.send_raw(msg)
    assert kind == "error", f"expected an error, got {value!r}"
    return value


@pytest.mark.parametrize("client", CLIENTS)
async def test_initialize_advertises_commands_and_folder_support(snapshot_dir, project, client):
    async with session(snapshot_dir, client=client, folders=[project]) as h:
        caps = h.result.capabilities
        assert sorted(caps.execute_command_provider.commands) == sorted(
            [
                "opendev.snapshot.recover",
                "opendev.snapshot.discard",
                "opendev.snapshot.restore",
                "opendev.snapshot.listIncomplete",
                "opendev.snapshot.cleanup",
            ]
        )
        assert caps.workspace.workspace_folders.supported is True
        assert caps.workspace.workspace_folders.change_notifications is True
        sync = caps.text_document_sync
        assert not sync.open_close and int(sync.change) == 0  # we need no documents
        assert h.result.server_info.name == "opendev-snapshot"


@pytest.mark.parametrize("client", CLIENTS)
async def test_every_method_round_trip(snapshot_dir, project, client):
    async with session(snapshot_dir, client=client, folders=[project], init_options={"prompt": False}) as h:
        before = now_ms()
        saved = await h.request(
            SAVE,
            {"sessionId": "s-1", "projectDir": str(project), "messageCount": 3, "costUsd": 1.5, "claim": False},
        )
        assert set(saved) == {"sessionId", "path", "snapshotTimestampMs", "claimed"}
        assert saved["sessionId"] == "s-1" and saved["claimed"] is False
        assert saved["path"] == str(snapshot_dir / "s-1_session_snapshot.json")
        assert saved["snapshotTimestampMs"] >= before
        assert os.path.exists(saved["path"])  # durable before the answer

        loaded = await h.request(LOAD, {"sessionId": "s-1"})
        assert list(loaded) == SNAPSHOT_KEYS
        assert loaded["messageCount"] == 3 and loaded["costUsd"] == 1.5 and loaded["lastToolResults"] == []
        assert loaded["projectDir"] == str(project) and loaded["completed"] is False
        assert await h.request(LOAD, {"sessionId": "nobody"}) is None

        count = await h.request(
            RECORD,
            {"sessionId": "s-1", "toolName": "bash", "callId": "c1", "outputPreview": "x" * 900, "success": True},
        )
        assert count == {"sessionId": "s-1", "count": 1}
        loaded = await h.request(LOAD, {"sessionId": "s-1"})
        assert loaded["lastToolResults"] == [
            {"toolName": "bash", "callId": "c1", "outputPreview": "x" * 500, "success": True}
        ]

        listed = await h.request(LIST, {"projectDir": str(project)})
        assert set(listed) == {"sessions", "skipped"}
        [one] = listed["sessions"]
        assert list(one) == SNAPSHOT_KEYS + ["status", "path", "kind", "notebook"]
        assert one["status"] == "running" and one["path"] == saved["path"]
        assert one["kind"] == "opendev" and one["notebook"] is None

        done = await h.request(COMPLETE, {"sessionId": "s-1"})
        assert set(done) == {"sessionId", "snapshotTimestampMs"}
        assert (await h.request(LOAD, {"sessionId": "s-1"}))["completed"] is True
        assert (await h.request(LIST, {}))["sessions"] == []

        assert await h.request(REMOVE, {"sessionId": "s-1"}) == {"removed": True}
        assert await h.request(REMOVE, {"sessionId": "s-1"}) == {"removed": False}
        assert not os.path.exists(saved["path"])
        trash = await h.request(LIST_TRASH)
        assert [e["sessionId"] for e in trash["entries"]] == ["s-1"]
        assert trash["entries"][0]["snapshot"]["messageCount"] == 3
        restored = await h.request(RESTORE, {"sessionId": "s-1"})
        assert restored["sessionId"] == "s-1" and restored["path"] == saved["path"]
        assert os.path.exists(saved["path"])


async def test_save_accepts_snake_case_keeps_text_exactly_and_ignores_unknown_keys(snapshot_dir, project):
    async with session(snapshot_dir, folders=[project], init_options={"prompt": False}) as h:
        params = {
            "session_id": "snake",
            "project_dir": f"  {project}  ",
            "message_count": 2,
            "last_tool_results": [
                {"tool_name": "t", "call_id": "c", "output_preview": " é\n", "success": False, "class": 1}
            ],
            "snapshot_timestamp_ms": 1234,
            "cost_usd": 3,
            "class": "kept out",  # pygls' namedtuple would rename this and break the echo
        }
        saved = await h.request(SAVE, params)
        assert saved == {
            "sessionId": "snake",
            "path": str(snapshot_dir / "snake_session_snapshot.json"),
            "snapshotTimestampMs": 1234,
            "claimed": True,
        }
        loaded = await h.request(LOAD, {"session_id": "snake"})
        assert loaded["projectDir"] == f"  {project}  "
        assert loaded["lastToolResults"] == [{"toolName": "t", "callId": "c", "outputPreview": " é\n", "success": False}]
        assert loaded["costUsd"] == 3.0
        text = (snapshot_dir / "snake_session_snapshot.json").read_text("utf-8")
        assert '"output_preview": " é\\n"' in text  # UTF-8 raw, as the seed writes it


async def test_record_tool_result_drops_oldest_past_max_entries(snapshot_dir, project):
    async with session(
        snapshot_dir, folders=[project], init_options={"prompt": False, "maxToolResults": 2, "previewChars": 3}
    ) as h:
        await h.request(SAVE, {"sessionId": "r", "projectDir": str(project)})
        for i in range(4):
            res = await h.request(
                RECORD, {"sessionId": "r", "toolName": "t", "callId": f"c{i}", "outputPreview": "abcdef", "success": True}
            )
        assert res == {"sessionId": "r", "count": 2}
        results = (await h.request(LOAD, {"sessionId": "r"}))["lastToolResults"]
        assert [r["callId"] for r in results] == ["c2", "c3"]
        assert results[0]["outputPreview"] == "abc"
        res = await h.request(
            RECORD,
            {"sessionId": "r", "toolName": "t", "callId": "c9", "outputPreview": "z", "success": True, "maxEntries": 5},
        )
        assert res["count"] == 3


async def test_list_incomplete_filters_and_orders(snapshot_dir, project, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    seed(snapshot_dir, "old", project, age_ms=900_000)
    seed(snapshot_dir, "new", project / "sub", age_ms=300_000, lock="released")
    seed(snapshot_dir, "fresh", project, age_ms=1_000)
    seed(snapshot_dir, "elsewhere", other, age_ms=1_000)
    seed(snapshot_dir, "done", project, age_ms=1_000, completed=True)
    (snapshot_dir / "junk_session_snapshot.json").write_text("{not json")
    async with session(snapshot_dir, folders=[tmp_path / "none"], init_options={"prompt": False}) as h:
        res = await h.request(LIST, {"projectDir": project.as_uri()})
        assert [s["sessionId"] for s in res["sessions"]] == ["fresh", "new", "old"]
        assert [s["status"] for s in res["sessions"]] == ["running", "interrupted", "interrupted"]
        assert [s["file"] for s in res["skipped"]] == ["junk_session_snapshot.json"]
        assert res["skipped"][0]["reason"]
        res = await h.request(LIST, {"projectDir": str(project) + "/./", "status": "interrupted", "limit": 1})
        assert [s["sessionId"] for s in res["sessions"]] == ["new"]
        res = await h.request(LIST)  # no params at all: every project
        assert {s["sessionId"] for s in res["sessions"]} == {"old", "new", "fresh", "elsewhere"}


@pytest.mark.parametrize("client", CLIENTS)
async def test_invalid_params_name_the_field(snapshot_dir, project, client):
    async with session(snapshot_dir, client=client, folders=[project], init_options={"prompt": False}) as h:
        cases = [
            (SAVE, {"projectDir": "/p"}, "sessionId"),
            (SAVE, {"sessionId": "a"}, "projectDir"),
            (SAVE, {"sessionId": "../x", "projectDir": "/p"}, "sessionId"),
            (SAVE, {"sessionId": "a" * 129, "projectDir": "/p"}, "sessionId"),
            (SAVE, {"sessionId": "a", "projectDir": "/p", "messageCount": "3"}, "messageCount"),
            (SAVE, {"sessionId": "a", "projectDir": "/p", "messageCount": -1}, "messageCount"),
            (SAVE, {"sessionId": "a", "projectDir": "/p", "snapshotTimestampMs": 1.0}, "snapshotTimestampMs"),
            (SAVE, {"sessionId": "a", "projectDir": "/p", "completed": 1}, "completed"),
            (SAVE, {"sessionId": "a", "projectDir": "/p", "claim": "yes"}, "claim"),
            (SAVE, {"sessionId": "a", "projectDir": "/p", "lastToolResults": [{"toolName": "t"}]}, "lastToolResults[0].callId"),
            (SAVE, {"sessionId": "a", "projectDir": "/p", "lastToolResults": {}}, "lastToolResults"),
            (LOAD, {}, "sessionId"),
            (LOAD, {"sessionId": 5}, "sessionId"),
            (LIST, {"status": "completed"}, "status"),
            (LIST, {"limit": -1}, "limit"),
            (LIST, {"projectDir": 3}, "projectDir"),
            (CLEANUP, {}, "maxAgeMs"),
            (CLEANUP, {"maxAgeMs": "7d"}, "maxAgeMs"),
            (CLEANUP, {"maxAgeMs": 1, "dryRun": "no"}, "dryRun"),
            (REMOVE, {"sessionId": ""}, "sessionId"),
            (COMPLETE, {"sessionId": None}, "sessionId"),
            (RECORD, {"sessionId": "a", "toolName": "t", "callId": "c", "outputPreview": "o"}, "success"),
            (RECORD, {"sessionId": "a", "toolName": "t", "callId": "c", "outputPreview": "o", "success": True, "maxEntries": -2}, "maxEntries"),
        ]
        for method, params, field in cases:
            err = await error_of(h, method, params)
            assert err.code == -32602, (method, params, err)
            assert field in err.message, (method, params, err.message)
            assert err.data == {"field": field}, (method, params, err.data)
        # nothing was written by any refused save
        assert not snapshot_dir.exists() or os.listdir(snapshot_dir) in ([], [".opendev-index-v1"])


async def test_non_finite_cost_is_refused(snapshot_dir, project):
    async with session(snapshot_dir, folders=[project], init_options={"prompt": False}) as h:
        body = b'{"jsonrpc":"2.0","id":77,"method":"opendev/snapshot.save","params":{"sessionId":"n","projectDir":"/p","costUsd":NaN}}'
        kind, err = await h.send_raw(body, answer_id=77)
        assert kind == "error" and err.code == -32602 and "costUsd" in err.message


async def test_unknown_session_is_32001(snapshot_dir, project):
    async with session(snapshot_dir, folders=[project], init_options={"prompt": False}) as h:
        for method, params in [
            (COMPLETE, {"sessionId": "ghost"}),
            (RECORD, {"sessionId": "ghost", "toolName": "t", "callId": "c", "outputPreview": "o", "success": True}),
        ]:
            err = await error_of(h, method, params)
            assert err.code == -32001 and "ghost" in err.message
            assert err.data == {"sessionId": "ghost"}


async def test_storage_failure_is_32002_and_says_what_failed(tmp_path, project):
    not_a_dir = tmp_path / "file-not-dir"
    not_a_dir.write_text("I am a file")
    async with session(not_a_dir, folders=[project], init_options={"prompt": False}) as h:
        err = await error_of(h, SAVE, {"sessionId": "a", "projectDir": str(project)})
        assert err.code == -32002
        assert str(not_a_dir) in err.message and "directory" in err.message
        # the server carries on, and listing says what failed too
        err = await error_of(h, LIST, {})
        assert err.code == -32002 and str(not_a_dir) in err.message
        err = await error_of(h, SAVE, {"sessionId": "b", "projectDir": str(project)})
        assert err.code == -32002


async def test_corrupt_snapshot_load_is_32002(snapshot_dir, project):
    snapshot_dir.mkdir(mode=0o700)
    (snapshot_dir / "bad_session_snapshot.json").write_text('{"session_id": 1}')
    async with session(snapshot_dir, folders=[project], init_options={"prompt": False}) as h:
        err = await error_of(h, LOAD, {"sessionId": "bad"})
        assert err.code == -32002 and "bad_session_snapshot.json" in err.message


# ---------------------------------------------------------------- the traps
@pytest.mark.parametrize("method", [LIST, LOAD, CLEANUP])
async def test_request_without_params_key_is_answered(snapshot_dir, project, method):
    """pygls 2.1.1 never answers a custom request that has no ``params`` key."""
    async with session(snapshot_dir, folders=[project], init_options={"prompt": False}) as h:
        answer = await h.send_raw({"jsonrpc": "2.0", "id": 501, "method": method}, timeout=5)
        if method == LIST:
            assert answer == ("result", {"sessions": [], "skipped": []})
        else:
            kind, err = answer
            assert kind == "error" and err.code == -32602


@pytest.mark.parametrize("params", [[], ["s"], "s", 5, True], ids=["empty-array", "array", "string", "number", "bool"])
async def test_malformed_params_are_answered(snapshot_dir, project, params):
    """Typing params while reading would leave these unanswered; we answer -32602."""
    async with session(snapshot_dir, folders=[project], init_options={"prompt": False}) as h:
        kind, err = await h.send_raw({"jsonrpc": "2.0", "id": 502, "method": LOAD, "params": params}, timeout=5)
        assert kind == "error" and err.code == -32602 and "params" in err.message


async def test_malformed_lsp_params_are_answered(snapshot_dir, project):
    async with session(snapshot_dir, folders=[project], init_options={"prompt": False}) as h:
        kind, err = await h.send_raw(
            {"jsonrpc": "2.0", "id": 503, "method": "workspace/executeCommand", "params": {"command": 5}}, timeout=5
        )
        assert kind == "error" and err.code == -32602
        kind, err = await h.send_raw(
            {"jsonrpc": "2.0", "id": 504, "method": "workspace/executeCommand"}, timeout=5
        )
        assert kind == "error" and err.code == -32602


async def test_custom_params_arrive_as_dicts_not_namedtuples(snapshot_dir, project):
    """An object key such as ``class`` or ``1x`` must not turn the reply into an array."""
    async with session(snapshot_dir, folders=[project], init_options={"prompt": False}) as h:
        params = {"sessionId": "nt", "projectDir": str(project), "class": {"def": 1}, "1x": 2}
        saved = await h.request(SAVE, params)
        assert isinstance(saved, dict) and saved["sessionId"] == "nt"


async def test_unknown_method_invalid_json_and_unknown_notification(snapshot_dir, project):
    async with session(snapshot_dir, folders=[project], init_options={"prompt": False}) as h:
        kind, err = await h.send_raw({"jsonrpc": "2.0", "id": 601, "method": "opendev/snapshot.nope", "params": {}})
        assert kind == "error" and err.code == -32601
        h.notify("opendev/whatever", {"x": 1})
        # Unparsable: JSON-RPC 2.0 answers -32700 with "id": null (the id cannot be known).
        await h.send_raw(b'{"jsonrpc": "2.0", "id": 603, "method": "opendev/snapshot.load", "params": {"sessionId": }')
        [err] = await h.wait_null_id_error(1)
        assert err.code == -32700
        kind, err = await h.send_raw({"jsonrpc": "1.0", "id": 602, "method": LIST})
        assert kind == "error" and err.code == -32600
        assert (await h.request(LIST, {}))["sessions"] == []  # still serving
        assert 603 not in h.client.protocol.answered


async def test_requests_after_shutdown_are_refused_not_dropped(snapshot_dir, project):
    async with session(snapshot_dir, folders=[project], init_options={"prompt": False}) as h:
        import asyncio

        await asyncio.wait_for(h.client.shutdown_async(None), 10)
        kind, err = await h.send_raw({"jsonrpc": "2.0", "id": 701, "method": LIST, "params": {}}, timeout=5)
        assert kind == "error" and err.code == -32600
        h.client.exit(None)
        assert await asyncio.wait_for(h.process.wait(), 10) == 0


async def test_cleanup_method_and_progress(snapshot_dir, project):
    seed(snapshot_dir, "ancient", project, age_ms=10 * 86_400_000)
    seed(snapshot_dir, "ancient-done", project, age_ms=10 * 86_400_000, completed=True)
    seed(snapshot_dir, "recent", project, age_ms=1000)
    async with session(snapshot_dir, folders=[project], init_options={"prompt": False}) as h:
        h.client.progress_reports["tok-1"] = []  # a client-supplied token needs no create
        dry = await h.request(CLEANUP, {"maxAgeMs": 86_400_000, "dryRun": True, "workDoneToken": "tok-1"})
        assert dry == {"removedCount": 2, "sessionIds": ["ancient", "ancient-done"], "dryRun": True}
        import asyncio

        await h.wait_until(lambda: any(getattr(p, "kind", "") == "end" for p in h.client.progress_reports.get("tok-1", [])), what="progress end")
        kinds = [p.kind for p in h.client.progress_reports["tok-1"]]
        assert kinds[0] == "begin" and kinds[-1] == "end"
        kept = await h.request(CLEANUP, {"maxAgeMs": 86_400_000, "includeIncomplete": False})
        assert kept == {"removedCount": 1, "sessionIds": ["ancient-done"], "dryRun": False}
        res = await h.request(CLEANUP, {"maxAgeMs": 86_400_000})
        assert res == {"removedCount": 1, "sessionIds": ["ancient"], "dryRun": False}
        assert sorted(p.name for p in snapshot_dir.glob("*.json")) == ["recent_session_snapshot.json"]
        await asyncio.sleep(0)


async def test_claim_holds_the_lock_until_shutdown_and_never_completes(snapshot_dir, project):
    async with session(snapshot_dir, folders=[project], init_options={"prompt": False}) as h:
        await h.request(SAVE, {"sessionId": "held", "projectDir": str(project)})
        await h.request(SAVE, {"sessionId": "free", "projectDir": str(project), "claim": False, "snapshotTimestampMs": 1})
        with SnapshotStore(snapshot_dir) as other:
            status = {s["session_id"]: s["status"] for s in other.list().sessions}
        assert status == {"held": "running", "free": "interrupted"}
        assert await h.shutdown() == 0
    with SnapshotStore(snapshot_dir) as other:
        listing = {s["session_id"]: s for s in other.list().sessions}
    assert listing["held"]["status"] == "interrupted"
    assert listing["held"]["completed"] is False
    data = json.loads((snapshot_dir / "held_session_snapshot.json").read_text())
    assert data["completed"] is False


def hold(snapshot_dir, session_id, project):
    """Another live process (an agent) that saves and holds a session until killed."""
    import subprocess
    import sys

    code = (
        "import sys, time\n"
        "from opendev_snapshot.core import SnapshotStore, new_record\n"
        "s = SnapshotStore(sys.argv[1])\n"
        "s.save(new_record(sys.argv[2], sys.argv[3]), claim=True)\n"
        "print('held', flush=True)\n"
        "time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(snapshot_dir), session_id, str(project)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


async def test_a_session_running_elsewhere_is_refused_unless_forced(snapshot_dir, project):
    proc = hold(snapshot_dir, "busy", project)
    try:
        async with session(snapshot_dir, folders=[project], init_options={"prompt": False}) as h:
            for method, params in [(REMOVE, {"sessionId": "busy"}), (SAVE, {"sessionId": "busy", "projectDir": str(project)})]:
                err = await error_of(h, method, params)
                assert err.code == -32003, (method, err)
                assert err.data["sessionId"] == "busy" and err.data["holder"]["pid"] == proc.pid
                assert f"pid {proc.pid}" in err.message
            with pytest.raises(Exception) as info:
                await h.command("opendev.snapshot.discard", "busy")
            assert info.value.code == -32003
            assert (snapshot_dir / "busy_session_snapshot.json").exists()
            # force: written (without the lock: it stays the agent's), then removed to the trash
            saved = await h.request(SAVE, {"sessionId": "busy", "projectDir": str(project), "messageCount": 9, "force": True})
            assert saved["claimed"] is False
            assert (await h.request(LOAD, {"sessionId": "busy"}))["messageCount"] == 9
            assert await h.request(REMOVE, {"sessionId": "busy", "force": True}) == {"removed": True}
            assert [e["sessionId"] for e in (await h.request(LIST_TRASH))["entries"]] == ["busy"]
    finally:
        proc.kill()
        proc.wait()


async def test_restore_refusals(snapshot_dir, project):
    async with session(snapshot_dir, folders=[project], init_options={"prompt": False}) as h:
        err = await error_of(h, RESTORE, {"sessionId": "never-trashed"})
        assert err.code == -32001 and "trash" in err.message
        await h.request(SAVE, {"sessionId": "twice", "projectDir": str(project)})  # ours: removable
        assert await h.request(REMOVE, {"sessionId": "twice"}) == {"removed": True}
        await h.request(SAVE, {"sessionId": "twice", "projectDir": str(project)})
        err = await error_of(h, RESTORE, {"sessionId": "twice"})
        assert err.code == -32003 and err.data["sessionId"] == "twice"
        with pytest.raises(Exception) as info:
            await h.command("opendev.snapshot.restore", "never-trashed")
        assert info.value.code == -32001
        err = await error_of(h, LIST_TRASH, [1])
        assert err.code == -32602


HOSTILE_LOCK_TEXT = '{"pid": 1, "host": "\\ud800evil\\u001b[31m", "startedMs": 1, "kind": "opendev", "x": "\\udfff"}'
LONE_SURROGATE_ESCAPE = re.compile(rb"(?<!\\)\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def strictly_parsed(frame: bytes) -> dict:
    """The message as a strict parser (Emacs, Neovim) reads it: UTF-8, no lone surrogate, no NaN."""
    assert not LONE_SURROGATE_ESCAPE.search(frame), frame
    message = json.loads(frame.decode("utf-8", "strict"), parse_constant=lambda name: pytest.fail(name))
    json.dumps(message, ensure_ascii=False).encode("utf-8", "strict")  # no lone surrogate in any string
    return message


async def test_a_holder_with_a_lone_surrogate_and_an_escape_reaches_the_editor_intact(snapshot_dir, project):
    """Lock text another process wrote: a ``\\ud800`` in it would make a strict
    JSON parser drop the whole -32003 reply, so the user never learns why."""
    proc = hold(snapshot_dir, "busy", project)
    (snapshot_dir / "busy_session_snapshot.lock").write_text(HOSTILE_LOCK_TEXT)  # same inode: still held
    client = await RawClient.start(snapshot_dir)
    try:
        await client.initialize(root=project, options={"prompt": False})
        for method, params in [
            (REMOVE, {"sessionId": "busy"}),
            ("workspace/executeCommand", {"command": "opendev.snapshot.discard", "arguments": ["busy"]}),
        ]:
            reply = await client.request(method, params)
            assert strictly_parsed(client.last_frame) == reply
            error = reply["error"]
            assert error["code"] == -32003, reply
            assert error["data"]["holder"]["host"] == "\\ud800evil\\e[31m"
            assert "\x1b" not in error["message"] and "\\ud800evil\\e[31m" in error["message"]
        assert (snapshot_dir / "busy_session_snapshot.json").exists()
    finally:
        proc.kill()
        proc.wait()
        await client.aclose()


async def test_a_storage_failure_under_a_non_utf8_directory_reaches_the_editor_intact(tmp_path, project):
    snapshot_dir = tmp_path / os.fsdecode(b"caf\xe9")  # a Latin-1 name: a lone surrogate in Python
    snapshot_dir.mkdir(mode=0o700)
    (snapshot_dir / "bad_session_snapshot.json").write_text('{"session_id": 1}')
    client = await RawClient.start(snapshot_dir)
    try:
        await client.initialize(root=project, options={"prompt": False})
        reply = await client.request(LOAD, {"sessionId": "bad"})
        assert strictly_parsed(client.last_frame) == reply
        assert reply["error"]["code"] == -32002 and "caf\\udce9" in reply["error"]["message"]
    finally:
        await client.aclose()
