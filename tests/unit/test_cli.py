"""The command line, run as a real subprocess like a user would (piped, and on a real pty)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios

import pytest

from opendev_snapshot.core import SnapshotStore, new_record
from opendev_snapshot.core.durations import format_age, parse_duration

HOUR = 3_600_000
LONG_ID = "other-proj-session-with-a-rather-long-id-that-goes-on-and-on-0042"
DEEP_PROJECT = "/home/dev/projects/some/deeply/nested/project/directory/name"
HOSTILE = "\x1b[31mred\x9b2J\x7fdel\u202eevil\x07"
RAW_CONTROLS = ("\x1b", "\x9b", "\x7f", "\u202e", "\x07")


def now_ms() -> int:
    import time

    return time.time_ns() // 1_000_000


def _env(env_dir=None, env=None) -> dict:
    full = dict(os.environ)
    for key in ("OPENDEV_SNAPSHOT_DIR", "COLUMNS", "LINES"):
        full.pop(key, None)
    if env_dir is not None:
        full["OPENDEV_SNAPSHOT_DIR"] = str(env_dir)
    if env:
        full.update(env)
    return full


def cli(*args, env_dir=None, env=None):
    """Run the CLI with stdout and stderr piped."""
    return subprocess.run(
        [sys.executable, "-m", "opendev_snapshot", *args],
        capture_output=True, text=True, env=_env(env_dir, env), timeout=60, stdin=subprocess.DEVNULL,
    )


def cli_tty(*args, columns=80, env_dir=None, env=None):
    """Run the CLI with stdout on a real pseudo-terminal ``columns`` wide; returns (rc, stdout, stderr)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.ONLCR  # keep "\n" as is
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    proc = subprocess.Popen(
        [sys.executable, "-m", "opendev_snapshot", *args],
        stdout=slave, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=_env(env_dir, env),
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    err = proc.stderr.read().decode()
    rc = proc.wait(timeout=60)
    return rc, b"".join(chunks).decode(), err


def cell_width(line: str) -> int:
    from opendev_snapshot.cli_table import cell_width as width

    return width(line)


@pytest.fixture
def populated(snapshot_dir, tmp_path):
    s = SnapshotStore(snapshot_dir)
    proj = tmp_path / "proj"
    proj.mkdir()
    r = new_record("crashed", str(proj))
    r.update(message_count=12, cost_usd=0.4213, snapshot_timestamp_ms=now_ms() - 2 * HOUR)
    r["last_tool_results"] = [{"tool_name": "bash", "call_id": "c1", "output_preview": "ls\nout", "success": False}]
    s.save(r)
    s.save(dict(new_record(LONG_ID, DEEP_PROJECT), snapshot_timestamp_ms=now_ms() - 3 * HOUR, cost_usd=12.5))
    s.save(dict(new_record("finished", str(proj)), completed=True))
    (snapshot_dir / "bad_session_snapshot.json").write_text("{")
    s.close()
    return snapshot_dir, proj


HOLDER_SCRIPT = r"""
import json, os, sys
from opendev_snapshot.core import SnapshotStore, new_record
store = SnapshotStore(sys.argv[1])
record = new_record(sys.argv[2], "/work/live")
store.save(record, claim=True)
if len(sys.argv) > 3:  # rewrite the lock file's text (the lock stays held: flock is on our fd)
    with open(os.path.join(sys.argv[1], sys.argv[2] + "_session_snapshot.lock"), "w") as f:
        f.write(sys.argv[3])
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def live_holder(snapshot_dir):
    """A separate live process holding a session's lock, as a running agent does."""
    procs = []

    def start(session_id="running-session-05", lock_text=None):
        args = [sys.executable, "-c", HOLDER_SCRIPT, str(snapshot_dir), session_id]
        if lock_text is not None:
            args.append(lock_text)
        proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "ready"
        return proc

    yield start
    for proc in procs:
        proc.stdin.close()
        proc.wait(timeout=30)


# ------------------------------------------------------------------ list
def test_list_piped_is_tab_separated_with_full_ids(populated):
    d, proj = populated
    out = cli("--dir", str(d), "list")
    assert out.returncode == 0, out.stderr
    rows = [line.split("\t") for line in out.stdout.splitlines()]
    assert [r[0] for r in rows] == ["crashed", LONG_ID]  # newest first, no header, ids whole
    assert rows[0] == ["crashed", "interrupted", "opendev", "2h", "12", "$0.42", str(proj)]
    assert rows[1][5:] == ["$12.50", DEEP_PROJECT]
    assert "finished" not in out.stdout
    assert "skipped bad_session_snapshot.json" in out.stderr


def test_list_table_on_a_wide_terminal(populated):
    d, proj = populated
    rc, out, err = cli_tty("--dir", str(d), "list", columns=200)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["SESSION", "STATUS", "KIND", "AGE", "MESSAGES", "COST", "PROJECT"]
    assert lines[1].split() == ["crashed", "interrupted", "opendev", "2h", "12", "$0.42", str(proj)]
    assert lines[2].split() == [LONG_ID, "interrupted", "opendev", "3h", "0", "$12.50", DEEP_PROJECT]


@pytest.mark.parametrize("columns", [40, 60, 100, 130])
def test_list_on_narrow_terminals_never_cuts_an_id(populated, columns):
    d, _ = populated
    rc, out, err = cli_tty("--dir", str(d), "list", columns=columns)
    assert rc == 0, err
    lines = out.splitlines()
    assert any(line.split()[0] == LONG_ID for line in lines if line.strip())
    assert any(line.split()[0] == "crashed" for line in lines if line.strip())
    # only an id, or in the stacked layout a whole path on its own line, may be wider (it wraps)
    paths = {DEEP_PROJECT, str(d.parent / "proj")}
    for line in lines:
        assert cell_width(line) <= columns or line.strip() in {LONG_ID, *paths}, line
    assert "\u2026" not in "".join(line.split()[0] for line in lines if line.strip())


def test_list_wide_shows_every_column_in_full(populated):
    d, _ = populated
    rc, out, _err = cli_tty("--dir", str(d), "list", "--wide", columns=60)
    assert rc == 0
    assert out.splitlines()[0].split() == ["SESSION", "STATUS", "KIND", "AGE", "MESSAGES", "COST", "PROJECT"]
    assert DEEP_PROJECT in out


def test_list_json_matches_server_shape(populated):
    d, proj = populated
    out = cli("list", "--project", str(proj), "--all", "--json", env_dir=d)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert [s["sessionId"] for s in data["sessions"]] == ["finished", "crashed"]
    crashed = data["sessions"][1]
    assert crashed["status"] == "interrupted" and crashed["messageCount"] == 12 and crashed["costUsd"] == 0.4213
    assert crashed["lastToolResults"] == [{"toolName": "bash", "callId": "c1", "outputPreview": "ls\nout", "success": False}]
    assert crashed["path"] == str(d / "crashed_session_snapshot.json")
    assert crashed["kind"] == "opendev" and crashed["notebook"] is None
    assert data["skipped"] == [{"file": "bad_session_snapshot.json", "reason": data["skipped"][0]["reason"]}]
    assert data["skipped"][0]["reason"]


@pytest.mark.parametrize("where", ["before", "after"])
def test_dir_flag_beats_environment(populated, tmp_path, where):
    d, _ = populated
    args = ["--dir", str(d), "list", "--json"] if where == "before" else ["list", "--json", "--dir", str(d)]
    out = cli(*args, env_dir=tmp_path / "empty")
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)["sessions"]) == 2


