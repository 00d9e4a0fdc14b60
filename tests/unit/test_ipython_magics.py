"""The %opendev magic in an in-process IPython shell: every subcommand, the
displays, the UsageError cases, autosave's snapshots, reloads and recovery."""

from __future__ import annotations

import os
import re
import unicodedata

import pytest

pytest.importorskip("IPython")

from IPython.core.error import UsageError  # noqa: E402
from IPython.core.history import HistoryManager  # noqa: E402
from IPython.core.inputtransformer2 import TransformerManager  # noqa: E402
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402
from IPython.utils.capture import capture_output  # noqa: E402
from traitlets import TraitError  # noqa: E402
from traitlets.config import Config  # noqa: E402

from opendev_snapshot.core import SnapshotStore, new_record  # noqa: E402
from opendev_snapshot.ipython import history  # noqa: E402
from opendev_snapshot.ipython.display import SessionTable, SessionView, TrashTable  # noqa: E402
from opendev_snapshot.ipython.kernel import drop_state  # noqa: E402
from opendev_snapshot.ipython.session import cell_entry  # noqa: E402

HOUR_MS = 3_600_000
TRANSFORM = TransformerManager().transform_cell


@pytest.fixture(scope="module")
def shell():
    cfg = Config()
    cfg.HistoryManager.hist_file = ":memory:"
    return InteractiveShell.instance(config=cfg)


@pytest.fixture
def env(tmp_path, monkeypatch, shell):
    snap = tmp_path / "snap"
    proj = tmp_path / "proj"
    proj.mkdir()
    monkeypatch.setenv("OPENDEV_SNAPSHOT_DIR", str(snap))
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.chdir(proj)
    yield {"snap": snap, "proj": proj, "tmp": tmp_path}
    drop_state(shell)  # the kernel state outlives unloads by design: tests start afresh
    shell.config.pop("OpendevMagics", None)


def load(shell):
    with capture_output() as cap:
        shell.extension_manager.load_extension("opendev_snapshot")
    return cap


def unload(shell):
    shell.extension_manager.unload_extension("opendev_snapshot")


@pytest.fixture
def loaded(shell, env):
    """The extension loaded in ``shell``; yields its magics; unloads after."""
    cap = load(shell)
    magics = shell.magics_manager.registry["OpendevMagics"]
    magics.load_output = cap
    yield magics
    unload(shell)


def reader(env) -> SnapshotStore:
    """A second store on the same directory: sees the disk and probes locks like another process."""
    return SnapshotStore(env["snap"])


def seed(env, session_id, project, *, state="interrupted", age_ms=0, results=0, kind="opendev",
         notebook=None, history=None, cost=0.0, previews=None):
    """Write a session of ``project`` in the given state, as some other process would have.

    ``kind="ipython"`` writes the lock text a notebook kernel writes (``history`` =
    ``(session number, database)``); ``previews`` are cell sources recorded as In[1..].
    """
    info = {"kind": kind}
    if kind == "ipython":
        info["notebook"] = notebook
        if history is not None:
            info["historySession"], info["historyDb"] = history[0], str(history[1])
    store = SnapshotStore(env["snap"], holder_info=info)
    record = new_record(session_id, str(project))
    record["snapshot_timestamp_ms"] -= age_ms
    record["message_count"] = results + 2
    record["cost_usd"] = cost
    for n in range(results):
        record["last_tool_results"].append(
            {"tool_name": "cell", "call_id": f"In[{n + 3}]", "output_preview": f"cell {n}\n-> ok", "success": True}
        )
    if previews is not None:
        record["last_tool_results"] = [cell_entry(n, src, "ok", True, 500) for n, src in enumerate(previews, 1)]
        record["message_count"] = len(previews)
    if state == "completed":
        record["completed"] = True
        store.save(record)
    elif state == "running":
        store.save(record, claim=True)
        return store  # keep it alive: its lock stays held
    else:
        store.save(record, claim=True)
        store.release(session_id)  # lock file kept, unlocked: interrupted
    store.close()
    return None


def write_history(shell, path, cells) -> int:
    """One history session written by IPython's own HistoryManager; returns its number."""
    manager = HistoryManager(shell=shell, hist_file=str(path))
    try:
        for n, source in enumerate(cells, start=1):
            manager.store_inputs(n, TRANSFORM(source), source)
        manager.writeout_cache()
        return manager.session_number
    finally:
        manager.end_session()
        manager.close()


def cell(shell, code):
    return shell.run_cell(code, store_history=True)


def own_id(magics) -> str:
    return magics.state.own_id


# ------------------------------------------------------------------ loading
def test_load_shows_nothing_without_interrupted_sessions(shell, env):
    seed(env, "done", env["proj"], state="completed")
    cap = load(shell)
    try:
        assert cap.outputs == []
        assert cap.stdout == "" and cap.stderr == ""
        assert "opendev" in shell.magics_manager.magics["line"]
    finally:
        unload(shell)
    assert "opendev" not in shell.magics_manager.magics["line"]


