"""Emacs (eglot and lsp-mode): ``opendev-snapshot.el``, loaded as the README tells users, against the real server.

``emacs --batch`` (Debian's emacs-nox 28 with elpa-eglot 1.9 and
elpa-lsp-mode 8) loads the README's init block for the front end (the
checkout path replaced by this one; the server named by its path in
``.venv``; preceded by ``(package-initialize)``, which an interactive Emacs
does by itself at start-up), opens a file of a project holding interrupted
sessions and starts the front end as the user would. ``editors/emacs_driver.el``
plays the user: its ``completing-read`` answers the questions, then it runs
``opendev-snapshot-restore``, ``opendev-snapshot-sessions`` (plain and with
C-u) and ``opendev-snapshot-cleanup``. Batch Emacs is never idle, so the
driver runs the package's idle-timer function where a user would pause.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from editors.support import (
    DIES_ID,
    DISCARD_ID,
    HELD_ID,
    LATER_ID,
    NOTEBOOK_ID,
    NOTEBOOK_NAME,
    OTHER_ID,
    PROMPTED_ON_OPEN,
    RECOVER_ID,
    RUNNING_ID,
    clean_env,
    fake_resume_program,
    make_scenario,
    require,
    run,
    user_config,
)

pytestmark = pytest.mark.timeout(240)

DRIVER = Path(__file__).parent / "editors" / "emacs_driver.el"
LISP_DIR = Path(__file__).resolve().parents[2] / "client-config" / "emacs"
PACKAGES = "(require 'package)\n(package-initialize)\n"
# The test's own settings: more questions than the default 3, and no other
# lsp-mode clients (they would look for pylsp and friends and ask to install them).
IDLE_S = 0.5
SETTINGS = f"(setq opendev-snapshot-max-prompts 5 opendev-snapshot-prompt-idle-seconds {IDLE_S})\n(setq lsp-client-packages nil)\n"
# "RET" answers with the default.
ANSWERS = {RECOVER_ID: "Recover", DISCARD_ID: "Discard", NOTEBOOK_ID: "Recover", LATER_ID: "RET", DIES_ID: "RET"}


def emacs_env(home: Path, path: str, **extra) -> dict:
    return clean_env(PATH=path, HOME=home, **extra)


def run_driver(emacs: str, tmp_path: Path, init: Path, scenario, config: dict) -> dict:
    """Run the driver in ``emacs --batch`` for ``config`` (its ``result`` file
    is read back) against ``scenario``'s snapshot directory; a failure shows
    the driver's error and Emacs' stderr."""
    home = tmp_path / "home"
    home.mkdir()
    env = emacs_env(home, scenario.path_env(), OPENDEV_SNAPSHOT_DIR=scenario.snapshot_dir, OPENDEV_TEST_CONFIG=json.dumps(config))
    proc = run([emacs, "--batch", "-l", str(init), "-l", str(DRIVER)], env=env, cwd=scenario.project)
    result_file = Path(config["result"])
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    assert proc.returncode == 0 and "error" not in result, (
        f"emacs failed (exit {proc.returncode}): {result.get('error')}\nstderr:\n{proc.stderr[-4000:]}\n{result}"
    )
    return result


def test_byte_compiles_without_warnings(tmp_path):
    emacs = require("emacs")
    for lisp in LISP_DIR.glob("*.el"):
        (tmp_path / lisp.name).write_text(lisp.read_text())
    files = sorted(p.name for p in tmp_path.glob("*.el"))
    assert files == ["opendev-snapshot-eglot.el", "opendev-snapshot-lsp.el", "opendev-snapshot.el"]
    code = PACKAGES + f'(add-to-list \'load-path "{tmp_path}")(setq byte-compile-error-on-warn t)'
    proc = run([emacs, "--batch", "--eval", f"(progn {code})", "-f", "batch-byte-compile", *files],
               env=emacs_env(tmp_path, "/usr/bin:/bin"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.glob("*.elc")) == [f.replace(".el", ".elc") for f in files], proc.stderr


@pytest.mark.parametrize("front_end", ["eglot", "lsp-mode"])
def test_emacs_scenario(tmp_path, front_end):
    emacs = require("emacs")
    s = make_scenario(tmp_path, holders=True)
    try:
        _scenario(emacs, tmp_path, s, front_end)
    finally:
        s.stop()


def _scenario(emacs, tmp_path, s, front_end):
    marker = tmp_path / "resumed.txt"
    block = user_config("emacs-setup" if front_end == "eglot" else "emacs-lsp-setup", "elisp")
    init = tmp_path / "init.el"
    init.write_text(PACKAGES + SETTINGS + block)
    result_file = tmp_path / "emacs-result.json"
    config = {
        "result": str(result_file),
        "front_end": front_end,
        "project": str(s.project),
        "answers": ANSWERS,
        "prompted_on_open": PROMPTED_ON_OPEN,
        "dies_pid": next(h.pid for h in s.holders if h.session_id == DIES_ID),
        "ids": {"recover": RECOVER_ID, "discard": DISCARD_ID, "notebook": NOTEBOOK_ID, "later": LATER_ID,
                "held": HELD_ID, "dies": DIES_ID, "other": OTHER_ID},
        "files": {"discard": str(s.files[DISCARD_ID]), "later": str(s.files[LATER_ID]), "other": str(s.files[OTHER_ID])},
        "fake_program": str(fake_resume_program(s)),
        "fake_program_text": f'#!/bin/sh\nprintf "%s\\n" "$*" "$(pwd)" > "{marker}"\n',
        "fake_marker": str(marker),
    }  # fmt: skip
    result = run_driver(emacs, tmp_path, init, s, config)

    # The notification reached the handler, with the four interrupted sessions.
    assert result["recoverable"][0] == PROMPTED_ON_OPEN
    assert any("4 interrupted sessions in my project" in m for m in result["messages"])
    # No question from the process filter (eglot's and lsp-mode's own handlers
    # would open a minibuffer there); none while a minibuffer is in use.
    assert result["asked_before_idle"] == 0 and result["asked_before_idle_2"] == 0
    assert result["asked_with_minibuffer"] == 0
    # (batch Emacs is never idle: nothing would have asked by itself)
    assert result["poll_timer"] is True and result["idle_p_before"] is False
    # Then one question after another, in order, each after a pause with no
    # command; Later the default (RET), nothing pre-filled.
    asked = result["asked"]
    assert [a["id"] for a in asked[:5]] == PROMPTED_ON_OPEN + [DIES_ID], asked
    times = [a["at"] for a in asked[:5]]
    assert all(b - a >= IDLE_S for a, b in zip(times, times[1:])), times
    assert result["queue_after"] == 0
    for a in asked[:5]:
        assert sorted(a["items"]) == ["Discard", "Later", "Recover"]
        assert a["default"] == "Later" and a["initial"] is None and "(default Later)" in a["prompt"]
    assert RUNNING_ID not in [a["id"] for a in asked] and HELD_ID not in [a["id"] for a in asked]
    assert result["mode_line_on_open"].startswith(" OpenDev:") and result["in_global_mode_string"] is True

    # Recover with `opendev` missing: guidance in *Warnings*, snapshot kept, no terminal.
    guidance = result["guidance"].replace("‘", "`").replace("’", "'")  # format-message's curved quotes
    assert "`opendev' is not installed" in guidance and "opendev-snapshot-resume-command" in guidance
    assert "snapshot is kept" in guidance
    assert result["terminals_after_prompts"] == []
    # The notebook session: where the notebook is and the recover command, in the kill ring.
    assert result["kill_ring_head"] == f"%opendev recover {NOTEBOOK_ID}"
    assert NOTEBOOK_NAME in result["notebook_help"] and "opendev --resume" not in result["notebook_help"]
    # Discard said how to undo; restore's default was the session discarded last.
    assert "M-x opendev-snapshot-restore" in result["discard_message"]
    # What an answer did is said again at the top of the next question (its
    # minibuffer hides the echo area), after it was said: the Undo hint
    # above all; after Later, nothing.
    prompts = [a["prompt"].replace("‘", "`").replace("’", "'") for a in asked[:5]]
    assert prompts[0].startswith("OpenDev session " + RECOVER_ID), prompts
    assert prompts[1].startswith(f"OpenDev: cannot resume {RECOVER_ID}: `opendev' is not installed; the snapshot is kept"), prompts
    assert prompts[2].startswith(f"OpenDev: discarded {DISCARD_ID} (moved to the trash); undo: M-x opendev-snapshot-restore\n"), prompts
    assert prompts[3].startswith(f"OpenDev: {NOTEBOOK_ID} was the kernel of {NOTEBOOK_NAME}: run %opendev recover {NOTEBOOK_ID} "), prompts
    assert prompts[4].startswith("OpenDev session " + DIES_ID), prompts
    assert all(p.count("\n") == (1 if i in (1, 2, 3) else 0) for i, p in enumerate(prompts)), prompts
    said_before = result["messages"][: asked[2]["messages_before"]]
    assert any(f"discarded {DISCARD_ID}" in m for m in said_before), said_before
    assert result["restore_default"].startswith(DISCARD_ID + "  ")
    # Recover once `opendev` exists: a terminal ran it in the project directory.
    assert marker.read_text().splitlines() == [f"--resume {RECOVER_ID}", str(s.project)]
    assert result["terminals"] == [RECOVER_ID]
    assert result["recovered"] == [NOTEBOOK_ID, RECOVER_ID]
    # Discard of a running session: refused, with the holder.
    assert "nothing was discarded" in result["running_message"] and "pid" in result["running_message"]
    # The sessions command: this project, and every project with C-u.
    listed = {n.split()[0] for n in result["listed"]}
    assert {RECOVER_ID, LATER_ID, RUNNING_ID, HELD_ID, NOTEBOOK_ID, DISCARD_ID} <= listed and OTHER_ID not in listed
    assert OTHER_ID in {n.split()[0] for n in result["listed_all"]}
    assert result["actions"] == ["Recover", "Discard"]
    # the prompts say what to type, and what RET gives
    assert result["action_prompt"] == f"Session {RECOVER_ID}: Recover or Discard? ", result["action_prompt"]
    assert result["input_prompt"].endswith("(default 7d): "), result["input_prompt"]
    assert "7d" in result["confirm"] and OTHER_ID in result["confirm"]
    assert result["server_alive_after_shutdown"] is False

    # On disk: Discard + Undo gave the same bytes back; nothing else was touched but the cleanup.
    for sid in (DISCARD_ID, LATER_ID, RECOVER_ID, NOTEBOOK_ID, RUNNING_ID, HELD_ID):
        assert s.read(sid) == s.original[sid], sid
    assert not s.exists(OTHER_ID)


@pytest.mark.parametrize("front_end", ["eglot", "lsp-mode"])
def test_pickers_list_newest_first_as_the_server_sends(tmp_path, front_end):
    """*Completions* of M-x opendev-snapshot-sessions and -restore keeps the
    server's order (newest first), not Emacs's alphabetical one: the
    candidates start with the session id, so sorting them would put an old
    session above the one the user was just working in."""
    from opendev_snapshot.core import SnapshotStore

    emacs = require("emacs")
    s = make_scenario(tmp_path)
    # The trash, newest first: DISCARD_ID (removed last), then OTHER_ID;
    # alphabetically "other-old" comes first.
    with SnapshotStore(s.snapshot_dir, use_index=False) as store:
        assert store.remove(OTHER_ID) and store.remove(DISCARD_ID)
    init = tmp_path / "init.el"
    init.write_text(PACKAGES + SETTINGS + user_config("emacs-setup" if front_end == "eglot" else "emacs-lsp-setup", "elisp"))
    result_file = tmp_path / "emacs-result.json"
    config = {"scenario": "order", "result": str(result_file), "front_end": front_end,
              "prompted_on_open": [RECOVER_ID, NOTEBOOK_ID, LATER_ID]}  # fmt: skip
    result = run_driver(emacs, tmp_path, init, s, config)
    ids = [line.split()[0] for line in result["sessions"]]
    assert ids == [RUNNING_ID, RECOVER_ID, NOTEBOOK_ID, LATER_ID], ids  # the server's order: newest first
    assert result["sessions_shown"] == result["sessions"]
    assert [line.split()[0] for line in result["trash"]] == [DISCARD_ID, OTHER_ID], result["trash"]
    assert result["trash_shown"] == result["trash"]


@pytest.mark.parametrize("front_end", ["eglot", "lsp-mode"])
def test_server_missing_says_how_to_install_it(tmp_path, front_end):
    """A first start without the server: one clear message naming the setting, no backtrace."""
    from editors.support import ROOT, VENV_EXE, readme_block

    emacs = require("emacs")
    block = readme_block("emacs-setup" if front_end == "eglot" else "emacs-lsp-setup", "elisp")
    block = block.replace(VENV_EXE, str(tmp_path / "nowhere" / "opendev-snapshot")).replace("~/src/opendev-snapshot", str(ROOT))
    project = tmp_path / "p"
    (project / ".git").mkdir(parents=True)
    out = tmp_path / "out.txt"
    start = "(call-interactively #'eglot)" if front_end == "eglot" else (
        f"(require 'lsp-mode) (lsp-workspace-folders-add \"{project}\") (call-interactively #'lsp)"
    )
    script = f"""
