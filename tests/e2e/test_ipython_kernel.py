"""A real ipykernel, driven by jupyter_client: SIGKILL leaves an interrupted
session that the next kernel's ``%load_ext`` shows; a clean shutdown completes."""

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

TIMEOUT = 30
KERNEL = "opendev-test"


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
    env = dict(os.environ)
    env.update(
        OPENDEV_SNAPSHOT_DIR=str(snap),
        IPYTHONDIR=str(tmp_path / "ipython"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        PYDEVD_DISABLE_FILE_VALIDATION="1",
    )
    managers: list[KernelManager] = []

    def start() -> tuple[KernelManager, object]:
        km = KernelManager(kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
        km.start_kernel(cwd=str(project), env=env)
        managers.append(km)
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=TIMEOUT)
        return km, kc

    yield {"start": start, "project": project, "snap": snap}
    for km in managers:  # whatever happened, no kernel outlives the test
        try:
            if km.has_kernel and km.is_alive():
                km.shutdown_kernel(now=True)
        except Exception:
            pass


def run(kc, code: str) -> tuple[str, list]:
    outputs: list = []
    reply = kc.execute_interactive(
        code, timeout=TIMEOUT, output_hook=lambda m: outputs.append((m["msg_type"], m["content"]))
    )
    return reply["content"]["status"], outputs


def stdout_of(outputs) -> str:
    return "".join(c["text"] for t, c in outputs if t == "stream" and c["name"] == "stdout")


def displays(outputs) -> list[dict]:
    return [c["data"] for t, c in outputs if t in ("display_data", "execute_result")]


def autosave_on(kc) -> str:
    status, out = run(kc, "%opendev autosave on")
    assert status == "ok", out
    match = re.search(r"autosave on for session (\S+)", stdout_of(out))
    assert match, out
    return match.group(1)


def process_of(km):
    return km.provisioner.process  # the kernel's Popen


@pytest.mark.timeout(100)
def test_killed_kernel_is_interrupted_and_shown_by_the_next_kernel(setup):
    # --- first kernel: autosave, three cells, SIGKILL
    km1, kc1 = setup["start"]()
    status, out = run(kc1, "%load_ext opendev_snapshot")
    assert status == "ok" and displays(out) == []  # nothing to recover yet
    sid = autosave_on(kc1)
    assert sid.startswith("ipykernel-")
    statuses = [run(kc1, code)[0] for code in ("x = 20", "1/0", "x * 2 + 2")]
    assert statuses == ["ok", "error", "ok"]

    store = SnapshotStore(setup["snap"])
    record = store.load(sid)
    assert [t["call_id"] for t in record["last_tool_results"]] == ["In[3]", "In[4]", "In[5]"]
    assert [t["success"] for t in record["last_tool_results"]] == [True, False, True]
    assert record["last_tool_results"][1]["output_preview"] == "1/0\n-> error: ZeroDivisionError: division by zero"
    assert record["message_count"] == 5
    assert record["project_dir"] == os.path.realpath(setup["project"])
    assert store.status_of(record) == "running"
    proc = process_of(km1)
    assert store.lock_holder(sid)["pid"] == proc.pid  # the kernel holds the lock

    kc1.stop_channels()
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=TIMEOUT) == -signal.SIGKILL
    km1.cleanup_resources()
    assert store.status_of(store.load(sid)) == "interrupted"
    assert store.load(sid)["completed"] is False

    # --- second kernel in the same project: %load_ext names the killed session
    km2, kc2 = setup["start"]()
    status, out = run(kc2, "%load_ext opendev_snapshot")
    assert status == "ok", out
    [shown] = displays(out)
    text, html = shown["text/plain"], shown["text/html"]
    assert "1 interrupted session in project" in text
    [row] = [line.split() for line in text.splitlines() if line.startswith(sid)]
    assert row[1] == "interrupted"
    assert row[3:6] == ["5", "3", "In[5]"]  # messages, results (its three cells), last cell
    assert f"<code>{sid}</code>" in html and "interrupted" in html

    # --- clean shutdown of the second kernel completes its own session
    sid2 = autosave_on(kc2)
    assert sid2 != sid
    assert run(kc2, "y = 1")[0] == "ok"
    assert store.status_of(store.load(sid2)) == "running"
    proc2 = process_of(km2)
    kc2.stop_channels()
    t0 = time.monotonic()
    km2.shutdown_kernel(now=False)
    assert proc2.wait(timeout=TIMEOUT) == 0  # it exited by itself, not killed
    assert time.monotonic() - t0 < TIMEOUT
    done = store.load(sid2)
    assert done["completed"] is True
    assert [t["call_id"] for t in done["last_tool_results"]] == ["In[3]"]
    assert not store.lock_path(sid2).exists()
    assert store.status_of(store.load(sid)) == "interrupted"  # the killed one is untouched