def test_load_shows_interrupted_sessions_in_each_kinds_words(shell, env):
    sub = env["proj"] / "sub"
    sub.mkdir()
    seed(env, "ipykernel-3f2a91c4-aaaa", env["proj"], results=3, kind="ipython", notebook="/w/analysis.ipynb")
    seed(env, "agent-crashed", sub, age_ms=HOUR_MS, results=1, cost=1234.5)
    seed(env, "elsewhere", env["tmp"], results=1)
    seed(env, "finished", env["proj"], state="completed")
    holder = seed(env, "alive", env["proj"], state="running")
    try:
        cap = load(shell)
        unload(shell)
    finally:
        holder.close()
    assert len(cap.outputs) == 1
    data = cap.outputs[0].data
    text, html = data["text/plain"], data["text/html"]
    assert "2 interrupted sessions" in text
    kernel_line = next(line for line in text.splitlines() if line.startswith("ipykernel-3f2a91 "))
    assert kernel_line.split()[1:6] == ["interrupted", "analysis.ipynb", "5", "In[3]\u2013In[5]", "0s"]
    assert kernel_line.rstrip().endswith("%opendev recover ipykernel-3f2a91")
    agent_line = next(line for line in text.splitlines() if line.startswith("agent-cr"))
    assert "$1,234.50" in agent_line and "1h" in agent_line
    header = next(line for line in text.splitlines() if line.startswith("SESSION") and "NOTEBOOK" in line)
    assert "CELLS RUN" in header and "COST" not in header and "MESSAGES" not in header
    # "cells" next to "cells run" read as the same thing: these are the last ones the snapshot holds
    assert "LAST CELLS" in header and '<th style="text-align:left">last cells</th>' in html
    for absent in ("elsewhere", "finished", "alive"):
        assert absent not in text and absent not in html
    assert "<table" in html and "<code>%opendev recover ipykernel-3f2a91</code>" in html
    assert 'title="ipykernel-3f2a91c4-aaaa"' in html  # the full id on hover
    assert "%opendev recover ID (prints it)" in text  # a terminal: printed, not a next cell


def test_load_escapes_html(shell, env):
    odd = env["proj"] / "a<b>&c"
    odd.mkdir()
    seed(env, "odd", odd)
    cap = load(shell)
    unload(shell)
    html = cap.outputs[0].data["text/html"]
    assert "a&lt;b&gt;&amp;c" in html and "a<b>" not in html
    assert "a<b>&c" in cap.outputs[0].data["text/plain"]


def test_terminal_gets_plain_text_only(shell, env):
    seed(env, "crashed", env["proj"])
    formatter = shell.display_formatter
    saved = list(formatter.active_types)
    formatter.active_types = ["text/plain"]  # what TerminalInteractiveShell does
    try:
        cap = load(shell)
        unload(shell)
    finally:
        formatter.active_types = saved
    assert list(cap.outputs[0].data) == ["text/plain"]
    assert "crashed" in cap.outputs[0].data["text/plain"]


def test_load_with_unusable_directory_still_registers_the_magic(shell, env):
    env["snap"].write_text("not a directory")
    cap = load(shell)
    try:
        assert "cannot list interrupted sessions" in cap.stderr
        assert "opendev" in shell.magics_manager.magics["line"]
    finally:
        unload(shell)


def test_loaded_at_kernel_start_the_notice_waits_for_the_first_cell(shell, env, monkeypatch):
    """A kernel loading the extension from its profile has no cell to show output in yet."""
    seed(env, "ipykernel-dead", env["proj"], results=2, kind="ipython", notebook="nb.ipynb")
    monkeypatch.setattr(shell, "kernel", object(), raising=False)
    monkeypatch.setattr(shell, "parent_header", {}, raising=False)  # no request handled yet
    cap = load(shell)
    try:
        assert cap.outputs == [] and cap.stdout == ""
        shell.parent_header = {"msg_type": "execute_request"}
        shell.run_cell("pass", silent=True)  # a front end's silent request: not where anyone looks
        with capture_output() as first:
            cell(shell, "a = 1")
        with capture_output() as second:
            cell(shell, "b = 2")
    finally:
        unload(shell)
    assert len(first.outputs) == 1 and "nb.ipynb" in first.outputs[0].data["text/plain"]
    assert second.outputs == []  # once


def test_autosave_from_the_profile_starts_at_the_first_cell_and_knows_the_notebook(shell, env, monkeypatch):
    """VS Code tells the kernel its notebook (__vsc_ipynb_file__) after start, before the first cell."""
    shell.config.OpendevMagics.autosave = True
    monkeypatch.setattr(shell, "kernel", object(), raising=False)
    monkeypatch.setattr(shell, "parent_header", {}, raising=False)
    load(shell)
    try:
        assert not env["snap"].exists() or not list(env["snap"].glob("*.json"))  # nothing written at start
        monkeypatch.setitem(shell.user_ns, "__vsc_ipynb_file__", "/home/me/vscode.ipynb")
        shell.parent_header = {"msg_type": "execute_request"}
        cell(shell, "first = 1")
        magics = shell.magics_manager.registry["OpendevMagics"]
        record = reader(env).load(own_id(magics))
        assert [t["output_preview"] for t in record["last_tool_results"]] == ["first = 1\n-> ok"]
        assert reader(env).lock_info(own_id(magics))["notebook"] == "/home/me/vscode.ipynb"
    finally:
        unload(shell)


# --------------------------------------------------------------------- list
def test_list_default_all_and_project(shell, env, loaded):
    seed(env, "mine", env["proj"])
    seed(env, "theirs", env["tmp"], age_ms=1000)
    seed(env, "done", env["proj"], state="completed", age_ms=2000)
    table = shell.run_line_magic("opendev", "list")
    assert isinstance(table, SessionTable)
    assert [s["session_id"] for s in table.sessions] == ["mine", "theirs"]
    everything = shell.run_line_magic("opendev", "list --all")
    assert [s["session_id"] for s in everything.sessions] == ["mine", "theirs", "done"]
    assert {s["status"] for s in everything.sessions} == {"interrupted", "completed"}
    only = shell.run_line_magic("opendev", f"list --all --project {env['proj']}")
    assert [s["session_id"] for s in only.sessions] == ["mine", "done"]
    relative = shell.run_line_magic("opendev", "list --project .")
    assert [s["session_id"] for s in relative.sessions] == ["mine"]


