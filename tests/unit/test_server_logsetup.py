"""One logging setup: 0600 log files, no previews in logs, bodies cut to 200 characters."""

from __future__ import annotations

import json
import logging
import os
import stat
import sys

import pytest

from opendev_snapshot.logsetup import LogFileError, configure_logging, scrub

SECRET = "AKIA-very-secret-preview-text"


@pytest.fixture(autouse=True)
def restore_root_logger():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
        if h not in handlers:
            h.close()
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_log_file_is_0600_even_with_a_permissive_umask(tmp_path):
    path = tmp_path / "server.log"
    old = os.umask(0o000)
    try:
        configure_logging(str(path), verbose=False)
    finally:
        os.umask(old)
    logging.getLogger("t").warning("hello")
    assert mode(path) == 0o600
    assert "hello" in path.read_text()


@pytest.mark.parametrize("before, after", [(0o644, 0o600), (0o666, 0o600), (0o600, 0o600), (0o400, 0o400)])
def test_existing_log_file_is_never_widened(tmp_path, before, after):
    path = tmp_path / "server.log"
    path.write_text("earlier run\n")
    os.chmod(path, before)
    if before == 0o400 and os.geteuid() != 0:
        pytest.skip("writing a 0400 file needs root")
    configure_logging(str(path), verbose=False)
    logging.getLogger("t").warning("appended")
    assert mode(path) == after
    assert path.read_text().splitlines()[0] == "earlier run"  # appended, not truncated


@pytest.mark.parametrize("case", ["directory", "missing-parent", "empty"])
def test_bad_log_file_is_a_one_line_error(tmp_path, case):
    path = {"directory": str(tmp_path), "missing-parent": str(tmp_path / "no" / "such" / "x.log"), "empty": ""}[case]
    root = logging.getLogger()
    before = list(root.handlers)
    with pytest.raises(LogFileError) as info:
        configure_logging(path, verbose=True)
    assert "\n" not in str(info.value) and str(info.value)
    assert root.handlers == before  # nothing changed


def test_unwritable_log_file_is_a_one_line_error(tmp_path):
    if os.geteuid() == 0:
        target = "/sys/opendev-snapshot-test.log"  # sysfs refuses new files even to root
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        os.chmod(locked, 0o555)
        target = str(locked / "x.log")
    with pytest.raises(LogFileError) as info:
        configure_logging(target, verbose=False)
    assert str(info.value) == f"cannot open log file {target}: Permission denied"


def test_previews_never_reach_the_log_and_bodies_are_cut(tmp_path):
    path = tmp_path / "server.log"
    configure_logging(str(path), verbose=True)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "result": {"sessionId": "s", "lastToolResults": [
        {"toolName": "bash", "callId": "c", "outputPreview": SECRET + ' with "quotes" \\ and more', "success": True}]}})
    pygls_logger = logging.getLogger("pygls.protocol.json_rpc")
    pygls_logger.info("Sending data: %s", body)  # what pygls 2.1.1 logs for every message
    pygls_logger.debug("Received %s", {"output_preview": SECRET, "tool_name": "x" * 500})
    logging.getLogger("t").info("%s", "y" * 1000)
    try:
        raise ValueError(f"bad value {{'outputPreview': '{SECRET}'}}")
    except ValueError:
        logging.getLogger("t").exception("failed")
    text = path.read_text()
    assert SECRET not in text
    assert "<preview omitted>" in text
    lines = [line for line in text.splitlines() if " INFO " in line or " DEBUG " in line]
    assert len(lines) == 3
    for line in lines:
        message = line.split(": ", 1)[1]
        assert len(message) <= 200 + len("... (99999 more characters)")
    assert "more characters)" in lines[-1]


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"outputPreview": "s3cr3t"}', '{"outputPreview": "<preview omitted>"}'),
        ("{'output_preview': 's3cr3t', 'x': 1}", "{'output_preview': \"<preview omitted>\", 'x': 1}"),
        ('"outputPreview":"a\\"b"', '"outputPreview":"<preview omitted>"'),
        ('"outputPreview": "cut in the mid', '"outputPreview": "<preview omitted>"'),
        ("no previews here", "no previews here"),
    ],
    ids=["json", "repr", "escaped-quote", "unterminated", "none"],
)
def test_scrub(text, expected):
    assert scrub(text) == expected
