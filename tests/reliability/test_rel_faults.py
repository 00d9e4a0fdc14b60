"""Faults: a file size limit, a full disk, a read-only directory, a deleted directory.

Each goes through a real server: the failing request gets ``-32002`` with
a message that names the cause, the previous snapshot is byte-for-byte
intact (no temporary file left behind either), and the server is alive and
saves again once the fault is gone. The tmpfs and read-only cases need
root (``mount``); they are skipped elsewhere.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import shutil
import signal
import stat
import subprocess

import pytest

from opendev_snapshot.core import SnapshotStore, new_record

from reliability.framed import Server, cli, cli_list

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(120)]

SUFFIX = "_session_snapshot.json"


def snap(sid: str, count: int, size: int = 10) -> dict:
    return {
        "sessionId": sid,
        "projectDir": "/work/faults",
        "messageCount": count,
        "lastToolResults": [{"toolName": "t", "callId": str(count), "outputPreview": "x" * size, "success": True}],
    }


def storage_failure(reply: dict, *causes: str) -> str:
    assert "error" in reply, f"expected a storage failure, got {reply}"
    error = reply["error"]
    assert error["code"] == -32002, error
    message = error["message"].lower()
    assert any(c.lower() in message for c in causes), f"the message does not name the cause ({causes}): {error['message']}"
    return error["message"]


def temps(directory) -> list:
    return [n for n in os.listdir(directory) if n.endswith(".tmp")]


def assert_intact(server: Server, directory, sid: str, raw: bytes, count: int) -> None:
    assert (directory / f"{sid}{SUFFIX}").read_bytes() == raw, "the previous snapshot changed"
    loaded = server.call("opendev/snapshot.load", {"sessionId": sid})
    assert loaded["messageCount"] == count, loaded
    assert temps(directory) == [], f"temporary files left behind: {temps(directory)}"


def can_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


@contextlib.contextmanager
def tmpfs(mountpoint, size: str):
    mountpoint.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mountpoint)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        if subprocess.run(["umount", str(mountpoint)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


def limit_file_size(limit: int):
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def test_file_size_limit_during_a_save(tmp_path):
    directory = tmp_path / "snaps"
    with Server(directory, preexec_fn=limit_file_size(64 * 1024), stderr_path=tmp_path / "server.log") as server:
        server.call("opendev/snapshot.save", snap("fsize", 1))
        raw = (directory / f"fsize{SUFFIX}").read_bytes()
        reply = server.request("opendev/snapshot.save", snap("fsize", 2, size=200_000))
        storage_failure(reply, "file too large", "efbig", "size limit")
        assert_intact(server, directory, "fsize", raw, 1)
        # the same through recordToolResult (a read-modify-write)
        reply = server.request("opendev/snapshot.recordToolResult", {
            "sessionId": "fsize", "toolName": "t", "callId": "big", "outputPreview": "y" * 200_000, "success": True,
            "maxEntries": 5})
        # previewChars (500) cuts the preview, so this one fits: it must succeed
        assert "result" in reply, reply
        raw = (directory / f"fsize{SUFFIX}").read_bytes()
        server.assert_alive()
        server.call("opendev/snapshot.save", snap("fsize-2", 3))  # small saves still work
        assert_intact(server, directory, "fsize", raw, 1)


def test_disk_full_during_a_save(tmp_path):
    if not can_mount():
        pytest.skip("needs root to mount a small tmpfs")
    mount = tmp_path / "small"
    server = None
    with tmpfs(mount, "64k"):
        directory = mount / "snaps"
        try:
            server = Server(directory, stderr_path=tmp_path / "server.log")
            server.call("opendev/snapshot.save", snap("full", 1))
            raw = (directory / f"full{SUFFIX}").read_bytes()
            # a save bigger than the whole disk
            storage_failure(server.request("opendev/snapshot.save", snap("full", 2, size=300_000)),
                            "no space left", "enospc", "disk full")
            assert_intact(server, directory, "full", raw, 1)
            # a disk filled by someone else: even a small save fails
            filler = mount / "filler"
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, b"\0" * 4096)
            finally:
                os.close(fd)
            storage_failure(server.request("opendev/snapshot.save", snap("full", 3, size=20_000)),
                            "no space left", "enospc", "disk full")
            storage_failure(server.request("opendev/snapshot.save", snap("other", 3, size=20_000)),
                            "no space left", "enospc", "disk full")
            assert_intact(server, directory, "full", raw, 1)
            listing = server.call("opendev/snapshot.listIncomplete", {})
            assert [s["sessionId"] for s in listing["sessions"]] == ["full"] and listing["skipped"] == [], listing
            proc = cli(directory, "list", "--json")  # the CLI reads a full disk fine
            assert proc.returncode == 0, proc.stderr
            filler.unlink()
            server.call("opendev/snapshot.save", snap("full", 4, size=20_000))
            assert server.call("opendev/snapshot.load", {"sessionId": "full"})["messageCount"] == 4
        finally:
            if server is not None:
                server.kill()


def test_read_only_directory(tmp_path):
    if not can_mount():
        pytest.skip("needs root to remount a tmpfs read-only")
    mount = tmp_path / "ro"
    server = None
    with tmpfs(mount, "1m"):
        directory = mount / "snaps"
        try:
            server = Server(directory, stderr_path=tmp_path / "server.log")
            # claim: false, so no lock file stays open for writing (a mount
            # with files open for writing cannot be remounted read-only)
            server.call("opendev/snapshot.save", {**snap("ro", 1), "claim": False})
            server.call("opendev/snapshot.save", {**snap("ro-done", 1), "claim": False})
            raw = (directory / f"ro{SUFFIX}").read_bytes()
            remount = subprocess.run(["mount", "-o", "remount,ro", str(mount)], capture_output=True, text=True)
            assert remount.returncode == 0, remount.stderr
            causes = ("read-only", "erofs")
            storage_failure(server.request("opendev/snapshot.save", snap("ro", 2)), *causes)
            storage_failure(server.request("opendev/snapshot.save", snap("new-session", 1)), *causes)
            storage_failure(server.request("opendev/snapshot.markCompleted", {"sessionId": "ro"}), *causes)
            storage_failure(server.request("opendev/snapshot.recordToolResult", {
                "sessionId": "ro", "toolName": "t", "callId": "c", "outputPreview": "p", "success": True}), *causes)
            storage_failure(server.request("opendev/snapshot.remove", {"sessionId": "ro-done"}), *causes)
            assert_intact(server, directory, "ro", raw, 1)
            # reading still works, through the server and the CLI
            listing = server.call("opendev/snapshot.listIncomplete", {})
            assert {s["sessionId"] for s in listing["sessions"]} == {"ro", "ro-done"}, listing
            assert cli_list(directory)["skipped"] == []
            proc = cli(directory, "remove", "ro-done")
            assert proc.returncode == 1 and "read-only" in proc.stderr.lower(), (proc.returncode, proc.stderr)
            subprocess.run(["mount", "-o", "remount,rw", str(mount)], check=True)
            server.call("opendev/snapshot.save", snap("ro", 2))
            assert server.call("opendev/snapshot.load", {"sessionId": "ro"})["messageCount"] == 2
        finally:
            if server is not None:
                server.kill()


def test_directory_deleted_under_a_running_server(tmp_path):
    directory = tmp_path / "parent" / "snaps"
    with Server(directory, stderr_path=tmp_path / "server.log") as server:
        server.call("opendev/snapshot.save", snap("gone", 1))
        assert [s["sessionId"] for s in server.call("opendev/snapshot.listIncomplete", {})["sessions"]] == ["gone"]
        shutil.rmtree(tmp_path / "parent")

        # reads answer: nothing there, nothing skipped, no error
        assert server.call("opendev/snapshot.listIncomplete", {}) == {"sessions": [], "skipped": []}
        assert server.call("opendev/snapshot.load", {"sessionId": "gone"}) is None
        assert server.call("opendev/snapshot.remove", {"sessionId": "gone"}) == {"removed": False}
        reply = server.request("opendev/snapshot.markCompleted", {"sessionId": "gone"})
        assert reply.get("error", {}).get("code") == -32001, reply
        assert server.call("opendev/snapshot.cleanup", {"maxAgeMs": 0})["removedCount"] == 0

        # a save recreates the directory (mode 0700) and is durable
        server.call("opendev/snapshot.save", snap("gone", 2))
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
        assert cli_list(directory)["sessions"][0]["messageCount"] == 2

        # another process recreates it and writes: the server sees that too
        shutil.rmtree(tmp_path / "parent")
        with SnapshotStore(directory, use_index=False) as other:
            other.save(new_record("from-elsewhere", "/work/faults"))
        ids = [s["sessionId"] for s in server.call("opendev/snapshot.listIncomplete", {})["sessions"]]
        assert ids == ["from-elsewhere"], ids

        # replaced by a regular file: a storage failure naming it
        shutil.rmtree(tmp_path / "parent")
        (tmp_path / "parent").mkdir()
        directory.write_text("not a directory")
        msg = storage_failure(server.request("opendev/snapshot.save", snap("gone", 3)), "not a directory", "enotdir")
        assert str(directory) in msg or "snapshot directory" in msg.lower(), msg
        reply = server.request("opendev/snapshot.listIncomplete", {})
        assert "result" in reply or reply["error"]["code"] == -32002, reply
        assert directory.read_text() == "not a directory"

        # and back to normal
        directory.unlink()
        server.call("opendev/snapshot.save", snap("gone", 4))
        assert server.call("opendev/snapshot.load", {"sessionId": "gone"})["messageCount"] == 4
        server.assert_alive()