def test_list_marks_this_kernels_own_session(shell, env, loaded):
    shell.run_line_magic("opendev", "autosave on")
    seed(env, "ipykernel-other", env["proj"], kind="ipython")
    text = str(shell.run_line_magic("opendev", "list"))
    own_line = next(line for line in text.splitlines() if line.startswith(own_id(loaded)[:14]))
    assert own_line.split()[1] == "running" and own_line.rstrip().endswith("(this kernel)")
    assert "%opendev recover ipykernel-other" in text


def test_list_displays_and_reports_skipped_files(shell, env, loaded):
    seed(env, "mine", env["proj"])
    (env["snap"] / "broken_session_snapshot.json").write_text("{not json")
    table = shell.run_line_magic("opendev", "list")
    bundle, _ = shell.display_formatter.format(table)
    assert "mine" in bundle["text/plain"] and "SESSION" in bundle["text/plain"]
    assert "skipped broken_session_snapshot.json:" in bundle["text/plain"]
    assert "<code>broken_session_snapshot.json</code>" in bundle["text/html"]
    assert repr(table) == "<SessionTable: 1 session(s), 1 skipped>"


def test_list_empty(shell, env, loaded):
    table = shell.run_line_magic("opendev", "list")
    bundle, _ = shell.display_formatter.format(table)
    assert bundle["text/plain"] == "No incomplete sessions."
    assert "No incomplete sessions." in bundle["text/html"]


def test_list_sanitises_what_came_from_disk(shell, env, loaded):
    evil = env["proj"] / "p\x1b]52;c;aGk=\x07\u202e"
    evil.mkdir()
    seed(env, "evil", evil)
    text = str(shell.run_line_magic("opendev", "list"))
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "p\\e]52;c;aGk=\\x07\\u202e" in text


# --------------------------------------------------------------------- show
def test_show_a_notebook_kernel_in_human_words(shell, env, loaded):
    seed(env, "ipykernel-crashed", env["proj"], results=2, kind="ipython", notebook="/w/nb.ipynb",
         history=(42, "/w/hist.sqlite"), age_ms=5 * 60_000)
    view = shell.run_line_magic("opendev", "show ipykernel-crashed")
    assert isinstance(view, SessionView)
    bundle, _ = shell.display_formatter.format(view)
    text = bundle["text/plain"]
    assert re.search(r"^session +ipykernel-crashed$", text, re.M) and re.search(r"^status +interrupted$", text, re.M)
    assert re.search(r"^notebook +/w/nb\.ipynb$", text, re.M)
    assert re.search(r"^saved +5m ago \(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\)$", text, re.M)
    assert re.search(r"^cells run +4$", text, re.M) and re.search(r"^recorded +In\[3\]\u2013In\[4\]$", text, re.M)
    assert re.search(r"^history +session 42 in /w/hist\.sqlite$", text, re.M)
    assert "timestamp_ms" not in text and "cost" not in text
    assert "cells (2):" in text and "In[4]" in text and "cell 1" in text
    assert "%opendev recover ipykernel-crashed" in text
    assert "<pre>cell 0\n-&gt; ok</pre>" in bundle["text/html"]


def test_show_an_agent_session_with_its_cost(shell, env, loaded):
    seed(env, "agent", env["proj"], cost=0.004)
    text = str(shell.run_line_magic("opendev", "show agent"))
    assert re.search(r"^cost +<\$0\.01$", text, re.M) and re.search(r"^messages +2$", text, re.M)
    assert "recover" not in text


@pytest.mark.parametrize(
    "evil",
    ["\x1b]52;c;aGVsbG8=\x07", "\x1b[2J\x1b[H", "\x9b31m", "\x7f", "abc\u202edef", "\x00\x08\r"],
    ids=["osc52", "csi", "c1", "del", "bidi", "c0"],
)
def test_show_sanitises_control_characters_in_text_and_escapes_html(shell, env, loaded, evil):
    store = SnapshotStore(env["snap"])
    record = new_record("evil", str(env["proj"]))
    record["last_tool_results"].append(
        {"tool_name": "cell", "call_id": "In[1]", "output_preview": f"print({evil!r})\n-> out: {evil}<b>", "success": True}
    )
    store.save(record)
    bundle, _ = shell.display_formatter.format(shell.run_line_magic("opendev", "show evil"))
    text, html = bundle["text/plain"], bundle["text/html"]
    for ch in evil:
        if unicodedata.category(ch) in ("Cc", "Cf"):  # controls and bidi formatting marks
            assert ch not in text.replace("\n", "")
    assert "out: " in text
    assert "&lt;b&gt;" in html and "<b>" not in html.replace("<b style", "")


def test_ids_accept_a_unique_prefix(shell, env, loaded):
    seed(env, "ipykernel-aaaa1111", env["proj"], kind="ipython")
    seed(env, "ipykernel-aaaa2222", env["proj"], kind="ipython")
    assert shell.run_line_magic("opendev", "show ipykernel-aaaa1").record["session_id"] == "ipykernel-aaaa1111"
    with pytest.raises(UsageError, match=r"'ipykernel-aaaa' matches 2 sessions .*type more of the id") as info:
        shell.run_line_magic("opendev", "show ipykernel-aaaa")
    assert type(info.value) is UsageError