(defvar seen nil)
(advice-add 'display-warning :before (lambda (_type msg &rest _) (push (concat "warning: " msg) seen)))
(find-file "{project}/x.py")
(condition-case err (progn {start}) (error (push (concat "error: " (error-message-string err)) seen)))
(with-temp-file "{out}" (insert (mapconcat #'identity (reverse seen) "\\n")))
(kill-emacs 0)
"""
    init = tmp_path / "init.el"
    init.write_text(PACKAGES + SETTINGS + block)
    driver = tmp_path / "driver.el"
    driver.write_text(script)
    home = tmp_path / "home"
    home.mkdir()
    proc = run([emacs, "--batch", "-l", str(init), "-l", str(driver)], env=emacs_env(home, "/usr/bin:/bin"), cwd=project)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = out.read_text()
    assert "is not installed or not on `exec-path'" in seen and "opendev-snapshot-server-command" in seen, seen
    assert seen.count("not installed") == 1, seen


TEXT_SCRIPT = r"""
(require 'json)
(require 'opendev-snapshot)
(let* ((cases (with-temp-buffer
                (insert-file-contents (getenv "CASES"))
                (json-parse-buffer :object-type 'alist :array-type 'list)))
       (out (list (cons 'cost (vconcat (mapcar #'opendev-snapshot-format-cost (alist-get 'cost cases))))
                  ;; code points: an Emacs string can hold a lone surrogate, JSON text cannot
                  (cons 'printable (vconcat (mapcar (lambda (cps) (opendev-snapshot-printable (apply #'string cps)))
                                                    (alist-get 'printable cases))))
                  ;; Emacs only: a file name that is not UTF-8 decodes to a raw byte
                  (cons 'raw_byte (opendev-snapshot-printable (decode-coding-string "bad\377name" 'utf-8)))
                  (cons 'none (vector (opendev-snapshot-printable nil) (opendev-snapshot-format-cost nil))))))
  (with-temp-file (getenv "OUT")
    (insert (json-serialize out))))
"""


def test_format_cost_and_printable_match_the_shared_cases(tmp_path):
    """opendev-snapshot-format-cost and -printable give what core.text gives, case for case (tests/text_cases.py)."""
    from editors.support import text_mismatches
    from text_cases import COST_CASES, PRINTABLE_CASES

    emacs = require("emacs")
    cases = tmp_path / "cases.json"
    cases.write_text(json.dumps({"cost": [c[0] for c in COST_CASES], "printable": [[ord(ch) for ch in c[1]] for c in PRINTABLE_CASES]}))
    script = tmp_path / "text.el"
    script.write_text(TEXT_SCRIPT)
    out = tmp_path / "out.json"
    proc = run([emacs, "--batch", "-L", str(LISP_DIR), "-l", str(script)],
               env=emacs_env(tmp_path, "/usr/bin:/bin", CASES=cases, OUT=out), cwd=tmp_path, timeout=60)  # fmt: skip
    assert proc.returncode == 0 and out.exists(), proc.stderr
    result = json.loads(out.read_text())
    assert text_mismatches(result["cost"], result["printable"]) == []
    assert result["raw_byte"] == "bad\\udcffname"  # as core.text shows the same name read with surrogateescape
    assert result["none"] == ["", "$?"]


@pytest.mark.parametrize("front_end", ["eglot", "lsp-mode"])
def test_hostile_snapshot_text_is_shown_escaped(tmp_path, front_end):
    """A project whose name holds an OSC 52 write, a bidi override (which Emacs
    would obey, reordering the line), a C1 CSI, a newline and a link; a
    notebook path and a holder's host like it: every message, warning,
    question, candidate and help buffer shows them as escapes, never raw,
    and money as everywhere else. (The user's answers: Discard, Recover.)"""
    from editors.support import (
        H_AGENT, H_COSTS_SHOWN, H_HELD, H_NOTEBOOK, HOSTILE_DIR, HOSTILE_HOST, make_hostile, raw_controls,
    )  # fmt: skip
    from opendev_snapshot.core.text import printable

    emacs = require("emacs")
    h = make_hostile(tmp_path)
    try:
        init = tmp_path / "init.el"
        init.write_text(PACKAGES + SETTINGS + user_config("emacs-setup" if front_end == "eglot" else "emacs-lsp-setup", "elisp"))
        result_file = tmp_path / "emacs-result.json"
        config = {
            "scenario": "hostile",
            "result": str(result_file),
            "front_end": front_end,
            "answers": {H_AGENT: "Discard", H_NOTEBOOK: "Recover"},
            "ids": {"agent": H_AGENT, "notebook": H_NOTEBOOK, "held": H_HELD},
            "files": {"agent": str(h.files[H_AGENT])},
        }
        result = run_driver(emacs, tmp_path, init, h, config)
    finally:
        h.stop()

    # ours: eglot's own "[eglot] Connected! ... in project `NAME'" and lsp-mode's warnings show the name raw
    ours = [m for m in result["messages"] + result["messages_buffer"].split("\n") if m.startswith("OpenDev")]
    assert len(ours) >= 5, ours
    # a question is one line, or two: what the last answer did, then the question
    questions = {a["id"]: a["prompt"] for a in result["asked"]}
    assert questions[H_AGENT].count("\n") == 0 and questions[H_NOTEBOOK].count("\n") == 1, questions
    assert questions[H_NOTEBOOK].startswith(f"OpenDev: discarded {H_AGENT} (moved to the trash)"), questions
    prompts = set(questions.values())
    shown = [line for p in result["shown"] for line in (p.split("\n") if p in prompts else [p])]
    shown += ours + result["our_warnings"] + result["notebook_help"].split("\n")  # a buffer: lines
    assert raw_controls(shown) == [], "raw control characters reached the screen"
    name = printable(HOSTILE_DIR)
    assert f"OpenDev: 2 interrupted sessions in {name} (M-x opendev-snapshot-sessions)" in result["messages"]
    questions = {a["id"]: a["prompt"] for a in result["asked"]}
    assert name in questions[H_AGENT] and H_COSTS_SHOWN[H_AGENT] in questions[H_AGENT], questions
    assert H_COSTS_SHOWN[H_NOTEBOOK] in questions[H_NOTEBOOK] and "\\u202ebnypi.ipynb" in questions[H_NOTEBOOK]
    assert all(q.endswith("Recover it? (default Later): ") for q in questions.values()), questions
    assert f"the notebook {h.project.parent}/{name}/nb \\u202ebnypi.ipynb" in result["notebook_help"]
    refused = next(m for m in result["messages"] if f"{H_HELD} is running" in m)
    assert printable(HOSTILE_HOST) in refused and "nothing was discarded" in refused
    assert any(line.startswith(H_HELD + "  running") and line.endswith(name) for line in result["listed_all"])
    assert any(line.startswith(H_AGENT + "  discarded") and "$1,234.50" in line and line.endswith(name)
               for line in result["trash_listed"]), result["trash_listed"]  # fmt: skip
    # Discard, then restore from the trash: the same bytes; nothing else touched
    for sid in (H_AGENT, H_NOTEBOOK, H_HELD):
        assert h.files[sid].read_bytes() == h.original[sid], sid
