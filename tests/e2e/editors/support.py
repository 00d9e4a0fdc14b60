"""What the real-editor tests share: the scenario on disk and how to run an editor.

Every editor test runs the same scenario against the real
``opendev-snapshot serve`` (the console script of this virtual environment,
the command the README tells users to configure). A project directory (its
name has a space) holds:

* three interrupted OpenDev sessions, answered ``Recover`` (newest: the
  resume program is missing at first), ``Discard`` (then Undo) and
  ``Later`` (oldest);
* an interrupted notebook session (``kind: ipython``, lock file naming its
  notebook): Recover offers ``%opendev recover ID``, never ``opendev --resume``;
* a session that is still running (a fresh lock-less snapshot) and one held
  by a live process (:class:`Holder`): never prompted, and Discard of the
  held one is refused;
* a ten-day-old interrupted session of another project: only visible when
  listing every project, and what a 7-day cleanup moves to the trash.

Editors run under a hard timeout; a missing editor is a failure, not a skip
(CI installs them from ``.ci/apt-packages.txt``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
CLIENT_CONFIG = ROOT / "client-config"
EDITOR_TIMEOUT = 120  # seconds, per editor run (generous: the machine may be loaded)

RECOVER_ID = "sess-newest"
DISCARD_ID = "sess-middle"
NOTEBOOK_ID = "ipython-22089-3f2a"
LATER_ID = "sess-oldest"
RUNNING_ID = "sess-running"
HELD_ID = "sess-held"
DIES_ID = "sess-dies"
OTHER_ID = "other-old"
ANSWERS = {RECOVER_ID: "Recover", DISCARD_ID: "Discard", NOTEBOOK_ID: "Recover", LATER_ID: "Later"}
PROMPTED_ON_OPEN = [RECOVER_ID, DISCARD_ID, NOTEBOOK_ID, LATER_ID]  # newest first
NOTEBOOK_NAME = "analysis.ipynb"
# Where the README's setup blocks say the server is: the Quick start's .venv in a checkout at ~/src.
VENV_EXE = "~/src/opendev-snapshot/.venv/bin/opendev-snapshot"


def readme_block(marker: str, lang: str) -> str:
    """The fenced block after ``<!-- marker`` in client-config/README.md: what users paste."""
    readme = CLIENT_CONFIG / "README.md"
    text = readme.read_text()
    start = text.index(f"<!-- {marker}")
    m = re.compile(rf"```{lang}\n(.*?)```", re.S).search(text, start)
    assert m, f"no ```{lang} block after the {marker} marker in {readme}"
    return m.group(1)


def user_config(marker: str, lang: str) -> str:
    """The README block with this checkout where it says ``~/src/opendev-snapshot``."""
    block = readme_block(marker, lang)
    assert VENV_EXE in block, f"the {marker} block must point at the Quick start's {VENV_EXE}"
    return block.replace(VENV_EXE, server_executable()).replace("~/src/opendev-snapshot", str(ROOT))


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
    bin_dir: Path  # on the editor's PATH; the resume program `opendev` is not there at first
    files: dict = field(default_factory=dict)
    original: dict = field(default_factory=dict)  # session id -> bytes at creation
    holders: list = field(default_factory=list)

    def exists(self, session_id: str) -> bool:
        return self.files[session_id].exists()

    def read(self, session_id: str) -> bytes:
        return self.files[session_id].read_bytes()

    def path_env(self) -> str:
        """PATH for an editor: our bin dir first, and no directory holding `opendev`
        or `opendev-snapshot` (the README's setup must name the server itself)."""
        keep = [str(self.bin_dir)]
        for d in os.environ.get("PATH", "").split(os.pathsep):
            if d and not (Path(d) / "opendev").exists() and not (Path(d) / "opendev-snapshot").exists():
                keep.append(d)
        return os.pathsep.join(keep)

    def stop(self) -> None:
        for h in self.holders:
            h.kill()


def write_lock_text(snapshot_dir: Path, session_id: str, holder: dict) -> None:
    """A lock file nobody holds, with the contract's holder text (section 2, Liveness)."""
    path = snapshot_dir / f"{session_id}_session_snapshot.lock"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(holder))


class Holder:
    """A separate process that saves a session with ``claim`` and holds its
    lock until it is killed (SIGKILL: a crash, as far as the session knows)."""

    SCRIPT = (
        "import sys\n"
        "from opendev_snapshot.core import SnapshotStore, new_record\n"
        "store = SnapshotStore(sys.argv[1], use_index=False)\n"
        "record = new_record(sys.argv[2], sys.argv[3])\n"
        "record.update(message_count=4, cost_usd=0.05)\n"
        "store.save(record, claim=True)\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
    )

    def __init__(self, snapshot_dir: Path, session_id: str, project: Path) -> None:
        self.session_id = session_id
        self.proc = subprocess.Popen(
            [sys.executable, "-c", self.SCRIPT, str(snapshot_dir), session_id, str(project)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", f"holder of {session_id} did not start: {line!r}"
        self.pid = self.proc.pid

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


def make_scenario(tmp_path: Path, *, holders: bool = False) -> Scenario:
    """The snapshot directory and projects above. With ``holders``, also
    ``HELD_ID`` and ``DIES_ID`` held by live processes (call ``stop()``)."""
    from opendev_snapshot.core import SnapshotStore, new_record

    snapshot_dir = tmp_path / "snapshots"
    project = tmp_path / "my project"
    other = tmp_path / "other"
    bin_dir = tmp_path / "bin"
    project.mkdir()
    (project / ".git").mkdir()  # the project root an editor finds
    other.mkdir()
    bin_dir.mkdir()
    (project / "main.py").write_text("print('hello')\n")
    (project / NOTEBOOK_NAME).write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}\n')
    s = Scenario(snapshot_dir, project, other, bin_dir)
    now = now_ms()
    rows = [
        (RECOVER_ID, project, 5 * 60_000, 12, 0.42),
        (DISCARD_ID, project, 10 * 60_000, 3, 0.1),
        (NOTEBOOK_ID, project, 15 * 60_000, 9, 0.0),
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
    # The notebook kernel died: its lock file names the kernel and the notebook.
    write_lock_text(
        snapshot_dir,
        NOTEBOOK_ID,
        {
            "pid": 22089,
            "host": socket.gethostname(),
            "startedMs": now - 3_600_000,
            "kind": "ipython",
            "notebook": str(project / NOTEBOOK_NAME),
            "historySession": 7,
        },
    )
    if holders:
        for session_id in (HELD_ID, DIES_ID):
            s.holders.append(Holder(snapshot_dir, session_id, project))
            s.files[session_id] = snapshot_dir / f"{session_id}_session_snapshot.json"
    s.original = {sid: path.read_bytes() for sid, path in s.files.items()}
    return s


def fake_resume_program(s: Scenario) -> Path:
    """Where the editor test creates `opendev` (a script that records how it was run)."""
    return s.bin_dir / "opendev"


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