def test_stale_after_ms_setting(shell, env, loaded):
    store = SnapshotStore(env["snap"])
    record = new_record("lockless", str(env["proj"]))  # like the Rust agent: no lock file
    record["snapshot_timestamp_ms"] -= 60_000
    store.save(record)
    assert shell.run_line_magic("opendev", "list").sessions[0]["status"] == "running"
    shell.run_line_magic("config", "OpendevMagics.stale_after_ms = 30000")
    assert shell.run_line_magic("opendev", "list").sessions[0]["status"] == "interrupted"


def test_show_running_names_the_holder(shell, env, loaded):
    holder = seed(env, "alive", env["proj"], state="running")
    try:
        text = str(shell.run_line_magic("opendev", "show alive"))
    finally:
        holder.close()
    assert "running" in text and f"pid {os.getpid()} on " in text


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("show missing", "no snapshot for session 'missing'"),
        ("show ../x", "session"),
        ("discard missing", "no snapshot for session 'missing'"),
        ("recover missing", "no snapshot for session 'missing'"),
        ("restore missing", "'missing' is not in the trash"),
    ],
    ids=["show-missing", "show-invalid-id", "discard-missing", "recover-missing", "restore-missing"],
)
def test_missing_or_invalid_ids(shell, loaded, line, message):
    with pytest.raises(UsageError, match=message) as info:
        shell.run_line_magic("opendev", line)
    assert type(info.value) is UsageError
    assert info.value.__cause__ is not None  # raised from the core error


# --------------------------------------------------------------------- save
def test_save_writes_a_running_session_with_the_kernels_lock_text(shell, env, loaded, monkeypatch):
    monkeypatch.setenv("JPY_SESSION_NAME", "/work/analysis.ipynb")
    drop_state(shell)  # the store reads the notebook when it opens
    cell(shell, "a = 1")
    count = shell.execution_count
    with capture_output() as cap:
        shell.run_line_magic("opendev", "save")
    sid = own_id(loaded)
    assert f"saved session {sid}" in cap.stdout
    other = reader(env)
    record = other.load(sid)
    assert record["message_count"] == count - 1
    assert record["project_dir"] == str(env["proj"])
    assert record["last_tool_results"] == [] and record["completed"] is False
    assert other.status_of(record) == "running"
    info = other.lock_info(sid)
    assert info["kind"] == "ipython" and info["notebook"] == "/work/analysis.ipynb"
    assert info["historySession"] == shell.history_manager.session_number
    assert info["historyDb"] == ":memory:"  # this test shell keeps history in memory: say so
    assert info["pid"] == os.getpid()
    listing = other.list().sessions[0]
    assert listing["kind"] == "ipython" and listing["notebook"] == "/work/analysis.ipynb"


# ----------------------------------------------------------------- autosave
def test_autosave_one_snapshot_per_cell(shell, env, loaded):
    with capture_output() as cap:
        cell(shell, "%opendev autosave on")
    sid = own_id(loaded)
    assert f"autosave on for session {sid}" in cap.stdout
    other = reader(env)
    assert other.load(sid)["last_tool_results"] == []  # the cell that turned it on is not recorded
    first = shell.execution_count
    codes = ["x = 20", "1/0", "x * 2 + 2"]
    for n, code in enumerate(codes, start=1):
        with capture_output():
            cell(shell, code)
        assert len(other.load(sid)["last_tool_results"]) == n  # saved before the next cell
    record = other.load(sid)
    assert record["message_count"] == first + 2
    assert [t["call_id"] for t in record["last_tool_results"]] == [f"In[{first + i}]" for i in range(3)]
    assert [t["tool_name"] for t in record["last_tool_results"]] == ["cell"] * 3
    assert [t["success"] for t in record["last_tool_results"]] == [True, False, True]
    previews = [t["output_preview"] for t in record["last_tool_results"]]
    assert previews == [
        "x = 20\n-> ok",
        "1/0\n-> error: ZeroDivisionError: division by zero",
        "x * 2 + 2\n-> out: 42",
    ]
    assert other.status_of(record) == "running"
    assert record["completed"] is False


def test_autosave_appends_to_what_is_on_disk(shell, env, loaded):
    """Another writer's update between two cells is kept: autosave is a read-modify-write."""
    shell.run_line_magic("opendev", "autosave on")
    sid = own_id(loaded)
    cell(shell, "p = 1")
    other = reader(env)
    other.update(sid, lambda r: r["last_tool_results"].append(
        {"tool_name": "note", "call_id": "n1", "output_preview": "from elsewhere", "success": True}))
    cell(shell, "q = 2")
    names = [t["tool_name"] for t in other.load(sid)["last_tool_results"]]
    assert names == ["cell", "note", "cell"]


def test_every_recorded_cell_is_in_the_history_database_before_its_snapshot(shell, env, loaded, monkeypatch):
    """IPython writes history from a thread, in batches: autosave flushes it first, so a kill right
    after a snapshot never leaves a recorded cell missing from the database recover reads."""
    manager = HistoryManager(shell=shell, hist_file=str(env["tmp"] / "history.sqlite"), db_cache_size=1000)
    monkeypatch.setattr(shell, "history_manager", manager)
    try:
        shell.run_line_magic("opendev", "autosave on")
        cell(shell, "flushed = 1")
        recorded = [t["call_id"] for t in reader(env).load(own_id(loaded))["last_tool_results"]]
        rows = history.read_history(str(env["tmp"] / "history.sqlite"), manager.session_number)
        assert recorded and recorded[-1] == f"In[{rows[-1][0]}]" and rows[-1][1] == "flushed = 1"
    finally:
        manager.end_session()
        manager.close()