def test_limit_zero_lists_nothing(populated):
    d, _ = populated
    out = cli("--dir", str(d), "list", "--limit", "0")
    assert out.returncode == 0 and out.stdout == ""
    assert json.loads(cli("--dir", str(d), "list", "--limit", "0", "--json").stdout)["sessions"] == []
    assert [line.split("\t")[0] for line in cli("--dir", str(d), "list", "--limit", "1").stdout.splitlines()] == ["crashed"]


@pytest.mark.parametrize(
    "args,message",
    [
        ([], "No incomplete sessions in"),
        (["--all"], "No sessions in"),
        (["--status", "running"], "No running sessions in"),
        (["--status", "interrupted"], "No interrupted sessions in"),
        (["--project", "/nowhere"], "No incomplete sessions of project /nowhere in"),
        (["--status", "running", "--project", "/nowhere"], "No running sessions of project /nowhere in"),
    ],
)
def test_nothing_found_says_what_was_looked_for(snapshot_dir, args, message):
    SnapshotStore(snapshot_dir).save(dict(new_record("done", "/elsewhere"), completed=True))
    if args == ["--all"]:
        (snapshot_dir / "done_session_snapshot.json").unlink()
    out = cli("--dir", str(snapshot_dir), "list", *args)
    assert out.returncode == 0
    assert out.stdout == ""  # a pipe gets data only; the sentence goes to stderr
    assert message in out.stderr
    rc, tty_out, _err = cli_tty("--dir", str(snapshot_dir), "list", *args)
    assert rc == 0 and message in tty_out  # a terminal gets it on stdout


