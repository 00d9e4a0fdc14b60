"""The %opendev magic in an in-process IPython shell: every subcommand, the
displays, the UsageError cases and autosave's snapshots."""

from __future__ import annotations

import os
import re

import pytest

pytest.importorskip("IPython")

from IPython.core.error import UsageError  # noqa: E402
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402
from IPython.utils.capture import capture_output  # noqa: E402
from traitlets import TraitError  # noqa: E402
from traitlets.config import Config  # noqa: E402

from opendev_snapshot.core import SnapshotStore, new_record  # noqa: E402
from opendev_snapshot.ipython.display import SessionTable, SessionView  # noqa: E402

HOUR_MS = 3_600_000


@pytest.fixture(scope="module")
def shell():
    cfg = Config()
    cfg.HistoryManager.hist_file = ":memory:"
    return InteractiveShell.instance(config=cfg)


@pytest.fixture
def env(tmp_path, monkeypatch):
    snap = tmp_path / "snap"
    proj = tmp_path / "proj"
    proj.mkdir()
    monkeypatch.setenv("OPENDEV_SNAPSHOT_DIR", str(snap))
    monkeypatch.chdir(proj)
    return {"snap": snap, "proj": proj, "tmp": tmp_path}


@pytest.fixture
def loaded(shell, env):
    """The extension loaded in ``shell``; yields its magics; unloads after."""
    with capture_output() as cap:
        shell.extension_manager.load_extension("opendev_snapshot")
    magics = shell.magics_manager.registry["OpendevMagics"]
    magics.load_output = cap
    yield magics
    shell.extension_manager.unload_extension("opendev_snapshot")
    shell.config.pop("OpendevMagics", None)  # %config persists in the shell's config


def reader(env) -> SnapshotStore:
    """A second store on the same directory: sees the disk and probes locks like another process."""
    return SnapshotStore(env["snap"])


def seed(env, session_id, project, *, state="interrupted", age_ms=0, results=0):
    """Write a session of ``project`` in the given state, as some other process would have."""
    store = SnapshotStore(env["snap"])
    record = new_record(session_id, str(project))
    record["snapshot_timestamp_ms"] -= age_ms
    record["message_count"] = results + 2
    for n in range(results):
        record["last_tool_results"].append(
            {"tool_name": "cell", "call_id": f"In[{n + 3}]", "output_preview": f"cell {n}", "success": True}
        )
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


def cell(shell, code):
    return shell.run_cell(code, store_history=True)


# ------------------------------------------------------------------ loading
def test_load_shows_nothing_without_interrupted_sessions(shell, env):
    seed(env, "done", env["proj"], state="completed")
    with capture_output() as cap:
        shell.extension_manager.load_extension("opendev_snapshot")
    try:
        assert cap.outputs == []
        assert cap.stdout == "" and cap.stderr == ""
        assert "opendev" in shell.magics_manager.magics["line"]
    finally:
        shell.extension_manager.unload_extension("opendev_snapshot")
    assert "opendev" not in shell.magics_manager.magics["line"]


def test_load_shows_interrupted_sessions_of_this_project(shell, env):
    sub = env["proj"] / "sub"
    sub.mkdir()
    seed(env, "crashed", env["proj"], results=3)
    seed(env, "crashed-sub", sub, age_ms=HOUR_MS)
    seed(env, "elsewhere", env["tmp"], results=1)
    seed(env, "finished", env["proj"], state="completed")
    holder = seed(env, "alive", env["proj"])
    holder = seed(env, "alive", env["proj"], state="running")
    try:
        with capture_output() as cap:
            shell.extension_manager.load_extension("opendev_snapshot")
        shell.extension_manager.unload_extension("opendev_snapshot")
    finally:
        holder.close()
    assert len(cap.outputs) == 1
    data = cap.outputs[0].data
    text, html = data["text/plain"], data["text/html"]
    assert "2 interrupted sessions" in text
    lines = {line.split()[0]: line.split() for line in text.splitlines() if line.startswith("crashed")}
    assert set(lines) == {"crashed", "crashed-sub"}
    assert lines["crashed"][1:3] == ["interrupted", "0s"]
    assert lines["crashed"][4:6] == ["3", "In[5]"]  # results, last cell
    for absent in ("elsewhere", "finished", "alive"):
        assert absent not in text and absent not in html
    assert "<table" in html and "<code>crashed</code>" in html and "interrupted" in html
    assert text.index("crashed ") < text.index("crashed-sub")  # newest first
    assert "%opendev show ID" in text