def test_autosave_skips_silent_runs(shell, env, loaded):
    shell.run_line_magic("opendev", "autosave on")
    shell.run_cell("y = 1", store_history=False)
    shell.run_cell("y = 2", silent=True)
    assert reader(env).load(own_id(loaded))["last_tool_results"] == []


def test_autosave_is_bounded_and_previews_cut(shell, env, loaded):
    shell.run_line_magic("config", "OpendevMagics.max_tool_results = 3")
    shell.run_line_magic("config", "OpendevMagics.preview_chars = 40")
    shell.run_line_magic("opendev", "autosave on")
    for n in range(5):
        cell(shell, f"v{n} = '{'long text ' * 20}'")
    results = reader(env).load(own_id(loaded))["last_tool_results"]
    assert len(results) == 3
    assert all(len(t["output_preview"]) <= 40 for t in results)
    assert results[-1]["output_preview"].startswith("v4 = ")


def test_autosave_failure_warns_once_and_keeps_the_shell_working(shell, env, loaded):
    shell.run_line_magic("opendev", "autosave on")
    sid = own_id(loaded)
    for name in os.listdir(env["snap"]):
        os.unlink(env["snap"] / name)
    os.rmdir(env["snap"])
    env["snap"].write_text("now a file")
    with capture_output() as cap:
        first = cell(shell, "w = 1")
        second = cell(shell, "w + 1")
    assert first.success and second.success
    assert cap.stderr.count("autosave failed") == 1
    assert own_id(loaded) == sid


def test_a_snapshot_removed_by_another_process_is_not_written_again(shell, env, loaded):
    shell.run_line_magic("opendev", "autosave on")
    sid = own_id(loaded)
    cell(shell, "m = 1")
    other = reader(env)
    assert other.remove(sid, force=True)  # e.g. opendev-snapshot remove --force
    with capture_output() as cap:
        cell(shell, "m = 2")
        cell(shell, "m = 3")
    assert cap.stderr.count(f"session {sid} was moved to the trash by another process") == 1
    assert "autosave is off" in cap.stderr
    assert other.load(sid) is None and [e["session_id"] for e in other.list_trash()] == [sid]
    shell.run_line_magic("opendev", f"restore {sid}")
    shell.run_line_magic("opendev", "autosave on")  # the person brings it back and goes on
    cell(shell, "m = 4")
    assert [t["output_preview"] for t in other.load(sid)["last_tool_results"]][-1] == "m = 4\n-> ok"


def test_autosave_off_keeps_the_session_running(shell, env, loaded):
    shell.run_line_magic("opendev", "autosave on")
    sid = own_id(loaded)
    cell(shell, "k = 1")
    with capture_output() as cap:
        cell(shell, "%opendev autosave off")
    assert "stays running while this kernel lives" in cap.stdout
    other = reader(env)
    before = other.load(sid)
    cell(shell, "k = 2")
    assert other.load(sid) == before  # no more saves
    assert other.status_of(before) == "running"  # and the live kernel never reads interrupted
    assert other.list(status="interrupted").sessions == []
    with capture_output() as cap:
        shell.run_line_magic("opendev", "autosave off")
    assert "already off" in cap.stdout


def test_clean_exit_completes_the_session(shell, env, loaded):
    shell.run_line_magic("opendev", "autosave on")
    cell(shell, "e = 1")
    sid = own_id(loaded)
    loaded.state.at_exit()
    other = reader(env)
    record = other.load(sid)
    assert record["completed"] is True
    assert not other.lock_path(sid).exists()
    assert [t["call_id"] for t in record["last_tool_results"]] == [f"In[{shell.execution_count - 1}]"]
    cell(shell, "e = 2")  # unhooked by the exit
    assert other.load(sid) == record


def test_a_forked_child_exiting_leaves_the_kernels_session_alone(shell, env, loaded):
    """os.fork() and a normal exit run the inherited atexit handler in the child: it must not complete."""
    shell.run_line_magic("opendev", "autosave on")
    cell(shell, "f = 1")
    sid = own_id(loaded)
    pid = os.fork()
    if pid == 0:  # the child: what its atexit would do
        try:
            loaded.state.at_exit()
        finally:
            os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    other = reader(env)
    record = other.load(sid)
    assert record["completed"] is False and other.status_of(record) == "running"
    cell(shell, "f = 2")  # and the kernel goes on saving
    assert len(other.load(sid)["last_tool_results"]) == 2


def test_exit_without_saving_writes_nothing(shell, env, loaded):
    loaded.state.at_exit()
    assert not env["snap"].exists() or not list(env["snap"].glob("*_session_snapshot.json"))


# ---------------------------------------------------------- unload / reload
def test_unload_stops_recording_and_keeps_the_lock(shell, env):
    load(shell)
    magics = shell.magics_manager.registry["OpendevMagics"]
    shell.run_line_magic("opendev", "autosave on")
    sid = own_id(magics)
    cell(shell, "u = 1")
    unload(shell)
    other = reader(env)
    record = other.load(sid)
    assert other.status_of(record) == "running"  # the kernel still lives: never interrupted
    assert magics not in shell.configurables
    assert "OpendevMagics" not in shell.magics_manager.registry
    assert magics.state.post_run_cell not in shell.events.callbacks["post_run_cell"]
    cell(shell, "u = 2")
    assert other.load(sid) == record


