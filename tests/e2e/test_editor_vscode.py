"""VS Code: the packaged extension (.vsix), its bundled server, and its behaviour against the real server.

VS Code itself cannot run here. The test builds the .vsix as CI does
(``scripts/bundle_server.py``, ``tsc``, ``vsce package``; or takes the one
named by ``OPENDEV_TEST_VSIX``, which ``scripts/test.sh`` builds), checks
what it contains, unpacks it, and runs the extension's compiled code from
the unpacked copy with ``editors/vscode_host.js``: a scripted stand-in for
the ``vscode`` module plays VS Code's user interface, while the extension's
own launch code, the shipped ``vscode-languageclient`` (its process launch
and transport), the bundled server and the Python that runs it are real.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from editors.support import (
    CLIENT_CONFIG,
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
)

pytestmark = pytest.mark.timeout(300)

EXTENSION = CLIENT_CONFIG / "vscode"
HOST = Path(__file__).parent / "editors" / "vscode_host.js"


def _host_target() -> str:
    import importlib.util

    spec = importlib.util.spec_from_file_location("bundle_server", EXTENSION / "scripts" / "bundle_server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.host_target()


TARGET = _host_target()
ANSWERS = {RECOVER_ID: "Recover", DISCARD_ID: "Discard", NOTEBOOK_ID: "Recover", LATER_ID: "Later"}


def build_vsix(out: Path) -> Path:
    """What CI does: bundle the server, compile, package (scripts/test.sh runs the same steps)."""
    import sys

    assert (EXTENSION / "node_modules").exists(), "client-config/vscode/node_modules is missing: run `npm ci` there (scripts/test.sh does)"
    steps = [
        [sys.executable, "scripts/bundle_server.py", "--target", TARGET],
        [require("npx"), "--no-install", "vsce", "package", "--allow-missing-repository", "--target", TARGET, "--out", str(out)],
    ]
    for cmd in steps:
        proc = subprocess.run(cmd, cwd=EXTENSION, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def vsix(tmp_path_factory) -> Path:
    given = os.environ.get("OPENDEV_TEST_VSIX")
    if given:
        assert Path(given).is_file(), f"OPENDEV_TEST_VSIX={given} does not exist"
        return Path(given)
    return build_vsix(tmp_path_factory.mktemp("vsix") / f"opendev-snapshot-{TARGET}.vsix")


@pytest.fixture(scope="module")
def unpacked(vsix, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("unpacked")
    with zipfile.ZipFile(vsix) as z:
        z.extractall(out)
    return out / "extension"


def bare_python() -> str:
    """A Python 3.11+ without pydantic or pygls: the bundled copies must be what runs."""
    python = shutil.which("python3", path="/usr/bin:/bin")
    assert python, "no /usr/bin/python3"
    proc = subprocess.run([python, "-c", "import pydantic"], capture_output=True)
    assert proc.returncode != 0, f"{python} has pydantic installed: it cannot show that the bundled one is used"
    return python


def python_version(python: str) -> str:
    return subprocess.run([python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip


def other_pythons() -> list:
    """More CPython versions found on this machine (pyenv), to start the bundled server with."""
    found = []
    for root in sorted(Path("/root/.pyenv/versions").glob("3.1[2-9]*")) if Path("/root/.pyenv/versions").exists() else []:
        exe = root / "bin" / "python3"
        if exe.exists():
            found.append(str(exe))
    return found


def host(config: dict, *, path_env: str, cwd: Path) -> dict:
    env = clean_env(PATH=path_env)
    proc = run([require("node"), str(HOST), json.dumps(config)], env=env, cwd=cwd, timeout=240)
    assert proc.returncode == 0, f"the extension host failed:\n{proc.stderr[-6000:]}"
    return json.loads(proc.stdout.strip().split("\n")[-1])  # not splitlines: it splits at U+2028 and \x85 too


def test_manifest_declares_settings_commands_and_activation():
    manifest = json.loads((EXTENSION / "package.json").read_text())
    props = manifest["contributes"]["configuration"]["properties"]
    for key in ("serverPath", "interpreter", "snapshotDir", "resumeCommand", "prompt", "maxPrompts"):
        assert f"opendevSnapshot.{key}" in props
    assert props["opendevSnapshot.serverPath"]["default"] == "", "an empty serverPath means the bundled server"
    assert props["opendevSnapshot.resumeCommand"]["default"] == "opendev --resume ${sessionId}"
    titles = {f"{c['category']}: {c['title']}": c["command"] for c in manifest["contributes"]["commands"]}
    for title in ("OpenDev: Show interrupted sessions", "OpenDev: Restore a discarded session", "OpenDev: Clean up old snapshots"):
        assert title in titles
    assert manifest["activationEvents"], "the extension must activate by itself when a folder opens"
    assert {"vscode-languageclient", "@vscode/python-extension"} <= set(manifest["dependencies"])
    assert (EXTENSION / "package-lock.json").exists()


def test_vsix_contains_the_extension_and_the_server(vsix, unpacked):
    with zipfile.ZipFile(vsix) as z:
        names = set(z.namelist())
        manifest = z.read("extension.vsixmanifest").decode()
    assert f'TargetPlatform="{TARGET}"' in manifest
    ext = "extension/"
    for required in [
        "package.json", "out/extension.js", "out/launch.js", "out/python.js", "out/protocol.js",
        "node_modules/vscode-languageclient/node.js", "node_modules/@vscode/python-extension/package.json",
        "bundled/tool/opendev_snapshot_server.py", "bundled/BUNDLE.json",
        "bundled/libs/opendev_snapshot/__init__.py", "bundled/libs/opendev_snapshot/server/app.py",
        "bundled/libs/pygls/__init__.py", "bundled/libs/lsprotocol/types.py", "bundled/libs/pydantic/__init__.py",
    ]:  # fmt: skip
        assert ext + required in names, required
    info = json.loads((unpacked / "bundled" / "BUNDLE.json").read_text())
    assert info["target"] == TARGET and "3.11" in info["pythons"]
    for py in info["pythons"]:
        tag = "cp" + py.replace(".", "")
        assert any(n.startswith(f"{ext}bundled/native/{tag}/pydantic_core/_pydantic_core.") for n in names), tag
    # Nothing of the build: sources, dev dependencies, caches, a pydantic_core outside native/.
    assert not any(n.startswith(ext + p) for n in names for p in ("src/", "scripts/", "node_modules/typescript/", "node_modules/@vscode/vsce"))
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert not any(n.startswith(ext + "bundled/libs/pydantic_core") for n in names)
    # The server in the vsix is this checkout's.
    ours = (CLIENT_CONFIG.parent / "server" / "opendev_snapshot" / "server" / "app.py").read_bytes()
    assert (unpacked / "bundled" / "libs" / "opendev_snapshot" / "server" / "app.py").read_bytes() == ours


def launches():
    """(id, python for the Python extension or None, PATH) for each way the extension finds its Python."""
    bare = bare_python()
    cases = [
        pytest.param(bare, "/usr/bin:/bin", id="python-extension-" + python_version(bare)),
        pytest.param(None, "/usr/bin:/bin", id="python3-without-python-extension"),
    ]
    for py in other_pythons():
        cases.append(pytest.param(py, "/usr/bin:/bin", id="python-extension-" + python_version(py)))
    return cases


@pytest.mark.parametrize(("python", "path_env"), launches())
def test_extension_launch_code_starts_the_bundled_server(unpacked, tmp_path, python, path_env):
    """The extension's own launch code picks the Python and starts the bundled
    server; vscode-languageclient (from the vsix) launches it and completes
    the handshake; the status bar's listing is answered."""
    s = make_scenario(tmp_path)
    config = {
        "extensionDir": str(unpacked),
        "workspaceFolder": str(s.project),
        "settings": {"opendevSnapshot.snapshotDir": str(s.snapshot_dir), "opendevSnapshot.prompt": False},
        "python": {"path": python, "version": python_version(python)} if python else None,
        "scenario": "handshake",
    }
    result = host(config, path_env=f"{s.bin_dir}:{path_env}", cwd=s.project)
    assert result["answered"], result["messages"]
    server_line = next(line for line in result["outputLines"] if line.startswith("Server: "))
    expected_python = python or "python3"
    source = "python extension" if python else "python3"
    assert server_line.startswith("Server: bundled opendev-snapshot ") and f"run by {expected_python} " in server_line
    assert f"from {source})" in server_line
    assert result["statusItem"]["text"] == "$(history) OpenDev: 4 interrupted", result["statusItem"]
    assert not [m for m in result["messages"] if m["level"] == "error"]