def test_load_escapes_html(shell, env):
    odd = env["proj"] / "a<b>&c"
    odd.mkdir()
    seed(env, "odd", odd)
    with capture_output() as cap:
        shell.extension_manager.load_extension("opendev_snapshot")
    shell.extension_manager.unload_extension("opendev_snapshot")
    html = cap.outputs[0].data["text/html"]
    assert "a&lt;b&gt;&amp;c" in html and "a<b>" not in html
    assert "a<b>&c" in cap.outputs[0].data["text/plain"]


def test_terminal_gets_plain_text_only(shell, env):
    seed(env, "crashed", env["proj"])
    formatter = shell.display_formatter
    saved = list(formatter.active_types)
    formatter.active_types = ["text/plain"]  # what TerminalInteractiveShell does
    try:
        with capture_output() as cap:
            shell.extension_manager.load_extension("opendev_snapshot")
        shell.extension_manager.unload_extension("opendev_snapshot")
    finally:
        formatter.active_types = saved
    assert list(cap.outputs[0].data) == ["text/plain"]
    assert "crashed" in cap.outputs[0].data["text/plain"]


def test_load_with_unusable_directory_still_registers_the_magic(shell, env):
    env["snap"].write_text("not a directory")
    with capture_output() as cap:
        shell.extension_manager.load_extension("opendev_snapshot")
    try:
        assert "cannot list interrupted sessions" in cap.stderr
        assert "opendev" in shell.magics_manager.magics["line"]
    finally:
        shell.extension_manager.unload_extension("opendev_snapshot")


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


# --------------------------------------------------------------------- show
def test_show(shell, env, loaded):
    seed(env, "crashed", env["proj"], results=2)
    view = shell.run_line_magic("opendev", "show crashed")
    assert isinstance(view, SessionView)
    bundle, _ = shell.display_formatter.format(view)
    text = bundle["text/plain"]
    assert re.search(r"^session +crashed$", text, re.M) and re.search(r"^status +interrupted$", text, re.M)
    assert "tool results (2):" in text and "cell In[4]" in text and "cell 1" in text
    assert "<pre>cell 0</pre>" in bundle["text/html"]


def test_show_id_starting_with_a_dash_and_project_with_spaces(shell, env, loaded):
    spaced = env["proj"] / "my project"
    spaced.mkdir()
    seed(env, "-dash", spaced)
    assert shell.run_line_magic("opendev", "show -- -dash").record["session_id"] == "-dash"
    table = shell.run_line_magic("opendev", f"list --project '{spaced}'")
    assert [s["session_id"] for s in table.sessions] == ["-dash"]


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
    assert "running" in text and f"pid {os.getpid()}" in text


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("show missing", "no snapshot for session 'missing'"),
        ("show ../x", "session_id"),
        ("discard missing", "no snapshot for session 'missing'"),
    ],
    ids=["show-missing", "show-invalid-id", "discard-missing"],
)
def test_missing_or_invalid_ids(shell, loaded, line, message):
    with pytest.raises(UsageError, match=message) as info:
        shell.run_line_magic("opendev", line)
    assert type(info.value) is UsageError
    assert info.value.__cause__ is not None  # raised from the core error


# --------------------------------------------------------------------- save
def test_save_writes_a_running_session_of_this_project(shell, env, loaded):
    cell(shell, "a = 1")
    count = shell.execution_count
    with capture_output() as cap:
        shell.run_line_magic("opendev", "save")
    sid = loaded.session.session_id
    assert f"saved session {sid}" in cap.stdout
    other = reader(env)
    record = other.load(sid)
    assert record["message_count"] == count - 1
    assert record["project_dir"] == str(env["proj"])
    assert record["last_tool_results"] == [] and record["completed"] is False
    assert other.status_of(record) == "running"


# ----------------------------------------------------------------- autosave
def test_autosave_one_snapshot_per_cell(shell, env, loaded):
    with capture_output() as cap:
        cell(shell, "%opendev autosave on")
    sid = loaded.session.session_id
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