@pytest.mark.parametrize("configured", [False, True], ids=["magic", "profile-autosave"])
def test_reload_ext_keeps_session_lock_and_results(shell, env, configured):
    if configured:
        shell.config.OpendevMagics.autosave = True
    seed(env, "ipykernel-other-dead", env["proj"], kind="ipython")
    load(shell)
    magics = shell.magics_manager.registry["OpendevMagics"]
    if not configured:
        shell.run_line_magic("opendev", "autosave on")
    sid = own_id(magics)
    cell(shell, "r = 1")
    cell(shell, "r = 2")
    other = reader(env)
    before = [t["call_id"] for t in other.load(sid)["last_tool_results"]]
    assert len(before) == 2
    with capture_output() as cap:
        cell(shell, "%reload_ext opendev_snapshot")
    reloaded = shell.magics_manager.registry["OpendevMagics"]
    assert reloaded is not magics and own_id(reloaded) == sid
    shown = "".join(o.data["text/plain"] for o in cap.outputs)
    assert "1 interrupted session" in shown and "ipykernel-other" in shown
    assert sid not in shown and sid[:16] not in shown  # never its own session
    assert other.status_of(other.load(sid)) == "running"
    cell(shell, "r = 3")  # autosave still on, appending to the same results
    after = [t["call_id"] for t in other.load(sid)["last_tool_results"]]
    assert after[: len(before)] == before and len(after) == len(before) + 2  # the reload cell and r = 3
    assert [s["session_id"] for s in other.list(status="interrupted").sessions] == ["ipykernel-other-dead"]
    unload(shell)


# ----------------------------------------------------------------- complete
def test_complete(shell, env, loaded):
    shell.run_line_magic("opendev", "autosave on")
    cell(shell, "c = 1")
    with capture_output() as cap:
        shell.run_line_magic("opendev", "complete")
    sid = own_id(loaded)
    assert f"session {sid} marked completed" in cap.stdout
    other = reader(env)
    record = other.load(sid)
    assert record["completed"] is True and not other.lock_path(sid).exists()
    cell(shell, "c = 2")
    assert other.load(sid) == record  # autosave stopped


def test_complete_before_any_save(shell, loaded):
    with pytest.raises(UsageError, match="no snapshot yet"):
        shell.run_line_magic("opendev", "complete")


# ------------------------------------------------------- discard / restore
def test_discard_moves_to_the_trash_and_restore_brings_it_back(shell, env, loaded):
    seed(env, "ipykernel-crashed1", env["proj"], results=2, kind="ipython", notebook="/w/a.ipynb")
    with capture_output() as cap:
        shell.run_line_magic("opendev", "discard ipykernel-cr")
    assert "moved session ipykernel-crashed1 (a.ipynb) to the trash" in cap.stdout  # which notebook it was
    assert "undo: %opendev restore ipykernel-cras" in cap.stdout
    other = reader(env)
    assert other.load("ipykernel-crashed1") is None
    trash = shell.run_line_magic("opendev", "trash")
    assert isinstance(trash, TrashTable) and "a.ipynb" in str(trash) and "%opendev restore" in str(trash)
    with capture_output() as cap:
        shell.run_line_magic("opendev", "restore ipykernel-cr")
    assert "restored session ipykernel-crashed1 (a.ipynb, interrupted)" in cap.stdout
    assert "%opendev recover ipykernel-cras" in cap.stdout
    record = other.load("ipykernel-crashed1")
    assert len(record["last_tool_results"]) == 2 and other.status_of(record) == "interrupted"
    assert str(shell.run_line_magic("opendev", "trash")) == "The trash is empty."


def test_this_kernels_own_session_is_never_offered_for_recovery(shell, env, loaded):
    shell.run_line_magic("opendev", "autosave on")
    sid = own_id(loaded)
    shell.run_line_magic("opendev", f"discard {sid}")
    shell.run_line_magic("opendev", f"restore {sid}")  # back, unlocked: it reads interrupted
    assert reader(env).status_of(reader(env).load(sid)) == "interrupted"
    with capture_output() as cap:
        cell(shell, "%reload_ext opendev_snapshot")
    assert cap.outputs == [] and sid[:14] not in cap.stdout


def test_restore_refuses_when_the_id_exists_again(shell, env, loaded):
    seed(env, "twice", env["proj"])
    shell.run_line_magic("opendev", "discard twice")
    seed(env, "twice", env["proj"])
    with pytest.raises(UsageError, match="exists again; not restored"):
        shell.run_line_magic("opendev", "restore twice")


def test_discard_refuses_a_session_another_process_runs(shell, env, loaded):
    holder = seed(env, "alive", env["proj"], state="running")
    try:
        with pytest.raises(UsageError, match=r"session alive is running in a live process \(pid \d+ on .*not discarded"):
            shell.run_line_magic("opendev", "discard alive")
        assert reader(env).load("alive") is not None
    finally:
        holder.close()



def test_discard_names_a_hostile_holder_escaped(shell, env, loaded):
    holder = seed(env, "alive", env["proj"], state="running")
    try:
        lock = reader(env).lock_path("alive")
        lock.write_text('{"pid": 7, "host": "box\\u001b[2J\\u202e", "startedMs": 1}')  # same inode: still held
        with pytest.raises(UsageError) as info:
            shell.run_line_magic("opendev", "discard alive")
        assert "pid 7 on box\\e[2J\\u202e" in str(info.value) and "\x1b" not in str(info.value)
    finally:
        holder.close()

