"""Paths and small helpers shared by the test suites (importable as ``helpers``).

Everything a test needs lives inside the repository: the golden fixtures
are vendored in ``tests/fixtures/`` (see its README), so the suite runs in
a bare clone with nothing beside it.
"""

from __future__ import annotations

import ctypes
import os
import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"

HOUR = 3_600_000
SNAP = "_session_snapshot.json"
LOCK = "_session_snapshot.lock"


def aged_record(sid: str, *, project: str = "/proj", age_ms: int = HOUR, **extra) -> dict:
    """A valid record of ``sid`` saved ``age_ms`` ago (an hour: a lock-less
    one reads interrupted), with ``extra`` fields set."""
    from opendev_snapshot.core.records import new_record, now_ms

    record = new_record(sid, project)
    record["snapshot_timestamp_ms"] = now_ms() - age_ms
    record.update(extra)
    return record


def listed_ids(result) -> list:
    """The session ids of a store's ``ListResult``, in its order."""
    return [s["session_id"] for s in result.sessions]

IN_OPEN = 0x20
IN_CLOSE = 0x08 | 0x10


class OpenSpy:
    """Every open and close of a file in a directory, from the kernel (inotify)."""

    def __init__(self, directory) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self.fd >= 0
        assert self.libc.inotify_add_watch(self.fd, os.fsencode(directory), IN_OPEN | IN_CLOSE) >= 0

    def touched(self) -> set:
        names = set()
        while True:
            try:
                buf = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return names
            pos = 0
            while pos < len(buf):
                _wd, _mask, _cookie, length = struct.unpack_from("iIII", buf, pos)
                names.add(os.fsdecode(buf[pos + 16 : pos + 16 + length].rstrip(b"\0")))
                pos += 16 + length

    def close(self) -> None:
        os.close(self.fd)
