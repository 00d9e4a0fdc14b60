"""Liveness locks: an OS advisory lock on ``{id}_session_snapshot.lock``.

POSIX uses ``flock(2)`` (exclusive to hold, a non-blocking shared probe to
test, so probes never conflict with each other); Windows uses
``msvcrt.locking`` on the first byte. The OS drops the lock when its holder
dies, which is what turns a session from ``running`` into ``interrupted``.

Holders open the file read-write and probes read-only, so a watcher using
inotify's ``IN_CLOSE_WRITE`` sees a holder go away and never its own probes.
"""

from __future__ import annotations

import errno
import os
import time

from .entries import KIND_REASONS, open_regular

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt  # type: ignore[import-not-found]

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_BUSY = {errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK}

# Outcomes of probe()
ABSENT = "absent"
LOCKED = "locked"
UNLOCKED = "unlocked"
FOREIGN = "foreign"


class HeldLock:
    """An exclusive lock this process holds on one lock file."""

    __slots__ = ("fd", "path", "ino")

    def __init__(self, fd: int, path: str, ino: int) -> None:
        self.fd = fd
        self.path = path
        self.ino = ino

    def still_linked(self) -> bool:
        try:
            return os.stat(self.path, follow_symlinks=False).st_ino == self.ino
        except OSError:
            return False

    def release(self) -> None:
        if self.fd >= 0:
            try:
                os.close(self.fd)  # closing drops flock and msvcrt locks alike
            finally:
                self.fd = -1


def _hostname() -> str:
    try:
        return os.uname().nodename
    except AttributeError:  # pragma: no cover - Windows
        return os.environ.get("COMPUTERNAME", "unknown")


def holder_line() -> str:
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime())
    return f"pid={os.getpid()} host={_hostname()} started={started}\n"


def _try_lock(fd: int, shared: bool) -> bool:
    if fcntl is not None:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno in _BUSY:
                return False
            raise
    os.lseek(fd, 0, os.SEEK_SET)  # pragma: no cover - Windows
    try:  # pragma: no cover - Windows
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return True
    except OSError:  # pragma: no cover - Windows
        return False


def acquire(path: str, *, attempts: int = 50) -> HeldLock | None:
    """Take the exclusive lock, creating the file (0600) if needed.

    Returns None when another live process holds it. Retries briefly
    because a probe may hold a shared lock for a few microseconds, and
    re-opens when the file was unlinked between open and lock.
    """
    for attempt in range(attempts):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | _O_CLOEXEC | _O_NOFOLLOW, 0o600)
        try:
            if not _try_lock(fd, shared=False):
                os.close(fd)
                if attempt < 3:
                    time.sleep(0.001 * (attempt + 1))
                    continue
                return None
            st = os.fstat(fd)
            try:
                linked = os.stat(path, follow_symlinks=False).st_ino == st.st_ino
            except FileNotFoundError:
                linked = False
            if not linked:  # unlinked by a completer between our open and lock
                os.close(fd)
                continue
            if st.st_mode & 0o777 != 0o600 and hasattr(os, "fchmod"):
                os.fchmod(fd, 0o600)
            line = holder_line().encode("utf-8", "replace")
            os.ftruncate(fd, 0)
            os.pwrite(fd, line, 0) if hasattr(os, "pwrite") else os.write(fd, line)
            return HeldLock(fd, path, st.st_ino)
        except BaseException:
            try:
                os.close(fd)
            except OSError:
                pass
            raise
    return None


def probe(path: str) -> str:
    """Tell whether ``path`` is ABSENT, LOCKED (a live holder), UNLOCKED, or
    FOREIGN (not a regular file: a FIFO, socket, device, link or directory).

    Never creates the file and never opens anything but a regular file
    (:func:`.entries.open_regular`): opening a FIFO planted there would
    release a writer blocked on it. FOREIGN counts as no lock file.
    """
    fd, reason = open_regular(path)
    if fd is None:
        if reason is None:
            return ABSENT
        return FOREIGN if reason in KIND_REASONS else UNLOCKED  # unreadable: no live holder we can see
    try:
        if fcntl is None:  # pragma: no cover - Windows
            if _try_lock(fd, shared=False):
                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
                return UNLOCKED
            return LOCKED
        return UNLOCKED if _try_lock(fd, shared=True) else LOCKED
    finally:
        os.close(fd)


def read_holder(path: str) -> str | None:
    """The holder line written by the lock's owner, for display."""
    try:
        fd = os.open(path, os.O_RDONLY | _O_CLOEXEC | _O_NOFOLLOW | _O_NONBLOCK)
    except OSError:
        return None
    try:
        data = os.read(fd, 512)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data.decode("utf-8", "replace").strip() or None


def remove_if_unlocked(path: str) -> bool:
    """Delete a lock file nobody holds (taking the lock while unlinking)."""
    try:
        fd = os.open(path, os.O_RDONLY | _O_CLOEXEC | _O_NOFOLLOW | _O_NONBLOCK)
    except OSError:
        return False
    try:
        if not _try_lock(fd, shared=False):
            return False
        try:
            if os.stat(path, follow_symlinks=False).st_ino != os.fstat(fd).st_ino:
                return False
            os.unlink(path)
            return True
        except FileNotFoundError:
            return False
    finally:
        os.close(fd)