def test_discard_own_session_turns_autosave_off(shell, env, loaded):
    shell.run_line_magic("opendev", "autosave on")
    sid = own_id(loaded)
    with capture_output() as cap:
        shell.run_line_magic("opendev", f"discard {sid}")
    assert "autosave off" in cap.stdout
    cell(shell, "d = 1")
    other = reader(env)
    assert other.load(sid) is None and not other.lock_path(sid).exists()
    assert [e["session_id"] for e in other.list_trash()] == [sid]


# ------------------------------------------------------------------ cleanup
def test_cleanup_moves_to_the_trash(shell, env, loaded):
    seed(env, "old-done", env["proj"], state="completed", age_ms=8 * 24 * HOUR_MS)
    seed(env, "old-crash", env["proj"], age_ms=8 * 24 * HOUR_MS)
    seed(env, "new-crash", env["proj"])
    holder = seed(env, "old-alive", env["proj"], state="running")
    try:
        with capture_output() as cap:
            shell.run_line_magic("opendev", "cleanup --max-age 7d --dry-run")
        assert "would move 2 session(s) to the trash: old-crash, old-done" in cap.stdout
        assert reader(env).load("old-done") is not None
        with capture_output() as cap:
            shell.run_line_magic("opendev", "cleanup --max-age 7d")
        assert "moved 2 session(s) to the trash: old-crash, old-done" in cap.stdout
        other = reader(env)
        assert other.load("old-done") is None and other.load("old-crash") is None
        assert other.load("new-crash") is not None and other.load("old-alive") is not None
        assert {e["session_id"] for e in other.list_trash()} == {"old-crash", "old-done"}
    finally:
        holder.close()


# ------------------------------------------------------------------ recover
CELLS = ["%load_ext opendev_snapshot", "%opendev autosave on", "import math\nx = 20",
         "data = [\n" + "".join(f"    {n},\n" for n in range(200)) + "]", "%time y = x * 2", "total = sum(data) + y"]


@pytest.fixture
def dead(shell, env):
    """A killed kernel's session with its history on disk; returns its id."""
    db = env["tmp"] / "history.sqlite"
    number = write_history(shell, db, CELLS)
    seed(env, "ipykernel-dead0001", env["proj"], kind="ipython", notebook="/w/analysis.ipynb",
         history=(number, db), previews=CELLS)
    return "ipykernel-dead0001"


def test_recover_in_a_terminal_prints_the_cells_with_a_hint(shell, env, loaded, dead):
    with capture_output() as cap:
        shell.run_line_magic("opendev", "recover ipykernel-dead")
    out = cap.stdout
    for n, source in enumerate(CELLS, start=1):
        assert f"# In[{n}]" in out and source.splitlines()[-1] in out
    assert CELLS[3] in out  # the long cell whole, not its preview
    assert "6 cells of session ipykernel-dead0001 (analysis.ipynb), In[1]\u2013In[6], from IPython's history" in out
    assert "--to FILE" in out and "--run" in out


def test_recover_sanitises_what_it_prints_in_a_terminal(shell, env, loaded):
    db = env["tmp"] / "history.sqlite"
    source = "s = '\x1b]52;c;aGk=\x07'"
    number = write_history(shell, db, [source])
    seed(env, "ipykernel-esc", env["proj"], kind="ipython", history=(number, db), previews=[source])
    with capture_output() as cap:
        shell.run_line_magic("opendev", "recover ipykernel-esc")
    assert "\x1b" not in cap.stdout and "\\e]52;c;aGk=\\x07" in cap.stdout


def test_recover_to_a_file(shell, env, loaded, dead):
    target = env["tmp"] / "out.py"
    with capture_output() as cap:
        shell.run_line_magic("opendev", f"recover ipykernel-dead --to {target}")
    assert "wrote 6 cells of session ipykernel-dead0001" in cap.stdout and str(target) in cap.stdout
    text = target.read_text()
    compile(text, str(target), "exec")
    positions = [text.index(f"# In[{n}]") for n in range(1, 7)]
    assert positions == sorted(positions)
    assert CELLS[3] in text and "get_ipython().run_line_magic('time', 'y = x * 2')" in text
    with pytest.raises(UsageError, match="exists: not overwritten"):
        shell.run_line_magic("opendev", f"recover ipykernel-dead --to {target}")
    assert target.read_text() == text
    with pytest.raises(UsageError, match="not a directory"):
        shell.run_line_magic("opendev", f"recover ipykernel-dead --to {env['tmp'] / 'nowhere' / 'x.py'}")
    assert sorted(p.name for p in env["tmp"].iterdir() if p.name.startswith(".")) == []  # no temp left


def test_recover_run_rebuilds_the_variables(shell, env, loaded, dead):
    for name in ("x", "y", "data", "total"):
        shell.user_ns.pop(name, None)
    with capture_output() as cap:
        shell.run_line_magic("opendev", "recover ipykernel-dead --run")
    assert shell.user_ns["total"] == sum(range(200)) + 40
    assert "not re-run: In[1] (opendev's own command), In[2] (opendev's own command)" in cap.stdout
    assert "re-ran 4 cells" in cap.stdout


