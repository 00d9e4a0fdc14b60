"""VS Code: the extension compiles, and its message sequence works against the real server.

VS Code itself cannot run here. The test compiles ``client-config/vscode``
with its own ``tsc`` into a temporary directory (so a type error in the
extension fails the test), then ``tests/e2e/editors/vscode_e2e.js`` drives
the real ``opendev-snapshot serve`` with ``vscode-jsonrpc`` (the JSON-RPC
stack of ``vscode-languageclient``) through the sequence the extension
sends, calling the extension's compiled ``protocol.js`` for every
opendev request: initialize with the settings as initializationOptions, the
native prompts answered Recover / Discard / Later, the QuickPick's listing
(per folder, and with no params for every project), Recover and Discard
through ``workspace/executeCommand``, a cleanup with ``$/progress``, and
shutdown (no params) + exit.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from editors.support import (
    ANSWERS,
    CLIENT_CONFIG,
    DISCARD_ID,
    LATER_ID,
    OTHER_ID,
    RECOVER_ID,
    RUNNING_ID,
    clean_env,
    make_scenario,
    require,
    run,
    server_executable,
)

pytestmark = pytest.mark.timeout(90)

EXTENSION = CLIENT_CONFIG / "vscode"
SCRIPT = CLIENT_CONFIG.parent / "tests" / "e2e" / "editors" / "vscode_e2e.js"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    node = require("node")
    tsc = EXTENSION / "node_modules" / "typescript" / "bin" / "tsc"
    assert tsc.exists(), "client-config/vscode/node_modules is missing: run `npm ci` there (scripts/test.sh does)"
    out = tmp_path_factory.mktemp("vscode-out")
    proc = subprocess.run(
        [node, str(tsc), "-p", str(EXTENSION), "--outDir", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"the extension does not compile:\n{proc.stdout}\n{proc.stderr}"
    assert (out / "extension.js").exists() and (out / "protocol.js").exists()
    return out


def test_manifest_declares_settings_commands_and_activation():
    manifest = json.loads((EXTENSION / "package.json").read_text())
    props = manifest["contributes"]["configuration"]["properties"]
    for key in ("serverPath", "snapshotDir", "resumeCommand", "prompt", "maxPrompts"):
        assert f"opendevSnapshot.{key}" in props
    assert props["opendevSnapshot.resumeCommand"]["default"] == "opendev --resume ${sessionId}"
    titles = {f"{c['category']}: {c['title']}": c["command"] for c in manifest["contributes"]["commands"]}
    assert "OpenDev: Show interrupted sessions" in titles
    assert "OpenDev: Clean up old snapshots" in titles
    assert manifest["activationEvents"], "the extension must activate by itself when a folder opens"
    assert "vscode-languageclient" in manifest["dependencies"]
    assert (EXTENSION / "package-lock.json").exists()


def test_extension_message_sequence_against_real_server(compiled, tmp_path):
    s = make_scenario(tmp_path)
    config = {
        "extensionDir": str(EXTENSION),
        "protocolJs": str(compiled / "protocol.js"),
        "serverPath": server_executable(),
        "serverArgs": ["serve"],
        "snapshotDir": str(s.snapshot_dir),
        "projectDir": str(s.project),
        "answers": ANSWERS,
        "otherSession": OTHER_ID,
        "timeoutMs": 10000,
    }
    proc = run([require("node"), str(SCRIPT), json.dumps(config)], env=clean_env(NODE_PATH=EXTENSION / "node_modules"), cwd=s.project)
    assert proc.returncode == 0, f"vscode-jsonrpc client failed:\n{proc.stderr}\n{proc.stdout}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])

    # One folder notification with the three interrupted sessions, newest first.
    (note,) = result["recoverable"]
    assert [x["sessionId"] for x in note["sessions"]] == [RECOVER_ID, DISCARD_ID, LATER_ID]
    assert note["workspaceFolder"]["name"] == "my project"
    # One Warning prompt each, never for the running session.
    asked = {p["answer"]: p for p in result["prompts"]}
    assert sorted(asked) == ["Discard", "Later", "Recover"]
    assert all(p["actions"] == ["Recover", "Discard", "Later"] and p["type"] == 2 for p in result["prompts"])
    assert not any(RUNNING_ID in p["message"] for p in result["prompts"])
    # Recover from the prompt, then Recover from the QuickPick.
    assert result["recovered"] == [RECOVER_ID, LATER_ID]
    assert result["terminalCommand"] == f"opendev --resume {RECOVER_ID}"
    assert RUNNING_ID in result["listedIds"] and OTHER_ID in result["allIds"]
    assert result["preview"]["sessionIds"] == [OTHER_ID] and result["cleaned"]["removedCount"] == 1
    assert result["exit"] == {"code": 0, "signal": None}
    assert result["showMessage"] == []  # no option was refused

    # On disk: Discard (prompt) and Discard (command) and the cleanup removed files.
    assert not s.exists(DISCARD_ID) and not s.exists(LATER_ID) and not s.exists(OTHER_ID)
    assert s.exists(RECOVER_ID) and s.exists(RUNNING_ID)
