"""Real ipykernels, driven by jupyter_client as a notebook front end drives them.

SIGKILL leaves an interrupted session; the next kernel shows it (also when the
extension is loaded from the IPython profile: at the first cell) and gives the
dead kernel's code back from IPython's history; ``%reload_ext`` and
``autosave off`` never make a live kernel look interrupted; a forked child does
not keep a killed kernel's session running; a clean shutdown completes; the
lock file's text follows the notebook when it is renamed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time

import pytest

jupyter_client = pytest.importorskip("jupyter_client")
pytest.importorskip("ipykernel")

from jupyter_client import KernelManager  # noqa: E402
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402

from opendev_snapshot.core import SnapshotStore  # noqa: E402

TIMEOUT = 60
KERNEL = "opendev-test"
PREVIEW_CHARS = 500  # the extension's default previewChars

LONG_CELL = (
    "def score(values):\n"
    + "".join(f"    # step {n}: a comment that makes this cell longer than one preview\n" for n in range(12))
    + "    return sum(v * v for v in values)\n"
    "long_result = score(range(10))"
)
assert len(LONG_CELL) > PREVIEW_CHARS
FIVE_CELLS = [
    "import math\nbase = 7",
    LONG_CELL,
    "%time squared = base ** 2",
    "words = ['notebook', 'kernel']\nlabel = '-'.join(words)",
    "final = long_result + squared + math.floor(2.5)",
]
FINAL = sum(v * v for v in range(10)) + 49 + 2


@pytest.fixture
def setup(tmp_path):
    """A kernelspec running this interpreter, a project dir and an isolated environment."""
    kernels = tmp_path / "kernels"
    spec = kernels / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"}))
    project = tmp_path / "project"
    project.mkdir()
    snap = tmp_path / "snapshots"
    ipython_dir = tmp_path / "ipython"
    env = dict(os.environ)
    env.pop("JPY_SESSION_NAME", None)
    env.update(
        OPENDEV_SNAPSHOT_DIR=str(snap),
        IPYTHONDIR=str(ipython_dir),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        PYDEVD_DISABLE_FILE_VALIDATION="1",
    )
    managers: list[KernelManager] = []
    children: list[int] = []

    def start(**extra_env) -> tuple[KernelManager, object]:
        km = KernelManager(kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
        km.start_kernel(cwd=str(project), env={**env, **extra_env})
        managers.append(km)
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=TIMEOUT)
        return km, kc

    def profile(text: str) -> None:
        config = ipython_dir / "profile_default"
        config.mkdir(parents=True, exist_ok=True)
        (config / "ipython_config.py").write_text(text)

    yield {"start": start, "project": project, "snap": snap, "tmp": tmp_path, "profile": profile,
           "children": children, "ipython_dir": ipython_dir}
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for km in managers:  # whatever happened, no kernel outlives the test
        try:
            if km.has_kernel and km.is_alive():
                km.shutdown_kernel(now=True)
        except Exception:
            pass


def run(kc, code: str) -> tuple[dict, list]:
    """Execute like a notebook cell; returns (execute_reply content, iopub outputs)."""
    outputs: list = []
    reply = kc.execute_interactive(
        code, timeout=TIMEOUT, output_hook=lambda m: outputs.append((m["msg_type"], m["content"]))
    )
    return reply["content"], outputs


def ok(kc, code: str) -> list:
    content, outputs = run(kc, code)
    assert content["status"] == "ok", (code, content, outputs)
    return outputs


def stdout_of(outputs) -> str:
    return "".join(c["text"] for t, c in outputs if t == "stream" and c["name"] == "stdout")


def stderr_of(outputs) -> str:
    return "".join(c["text"] for t, c in outputs if t == "stream" and c["name"] == "stderr")


def displays(outputs) -> list[dict]:
    return [c["data"] for t, c in outputs if t in ("display_data", "execute_result")]


def autosave_on(kc) -> str:
    out = ok(kc, "%opendev autosave on")
    match = re.search(r"autosave on for session (\S+)", stdout_of(out))
    assert match, out
    return match.group(1)


def value(kc, expression: str) -> str:
    reply = kc.execute_interactive("", user_expressions={"v": expression}, timeout=TIMEOUT)
    result = reply["content"]["user_expressions"]["v"]
    assert result["status"] == "ok", result
    return result["data"]["text/plain"]


def kill(km, kc) -> None:
    proc = km.provisioner.process  # the kernel's Popen
    kc.stop_channels()
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=TIMEOUT) == -signal.SIGKILL
    km.cleanup_resources()


def recover_command(text: str) -> str:
    match = re.search(r"%opendev recover (\S+)", text)
    assert match, text
    return match.group(1)


@pytest.mark.timeout(240)
def test_a_killed_kernels_code_comes_back_in_the_next_kernel(setup):
    # --- first kernel: a notebook's kernel, autosave on, five cells, then SIGKILL
    km1, kc1 = setup["start"](JPY_SESSION_NAME=str(setup["project"] / "analysis.ipynb"))
    assert displays(ok(kc1, "%load_ext opendev_snapshot")) == []  # nothing to recover yet
    sid = autosave_on(kc1)
    assert sid.startswith("ipykernel-")
    for code in FIVE_CELLS:
        ok(kc1, code)
    store = SnapshotStore(setup["snap"])
    record = store.load(sid)
    assert [t["call_id"] for t in record["last_tool_results"]] == [f"In[{n}]" for n in range(3, 8)]
    assert store.status_of(record) == "running"
    info = store.lock_info(sid)
    assert info["kind"] == "ipython" and info["notebook"] == str(setup["project"] / "analysis.ipynb")
    assert type(info["historySession"]) is int and "historyDb" not in info  # the default database
    assert info["pid"] == km1.provisioner.process.pid
    kill(km1, kc1)
    assert store.status_of(store.load(sid)) == "interrupted"

    # --- second kernel in the same project: the notice names it in a notebook's words
    km2, kc2 = setup["start"]()
    [shown] = displays(ok(kc2, "%load_ext opendev_snapshot"))
    text, html = shown["text/plain"], shown["text/html"]
    assert "1 interrupted session in project" in text
    [row] = [line for line in text.splitlines() if line.startswith("ipykernel-")]
    assert row.split()[1:6] == ["interrupted", "analysis.ipynb", "7", "In[3]\u2013In[7]", "0s"]
    assert "COST" not in text and "messages" not in text.lower()
    prefix = recover_command(row)
    assert sid.startswith(prefix) and len(prefix) < len(sid)
    assert f"<code>%opendev recover {prefix}</code>" in html

    # --to FILE: a runnable .py with all five sources in order, the long one whole
    target = setup["tmp"] / "out.py"
    out = ok(kc2, f"%opendev recover {prefix} --to {target}")
    assert f"wrote 7 cells of session {sid} (analysis.ipynb)" in stdout_of(out)
    script = target.read_text()
    compile(script, str(target), "exec")
    positions = [script.index(code.splitlines()[-1]) for code in FIVE_CELLS[:2] + FIVE_CELLS[3:]]
    assert positions == sorted(positions)
    assert LONG_CELL in script
    assert "get_ipython().run_line_magic('time', 'squared = base ** 2')" in script
    assert script.index("# In[5]") < script.index("get_ipython().run_line_magic('time'") < script.index("# In[6]")

    # default: the next input cell carries them, after # In[N] markers
    content, out = run(kc2, f"%opendev recover {prefix}")
    assert content["status"] == "ok", out
    [payload] = [p for p in content["payload"] if p["source"] == "set_next_input"]
    assert payload["replace"] is False
    nxt = payload["text"]
    for n, code in enumerate(FIVE_CELLS, start=3):
        assert f"# In[{n}]\n{code}" in nxt
    assert "the next cell holds 7 cells" in stdout_of(out)

    # --run rebuilds the variables in this kernel
    out = ok(kc2, f"%opendev recover {prefix} --run")
    assert "re-ran 5 cells" in stdout_of(out)
    assert value(kc2, "final") == str(FINAL)
    assert value(kc2, "label") == repr("notebook-kernel")

    # --- clean shutdown of the second kernel completes its own session; the dead one stays
    sid2 = autosave_on(kc2)
    ok(kc2, "y = 1")
    proc2 = km2.provisioner.process
    kc2.stop_channels()
    km2.shutdown_kernel(now=False)
    assert proc2.wait(timeout=TIMEOUT) == 0  # it exited by itself, not killed
    done = store.load(sid2)
    assert done["completed"] is True and not store.lock_path(sid2).exists()
    assert store.status_of(store.load(sid)) == "interrupted"


@pytest.mark.timeout(180)
def test_loaded_from_the_profile_the_notice_is_in_the_first_cells_output(setup):
    setup["profile"]("c.InteractiveShellApp.extensions = ['opendev_snapshot']\nc.OpendevMagics.autosave = True\n")
    km1, kc1 = setup["start"]()
    ok(kc1, "a = 1")
    ok(kc1, "b = a + 1")
    store = SnapshotStore(setup["snap"])
    [listing] = store.list().sessions
    sid = listing["session_id"]
    assert [t["call_id"] for t in listing["last_tool_results"]] == ["In[1]", "In[2]"]
    kill(km1, kc1)

    km2, kc2 = setup["start"]()
    first = ok(kc2, "c = 3")  # the first cell a person runs
    [shown] = displays(first)
    assert "1 interrupted session in project" in shown["text/plain"]
    assert sid.startswith(recover_command(shown["text/plain"]))
    assert "<table" in shown["text/html"]
    assert displays(ok(kc2, "d = 4")) == []  # once
    out = ok(kc2, "%load_ext opendev_snapshot")
    assert "already loaded" in stdout_of(out)
    own = [s for s in store.list().sessions if s["session_id"] != sid]
    assert [s["status"] for s in own] == ["running"]  # the new kernel autosaves, and is running


@pytest.mark.timeout(180)
def test_reload_ext_and_autosave_off_never_make_the_live_kernel_interrupted(setup):
    setup["profile"]("c.OpendevMagics.autosave = True\n")  # the setting that used to wipe results on reload
    km, kc = setup["start"]()
    ok(kc, "%load_ext opendev_snapshot")
    store = SnapshotStore(setup["snap"])
    [sid] = [s["session_id"] for s in store.list().sessions]
    ok(kc, "x = 1")
    ok(kc, "y = 2")
    before = [t["call_id"] for t in store.load(sid)["last_tool_results"]]
    assert before == ["In[2]", "In[3]"]

    out = ok(kc, "%reload_ext opendev_snapshot")
    assert displays(out) == [] and "interrupted" not in stdout_of(out) + stderr_of(out)
    assert store.status_of(store.load(sid)) == "running"
    ok(kc, "z = 3")
    after = [t["call_id"] for t in store.load(sid)["last_tool_results"]]
    assert after == before + ["In[4]", "In[5]"]  # same session, results kept, autosave still on

    out = ok(kc, "%opendev autosave off")
    assert "stays running" in stdout_of(out)
    ok(kc, "w = 4")
    assert [t["call_id"] for t in store.load(sid)["last_tool_results"]] == after  # no longer saving
    assert store.status_of(store.load(sid)) == "running"
    assert store.list(status="interrupted").sessions == []  # nothing for an editor to offer

    kill(km, kc)
    record = store.load(sid)
    assert store.status_of(record) == "interrupted"
    assert [t["call_id"] for t in record["last_tool_results"]] == after


@pytest.mark.timeout(180)
def test_the_cell_running_when_the_kernel_died_comes_back_but_is_not_re_run(setup):
    """The OOM killer strikes during a cell: its source is in the history, flagged, and --run stops before it."""
    km1, kc1 = setup["start"]()
    ok(kc1, "%load_ext opendev_snapshot")
    sid = autosave_on(kc1)
    ok(kc1, "ready = 'yes'")
    kc1.execute("import time\nhuge = time.sleep(600)")  # a cell that never finishes
    store = SnapshotStore(setup["snap"])
    history_db = setup["ipython_dir"] / "profile_default" / "history.sqlite"
    from opendev_snapshot.ipython.history import read_history

    deadline = time.monotonic() + TIMEOUT
    while not any("time.sleep(600)" in src for _, src in read_history(str(history_db), store.lock_info(sid)["historySession"])):
        assert time.monotonic() < deadline, "the running cell never reached IPython's history"
        time.sleep(0.05)
    kill(km1, kc1)

    km2, kc2 = setup["start"]()
    ok(kc2, "%load_ext opendev_snapshot")
    content, out = run(kc2, f"%opendev recover {sid}")
    [payload] = [p for p in content["payload"] if p["source"] == "set_next_input"]
    assert "# In[4] (no outcome recorded: it may have been running when the kernel died)\nimport time" in payload["text"]
    out = ok(kc2, f"%opendev recover {sid} --run")
    assert "stopped before In[4]: it may have been running when the kernel died" in stdout_of(out)
    assert value(kc2, "ready") == repr("yes")


@pytest.mark.timeout(180)
def test_a_forked_child_does_not_keep_a_killed_kernels_session_running(setup):
    km, kc = setup["start"]()
    ok(kc, "%load_ext opendev_snapshot")
    sid = autosave_on(kc)
    out = ok(kc, "import multiprocessing, time\n"
                 "child = multiprocessing.get_context('fork').Process(target=time.sleep, args=(300,))\n"
                 "child.start()\n"
                 "print('child', child.pid)")
    pid = int(re.search(r"child (\d+)", stdout_of(out)).group(1))
    setup["children"].append(pid)
    store = SnapshotStore(setup["snap"])
    assert store.status_of(store.load(sid)) == "running"
    kill(km, kc)
    os.kill(pid, 0)  # the child is still alive
    assert store.status_of(store.load(sid)) == "interrupted"
    [listing] = store.list(status="interrupted").sessions
    assert listing["session_id"] == sid and listing["kind"] == "ipython"


@pytest.mark.timeout(180)
def test_the_lock_text_follows_the_notebook_while_the_kernel_runs(setup):
    """Renamed (or the kernel moved to another notebook): the next autosave rewrites the lock's text, lock kept."""
    first, renamed = setup["project"] / "draft.ipynb", setup["project"] / "analysis-final.ipynb"
    km, kc = setup["start"](JPY_SESSION_NAME=str(first))
    ok(kc, "%load_ext opendev_snapshot")
    sid = autosave_on(kc)
    ok(kc, "a = 1")
    store = SnapshotStore(setup["snap"])
    lock = store.lock_path(sid)
    info, ino = store.lock_info(sid), lock.stat().st_ino
    assert info["notebook"] == str(first)
    assert store.list().sessions[0]["notebook"] == str(first)  # a long-lived reader (an editor's server)

    ok(kc, f"import os\nos.environ['JPY_SESSION_NAME'] = {str(renamed)!r}")  # what the front end now says
    after = store.lock_info(sid)
    assert after == {**info, "notebook": str(renamed)}  # same pid, host, startedMs, kind, history session
    assert lock.stat().st_ino == ino
    assert store.status_of(store.load(sid)) == "running"  # the lock was never let go
    [listing] = store.list().sessions
    assert listing["notebook"] == str(renamed)
    with SnapshotStore(setup["snap"]) as other:  # nobody else can take it
        assert other.claim(sid) is False

    mtime = lock.stat().st_mtime_ns
    ok(kc, "b = 2")  # nothing changed: the lock file is not written again
    assert lock.stat().st_mtime_ns == mtime and store.lock_info(sid) == after

    ok(kc, "get_ipython().history_manager.reset(new_session=True)")  # a new history session
    newer = store.lock_info(sid)
    assert newer["historySession"] == info["historySession"] + 1 and newer["notebook"] == str(renamed)

    kill(km, kc)
    assert store.status_of(store.load(sid)) == "interrupted"
    assert store.lock_info(sid)["notebook"] == str(renamed)  # what the next kernel shows