def test_recover_run_stops_at_the_first_error_and_names_the_cell(shell, env, loaded):
    db = env["tmp"] / "history.sqlite"
    cells = ["first = 1", "second = 1/0", "third = 3"]
    number = write_history(shell, db, cells)
    seed(env, "ipykernel-err", env["proj"], kind="ipython", history=(number, db), previews=cells)
    shell.user_ns.pop("third", None)
    with capture_output(), pytest.raises(UsageError,
                                         match=r"stopped at In\[2\] \(cell 2 of 3\): ZeroDivisionError.*Not run: In\[3\]"):
        shell.run_line_magic("opendev", "recover ipykernel-err --run")
    assert shell.user_ns["first"] == 1 and "third" not in shell.user_ns


def test_recover_falls_back_to_previews_and_says_why(shell, env, loaded):
    seed(env, "ipykernel-nohist", env["proj"], kind="ipython", history=(7, env["tmp"] / "missing.sqlite"),
         previews=["a = 1", "b = 2"])
    with capture_output() as cap:
        shell.run_line_magic("opendev", "recover ipykernel-nohist")
    assert "missing.sqlite does not exist" in cap.stderr and "previews" in cap.stderr
    assert "# In[1]\na = 1" in cap.stdout and "# In[2]\nb = 2" in cap.stdout


def test_recover_an_agent_session_says_what_it_is(shell, env, loaded):
    seed(env, "agent-1", env["proj"], results=0)
    with pytest.raises(UsageError, match="is an OpenDev agent session, not a notebook kernel"):
        shell.run_line_magic("opendev", "recover agent-1")


def test_recover_refuses_this_kernels_own_session(shell, env, loaded):
    shell.run_line_magic("opendev", "autosave on")
    with pytest.raises(UsageError, match="this kernel's own session"):
        shell.run_line_magic("opendev", f"recover {own_id(loaded)}")


# --------------------------------------------------------------- UsageError
@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("", "missing subcommand"),
        ("frobnicate", "unknown subcommand 'frobnicate'"),
        ("list --max-age 7d", "--max-age does not apply to %opendev list"),
        ("show", "takes a session ID"),
        ("show a b", "takes a session ID"),
        ("save now", "takes no argument"),
        ("autosave", "takes on or off"),
        ("autosave maybe", "takes on or off, not 'maybe'"),
        ("cleanup", "needs --max-age"),
        ("cleanup --max-age soon", "invalid duration 'soon'"),
        ("cleanup --all --max-age 7d", "--all does not apply"),
        ("list --bogus", "unrecognized arguments: --bogus"),
        ("discard --dry-run x", "--dry-run does not apply"),
        ("list --project 'unclosed", "No closing quotation"),
        ("recover", "takes a session ID"),
        ("show x --run", "--run does not apply to %opendev show"),
        ("list --to f.py", "--to does not apply"),
        ("restore", "takes a session ID"),
        ("trash x", "takes no argument"),
    ],
    ids=[
        "no-subcommand", "unknown", "option-elsewhere", "show-no-id", "show-two-ids", "save-arg",
        "autosave-missing", "autosave-bad", "cleanup-no-age", "cleanup-bad-age", "cleanup-all",
        "unknown-option", "discard-dry-run", "unbalanced-quote", "recover-no-id", "show-run", "list-to",
        "restore-no-id", "trash-arg",
    ],
)
def test_usage_errors(shell, loaded, line, message):
    with pytest.raises(UsageError) as info:
        shell.run_line_magic("opendev", line)
    assert type(info.value) is UsageError  # a subclass would get a full traceback
    assert message in str(info.value)


def test_usage_error_in_a_cell_shows_no_traceback(shell, loaded, capsys):
    result = cell(shell, "%opendev cleanup --max-age soon")
    err = capsys.readouterr().err
    assert type(result.error_in_exec) is UsageError
    assert "UsageError: opendev: invalid duration 'soon'" in err
    assert "Traceback" not in err


def test_help_documents_subcommands_and_options(shell, loaded):
    doc = shell.find_line_magic("opendev").__doc__
    for word in ("list [--all] [--project DIR]", "show ID", "save", "autosave on|off", "complete",
                 "discard ID", "restore ID", "recover ID [--to FILE] [--run]", "trash",
                 "cleanup --max-age 7d [--dry-run]", "--max-age DURATION", "--dry-run", "--to FILE", "unique prefix"):
        assert word in doc


# ----------------------------------------------------------------- settings
def test_settings_are_configurable_traitlets(shell, env, loaded):
    assert loaded in shell.configurables
    for name in ("snapshot_dir", "autosave", "preview_chars", "max_tool_results", "stale_after_ms"):
        assert loaded.trait_metadata(name, "config") is True
    other_dir = env["tmp"] / "elsewhere"
    shell.run_line_magic("config", f"OpendevMagics.snapshot_dir = {str(other_dir)!r}")  # beats the environment
    shell.run_line_magic("opendev", "save")
    assert list(other_dir.glob("*_session_snapshot.json"))
    assert not env["snap"].exists()
    with pytest.raises(TraitError, match="held in .* until the kernel exits"):
        loaded.snapshot_dir = str(env["snap"])  # refused while this session is held


def test_autosave_setting_turns_it_on_at_load(shell, env):
    shell.config.OpendevMagics.autosave = True
    load(shell)
    try:
        magics = shell.magics_manager.registry["OpendevMagics"]
        cell(shell, "auto = 1")
        record = reader(env).load(own_id(magics))
        assert [t["output_preview"] for t in record["last_tool_results"]] == ["auto = 1\n-> ok"]
    finally:
        unload(shell)
