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


def editor_path(bin_dir: Path) -> str:
    """PATH for an editor: ``bin_dir`` first, and no directory holding `opendev`
    or `opendev-snapshot` (the README's setup must name the server itself)."""
    keep = [str(bin_dir)]
    for d in os.environ.get("PATH", "").split(os.pathsep):
        if d and not (Path(d) / "opendev").exists() and not (Path(d) / "opendev-snapshot").exists():
            keep.append(d)
    return os.pathsep.join(keep)


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
        return editor_path(self.bin_dir)

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
        "import opendev_snapshot.core.holder as holder\n"
        "if len(sys.argv) > 4:  # the host its lock file names\n"
        "    holder._hostname = lambda: sys.argv[4]\n"
        "from opendev_snapshot.core import SnapshotStore, new_record\n"
        "store = SnapshotStore(sys.argv[1], use_index=False)\n"
        "record = new_record(sys.argv[2], sys.argv[3])\n"
        "record.update(message_count=4, cost_usd=0.05)\n"
        "store.save(record, claim=True)\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
    )

    def __init__(self, snapshot_dir: Path, session_id: str, project: Path, host: str | None = None) -> None:
        self.session_id = session_id
        self.proc = subprocess.Popen(
            [sys.executable, "-c", self.SCRIPT, str(snapshot_dir), session_id, str(project), *([host] if host else [])],
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


# ---------------------------------------------------------------- hostile text
#
# A project whose directory name holds what a terminal or an editor would
# obey: an OSC 52 clipboard write (ESC ... BEL), a bidi override, a C1 CSI,
# a newline (in Neovim a second line opens a "Press ENTER" prompt that takes
# the next key) and a VS Code notification link that would run a command.
# Its sessions carry such text in every field an editor shows: the project
# path, a notebook path, and the host a live holder's lock file names.

HOSTILE_LINK = "[Undo](command:workbench.action.quit)"  # no "%": eglot 1.9 does not escape one in a root URI
HOSTILE_DIR = f"proj \x1b]52;c;cm0gLXJmIH4=\x07 \u202eevil\x9b2J {HOSTILE_LINK}\nend"
HOSTILE_HOST = "box\x1b[2J\u202e\x85"
HOSTILE_NOTEBOOK = "nb \u202ebnypi.ipynb"
H_AGENT = "hostile-agent"  # newest: Discard (then Undo from the trash)
H_NOTEBOOK = "hostile-kernel"  # Recover: where the notebook is
H_HELD = "hostile-held"  # held by a live process on HOSTILE_HOST: Discard is refused
H_COSTS = {H_AGENT: 1234.5, H_NOTEBOOK: 0.004}
H_COSTS_SHOWN = {H_AGENT: "$1,234.50", H_NOTEBOOK: "<$0.01"}


@dataclass
class Hostile:
    snapshot_dir: Path
    project: Path
    bin_dir: Path
    holder: Holder
    files: dict = field(default_factory=dict)
    original: dict = field(default_factory=dict)

    def path_env(self) -> str:
        return editor_path(self.bin_dir)

    def stop(self) -> None:
        self.holder.kill()


def make_hostile(tmp_path: Path) -> Hostile:
    """The hostile project (a git root, with ``main.py``) and its three sessions."""
    from opendev_snapshot.core import SnapshotStore, new_record

    snapshot_dir = tmp_path / "snapshots"
    project = tmp_path / HOSTILE_DIR
    bin_dir = tmp_path / "bin"
    (project / ".git").mkdir(parents=True)
    (project / "main.py").write_text("print('hello')\n")
    bin_dir.mkdir()
    now = now_ms()
    with SnapshotStore(snapshot_dir, use_index=False) as store:
        for session_id, age_ms in ((H_AGENT, 5 * 60_000), (H_NOTEBOOK, 10 * 60_000)):
            record = new_record(session_id, str(project))
            record.update(snapshot_timestamp_ms=now - age_ms, message_count=2, cost_usd=H_COSTS[session_id])
            store.save(record)
    write_lock_text(
        snapshot_dir,
        H_NOTEBOOK,
        {"pid": 22090, "host": HOSTILE_HOST, "startedMs": now - 3_600_000, "kind": "ipython",
         "notebook": str(project / HOSTILE_NOTEBOOK), "historySession": 3},
    )  # fmt: skip
    holder = Holder(snapshot_dir, H_HELD, project, host=HOSTILE_HOST)
    h = Hostile(snapshot_dir, project, bin_dir, holder)
    h.files = {sid: snapshot_dir / f"{sid}_session_snapshot.json" for sid in (H_AGENT, H_NOTEBOOK, H_HELD)}
    h.original = {sid: path.read_bytes() for sid, path in h.files.items()}
    return h


def raw_controls(strings) -> list:
    """The strings of ``strings`` that hold a character ``core.text.printable`` escapes."""
    from opendev_snapshot.core.text import printable

    return [s for s in strings if printable(s) != s]


def text_mismatches(cost_shown: list, printable_shown: list) -> list:
    """Where an editor's format_cost / printable differ from the shared cases."""
    from text_cases import COST_CASES, PRINTABLE_CASES

    assert len(cost_shown) == len(COST_CASES) and len(printable_shown) == len(PRINTABLE_CASES)
    wrong = [f"format_cost({usd!r}) = {got!r}, not {want!r}" for (usd, want), got in zip(COST_CASES, cost_shown) if got != want]
    wrong += [
        f"printable[{name}]({raw!r}) = {got!r}, not {want!r}"
        for (name, raw, want), got in zip(PRINTABLE_CASES, printable_shown)
        if got != want
    ]
    return wrong
