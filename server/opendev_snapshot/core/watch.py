"""Directory change feed (Linux inotify through ctypes), used for warm listings.

A long-lived process asks the kernel which names changed instead of
re-statting every file: a listing with no pending event costs one
non-blocking ``read``. Events are queued before the modifying syscall
returns, so an empty queue proves nothing changed. On overflow, or where
inotify is missing, callers fall back to a full stat scan.
"""

from __future__ import annotations

import os
import struct
import sys


IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

MASK = (
    IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO
    | IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR
)
_HEADER = struct.Struct("iIII")

OVERFLOW = object()  # sentinel in the result of drain(): rescan everything


class DirWatcher:
    """Watch one directory; ``drain()`` returns the names that changed."""

    def __init__(self, fd: int, wd: int, libc) -> None:
        self._fd = fd
        self._wd = wd
        self._libc = libc
        self.alive = True

    @classmethod
    def create(cls, directory: str) -> "DirWatcher | None":
        if not sys.platform.startswith("linux"):
            return None
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
            if fd < 0:
                return None
            wd = libc.inotify_add_watch(fd, os.fsencode(directory), MASK)
            if wd < 0:
                os.close(fd)
                return None
        except (OSError, AttributeError, ImportError):
            return None
        return cls(fd, wd, libc)

    def fileno(self) -> int:
        return self._fd

    def drain(self) -> set | object:
        """Names changed since the last call, or OVERFLOW when unknown."""
        if not self.alive:
            return OVERFLOW
        names: set = set()
        overflow = False
        while True:
            try:
                buf = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                break
            except OSError:
                self.close()
                return OVERFLOW
            if not buf:
                break
            pos = 0
            while pos + 16 <= len(buf):
                _wd, mask, _cookie, length = _HEADER.unpack_from(buf, pos)
                pos += 16
                name = buf[pos : pos + length].rstrip(b"\0")
                pos += length
                if mask & (IN_Q_OVERFLOW):
                    overflow = True
                elif mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED):
                    overflow = True
                    self.alive = False
                elif name:
                    names.add(os.fsdecode(name))
        if overflow:
            return OVERFLOW
        return names

    def close(self) -> None:
        self.alive = False
        if self._fd >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = -1
