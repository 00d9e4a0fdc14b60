"""JupyterLab in a real browser (Playwright driving Debian's chromium).

A data scientist's notebook, the extension loaded from the IPython profile
with autosave on: they run their cells, the kernel is SIGKILLed (the OOM
killer), JupyterLab restarts it, and the first cell they run shows the table
of the dead kernel; ``%opendev recover`` then puts its code in a new cell.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip("Debian's chromium is not installed (.ci/apt-packages.txt installs it in CI)", allow_module_level=True)
pytest.importorskip("jupyterlab", reason="the test extra installs jupyterlab")
playwright_api = pytest.importorskip("playwright.sync_api", reason="the test extra installs playwright")

from opendev_snapshot.core import SnapshotStore  # noqa: E402

WAIT_MS = 60_000
CELLS = [
    "import math\nbase = 7",
    "def score(values):\n" + "".join(f"    # step {n}: longer than one preview\n" for n in range(20))
    + "    return sum(v * v for v in values)\nlong_result = score(range(10))",
    "%time squared = base ** 2",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url: str, *, method: str = "GET", body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on a free loopback port, everything under ``tmp_path``."""
    project = tmp_path / "project"
    project.mkdir()
    profile = tmp_path / "ipython" / "profile_default"
    profile.mkdir(parents=True)
    (profile / "ipython_config.py").write_text(
        "c.InteractiveShellApp.extensions = ['opendev_snapshot']\nc.OpendevMagics.autosave = True\n"
    )
    snap = tmp_path / "snapshots"
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ)
    env.pop("JPY_SESSION_NAME", None)
    env.update(
        OPENDEV_SNAPSHOT_DIR=str(snap),
        IPYTHONDIR=str(tmp_path / "ipython"),
        JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"),
        JUPYTER_DATA_DIR=str(tmp_path / "jupyter-data"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter-runtime"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
        PYDEVD_DISABLE_FILE_VALIDATION="1",
    )
    log = open(tmp_path / "jupyterlab.log", "wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", f"--port={port}",
         "--ip=127.0.0.1", f"--ServerApp.token={token}", f"--ServerApp.root_dir={project}",
         "--LabApp.news_url=None"],
        cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                http(f"{base}/api/status?token={token}")
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("JupyterLab did not start: " + (tmp_path / "jupyterlab.log").read_text()[-3000:])
                time.sleep(0.2)
        yield {"base": base, "token": token, "project": project, "snap": snap, "tmp": tmp_path}
    finally:
        try:
            os.killpg(server.pid, signal.SIGTERM)  # the server and the kernels it started
            server.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=20)
        log.close()


def notebook(cells: list[str]) -> dict:
    return {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": [{"cell_type": "code", "id": f"c{i}", "metadata": {}, "execution_count": None, "outputs": [],
                   "source": c} for i, c in enumerate(cells)],
    }


def wait_idle(page) -> None:
    # (after a kernel restart JupyterLab 4.6's indicator can stay at "starting" while the
    # kernel is idle: the test then just runs the next cell, which JupyterLab queues)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=WAIT_MS)


def add_cell_and_run(page, code: str) -> None:
    """Type ``code`` into a new last cell and run it (Shift+Enter), as a person would."""
    last = page.locator(".jp-Notebook .jp-Cell").last
    last.click()
    page.keyboard.press("Escape")  # command mode
    if last.locator(".jp-InputArea-editor").inner_text().strip():
        page.keyboard.press("b")  # a new cell below (Shift+Enter on the last cell already made an empty one)
    page.keyboard.press("Enter")  # edit it
    page.keyboard.type(code)
    page.keyboard.press("Shift+Enter")


@pytest.mark.timeout(240)
def test_jupyterlab_shows_the_dead_kernel_and_gives_its_code_back(lab):
    url = f"{lab['base']}/api/contents/analysis.ipynb?token={lab['token']}"
    http(url, method="PUT", body={"type": "notebook", "content": notebook(CELLS)})
    store = SnapshotStore(lab["snap"])
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        try:
            page.goto(f"{lab['base']}/lab/tree/analysis.ipynb?token={lab['token']}")
            wait_idle(page)
            page.locator(".jp-Notebook .jp-Cell").first.click()
            page.keyboard.press("Escape")
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_text("Run All Cells", exact=True).click()
            page.wait_for_function(
                "[...document.querySelectorAll('.jp-InputArea-prompt')].some(e => e.textContent.includes('[3]'))",
                timeout=WAIT_MS,
            )
            wait_idle(page)
            [listing] = store.list().sessions
            sid = listing["session_id"]
            assert listing["status"] == "running" and listing["notebook"].endswith("analysis.ipynb")
            assert [t["call_id"] for t in store.load(sid)["last_tool_results"]] == ["In[1]", "In[2]", "In[3]"]

            os.kill(store.lock_info(sid)["pid"], signal.SIGKILL)  # the OOM killer
            dialog = page.locator(".jp-Dialog")
            dialog.wait_for(timeout=WAIT_MS)
            assert "appears to have died" in dialog.inner_text()
            dialog.get_by_role("button").last.click()
            assert store.status_of(store.load(sid)) == "interrupted"

            # the first cell the person runs in the restarted kernel shows the table
            add_cell_and_run(page, "x = 1")
            table = page.locator(".jp-OutputArea-output table.opendev-sessions")
            table.wait_for(timeout=WAIT_MS)
            text = table.inner_text()
            assert "analysis.ipynb" in text and "interrupted" in text and "In[1]\u2013In[3]" in text
            command = page.locator(".jp-OutputArea-output table.opendev-sessions code").filter(
                has_text="%opendev recover").first.inner_text()
            assert sid.startswith(command.split()[-1])

            # recover: the next cell holds the dead kernel's code, the long cell whole
            add_cell_and_run(page, command)
            recovered = page.locator(".jp-Notebook .jp-Cell .jp-InputArea-editor").filter(
                has_text="# Recovered by opendev-snapshot")
            recovered.wait_for(timeout=WAIT_MS)
            source = recovered.inner_text()
            assert "analysis.ipynb's dead kernel, In[1]\u2013In[3]" in source
            for n in (1, 2, 3):
                assert f"# In[{n}]" in source
            assert "# step 19: longer than one preview" in source and "%time squared = base ** 2" in source
            page.screenshot(path=str(lab["tmp"] / "jupyterlab.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(lab["tmp"] / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()