def test_many_unusable_files_are_summed_up_not_listed_forever(snapshot_dir):
    SnapshotStore(snapshot_dir).save(new_record("fine", "/p"))
    for i in range(12):
        (snapshot_dir / f"bad{i:02d}_session_snapshot.json").write_text("{")
    out = cli("--dir", str(snapshot_dir), "list")
    assert out.returncode == 0 and out.stdout.startswith("fine\t")
    lines = out.stderr.splitlines()
    assert [line.split(":")[1].split()[-1] for line in lines[:10]] == [f"bad{i:02d}_session_snapshot.json" for i in range(10)]
    assert lines[10:] == [
        "opendev-snapshot: \u2026 and 2 more not usable",
        "opendev-snapshot: hint: 'opendev-snapshot cleanup --skipped' shows them all and moves them to the trash",
    ]


def test_default_directory_from_home(tmp_path):
    out = cli("list", env={"HOME": str(tmp_path)})
    assert out.returncode == 0
    assert str(tmp_path / ".opendev" / "data" / "recovery") in out.stderr


# ------------------------------------------------------------- --dir checks
@pytest.mark.parametrize(
    "args",
    [["list"], ["show", "x"], ["remove", "x"], ["restore", "x"], ["trash"], ["cleanup", "--max-age", "0s"], ["serve"]],
)
def test_empty_dir_is_refused_and_the_default_is_untouched(tmp_path, args):
    home = tmp_path / "home"
    real = home / ".opendev" / "data" / "recovery"
    SnapshotStore(real).save(dict(new_record("x", "/p"), snapshot_timestamp_ms=1))
    out = cli("--dir", "", *args, env={"HOME": str(home)})
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "opendev-snapshot: --dir is empty: give the snapshot directory's path (is a shell variable unset?)"
    )
    assert (real / "x_session_snapshot.json").exists()
    assert not (real / ".trash").exists() or not any((real / ".trash").iterdir())


@pytest.mark.parametrize("args", [["show", "x"], ["remove", "x"], ["restore", "x"], ["cleanup", "--max-age", "7d"]])
def test_missing_dir_is_an_error_where_a_directory_is_needed(tmp_path, args):
    missing = tmp_path / "typo"
    out = cli("--dir", str(missing), *args)
    assert out.returncode == 1
    assert out.stderr.strip() == f"opendev-snapshot: snapshot directory {missing} (--dir) does not exist"
    assert not missing.exists()