def test_autosave_skips_silent_runs(shell, env, loaded):
    shell.run_line_magic("opendev", "autosave on")
    shell.run_cell("y = 1", store_history=False)
    shell.run_cell("y = 2", silent=True)
    assert reader(env).load(loaded.session.session_id)["last_tool_results"] == []


def test_autosave_is_bounded_and_previews_cut(shell, env, loaded):
    shell.run_line_magic("config", "OpendevMagics.max_tool_results = 3")
    shell.run_line_magic("config", "OpendevMagics.preview_chars = 40")
    shell.run_line_magic("opendev", "autosave on")
    for n in range(5):
        cell(shell, f"v{n} = '{'long text ' * 20}'")
    results = reader(env).load(loaded.session.session_id)["last_tool_results"]
    assert len(results) == 3
    assert results[-1]["call_id"] == f"In[{shell.execution_count - 1}]"
    assert all(len(t["output_preview"]) <= 40 for t in results)
    assert all(t["output_preview"].endswith("-> ok") for t in results)


def test_autosave_off_unhooks_and_releases(shell, env, loaded):
    shell.run_line_magic("opendev", "autosave on")
    cell(shell, "z = 1")
    with capture_output() as cap:
        cell(shell, "%opendev autosave off")
    assert "autosave off" in cap.stdout and "interrupted" in cap.stdout
    sid = loaded.session.session_id
    other = reader(env)
    before = other.load(sid)
    cell(shell, "z = 2")
    after = other.load(sid)
    assert after == before  # no longer hooked
    assert other.status_of(after) == "interrupted"
    assert other.lock_path(sid).exists()  # released, not completed
    with capture_output() as cap:
        shell.run_line_magic("opendev", "autosave off")
    assert "already off" in cap.stdout


def test_autosave_off_after_a_manual_save_releases(shell, env, loaded):
    shell.run_line_magic("opendev", "save")
    sid = loaded.session.session_id
    other = reader(env)
    assert other.status_of(other.load(sid)) == "running"
    with capture_output() as cap:
        shell.run_line_magic("opendev", "autosave off")
    assert "released" in cap.stdout
    assert other.status_of(other.load(sid)) == "interrupted"


def test_autosave_on_twice_hooks_once(shell, env, loaded):
    shell.run_line_magic("opendev", "autosave on")
    with capture_output() as cap:
        shell.run_line_magic("opendev", "autosave on")
    assert "already on" in cap.stdout
    cell(shell, "q = 1")
    assert len(reader(env).load(loaded.session.session_id)["last_tool_results"]) == 1


def test_autosave_failure_warns_once_and_keeps_the_shell_working(shell, env, loaded):
    shell.run_line_magic("opendev", "autosave on")
    sid = loaded.session.session_id
    for name in os.listdir(env["snap"]):
        os.unlink(env["snap"] / name)
    os.rmdir(env["snap"])
    env["snap"].write_text("now a file")
    with capture_output() as cap:
        first = cell(shell, "w = 1")
        second = cell(shell, "w + 1")
    assert first.success and second.success
    assert cap.stderr.count("autosave failed") == 1
    assert sid in loaded.session.session_id


def test_clean_exit_completes_the_session(shell, env, loaded):
    shell.run_line_magic("opendev", "autosave on")
    cell(shell, "e = 1")
    sid = loaded.session.session_id
    loaded.at_exit()
    other = reader(env)
    record = other.load(sid)
    assert record["completed"] is True
    assert not other.lock_path(sid).exists()
    assert [t["call_id"] for t in record["last_tool_results"]] == [f"In[{shell.execution_count - 1}]"]
    cell(shell, "e = 2")  # unhooked by the exit
    assert other.load(sid) == record


def test_exit_without_saving_writes_nothing(shell, env, loaded):
    loaded.at_exit()
    assert not env["snap"].exists() or not list(env["snap"].glob("*_session_snapshot.json"))


def test_unload_releases_without_completing(shell, env):
    with capture_output():
        shell.extension_manager.load_extension("opendev_snapshot")
    magics = shell.magics_manager.registry["OpendevMagics"]
    shell.run_line_magic("opendev", "autosave on")
    sid = magics.session.session_id
    shell.extension_manager.unload_extension("opendev_snapshot")
    other = reader(env)
    assert other.status_of(other.load(sid)) == "interrupted"
    assert magics not in shell.configurables
    assert "OpendevMagics" not in shell.magics_manager.registry
    assert magics.post_run_cell not in shell.events.callbacks["post_run_cell"]