def test_too_old_python_is_explained(unpacked, tmp_path):
    old = next((str(p / "bin" / "python3") for p in sorted(Path("/root/.pyenv/versions").glob("3.10*"))), None) \
        if Path("/root/.pyenv/versions").exists() else None  # fmt: skip
    if old is None:  # make one: a "python" that says it is 3.10
        old = str(tmp_path / "python3.10")
        Path(old).write_text("#!/bin/sh\necho 3.10\n")
        os.chmod(old, 0o755)
    s = make_scenario(tmp_path)
    config = {
        "extensionDir": str(unpacked),
        "workspaceFolder": str(s.project),
        "settings": {"opendevSnapshot.snapshotDir": str(s.snapshot_dir), "opendevSnapshot.interpreter": [old]},
        "python": None,
        "scenario": "handshake",
    }
    result = host(config, path_env="/usr/bin:/bin", cwd=s.project)
    assert not result["answered"]
    (error,) = [m for m in result["messages"] if m["level"] == "error"]
    assert "is Python 3.10; the server needs 3.11 or newer" in error["message"], error
    assert "opendevSnapshot.interpreter" in error["message"] and error["items"] == ["Open Settings"]


def test_extension_scenario_against_the_real_server(unpacked, tmp_path):
    s = make_scenario(tmp_path, holders=True)
    try:
        _scenario(unpacked, tmp_path, s)
    finally:
        s.stop()


