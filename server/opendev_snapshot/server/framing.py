"""Framing helpers with no heavy imports (the fast start uses them before pygls loads)."""

from __future__ import annotations

import os
import threading


class FdWriter:
    """Blocking writes of whole frames to a file descriptor (stdout)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        if self.fd < 0:
            raise BrokenPipeError("output closed")
        with self._lock:
            view = memoryview(data)
            while view:
                try:
                    view = view[os.write(self.fd, view) :]
                except BlockingIOError:  # someone made it non-blocking: wait for room
                    import select

                    select.select([], [self.fd], [], 1.0)

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass



def _content_length(head: bytes):
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            try:
                n = int(value.strip())
            except ValueError:
                return None
            return n if n >= 0 else None
    return None