# ----------------------------------------------------------------- complete
def test_complete(shell, env, loaded):
    shell.run_line_magic("opendev", "autosave on")
    cell(shell, "c = 1")
    with capture_output() as cap:
        shell.run_line_magic("opendev", "complete")
    sid = loaded.session.session_id
    assert f"session {sid} marked completed" in cap.stdout
    other = reader(env)
    record = other.load(sid)
    assert record["completed"] is True and not other.lock_path(sid).exists()
    cell(shell, "c = 2")
    assert other.load(sid) == record  # autosave stopped


def test_complete_before_any_save(shell, loaded):
    with pytest.raises(UsageError, match="no snapshot yet"):
        shell.run_line_magic("opendev", "complete")


# ------------------------------------------------------------------ discard
def test_discard(shell, env, loaded):
    seed(env, "crashed", env["proj"])
    with capture_output() as cap:
        shell.run_line_magic("opendev", "discard crashed")
    assert "discarded session crashed" in cap.stdout
    other = reader(env)
    assert other.load("crashed") is None and not other.lock_path("crashed").exists()


def test_discard_refuses_a_session_another_process_runs(shell, env, loaded):
    holder = seed(env, "alive", env["proj"], state="running")
    try:
        with pytest.raises(UsageError, match="is running"):
            shell.run_line_magic("opendev", "discard alive")
        assert reader(env).load("alive") is not None
    finally:
        holder.close()


def test_discard_own_session_turns_autosave_off(shell, env, loaded):
    shell.run_line_magic("opendev", "autosave on")
    sid = loaded.session.session_id
    with capture_output() as cap:
        shell.run_line_magic("opendev", f"discard {sid}")
    assert "autosave off" in cap.stdout
    cell(shell, "d = 1")
    other = reader(env)
    assert other.load(sid) is None and not other.lock_path(sid).exists()


# ------------------------------------------------------------------ cleanup
def test_cleanup(shell, env, loaded):
    seed(env, "old-done", env["proj"], state="completed", age_ms=8 * 24 * HOUR_MS)
    seed(env, "old-crash", env["proj"], age_ms=8 * 24 * HOUR_MS)
    seed(env, "new-crash", env["proj"])
    holder = seed(env, "old-alive", env["proj"], state="running")
    try:
        with capture_output() as cap:
            shell.run_line_magic("opendev", "cleanup --max-age 7d --dry-run")
        assert "would remove 2 session(s): old-crash, old-done" in cap.stdout
        assert reader(env).load("old-done") is not None
        with capture_output() as cap:
            shell.run_line_magic("opendev", "cleanup --max-age 7d")
        assert "removed 2 session(s): old-crash, old-done" in cap.stdout
        other = reader(env)
        assert other.load("old-done") is None and other.load("old-crash") is None
        assert other.load("new-crash") is not None and other.load("old-alive") is not None
        with capture_output() as cap:
            shell.run_line_magic("opendev", "cleanup --max-age 0s")
        assert "new-crash" in cap.stdout and "old-alive" not in cap.stdout
    finally:
        holder.close()


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
    ],
    ids=[
        "no-subcommand", "unknown", "option-elsewhere", "show-no-id", "show-two-ids", "save-arg",
        "autosave-missing", "autosave-bad", "cleanup-no-age", "cleanup-bad-age", "cleanup-all",
        "unknown-option", "discard-dry-run", "unbalanced-quote",
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
                 "discard ID", "cleanup --max-age 7d [--dry-run]", "--max-age DURATION", "--dry-run"):
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
    with pytest.raises(TraitError, match="autosave off"):
        loaded.snapshot_dir = str(env["snap"])  # refused while this session is held


def test_autosave_setting_turns_it_on_at_load(shell, env):
    shell.config.OpendevMagics.autosave = True
    try:
        with capture_output():
            shell.extension_manager.load_extension("opendev_snapshot")
        magics = shell.magics_manager.registry["OpendevMagics"]
        cell(shell, "auto = 1")
        record = reader(env).load(magics.session.session_id)
        assert [t["output_preview"] for t in record["last_tool_results"]] == ["auto = 1\n-> ok"]
    finally:
        del shell.config["OpendevMagics"]
        shell.extension_manager.unload_extension("opendev_snapshot")