@pytest.mark.parametrize("args", [["list"], ["trash"]])
def test_missing_dir_is_a_note_for_listings(tmp_path, args):
    missing = tmp_path / "typo"
    out = cli("--dir", str(missing), *args)
    assert out.returncode == 0 and out.stdout == ""
    assert f"note: snapshot directory {missing} (--dir) does not exist yet" in out.stderr
    out = cli(*args, "--json", env_dir=missing)
    assert out.returncode == 0 and json.loads(out.stdout) in ({"sessions": [], "skipped": []}, {"entries": []})
    assert f"{missing} (OPENDEV_SNAPSHOT_DIR) does not exist yet" in out.stderr
    assert not missing.exists()


@pytest.mark.parametrize(
    "args",
    [["list"], ["list", "--json"], ["show", "x"], ["remove", "x"], ["restore", "x"], ["trash"], ["cleanup", "--max-age", "7d"]],
)
def test_dir_that_is_a_file_gives_one_message(tmp_path, args):
    f = tmp_path / "afile"
    f.write_text("not a directory")
    out = cli("--dir", str(f), *args)
    assert out.returncode == 1
    assert out.stderr == f"opendev-snapshot: snapshot directory {f} (--dir) is not a directory\n"
    assert out.stdout == ""
    assert f.read_text() == "not a directory"


# ------------------------------------------------------------------- ids
def test_a_unique_prefix_is_accepted(populated):
    d, _ = populated
    out = cli("--dir", str(d), "show", "cra")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "Session:   crashed"
    out = cli("--dir", str(d), "show", LONG_ID[:12], "--json")
    assert json.loads(out.stdout)["sessionId"] == LONG_ID
    # what `list` printed pastes back in whole
    first_id = cli("--dir", str(d), "list").stdout.splitlines()[1].split("\t")[0]
    assert cli("--dir", str(d), "show", first_id).returncode == 0


def test_an_ambiguous_prefix_names_the_matches_and_changes_nothing(snapshot_dir):
    s = SnapshotStore(snapshot_dir)
    for sid in ("abc-1", "abc-2"):
        s.save(dict(new_record(sid, "/p"), snapshot_timestamp_ms=1))
    out = cli("--dir", str(snapshot_dir), "remove", "abc")
    assert out.returncode == 1
    assert out.stderr.strip() == "opendev-snapshot: 'abc' matches 2 sessions (abc-1, abc-2): give more of the id"
    assert (snapshot_dir / "abc-1_session_snapshot.json").exists() and (snapshot_dir / "abc-2_session_snapshot.json").exists()


# ------------------------------------------------------------------ show
def test_show_interrupted_opendev_session(populated):
    d, proj = populated
    out = cli("--dir", str(d), "show", "crashed")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "Status:    interrupted" in text and "Kind:      opendev" in text
    assert "Messages:  12" in text and "Cost:      $0.42" in text
    assert "  [ERR] bash c1: ls\n        out\n" in text  # a preview keeps its lines, indented
    steps = text[text.index("Next steps:"):].splitlines()
    assert steps == [
        "Next steps:",
        f"  Resume it, in {proj}:",
        "    opendev --resume crashed",
        "  Discard it (to the trash; undo with 'restore'):",
        "    opendev-snapshot remove crashed",
    ]
    as_json = json.loads(cli("--dir", str(d), "show", "crashed", "--json").stdout)
    assert as_json["sessionId"] == "crashed" and as_json["status"] == "interrupted" and as_json["kind"] == "opendev"


def test_show_completed_session_has_nothing_to_recover(populated):
    d, _ = populated
    out = cli("--dir", str(d), "show", "finished")
    assert "Status:    completed" in out.stdout
    assert "  It completed: there is nothing to recover.\n" in out.stdout
    assert "    opendev-snapshot remove finished\n" in out.stdout
    assert "--resume" not in out.stdout


