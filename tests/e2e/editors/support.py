"""What the real-editor tests share: the scenario on disk and how to run an editor.

Every editor test runs the same scenario against the real
``opendev-snapshot serve`` (the console script of this virtual environment,
the command the README tells users to configure):

* a project directory (its name has a space) holding three interrupted
  sessions, answered ``Recover`` (newest), ``Discard`` and ``Later`` (oldest);
* a session of that project that is still running (a fresh lock-less
  snapshot): never prompted;
* a ten-day-old interrupted session of another project: only visible when
  listing every project, and what a 7-day cleanup removes.

Editors run under a hard timeout; a missing editor is a failure, not a skip
(CI installs them from ``.ci/apt-packages.txt``).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
CLIENT_CONFIG = ROOT / "client-config"
EDITOR_TIMEOUT = 30  # seconds, per editor run

RECOVER_ID = "sess-newest"
DISCARD_ID = "sess-middle"
LATER_ID = "sess-oldest"
RUNNING_ID = "sess-running"
OTHER_ID = "other-old"
ANSWERS = {RECOVER_ID: "Recover", DISCARD_ID: "Discard", LATER_ID: "Later"}


def readme_block(marker: str, lang: str) -> str:
    """The fenced block after ``<!-- marker`` in client-config/README.md: what users paste."""
    readme = CLIENT_CONFIG / "README.md"
    text = readme.read_text()
    start = text.index(f"<!-- {marker}")
    m = re.compile(rf"```{lang}\n(.*?)```", re.S).search(text, start)
    assert m, f"no ```{lang} block after the {marker} marker in {readme}"
    return m.group(1)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def server_executable() -> str:
    """``opendev-snapshot`` as installed next to this interpreter (pip install -e)."""
    exe = Path(sys.executable).with_name("opendev-snapshot")
    assert exe.exists(), f"{exe} is missing: pip install -e '.[test]' installs the console script"
    return str(exe)


def require(program: str) -> str:
    path = shutil.which(program)
    assert path, f"{program} is not installed: CI installs it from .ci/apt-packages.txt"
    return path


@dataclass
class Scenario:
    snapshot_dir: Path
    project: Path
    other_project: Path
    files: dict = field(default_factory=dict)

    def exists(self, session_id: str) -> bool:
        return self.files[session_id].exists()


def make_scenario(tmp_path: Path) -> Scenario:
    from opendev_snapshot.core import SnapshotStore, new_record

    snapshot_dir = tmp_path / "snapshots"
    project = tmp_path / "my project"
    other = tmp_path / "other"
    project.mkdir()
    (project / ".git").mkdir()  # the project root an editor finds
    other.mkdir()
    (project / "main.py").write_text("print('hello')\n")
    s = Scenario(snapshot_dir, project, other)
    now = now_ms()
    rows = [
        (RECOVER_ID, project, 5 * 60_000, 12, 0.42),
        (DISCARD_ID, project, 10 * 60_000, 3, 0.1),
        (LATER_ID, project, 20 * 60_000, 7, 1.25),
        (RUNNING_ID, project, 1_000, 1, 0.0),
        (OTHER_ID, other, 10 * 86_400_000, 2, 0.0),
    ]
    with SnapshotStore(snapshot_dir, use_index=False) as store:
        for session_id, proj, age_ms, count, cost in rows:
            record = new_record(session_id, str(proj))
            record.update(snapshot_timestamp_ms=now - age_ms, message_count=count, cost_usd=cost)
            store.save(record)
            s.files[session_id] = snapshot_dir / f"{session_id}_session_snapshot.json"
            assert s.files[session_id].exists()
    return s


def clean_env(**extra) -> dict:
    """The environment of an editor run: no snapshot directory from the outside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENDEV_")}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run(cmd: list, *, env: dict, cwd: Path, timeout: float = EDITOR_TIMEOUT) -> subprocess.CompletedProcess:
    """Run an editor under a hard timeout; on timeout its whole process group
    (the editor and the server it started) is killed and the test fails."""
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"{cmd[0]} did not finish within {timeout}s\nstdout:\n{out}\nstderr:\n{err}") from None
    finally:
        try:  # nothing the editor started outlives the test
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