def _scenario(unpacked, tmp_path, s):
    marker = tmp_path / "resumed.txt"
    python = bare_python()
    config = {
        "extensionDir": str(unpacked),
        "workspaceFolder": str(s.project),
        "settings": {"opendevSnapshot.snapshotDir": str(s.snapshot_dir), "opendevSnapshot.maxPrompts": 5},
        "python": {"path": python, "version": python_version(python)},
        "scenario": "full",
        "answers": ANSWERS,
        "undo": [DISCARD_ID],
        "inputBoxAnswer": "7d",
        "ids": {"recover": RECOVER_ID, "discard": DISCARD_ID, "notebook": NOTEBOOK_ID, "later": LATER_ID, "held": HELD_ID},
        "files": {"discard": str(s.files[DISCARD_ID]), "later": str(s.files[LATER_ID]), "other": str(s.files[OTHER_ID])},
        "fakeProgram": str(fake_resume_program(s)),
        "fakeProgramText": f'#!/bin/sh\nprintf "%s\\n" "$*" "$(pwd)" > "{marker}"\n',
        "fakeMarker": str(marker),
    }
    result = host(config, path_env=s.path_env(), cwd=s.project)
    msgs = result["messages"]
    questions = [m for m in msgs if m["items"] == ["Recover", "Discard", "Later"]]
    # One non-modal warning per interrupted session, newest first, one at a time; never the running ones.
    assert [next(i for i in PROMPTED_ON_OPEN if i in q["message"]) for q in questions] == PROMPTED_ON_OPEN
    assert all(q["level"] == "warning" for q in questions)
    assert result["maxPendingQuestions"] == 1
    assert not any(RUNNING_ID in q["message"] or HELD_ID in q["message"] for q in questions)
    # Recover with `opendev` missing: what to install or set, with a button to the setting; no terminal.
    (missing,) = [m for m in msgs if m["level"] == "error" and f"cannot resume {RECOVER_ID}" in m["message"]]
    assert '"opendev" is not installed' in missing["message"] and "opendevSnapshot.resumeCommand" in missing["message"]
    assert "snapshot is kept" in missing["message"] and missing["items"] == ["Open Settings"]
    assert {"id": "workbench.action.openSettings", "args": ["opendevSnapshot.resumeCommand"]} in result["commands"]
    assert result["terminalsAfterQuestions"] == 0
    # Discard, then Undo on the message: restored.
    assert any(m["message"].startswith(f"OpenDev: discarded {DISCARD_ID}") and m["items"] == ["Undo"] for m in msgs)
    # The notebook session: the notebook opened, the recover command copied (never opendev --resume).
    assert result["opened"] == [str(s.project / NOTEBOOK_NAME)]
    assert result["clipboard"] == f"%opendev recover {NOTEBOOK_ID}"
    # Recover once `opendev` exists: a terminal in the project ran it.
    assert marker.read_text().splitlines() == [f"--resume {RECOVER_ID}", str(s.project)]
    assert [t["sent"] for t in result["terminals"]] == [[f"opendev --resume {RECOVER_ID}"]]
    # Discard of a running session: refused, with the holder.
    (refused,) = [m for m in msgs if f"{HELD_ID} is running (" in m["message"]]
    assert "pid" in refused["message"] and "nothing was discarded" in refused["message"]
    assert LATER_ID in result["trashLabels"]
    assert result["statusOnOpen"].startswith("$(history) OpenDev: ") and result["statusEnd"].endswith("interrupted")

    # On disk: Undo and the restore command gave the same bytes back; only the cleanup removed something.
    for sid in (DISCARD_ID, LATER_ID, RECOVER_ID, NOTEBOOK_ID, RUNNING_ID, HELD_ID):
        assert s.read(sid) == s.original[sid], sid
    assert not s.exists(OTHER_ID)