def test_show_running_names_the_holder_and_the_way_out(snapshot_dir, live_holder):
    proc = live_holder("live-one")
    out = cli("--dir", str(snapshot_dir), "show", "live")
    assert out.returncode == 0, out.stderr
    assert "Status:    running" in out.stdout
    held = [line for line in out.stdout.splitlines() if line.startswith("Held by:")]
    assert held and f"pid {proc.pid} on " in held[0]
    assert f"  If pid {proc.pid} is stuck or gone, remove it anyway:\n    opendev-snapshot remove --force live-one\n" in out.stdout
    assert "--resume" not in out.stdout


def test_show_notebook_session_points_at_recover(snapshot_dir):
    s = SnapshotStore(snapshot_dir, holder_info={"kind": "ipython", "notebook": "/nb/analysis.ipynb", "historySession": 7})
    s.save(new_record("ipython-4242-abc", "/nb"), claim=True)
    s.close()  # released, lock file kept: the kernel "died"
    out = cli("--dir", str(snapshot_dir), "show", "ipython-4242")
    assert out.returncode == 0, out.stderr
    assert "Kind:      ipython" in out.stdout and "Notebook:  /nb/analysis.ipynb" in out.stdout
    assert "  Open its notebook: /nb/analysis.ipynb\n" in out.stdout
    assert "    %load_ext opendev_snapshot\n    %opendev recover ipython-4242-abc\n" in out.stdout
    assert "--resume" not in out.stdout


def test_show_of_a_trashed_session_says_how_to_restore(populated):
    d, _ = populated
    assert cli("--dir", str(d), "remove", "crashed").returncode == 0
    out = cli("--dir", str(d), "show", "crashed")
    assert out.returncode == 1
    assert "it is in the trash: opendev-snapshot restore crashed" in out.stderr


# ---------------------------------------------------- remove, trash, restore
def test_remove_moves_to_the_trash_and_restore_brings_it_back(populated):
    d, _ = populated
    before = (d / "crashed_session_snapshot.json").read_bytes()
    out = cli("--dir", str(d), "remove", "crash")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "Moved crashed to the trash. Undo: opendev-snapshot restore crashed"
    assert not (d / "crashed_session_snapshot.json").exists()
    trash = cli("--dir", str(d), "trash")
    assert trash.returncode == 0 and trash.stdout.split("\t")[0] == "crashed"
    entries = json.loads(cli("--dir", str(d), "trash", "--json").stdout)["entries"]
    assert [e["sessionId"] for e in entries] == ["crashed"]
    assert entries[0]["snapshot"]["messageCount"] == 12 and isinstance(entries[0]["removedAtMs"], int)
    out = cli("--dir", str(d), "restore", "cra")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Restored crashed (interrupted)")
    assert (d / "crashed_session_snapshot.json").read_bytes() == before
    out = cli("--dir", str(d), "restore", "crashed")
    assert out.returncode == 1 and "no session 'crashed' in the trash of" in out.stderr


def test_restore_refuses_when_the_id_exists_again(populated):
    d, proj = populated
    assert cli("--dir", str(d), "remove", "crashed").returncode == 0
    SnapshotStore(d).save(new_record("crashed", str(proj)))
    out = cli("--dir", str(d), "restore", "crashed")
    assert out.returncode == 1
    assert "a session crashed exists again in" in out.stderr and "not restored" in out.stderr


def test_remove_refuses_a_running_session_and_names_its_holder(snapshot_dir, live_holder):
    proc = live_holder("running-session-05")
    path = snapshot_dir / "running-session-05_session_snapshot.json"
    out = cli("--dir", str(snapshot_dir), "remove", "running-session-05")
    assert out.returncode == 1
    assert f"session running-session-05 is running (pid {proc.pid} on " in out.stderr
    assert "opendev-snapshot remove --force running-session-05" in out.stderr
    assert len(out.stderr.splitlines()) == 1
    assert path.exists()
    out = cli("--dir", str(snapshot_dir), "remove", "--force", "running")
    assert out.returncode == 0, out.stderr
    assert not path.exists()
    assert [e["sessionId"] for e in json.loads(cli("--dir", str(snapshot_dir), "trash", "--json").stdout)["entries"]] == [
        "running-session-05"
    ]


