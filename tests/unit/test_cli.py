"""The command line, run as a real subprocess like a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from opendev_snapshot.core import SnapshotStore, new_record
from opendev_snapshot.core.durations import format_age, parse_duration
from opendev_snapshot.core.store import now_ms

HOUR = 3_600_000


def cli(*args, env_dir=None, env=None, stdin=None):
    full_env = dict(os.environ)
    full_env.pop("OPENDEV_SNAPSHOT_DIR", None)
    if env_dir is not None:
        full_env["OPENDEV_SNAPSHOT_DIR"] = str(env_dir)
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "opendev_snapshot", *args],
        capture_output=True, text=True, env=full_env, timeout=60, stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def populated(snapshot_dir, tmp_path):
    s = SnapshotStore(snapshot_dir)
    proj = tmp_path / "proj"
    proj.mkdir()
    r = new_record("crashed", str(proj))
    r.update(message_count=12, cost_usd=0.42, snapshot_timestamp_ms=now_ms() - 2 * HOUR)
    r["last_tool_results"] = [{"tool_name": "bash", "call_id": "c1", "output_preview": "ls\nout", "success": False}]
    s.save(r)
    s.save(dict(new_record("other", "/elsewhere"), snapshot_timestamp_ms=now_ms() - 3 * HOUR))
    s.save(dict(new_record("finished", str(proj)), completed=True))
    (snapshot_dir / "bad_session_snapshot.json").write_text("{")
    return snapshot_dir, proj


def test_list_table(populated):
    d, proj = populated
    out = cli("--dir", str(d), "list")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["SESSION", "STATUS", "AGE", "MESSAGES", "COST", "PROJECT"]
    assert lines[1].split()[:3] == ["crashed", "interrupted", "2h"]
    assert lines[2].split()[0] == "other"
    assert "finished" not in out.stdout
    assert "skipped bad_session_snapshot.json" in out.stderr


def test_list_json_matches_server_shape(populated):
    d, proj = populated
    out = cli("list", "--project", str(proj), "--all", "--json", env_dir=d)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert [s["sessionId"] for s in data["sessions"]] == ["finished", "crashed"]
    crashed = data["sessions"][1]
    assert crashed["status"] == "interrupted" and crashed["messageCount"] == 12 and crashed["costUsd"] == 0.42
    assert crashed["lastToolResults"] == [{"toolName": "bash", "callId": "c1", "outputPreview": "ls\nout", "success": False}]
    assert crashed["path"] == str(d / "crashed_session_snapshot.json")
    assert data["skipped"] == [{"file": "bad_session_snapshot.json", "reason": data["skipped"][0]["reason"]}]
    assert data["skipped"][0]["reason"]


@pytest.mark.parametrize("where", ["before", "after"])
def test_dir_flag_beats_environment(populated, tmp_path, where):
    d, _ = populated
    args = ["--dir", str(d), "list", "--json"] if where == "before" else ["list", "--json", "--dir", str(d)]
    out = cli(*args, env_dir=tmp_path / "empty")
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)["sessions"]) == 2


def test_show(populated):
    d, _ = populated
    out = cli("--dir", str(d), "show", "crashed")
    assert out.returncode == 0, out.stderr
    assert "Status:    interrupted" in out.stdout
    assert "Messages:  12" in out.stdout
    assert "[ERR] bash c1: ls out" in out.stdout
    as_json = json.loads(cli("--dir", str(d), "show", "crashed", "--json").stdout)
    assert as_json["sessionId"] == "crashed" and as_json["status"] == "interrupted"


def test_show_running_names_lock_holder(snapshot_dir):
    s = SnapshotStore(snapshot_dir)
    s.save(new_record("live", "/p"), claim=True)
    out = cli("--dir", str(snapshot_dir), "show", "live")
    assert "Status:    running" in out.stdout
    assert f"pid {os.getpid()}" in out.stdout
    s.close()


@pytest.mark.parametrize(
    "args,code,message",
    [
        (["show", "nope"], 1, "no snapshot for session 'nope'"),
        (["show", "../etc"], 2, "session_id"),
        (["remove", "nope"], 1, "no snapshot"),
        (["cleanup", "--max-age", "7x"], 2, "invalid duration"),
        (["cleanup"], 2, "--max-age"),
        (["frobnicate"], 2, "invalid choice"),
        ([], 2, "usage"),
    ],
)
def test_errors_go_to_stderr_with_exit_code(populated, args, code, message):
    d, _ = populated
    out = cli("--dir", str(d), *args)
    assert out.returncode == code
    assert message in out.stderr
    assert out.stdout == ""


def test_cleanup_dry_run_then_real(populated):
    d, _ = populated
    out = cli("--dir", str(d), "cleanup", "--max-age", "90m", "--dry-run")
    assert out.returncode == 0
    assert out.stdout.splitlines()[0] == "Would remove 2 sessions:"
    assert (d / "crashed_session_snapshot.json").exists()
    out = cli("--dir", str(d), "cleanup", "--max-age", "150m", "--keep-incomplete", "--json")
    assert json.loads(out.stdout) == {"removedCount": 0, "sessionIds": [], "dryRun": False}
    out = cli("--dir", str(d), "cleanup", "--max-age", "90m")
    assert out.stdout.splitlines() == ["Removed 2 sessions:", "  crashed", "  other"]
    assert not (d / "crashed_session_snapshot.json").exists()


def test_remove(populated):
    d, _ = populated
    out = cli("--dir", str(d), "remove", "other")
    assert out.returncode == 0 and out.stdout.strip() == "Removed other"
    assert not (d / "other_session_snapshot.json").exists()


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
        "import sys, runpy; sys.argv=['opendev-snapshot','--dir',%r,'list','--json'];"
        "from opendev_snapshot import cli; rc = cli.main();"
        "heavy = sorted(m for m in ('pydantic','pygls','lsprotocol','IPython','cattrs') if m in sys.modules);"
        "print(heavy, file=sys.stderr)" % str(snapshot_dir)
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stderr.strip() == "[]"


def test_default_directory_from_home(tmp_path):
    out = cli("list", env={"HOME": str(tmp_path)})
    assert out.returncode == 0
    assert str(tmp_path / ".opendev" / "data" / "recovery") in out.stdout


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