def test_protocol_helpers(unpacked, tmp_path):
    """The pure helpers of out/protocol.js, as shipped: which session a question names, which program a command runs."""
    script = r"""
const p = require(process.argv[1]);
const known = [{sessionId: 'sess-a'}, {sessionId: 'sess-a-2'}, {sessionId: 'b.1'}];
const out = {
  longest: p.sessionIn('OpenDev session sess-a-2 (x) was interrupted', known)?.sessionId,
  exact: p.sessionIn('OpenDev session sess-a (x) was interrupted', known)?.sessionId,
  none: p.sessionIn('OpenDev session sess-ab (x)', known)?.sessionId ?? null,
  dotted: p.sessionIn('session b.1.', known)?.sessionId ?? null,
  programs: ['opendev --resume x', 'FOO=1 env /opt/od/bin/opendev x', "'/my dir/opendev' --resume x", ''].map(p.commandProgram),
  quoted: p.resumeCommandLine('opendev --resume ${sessionId} --cwd ${projectDir}', {sessionId: 's1', projectDir: "/a b/it's"}),
  ipython: p.ipythonRecoverCommand({sessionId: 'k-1'}),
};
console.log(JSON.stringify(out));
"""
    proc = subprocess.run([require("node"), "-e", script, str(unpacked / "out" / "protocol.js")],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["longest"] == "sess-a-2" and out["exact"] == "sess-a" and out["none"] is None
    assert out["dotted"] == "b.1"
    assert out["programs"] == ["opendev", "/opt/od/bin/opendev", "/my dir/opendev", None]
    assert out["quoted"] == "opendev --resume s1 --cwd '/a b/it'\\''s'"
    assert out["ipython"] == "%opendev recover k-1"


def test_format_cost_and_printable_match_the_shared_cases(unpacked, tmp_path):
    """formatCost and printable of out/protocol.js, as shipped, give what core.text gives (tests/text_cases.py)."""
    from editors.support import HOSTILE_LINK, text_mismatches
    from text_cases import COST_CASES, PRINTABLE_CASES

    cases = tmp_path / "cases.json"
    # JSON.parse keeps a lone surrogate ("\udcff") as one: a JavaScript string can hold it
    cases.write_text(json.dumps({"cost": [c[0] for c in COST_CASES], "printable": [c[1] for c in PRINTABLE_CASES],
                                 "link": f"in {HOSTILE_LINK} [a](https://x.example) [b](file:///etc) $(alert) \\$(x) $(y~spin)"}))  # fmt: skip
    script = r"""
const fs = require('fs');
const p = require(process.argv[1]);
const c = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
console.log(JSON.stringify({
  cost: c.cost.map(p.formatCost),
  printable: c.printable.map(p.printable),
  none: [p.printable(undefined), p.printable(null), p.formatCost(undefined), p.formatCost('3')],
  notification: p.notificationText(c.link),
  pick: p.pickText(c.link),
}));
"""
    proc = subprocess.run([require("node"), "-e", script, str(unpacked / "out" / "protocol.js"), str(cases)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert text_mismatches(out["cost"], out["printable"]) == []
    assert out["none"] == ["", "", "$?", "$?"]
    # VS Code renders [label](command:...) in a notification as a link that runs the command when clicked
    assert VSCODE_LINK.search(out["notification"]) is None and "[Undo]\\x28command:" in out["notification"]
    # and $(name) in a quick pick as an icon: escaped as its escapeIcons does
    assert out["pick"].endswith("\\$(alert) \\$(x) \\$(y~spin)")


# VS Code's own parser of links in notification text (src/vs/base/common/linkedText.ts)
VSCODE_LINK = re.compile(r"\[([^\]]+)\]\(((?:https?://|command:|file:)[^)\s]+)(?: ([\"'])(.+?)(\3))?\)", re.I)


def test_hostile_snapshot_text_is_shown_escaped(unpacked, tmp_path):
    """A project whose name holds an OSC 52 write, a bidi override, a C1 CSI, a
    newline and a ``[Undo](command:...)`` link; a notebook path and a holder's
    host like it: every notification, quick pick, status bar text and output
    line shows them as escapes, no notification holds a link VS Code would
    render, and money is shown as everywhere else. (The user's answers:
    Discard, Recover.)"""
    from editors.support import (
        H_AGENT, H_COSTS_SHOWN, H_HELD, H_NOTEBOOK, HOSTILE_DIR, HOSTILE_HOST, make_hostile, raw_controls,
    )  # fmt: skip
    from opendev_snapshot.core.text import printable

    h = make_hostile(tmp_path)
    try:
        python = bare_python()
        config = {
            "extensionDir": str(unpacked),
            "workspaceFolder": str(h.project),
            "settings": {"opendevSnapshot.snapshotDir": str(h.snapshot_dir)},
            "python": {"path": python, "version": python_version(python)},
            "scenario": "hostile",
            "answers": {H_AGENT: "Discard", H_NOTEBOOK: "Recover"},
            "ids": {"agent": H_AGENT, "notebook": H_NOTEBOOK, "held": H_HELD},
        }
        result = host(config, path_env=h.path_env(), cwd=h.project)
    finally:
        h.stop()

    msgs = [m["message"] for m in result["messages"]]
    picks = [t for q in result["quickPicks"] for t in [q["title"] or "", *q["labels"], *q["descriptions"], *q["details"]]]
    status = [result["statusItem"]["text"], result["statusItem"]["tooltip"]]
    assert raw_controls(msgs + picks + status + result["outputLines"]) == [], "raw control characters reached the screen"
    assert [m for m in msgs if VSCODE_LINK.search(m)] == [], "a notification holds a link VS Code would render"
    name = printable(HOSTILE_DIR).replace("](", "]\\x28")
    questions = {q["message"].split()[2]: q["message"] for q in result["messages"] if q["items"] == ["Recover", "Discard", "Later"]}
    assert name in questions[H_AGENT] and H_COSTS_SHOWN[H_AGENT] in questions[H_AGENT], questions
    assert H_COSTS_SHOWN[H_NOTEBOOK] in questions[H_NOTEBOOK] and "\\u202ebnypi.ipynb" in questions[H_NOTEBOOK]
    refused = next(m for m in msgs if f"{H_HELD} is running" in m)
    assert printable(HOSTILE_HOST) in refused and "nothing was discarded" in refused
    (listed,) = [q for q in result["quickPicks"] if q["title"] == "OpenDev: incomplete sessions"]
    row = listed["labels"].index(H_HELD)
    assert listed["details"][row].startswith(printable(str(h.project)) + " · 4 messages · $0.05"), listed
    (trash,) = [q for q in result["quickPicks"] if q["title"] == "OpenDev: restore a discarded session"]
    assert trash["details"][trash["labels"].index(H_AGENT)] == printable(str(h.project)) + " · $1,234.50", trash
    # Discard, then restore: the same bytes; nothing else touched
    for sid in (H_AGENT, H_NOTEBOOK, H_HELD):
        assert h.files[sid].read_bytes() == h.original[sid], sid