def test_empty_trash(snapshot_dir):
    SnapshotStore(snapshot_dir).ensure_dir()
    out = cli("--dir", str(snapshot_dir), "trash")
    assert out.returncode == 0 and out.stdout == "" and "is empty" in out.stderr
    assert json.loads(cli("--dir", str(snapshot_dir), "trash", "--json").stdout) == {"entries": []}


# --------------------------------------------------------------- cleanup
def test_cleanup_dry_run_then_real_goes_to_the_trash(populated):
    d, _ = populated
    out = cli("--dir", str(d), "cleanup", "--max-age", "90m", "--dry-run")
    assert out.returncode == 0
    assert out.stdout.splitlines()[:3] == ["Would move 2 sessions to the trash:", "  crashed", f"  {LONG_ID}"]
    assert (d / "crashed_session_snapshot.json").exists()
    out = cli("--dir", str(d), "cleanup", "--max-age", "150m", "--keep-incomplete", "--json")
    report = json.loads(out.stdout)
    assert (report["removedCount"], report["sessionIds"], report["dryRun"]) == (0, [], False)
    out = cli("--dir", str(d), "cleanup", "--max-age", "90m")
    assert out.stdout.splitlines()[:3] == ["Moved 2 sessions to the trash:", "  crashed", f"  {LONG_ID}"]
    assert "Undo with 'opendev-snapshot restore ID'" in out.stdout
    assert not (d / "crashed_session_snapshot.json").exists()
    trashed = {e["sessionId"] for e in json.loads(cli("--dir", str(d), "trash", "--json").stdout)["entries"]}
    assert trashed == {"crashed", LONG_ID}


def test_cleanup_skipped_shows_then_moves_unusable_files(populated):
    d, _ = populated
    (d / "huge_session_snapshot.json").write_bytes(b" " * (1024 * 1024 + 1))
    out = cli("--dir", str(d), "cleanup", "--skipped", "--dry-run")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "Would move 2 unusable files to the trash:"
    assert any(line.startswith("  bad_session_snapshot.json: ") for line in lines)
    assert (d / "bad_session_snapshot.json").exists()
    out = cli("--dir", str(d), "cleanup", "--skipped")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "Moved 2 unusable files to the trash:"
    assert out.stdout.splitlines()[-1] == f"They stay in {d}/.trash until a cleanup purges them after 7 days."
    assert not (d / "bad_session_snapshot.json").exists() and not (d / "huge_session_snapshot.json").exists()
    listed = cli("--dir", str(d), "list")
    assert "skipped" not in listed.stderr
    assert (d / "crashed_session_snapshot.json").exists()  # usable snapshots are not touched


def test_cleanup_needs_something_to_do(populated):
    d, _ = populated
    out = cli("--dir", str(d), "cleanup")
    assert out.returncode == 2 and "cleanup needs --max-age DURATION" in out.stderr


# ------------------------------------------------ errors: one line, no traceback
@pytest.mark.parametrize(
    "args,code,message",
    [
        (["show", "nope"], 1, "no session 'nope' in"),
        (["show", "../etc"], 2, "invalid session id '../etc'"),
        (["remove", "nope"], 1, "no session 'nope' in"),
        (["restore", "nope"], 1, "no session 'nope' in the trash of"),
        (["cleanup", "--max-age", "7x"], 2, "invalid duration"),
        (["list", "--limit", "-1"], 2, "must be 0 or more"),
        (["list", "--limit", "x"], 2, "not a whole number"),
        (["frobnicate"], 2, "invalid choice"),
        (["list", "--bogus"], 2, "unrecognized arguments: --bogus"),
        ([], 2, "usage"),
    ],
)
def test_errors_go_to_stderr_with_exit_code(populated, args, code, message):
    d, _ = populated
    out = cli("--dir", str(d), *args)
    assert out.returncode == code
    assert message in out.stderr
    assert out.stdout == ""
    assert "Traceback" not in out.stderr
    if args:
        assert len(out.stderr.splitlines()) == 1, out.stderr


