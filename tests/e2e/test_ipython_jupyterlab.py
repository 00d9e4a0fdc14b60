"""JupyterLab in a real browser (Playwright driving Debian's chromium).

A data scientist's notebook, the extension loaded from the IPython profile
with autosave on: they run their cells, the kernel is SIGKILLed (the OOM
killer), JupyterLab restarts it, and the first cell they run shows the table
of the dead kernel; ``%opendev recover`` then puts its code in a new cell.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip("Debian's chromium is not installed (.ci/apt-packages.txt installs it in CI)", allow_module_level=True)
pytest.importorskip("jupyterlab", reason="the test extra installs jupyterlab")
playwright_api = pytest.importorskip("playwright.sync_api", reason="the test extra installs playwright")

from opendev_snapshot.core import SnapshotStore  # noqa: E402

# Deadlines, not durations: every wait below ends as soon as its condition holds (a run
# takes ~15 s alone); they are this long only so a loaded machine (2 cores, other suites
# running) is never mistaken for a failure.
WAIT_S = 150
WAIT_MS = WAIT_S * 1000
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
    with urllib.request.urlopen(request, timeout=WAIT_S) as response:
        return json.loads(response.read() or b"null")


def wait_until(condition, what: str, *, timeout: float = WAIT_S):
    """Poll ``condition()`` until it returns something true (returned), or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout} s waiting for {what}")
        time.sleep(0.1)


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
    settings = tmp_path / "jupyter-config" / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    # no toast ("official Jupyter news?") over the notebook: a click on a covered cell would wait for it
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True}))
    snap = tmp_path / "snapshots"
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
    log_path = tmp_path / "jupyterlab.log"
    log = open(log_path, "ab")
    token = secrets.token_hex(16)
    server = None
    try:
        for _attempt in range(3):  # a free port can be taken by another process before the server binds it
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            server = subprocess.Popen(
                [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", f"--port={port}",
                 "--ServerApp.port_retries=0",  # never another port: the test would talk to someone else
                 "--ip=127.0.0.1", f"--ServerApp.token={token}", f"--ServerApp.root_dir={project}",
                 "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
                cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

            def up():
                if server.poll() is not None:
                    return "exited"
                try:
                    return http(f"{base}/api/status?token={token}")
                except OSError:
                    return None

            if wait_until(up, f"JupyterLab's REST API (log: {log_path})") != "exited":
                break
        else:
            raise AssertionError("JupyterLab did not start: " + log_path.read_text()[-3000:])
        yield {"base": base, "token": token, "project": project, "snap": snap, "tmp": tmp_path, "log": log_path}
    finally:
        if server is not None:
            try:
                os.killpg(server.pid, signal.SIGTERM)  # the server and the kernels it started
                server.wait(timeout=30)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=30)
        log.close()


def notebook(cells: list[str]) -> dict:
    return {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": [{"cell_type": "code", "id": f"c{i}", "metadata": {}, "execution_count": None, "outputs": [],
                   "source": c} for i, c in enumerate(cells)],
    }


def kernel_of(lab, path: str) -> dict | None:
    """The server's view of the kernel of the notebook at ``path`` (REST ``/api/sessions``), or None."""
    for session in http(f"{lab['base']}/api/sessions?token={lab['token']}"):
        if session.get("path") == path and session.get("kernel"):
            return session["kernel"]
    return None


def wait_kernel_idle(lab, path: str) -> dict:
    """Until the server says the notebook's kernel is up and idle, with a client connected.

    Asked of the server, not of JupyterLab's toolbar: after a restart its
    indicator can stay at "starting" while the kernel is idle.
    """
    def ready():
        kernel = kernel_of(lab, path)
        if kernel and kernel.get("execution_state") == "idle" and kernel.get("connections", 0) > 0:
            return kernel
        return None

    return wait_until(ready, f"the kernel of {path} to be idle")


def cells(page):
    return page.locator(".jp-Notebook .jp-Cell")


