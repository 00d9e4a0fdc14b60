"""Emacs + eglot: ``opendev-snapshot.el``, loaded as the README tells users, against the real server.

``emacs --batch`` (Debian's emacs-nox 28 with elpa-eglot 1.9) loads the
README's init block (the checkout path replaced by this one; preceded by
``(package-initialize)``, which an interactive Emacs does by itself at
start-up), opens a file of a project holding interrupted sessions and
starts eglot as ``M-x eglot`` does. ``editors/emacs_driver.el`` plays the
user: its ``completing-read`` answers eglot's own showMessageRequest
prompts, then it runs ``opendev-snapshot-sessions`` (plain and with C-u)
and ``opendev-snapshot-cleanup``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from editors.support import (
    ANSWERS,
    CLIENT_CONFIG,
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

DRIVER = Path(__file__).parent / "editors" / "emacs_driver.el"
LISP = CLIENT_CONFIG / "emacs" / "opendev-snapshot.el"
PACKAGES = "(require 'package)\n(package-initialize)\n"


def emacs_env(home: Path, **extra) -> dict:
    bindir = os.path.dirname(server_executable())
    return clean_env(PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}", HOME=home, **extra)


def test_byte_compiles_without_warnings(tmp_path):
    emacs = require("emacs")
    copy = tmp_path / LISP.name
    copy.write_text(LISP.read_text())
    code = PACKAGES + "(setq byte-compile-error-on-warn t)"
    proc = run([emacs, "--batch", "--eval", f"(progn {code})", "-f", "batch-byte-compile", str(copy)],
               env=emacs_env(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0 and copy.with_suffix(".elc").exists(), proc.stderr


def test_emacs_eglot_scenario(tmp_path):
    emacs = require("emacs")
    s = make_scenario(tmp_path)
    block = readme_block("emacs-setup", "elisp")
    assert "~/src/opendev-snapshot" in block
    init = tmp_path / "init.el"
    init.write_text(PACKAGES + block.replace("~/src/opendev-snapshot", str(ROOT)))
    result_file = tmp_path / "emacs-result.json"
    config = {
        "result": str(result_file),
        "project": str(s.project),
        "answers": ANSWERS,
        "ids": {"recover": RECOVER_ID, "discard": DISCARD_ID, "later": LATER_ID, "other": OTHER_ID},
        "files": {"discard": str(s.files[DISCARD_ID]), "later": str(s.files[LATER_ID]), "other": str(s.files[OTHER_ID])},
    }
    home = tmp_path / "home"
    home.mkdir()
    env = emacs_env(home, OPENDEV_SNAPSHOT_DIR=s.snapshot_dir, OPENDEV_TEST_CONFIG=json.dumps(config))
    proc = run([emacs, "--batch", "-l", str(init), "-l", str(DRIVER)], env=env, cwd=s.project)
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    assert proc.returncode == 0 and "error" not in result, (
        f"emacs failed (exit {proc.returncode}): {result.get('error')}\nstderr:\n{proc.stderr[-4000:]}\n{result}"
    )

    assert result["server_class"] == "opendev-snapshot-server"
    # The notification reached the handler, with the three interrupted sessions.
    assert result["recoverable"] == [[RECOVER_ID, DISCARD_ID, LATER_ID]]
    assert any("3 interrupted sessions in my project" in m for m in result["messages"])
    # eglot's prompt, answered once per session, never for the running one.
    assert sorted(p["id"] for p in result["prompts"]) == sorted(ANSWERS)
    assert all(p["items"] == ["Recover", "Discard", "Later"] for p in result["prompts"])
    # Recover from the prompt and from the command: resume terminals.
    assert result["recovered"] == [RECOVER_ID, LATER_ID]
    assert sorted(result["terminals"]) == sorted([RECOVER_ID, LATER_ID])
    assert sorted(result["terminal_commands"]) == sorted(f"opendev --resume {i}" for i in (RECOVER_ID, LATER_ID))
    # The sessions command: this project, and every project with C-u.
    assert sorted(n.split()[0] for n in result["listed"]) == sorted([RECOVER_ID, LATER_ID, RUNNING_ID])
    assert sorted(n.split()[0] for n in result["listed_all"]) == sorted([RECOVER_ID, RUNNING_ID, OTHER_ID])
    assert result["actions"] == ["Recover", "Discard"]
    assert "7d" in result["confirm"] and OTHER_ID in result["confirm"]
    assert any("removed 1 snapshot(s) older than 7d" in m for m in result["messages"])
    assert result["server_alive_after_shutdown"] is False
    # On disk.
    assert not s.exists(DISCARD_ID) and not s.exists(LATER_ID) and not s.exists(OTHER_ID)
    assert s.exists(RECOVER_ID) and s.exists(RUNNING_ID)