@pytest.mark.parametrize("target", ["dir", "missing-parent"])
def test_bad_log_file_is_one_line(tmp_path, populated, target):
    d, _ = populated
    log = tmp_path if target == "dir" else tmp_path / "nonexistent" / "x.log"
    out = cli("--dir", str(d), "--log-file", str(log), "list")
    assert out.returncode == 1
    assert "Traceback" not in out.stderr and len(out.stderr.splitlines()) == 1, out.stderr
    assert str(log) in out.stderr


def test_serve_with_a_port_out_of_range_is_one_line():
    out = subprocess.run(
        [sys.executable, "-m", "opendev_snapshot", "serve", "--tcp", "--port", "99999"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, env=_env(),
    )
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert "99999" in out.stderr or "port" in out.stderr


def test_an_unexpected_error_is_one_line_and_v_adds_the_traceback(monkeypatch, capsys, snapshot_dir):
    from opendev_snapshot import cli as cli_module

    def boom(args, out):
        raise RuntimeError("something broke")

    monkeypatch.setitem(cli_module.COMMANDS, "list", boom)
    assert cli_module.main(["--dir", str(snapshot_dir), "list"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "opendev-snapshot: internal error: RuntimeError: something broke (please report it; -v shows the traceback)\n"
    )
    assert cli_module.main(["--dir", str(snapshot_dir), "-v", "list"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.endswith("-v shows the traceback)\n")


def test_a_closed_pipe_is_not_an_error(snapshot_dir):
    s = SnapshotStore(snapshot_dir)
    for i in range(2000):
        s.save(dict(new_record(f"s{i:05d}", "/p"), snapshot_timestamp_ms=1 + i))
    proc = subprocess.Popen(
        [sys.executable, "-m", "opendev_snapshot", "--dir", str(snapshot_dir), "list"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(),
    )
    assert proc.stdout.readline().startswith(b"s01999\t")
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0
    assert err == ""


# --------------------------------------------- nothing raw reaches the terminal
def test_control_characters_are_made_visible_everywhere(snapshot_dir, live_holder):
    s = SnapshotStore(snapshot_dir)
    r = new_record("hostile", "/tmp/p" + HOSTILE)
    r["last_tool_results"] = [{"tool_name": "t" + HOSTILE, "call_id": "c" + HOSTILE, "output_preview": HOSTILE, "success": True}]
    r["snapshot_timestamp_ms"] = 1
    s.save(r)
    lock_text = json.dumps({"pid": 1, "host": "box" + HOSTILE, "startedMs": 1, "kind": "opendev"})
    live_holder("held", lock_text=lock_text)
    (snapshot_dir / ("x\x1b[2J" + "_session_snapshot.json")).write_text("{")
    outputs = []
    for args in (["list"], ["list", "--all"], ["show", "hostile"], ["show", "held"], ["trash"]):
        out = cli("--dir", str(snapshot_dir), *args)
        assert out.returncode == 0, out.stderr
        outputs.append(out.stdout + out.stderr)
        rc, tty_out, tty_err = cli_tty("--dir", str(snapshot_dir), *args, columns=100)
        assert rc == 0
        outputs.append(tty_out + tty_err)
    assert cli("--dir", str(snapshot_dir), "remove", "hostile").returncode == 0
    outputs.append(cli("--dir", str(snapshot_dir), "trash").stdout)
    outputs.append(cli_tty("--dir", str(snapshot_dir), "trash", columns=200)[1])
    text = "".join(outputs)
    for ch in RAW_CONTROLS:
        assert ch not in text, repr(ch)
    assert "\\e[31mred\\x9b2J\\x7fdel\\u202eevil\\x07" in text
    assert "box\\e[31m" in text  # the "Held by" line too
    assert "x\\e[2J_session_snapshot.json" in text


def test_text_a_stream_cannot_encode_is_escaped_not_fatal(snapshot_dir, live_holder):
    SnapshotStore(snapshot_dir).save(dict(new_record("umlaut", "/home/j\u00fcrgen/\u65e5\u672c"), snapshot_timestamp_ms=1))
    out = cli("--dir", str(snapshot_dir), "list", env={"PYTHONIOENCODING": "ascii"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\t")[-1] == "/home/j\\xfcrgen/\\u65e5\\u672c\n"
    live_holder("lone", lock_text='{"pid": 1, "host": "a\\ud800b", "startedMs": 1, "kind": "opendev"}')
    out = cli("--dir", str(snapshot_dir), "show", "lone")  # a lone surrogate from the lock file's JSON
    assert out.returncode == 0, out.stderr
    assert "Held by:   pid 1 on a\\ud800b" in out.stdout



def test_remove_of_a_running_session_shows_a_hostile_holder_escaped(snapshot_dir, live_holder):
    live_holder("lone", lock_text='{"pid": 1, "host": "a\\ud800\\u001b[2Jb", "startedMs": 1, "kind": "opendev"}')
    for args in (["remove", "lone"], ["show", "lone"], ["trash"]):
        out = cli("--dir", str(snapshot_dir), *args)
        assert "\x1b" not in out.stdout + out.stderr
    out = cli("--dir", str(snapshot_dir), "remove", "lone")
    assert out.returncode == 1 and "pid 1 on a\\ud800\\e[2Jb" in out.stderr, out.stderr
    assert len(out.stderr.splitlines()) == 1


# ---------------------------------------------------------------- progress
def test_no_progress_bar_when_stderr_is_not_a_terminal(snapshot_dir):
    s = SnapshotStore(snapshot_dir)
    for i in range(300):
        s.save(dict(new_record(f"s{i}", "/p"), snapshot_timestamp_ms=1))
    out = cli("--dir", str(snapshot_dir), "cleanup", "--max-age", "1s")
    assert out.returncode == 0 and "\r" not in out.stderr and out.stderr == ""


def test_progress_bar_draws_on_a_terminal():
    from opendev_snapshot.cli import Progress

    class Tty:
        def __init__(self):
            self.text = ""

        def isatty(self):
            return True

        def write(self, s):
            self.text += s

        def flush(self):
            pass

    tty = Tty()
    bar = Progress("scan", stream=tty, delay=0)
    bar(5, 10)
    bar.finish()
    assert "[###############...............] 5/10" in tty.text and tty.text.endswith("\033[K")


def test_listing_path_imports_nothing_heavy(snapshot_dir):
    code = (
        "import sys; sys.argv=['opendev-snapshot','--dir',%r,'list','--json'];"
        "from opendev_snapshot import cli; rc = cli.main();"
        "heavy = sorted(m for m in ('pydantic','pygls','lsprotocol','IPython','cattrs','rich') if m in sys.modules);"
        "print(heavy, file=sys.stderr)" % str(snapshot_dir)
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stderr.strip().splitlines()[-1] == "[]"


# --------------------------------------------------------------- durations
@pytest.mark.parametrize(
    "text,ms",
    [("90s", 90_000), ("30m", 1_800_000), ("12h", 43_200_000), ("7d", 604_800_000), ("1d12h", 129_600_000), ("500ms", 500), ("2w", 1_209_600_000), (" 7D ", 604_800_000)],
)
def test_parse_duration(text, ms):
    assert parse_duration(text) == ms


@pytest.mark.parametrize("text", ["", "7", "d", "7x", "-1d", "1.5h", "7d junk", "h7"])
def test_parse_duration_refuses(text):
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert "duration" in str(info.value)


@pytest.mark.parametrize("ms,text", [(0, "0s"), (59_999, "59s"), (61_000, "1m"), (3_600_000, "1h"), (3_660_000, "1h 1m"), (90_000_000, "1d 1h"), (-5, "0s")])
def test_format_age(ms, text):
    assert format_age(ms) == text
