"""Terminal IPython in a pseudo-terminal, as a person types into it.

The extension is loaded from the profile with autosave on; the process is
SIGKILLed; the next IPython prints the table at start-up, ``%opendev
recover`` prints the dead session's cells with a hint, and a preview holding
escape sequences (an OSC 52 clipboard write, a screen clear) reaches the
terminal only as visible escapes.
"""

from __future__ import annotations

import os
import signal
import sys

import pytest

pexpect = pytest.importorskip("pexpect", reason="IPython depends on pexpect on POSIX")

from opendev_snapshot.core import SnapshotStore, new_record  # noqa: E402

TIMEOUT = 60
PROMPT = r"In \[\d+\]: "


@pytest.fixture
def term(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    profile = tmp_path / "ipython" / "profile_default"
    profile.mkdir(parents=True)
    (profile / "ipython_config.py").write_text(
        "c.InteractiveShellApp.extensions = ['opendev_snapshot']\nc.OpendevMagics.autosave = True\n"
    )
    env = dict(os.environ, OPENDEV_SNAPSHOT_DIR=str(tmp_path / "snapshots"), IPYTHONDIR=str(tmp_path / "ipython"),
               TERM="xterm-256color", COLUMNS="200", LINES="50")
    children = []

    def start():
        child = pexpect.spawn(sys.executable, ["-m", "IPython", "--simple-prompt", "--colors=nocolor",
                                               "--no-confirm-exit", "--no-banner"],
                              cwd=str(project), env=env, encoding="utf-8", timeout=TIMEOUT, dimensions=(50, 200))
        children.append(child)
        return child

    yield {"start": start, "project": project, "snap": tmp_path / "snapshots"}
    for child in children:
        if child.isalive():
            child.kill(signal.SIGKILL)
        child.close(force=True)


def typed(child, line: str) -> str:
    """Type ``line`` and Enter; returns what the terminal showed until the next prompt."""
    child.sendline(line)
    child.expect(PROMPT)
    return child.before


@pytest.mark.timeout(120)
def test_terminal_ipython_after_a_kill(term):
    first = term["start"]()
    first.expect(PROMPT)
    typed(first, "import math")
    typed(first, "base = 7")
    typed(first, "%time squared = base ** 2")
    store = SnapshotStore(term["snap"])
    [listing] = store.list().sessions
    sid = listing["session_id"]
    assert [t["call_id"] for t in listing["last_tool_results"]] == ["In[1]", "In[2]", "In[3]"]
    os.kill(first.pid, signal.SIGKILL)
    first.expect(pexpect.EOF)

    agent = new_record("agent-evil", str(term["project"]))  # an agent's snapshot with hostile tool output
    agent["snapshot_timestamp_ms"] -= 3 * 3_600_000
    agent["last_tool_results"].append({"tool_name": "bash", "call_id": "c1", "success": True,
                                       "output_preview": "ok\x1b]52;c;cHduZWQ=\x07\x1b[2J\u202eevil\x9b31m"})
    store.save(agent)

    second = term["start"]()
    second.expect(PROMPT)
    notice = second.before
    assert "2 interrupted sessions in project" in notice
    assert "(no notebook)" in notice and "In[1]\u2013In[3]" in notice and "$0.00" in notice
    prefix = notice.split("%opendev recover ", 1)[1].split()[0]
    assert sid.startswith(prefix) and prefix != sid

    shown = typed(second, f"%opendev recover {prefix}")
    assert "# In[1]\r\nimport math" in shown and "# In[3]\r\n%time squared = base ** 2" in shown
    assert "Write them to a file with" in shown

    shown = typed(second, "%opendev show agent-evil")
    assert "\x1b]52" not in shown and "\x1b[2J" not in shown and "\u202e" not in shown and "\x9b" not in shown
    assert "ok\\e]52;c;cHduZWQ=\\x07\\e[2J\\u202eevil\\x9b31m" in shown
    assert "saved     3h ago (" in shown

    shown = typed(second, f"%opendev recover {prefix} --run")
    assert "re-ran 3 cells" in shown
    assert "49" in typed(second, "squared")