def add_cell_and_run(page, code: str) -> None:
    """Type ``code`` into a new last cell and run it (Shift+Enter), as a person would.

    Each keystroke waits for the state the previous one leads to (command
    mode, the new cell, the editor's focus, the typed text): on a loaded
    machine a keystroke sent early lands in command mode, where ``x`` cuts a
    cell and ``1`` makes a heading.
    """
    expect = playwright_api.expect
    last = cells(page).last
    last.click()
    page.keyboard.press("Escape")  # command mode
    page.locator(".jp-Notebook.jp-mod-commandMode").wait_for()
    if last.locator(".jp-InputArea-editor").inner_text().strip():
        count = cells(page).count()
        page.keyboard.press("b")  # a new cell below (Shift+Enter on the last cell already made an empty one)
        expect(cells(page)).to_have_count(count + 1)
    target = cells(page).last
    expect(target).to_have_class(re.compile(r"\bjp-mod-active\b"))
    page.keyboard.press("Enter")  # edit it
    editor = target.locator(".cm-content")
    expect(editor).to_be_focused()
    page.keyboard.type(code)
    expect(editor).to_have_text(code)
    page.keyboard.press("Shift+Enter")


def saved_sources(lab, path: str) -> list[str]:
    """The cells' sources in the notebook file as saved ([] while a save is half-written)."""
    try:
        model = http(f"{lab['base']}/api/contents/{path}?content=1&token={lab['token']}")
    except urllib.error.HTTPError as exc:
        if exc.code == 400:  # "Unreadable Notebook": jupyter_server writes the file in place
            return []
        raise
    return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in model["content"]["cells"]]


@pytest.mark.timeout(600)
def test_jupyterlab_shows_the_dead_kernel_and_gives_its_code_back(lab):
    name = "analysis.ipynb"
    url = f"{lab['base']}/api/contents/{name}?token={lab['token']}"
    http(url, method="PUT", body={"type": "notebook", "content": notebook(CELLS)})
    store = SnapshotStore(lab["snap"])
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], timeout=WAIT_MS)
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        page.set_default_timeout(WAIT_MS)  # every action and expect waits for its condition up to this
        playwright_api.expect.set_options(timeout=WAIT_MS)
        try:
            page.goto(f"{lab['base']}/lab/tree/{name}?token={lab['token']}", wait_until="domcontentloaded")
            cells(page).first.wait_for()
            wait_kernel_idle(lab, name)
            cells(page).first.click()
            page.keyboard.press("Escape")
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_text("Run All Cells", exact=True).click()
            page.wait_for_function(  # set from the execute_reply, so after the cell's autosave
                "[...document.querySelectorAll('.jp-InputArea-prompt')].some(e => e.textContent.includes('[3]'))"
            )
            [listing] = store.list().sessions
            sid = listing["session_id"]
            assert listing["status"] == "running" and listing["notebook"].endswith(name)
            assert [t["call_id"] for t in store.load(sid)["last_tool_results"]] == ["In[1]", "In[2]", "In[3]"]

            os.kill(store.lock_info(sid)["pid"], signal.SIGKILL)  # the OOM killer
            dialog = page.locator(".jp-Dialog")
            dialog.wait_for()
            assert "appears to have died" in dialog.inner_text()
            dialog.get_by_role("button").last.click()
            dialog.wait_for(state="detached")
            assert store.status_of(store.load(sid)) == "interrupted"
            wait_kernel_idle(lab, name)  # JupyterLab restarted it

            # the first cell the person runs in the restarted kernel shows the table
            add_cell_and_run(page, "x = 1")
            table = page.locator(".jp-OutputArea-output table.opendev-sessions")
            table.wait_for()
            text = table.inner_text()
            assert name in text and "interrupted" in text and "In[1]\u2013In[3]" in text
            command = table.locator("code").filter(has_text="%opendev recover").first.inner_text()
            assert sid.startswith(command.split()[-1])

            # recover: the next cell holds the dead kernel's code, the long cell whole
            add_cell_and_run(page, command)
            recovered = cells(page).locator(".jp-InputArea-editor").filter(has_text="# Recovered by opendev-snapshot")
            recovered.wait_for()
            page.keyboard.press("Escape")
            page.keyboard.press("Control+s")  # then read it whole from the saved file, not the screen
            source = wait_until(
                lambda: next((s for s in saved_sources(lab, name) if "# Recovered by opendev-snapshot" in s), None),
                "the recovered cell in the saved notebook",
            )
            assert f"{name}'s dead kernel, In[1]\u2013In[3]" in source
            for n in (1, 2, 3):
                assert f"# In[{n}]" in source
            assert CELLS[1] in source and "%time squared = base ** 2" in source
            page.screenshot(path=str(lab["tmp"] / "jupyterlab.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(lab["tmp"] / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()
