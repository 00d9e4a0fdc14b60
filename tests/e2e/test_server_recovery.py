"""End to end: recoverableSessions on open and while running, prompts, commands."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest
from pygls.exceptions import JsonRpcInternalError
from server_harness import CLIENTS, RECOVER, RECOVERABLE, RawClient, file_uri, now_ms, seed, session

pytestmark = pytest.mark.timeout(60)

LIST = "opendev/snapshot.listIncomplete"
SAVE = "opendev/snapshot.save"
LOAD = "opendev/snapshot.load"


@pytest.fixture
def project(tmp_path):
    p = tmp_path / "project"
    p.mkdir()
    return p


def holder(snapshot_dir, session_id, project) -> subprocess.Popen:
    """Another process (an agent) that saves and holds a session until killed."""
    code = (
        "import sys, time\n"
        "from opendev_snapshot.core import SnapshotStore, new_record\n"
        "s = SnapshotStore(sys.argv[1])\n"
        "s.save(new_record(sys.argv[2], sys.argv[3]), claim=True)\n"
        "print('held', flush=True)\n"
        "time.sleep(120)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(snapshot_dir), session_id, str(project)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


# ------------------------------------------------------------------ on open
@pytest.mark.parametrize("client", CLIENTS)
async def test_on_open_notification_lists_interrupted_sessions_of_the_folder(snapshot_dir, project, tmp_path, client):
    seed(snapshot_dir, "older", project, age_ms=3_600_000, message_count=1)
    seed(snapshot_dir, "newer", project / "deep", age_ms=600_000, lock="released")
    seed(snapshot_dir, "alive", project, age_ms=1_000)  # lock-less and fresh: running
    seed(snapshot_dir, "done", project, age_ms=3_600_000, completed=True)
    seed(snapshot_dir, "foreign", tmp_path / "elsewhere", age_ms=3_600_000)
    # Emacs/eglot style: rootUri only; the others: workspace folders.
    kwargs = {"root": project} if client == "emacs" else {"folders": [project]}
    async with session(snapshot_dir, client=client, init_options={"prompt": False}, **kwargs) as h:
        [note] = await h.wait_note()
        assert note["workspaceFolder"] == {"uri": file_uri(project), "name": project.name}
        assert [s["sessionId"] for s in note["sessions"]] == ["newer", "older"]
        first = note["sessions"][0]
        assert first["status"] == "interrupted"
        assert first["path"] == str(snapshot_dir / "newer_session_snapshot.json")
        assert set(first) >= {"sessionId", "messageCount", "lastToolResults", "snapshotTimestampMs", "completed", "projectDir", "costUsd"}
        await asyncio.sleep(0.3)
        assert len(h.notes[RECOVERABLE]) == 1 and h.prompts == []


async def test_one_notification_per_folder_and_none_without_interrupted(snapshot_dir, tmp_path):
    a, b, c = (tmp_path / n for n in "abc")
    for p in (a, b, c):
        p.mkdir()
    seed(snapshot_dir, "in-a", a)
    seed(snapshot_dir, "in-b", b)
    seed(snapshot_dir, "running-c", c, age_ms=0)
    async with session(snapshot_dir, folders=[a, b, c], init_options={"prompt": False}) as h:
        notes = await h.wait_note(count=2)
        await asyncio.sleep(0.3)
        assert sorted((n["workspaceFolder"]["name"], n["sessions"][0]["sessionId"]) for n in h.notes[RECOVERABLE]) == [
            ("a", "in-a"),
            ("b", "in-b"),
        ]
        assert len(notes) == 2


async def test_folder_added_later_is_notified(snapshot_dir, project, tmp_path):
    later = tmp_path / "later"
    later.mkdir()
    seed(snapshot_dir, "later-1", later)
    async with session(snapshot_dir, folders=[project], init_options={"prompt": False}) as h:
        await asyncio.sleep(0.2)
        assert h.notes[RECOVERABLE] == []
        from lsprotocol import types

        h.client.workspace_did_change_workspace_folders(
            types.DidChangeWorkspaceFoldersParams(
                event=types.WorkspaceFoldersChangeEvent(
                    added=[types.WorkspaceFolder(uri=file_uri(later), name="later")], removed=[]
                )
            )
        )
        [note] = await h.wait_note()
        assert note["workspaceFolder"] == {"uri": file_uri(later), "name": "later"}
        assert [s["sessionId"] for s in note["sessions"]] == ["later-1"]


# -------------------------------------------------------------------- watch
@pytest.mark.parametrize("client", CLIENTS)
async def test_holder_dying_is_notified_within_3s_once(snapshot_dir, project, client):
    proc = holder(snapshot_dir, "agent-1", project)
    try:
        async with session(snapshot_dir, client=client, folders=[project], init_options={"prompt": False}) as h:
            await asyncio.sleep(0.5)
            assert h.notes[RECOVERABLE] == []
            res = await h.request(LIST, {"projectDir": str(project)})
            assert [s["status"] for s in res["sessions"]] == ["running"]
            proc.kill()
            proc.wait()
            t0 = time.monotonic()
            [note] = await h.wait_note(timeout=3.0)
            assert time.monotonic() - t0 < 3.0
            assert [s["sessionId"] for s in note["sessions"]] == ["agent-1"]
            assert note["sessions"][0]["status"] == "interrupted"
            # more changes in the directory: still notified only once
            seed(snapshot_dir, "unrelated", project, age_ms=0)
            os.utime(snapshot_dir / "agent-1_session_snapshot.json")
            await asyncio.sleep(1.0)
            assert len(h.notes[RECOVERABLE]) == 1
    finally:
        proc.kill()


async def test_lockless_snapshot_ageing_past_stale_after_is_notified(snapshot_dir, project):
    async with session(snapshot_dir, folders=[project], init_options={"prompt": False, "staleAfterMs": 1500}) as h:
        seed(snapshot_dir, "rust-agent", project, age_ms=0)  # as the seed writes it: no lock file
        await asyncio.sleep(0.5)
        assert h.notes[RECOVERABLE] == []
        [note] = await h.wait_note(timeout=1.5 + 3.0)
        assert [s["sessionId"] for s in note["sessions"]] == ["rust-agent"]


async def test_directory_created_after_start_is_watched(snapshot_dir, project):
    assert not snapshot_dir.exists()
    async with session(snapshot_dir, folders=[project], init_options={"prompt": False}) as h:
        await asyncio.sleep(0.3)
        seed(snapshot_dir, "late", project, lock="released")
        [note] = await h.wait_note(timeout=3.5)
        assert [s["sessionId"] for s in note["sessions"]] == ["late"]


async def test_liveness_across_two_servers(snapshot_dir, project):
    """One server claims; the other sees running, then interrupted once the first dies."""
    async with session(snapshot_dir, folders=[project], init_options={"prompt": False}) as first:
        await first.request(SAVE, {"sessionId": "shared", "projectDir": str(project)})
        async with session(snapshot_dir, folders=[project], init_options={"prompt": False}) as second:
            res = await second.request(LIST, {"projectDir": str(project)})
            assert [(s["sessionId"], s["status"]) for s in res["sessions"]] == [("shared", "running")]
            await asyncio.sleep(0.3)
            assert second.notes[RECOVERABLE] == []
            first.process.kill()
            t0 = time.monotonic()
            [note] = await second.wait_note(timeout=3.0)
            assert time.monotonic() - t0 < 3.0
            assert [(s["sessionId"], s["status"]) for s in note["sessions"]] == [("shared", "interrupted")]
            res = await second.request(LIST, {"projectDir": str(project)})
            assert [s["status"] for s in res["sessions"]] == ["interrupted"]


# ------------------------------------------------------------------ prompts
def answering(title):
    return lambda params: title


@pytest.mark.parametrize("client", CLIENTS)
async def test_prompt_recover_sends_recover_session(snapshot_dir, project, client):
    seed(snapshot_dir, "crashed", project, message_count=12, cost_usd=0.42, age_ms=5 * 60_000)
    async with session(snapshot_dir, client=client, folders=[project], answer=answering("Recover")) as h:
        [prompt] = await h.wait_prompts(1)
        assert int(prompt.type) == 2  # Warning
        assert [a.title for a in prompt.actions] == ["Recover", "Discard", "Later"]
        for part in ("crashed", "5 minutes", "12 messages", "$0.42"):
            assert part in prompt.message
        [rec] = await h.wait_note(RECOVER)
        assert rec["session"]["sessionId"] == "crashed"
        assert rec["session"]["status"] == "interrupted" and rec["session"]["messageCount"] == 12
        assert (snapshot_dir / "crashed_session_snapshot.json").exists()  # stays until the client acts


async def test_prompt_discard_moves_the_snapshot_to_the_trash(snapshot_dir, project):
    seed(snapshot_dir, "bye", project)
    async with session(snapshot_dir, folders=[project], answer=answering("Discard")) as h:
        await h.wait_prompts(1)
        await h.wait_until(lambda: not (snapshot_dir / "bye_session_snapshot.json").exists(), 5, "removal")
        assert await h.request(LOAD, {"sessionId": "bye"}) is None
        assert h.notes[RECOVER] == []
        trash = await h.request("opendev/snapshot.listTrash")
        assert [e["sessionId"] for e in trash["entries"]] == ["bye"]
        await h.wait_until(lambda: any("trash" in m.message for m in h.client.log_messages), what="the undo hint")
        assert any("opendev-snapshot restore bye" in m.message for m in h.client.log_messages)
        assert h.client.messages == []  # no pop-up for what the user just chose


async def test_prompt_discard_of_a_session_running_again_removes_nothing(snapshot_dir, project):
    """Discard is checked: the session was resumed by another process while the prompt was up."""
    seed(snapshot_dir, "resumed", project, lock="released")
    decided = asyncio.get_running_loop().create_future()
    async with session(snapshot_dir, folders=[project], answer=lambda p: decided) as h:
        await h.wait_prompts(1)
        proc = holder(snapshot_dir, "resumed", project)  # an agent resumes it
        try:
            decided.set_result("Discard")
            await h.wait_until(lambda: any("running again" in m.message for m in h.client.messages), what="a warning")
            assert (snapshot_dir / "resumed_session_snapshot.json").exists()
            assert (await h.request("opendev/snapshot.listTrash"))["entries"] == []
        finally:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("answer", ["Later", None], ids=["later", "dismissed"])
async def test_prompt_later_or_dismissed_does_nothing(snapshot_dir, project, answer):
    seed(snapshot_dir, "keep", project)
    async with session(snapshot_dir, folders=[project], answer=answering(answer)) as h:
        await h.wait_prompts(1)
        await asyncio.sleep(0.5)
        assert (snapshot_dir / "keep_session_snapshot.json").exists()
        assert h.notes[RECOVER] == []
        assert len(h.prompts) == 1


async def test_at_most_max_prompts_newest_first(snapshot_dir, project):
    for i in range(5):
        seed(snapshot_dir, f"s{i}", project, age_ms=(i + 3) * 60_000)
    async with session(snapshot_dir, folders=[project], init_options={"maxPrompts": 2}, answer=answering("Later")) as h:
        await h.wait_prompts(2)
        await asyncio.sleep(0.5)
        assert len(h.prompts) == 2
        assert "s0" in h.prompts[0].message and "s1" in h.prompts[1].message, [p.message for p in h.prompts]
        [note] = h.notes[RECOVERABLE]
        assert len(note["sessions"]) == 5


async def test_prompt_false_sends_no_prompt(snapshot_dir, project):
    seed(snapshot_dir, "quiet", project)
    async with session(snapshot_dir, folders=[project], init_options={"prompt": False}) as h:
        await h.wait_note()
        await asyncio.sleep(0.5)
        assert h.prompts == []


async def test_pending_prompt_does_not_block_requests(snapshot_dir, project):
    seed(snapshot_dir, "waiting", project)
    decided = asyncio.get_running_loop().create_future()
    async with session(snapshot_dir, folders=[project], answer=lambda params: decided) as h:
        await h.wait_prompts(1)
        # the user has not decided yet: the server still answers
        res = await h.request(LIST, {"projectDir": str(project)}, timeout=3)
        assert [s["sessionId"] for s in res["sessions"]] == ["waiting"]
        saved = await h.request(SAVE, {"sessionId": "meanwhile", "projectDir": str(project)}, timeout=3)
        assert saved["sessionId"] == "meanwhile"
        decided.set_result("Recover")
        [rec] = await h.wait_note(RECOVER)
        assert rec["session"]["sessionId"] == "waiting"


def refusing_a_second_concurrent_prompt(h, outstanding: list, log: list):
    """eglot 1.9: a second showMessageRequest while one is up is answered with -32603."""

    async def answer(params):
        if outstanding:
            log.append(("refused", params.message))
            raise JsonRpcInternalError(message="eglot: a request is already pending")
        outstanding.append(params)
        log.append(("shown", params.message))
        try:
            await asyncio.sleep(0.2)  # the user reads it
            return "Later"
        finally:
            outstanding.remove(params)

    return answer


async def test_prompts_come_one_at_a_time(snapshot_dir, project):
    """Finding 6: with two or three at once, eglot showed only one of three sessions."""
    for i in range(3):
        seed(snapshot_dir, f"crash-{i}", project, age_ms=(i + 3) * 60_000)
    outstanding: list = []
    log: list = []
    async with session(snapshot_dir, client="emacs", root=project) as h:
        h.answer = refusing_a_second_concurrent_prompt(h, outstanding, log)
        await h.wait_prompts(3)
        await h.wait_until(lambda: len(log) == 3 and not outstanding, what="three answered prompts")
        assert [kind for kind, _ in log] == ["shown"] * 3, log
        assert ["crash-0" in log[0][1], "crash-1" in log[1][1], "crash-2" in log[2][1]] == [True] * 3


async def test_an_error_answer_counts_as_later_and_the_next_prompt_follows(snapshot_dir, project):
    seed(snapshot_dir, "first", project, age_ms=180_000)
    seed(snapshot_dir, "second", project, age_ms=240_000)

    def answer(params):
        if "first" in params.message:
            raise JsonRpcInternalError(message="the client could not show it")
        return "Later"

    async with session(snapshot_dir, folders=[project], answer=answer) as h:
        prompts = await h.wait_prompts(2)
        assert "first" in prompts[0].message and "second" in prompts[1].message
        assert (snapshot_dir / "first_session_snapshot.json").exists()


async def test_a_client_that_never_answers_a_prompt_blocks_nothing(snapshot_dir, project):
    """Vim's ALE never answers showMessageRequest: requests and later notifications
    must still flow; the next prompt waits."""
    seed(snapshot_dir, "unanswered", project, age_ms=180_000)
    seed(snapshot_dir, "queued", project, age_ms=240_000)
    never = asyncio.get_running_loop().create_future()
    async with session(snapshot_dir, folders=[project], answer=lambda p: never) as h:
        [prompt] = await h.wait_prompts(1)
        assert "unanswered" in prompt.message
        res = await h.request(LIST, {"projectDir": str(project)}, timeout=3)
        assert {s["sessionId"] for s in res["sessions"]} == {"unanswered", "queued"}
        saved = await h.request(SAVE, {"sessionId": "meanwhile", "projectDir": str(project)}, timeout=3)
        assert saved["claimed"] is True
        proc = holder(snapshot_dir, "agent-late", project)
        proc.kill()
        proc.wait()
        notes = await h.wait_note(count=2)  # a later notification still arrives
        assert [s["sessionId"] for s in notes[1]["sessions"]] == ["agent-late"]
        assert len(h.prompts) == 1  # the queued prompt waits for the first answer
        never.set_result("Later")
        prompts = await h.wait_prompts(2)
        assert "queued" in prompts[1].message


async def test_server_request_ids_never_collide_with_the_clients(snapshot_dir, project):
    """ALE matches answers by id alone: the server's own request ids must never be
    ids a client uses (ALE counts 1, 2, 3...; others use strings)."""
    for i in range(3):
        seed(snapshot_dir, f"s{i}", project, age_ms=(i + 3) * 60_000)
    c = await RawClient.start(snapshot_dir)
    try:
        client_ids = set()
        await c.initialize(os.getpid(), project)  # id 1
        client_ids.add(1)
        server_ids = []
        next_id = 2
        while len(server_ids) < 3:
            message = await c.recv()
            if message.get("method") == "window/showMessageRequest":
                server_ids.append(message["id"])
                for probe in (next_id, str(next_id)):  # the client's next ids, numeric and string
                    client_ids.add(probe)
                    reply = await c.request_with_id(probe, LIST, {})
                    assert "result" in reply and reply["id"] == probe
                next_id += 1
                c.send({"jsonrpc": "2.0", "id": message["id"], "result": {"title": "Later"}})
        assert len(set(map(str, server_ids))) == 3
        assert not set(server_ids) & client_ids
        assert all(isinstance(i, str) and not i.isdigit() for i in server_ids)
    finally:
        await c.aclose()


async def test_wrong_init_options_are_shown_and_defaults_used(snapshot_dir, project):
    seed(snapshot_dir, "p1", project)
    opts = {"prompt": "no", "maxPrompts": -1, "staleAfterMs": "2m", "previewChars": 1.5, "unknownKey": 1}
    async with session(snapshot_dir, folders=[project], init_options=opts, answer=answering("Later")) as h:
        await h.wait_until(lambda: len(h.client.messages) >= 4, what="4 showMessage warnings")
        text = "\n".join(m.message for m in h.client.messages)
        for name in ("prompt", "maxPrompts", "staleAfterMs", "previewChars"):
            assert f"initializationOptions.{name}" in text
        assert "unknownKey" not in text
        assert all(int(m.type) == 2 for m in h.client.messages)
        await h.wait_prompts(1)  # prompt defaulted to true


async def test_init_options_not_an_object(snapshot_dir, project):
    async with session(snapshot_dir, folders=[project], init_options=[1, 2]) as h:
        await h.wait_until(lambda: h.client.messages, what="a showMessage")
        assert "initializationOptions must be an object" in h.client.messages[0].message


async def test_snapshot_dir_init_option_applies(tmp_path, project):
    env_dir = tmp_path / "from-env"
    opt_dir = tmp_path / "from-options"
    seed(opt_dir, "here", project)
    async with session(env_dir, folders=[project], init_options={"prompt": False, "snapshotDir": str(opt_dir)}) as h:
        [note] = await h.wait_note()
        assert note["sessions"][0]["path"] == str(opt_dir / "here_session_snapshot.json")


# ----------------------------------------------------------------- commands
async def test_execute_commands(snapshot_dir, project):
    seed(snapshot_dir, "c1", project, age_ms=120_000)
    seed(snapshot_dir, "c2", project, age_ms=10 * 86_400_000)
    async with session(snapshot_dir, folders=[project], init_options={"prompt": False}) as h:
        listing = await h.command("opendev.snapshot.recover", "c1")
        assert listing["sessionId"] == "c1" and listing["status"] == "interrupted"
        [rec] = await h.wait_note(RECOVER)
        assert rec == {"session": listing}

        res = await h.command("opendev.snapshot.listIncomplete", str(project))
        assert [s["sessionId"] for s in res["sessions"]] == ["c1", "c2"]
        res = await h.command("opendev.snapshot.listIncomplete")
        assert len(res["sessions"]) == 2

        h.client.progress_reports["cmd-tok"] = []
        res = await h.command("opendev.snapshot.cleanup", 86_400_000, token="cmd-tok")
        assert res == {"removedCount": 1, "sessionIds": ["c2"], "dryRun": False}
        await h.wait_until(lambda: any(p.kind == "end" for p in h.client.progress_reports["cmd-tok"]), what="progress")

        assert await h.command("opendev.snapshot.discard", "c1") == {"removed": True}
        assert await h.command("opendev.snapshot.discard", "c1") == {"removed": False}

        for name, args, code in [
            ("opendev.snapshot.recover", ["ghost"], -32001),
            ("opendev.snapshot.recover", [], -32602),
            ("opendev.snapshot.recover", ["../etc"], -32602),
            ("opendev.snapshot.cleanup", ["7d"], -32602),
            ("opendev.snapshot.nope", [], -32602),
        ]:
            with pytest.raises(Exception) as info:
                await h.command(name, *args)
            assert info.value.code == code, (name, args, info.value)
