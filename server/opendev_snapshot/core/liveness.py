"""Liveness locks: an OS advisory lock on ``{id}_session_snapshot.lock``.

POSIX uses ``flock(2)`` (exclusive to hold, a non-blocking shared probe to
test, so probes never conflict with each other); Windows uses
``msvcrt.locking`` on the first byte. The OS drops the lock when its holder
dies, which is what turns a session from ``running`` into ``interrupted``.

Holders open the file read-write and probes read-only, so a watcher using
inotify's ``IN_CLOSE_WRITE`` sees a holder go away and never its own probes.

The lock file's text (:mod:`.holder`) is written by a claim, and rewritten
in place by its holder only (:func:`rewrite`, the lock kept): a removal or
cleanup that takes the lock for an instant (``acquire(path, None)``) leaves
it as it is. Lock fds are closed in forked children
(:mod:`.forksafe`).
"""

from __future__ import annotations

import errno
import os
import time

from . import entries

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt  # type: ignore[import-not-found]

from .forksafe import close_tracked, open_tracked, set_owner
from .holder import MAX_HOLDER_BYTES, parse_holder

_BUSY = {errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK}

# Outcomes of probe()
ABSENT = "absent"
LOCKED = "locked"
UNLOCKED = "unlocked"
FOREIGN = "foreign"


class HeldLock:
    """An exclusive lock this process holds on one lock file."""

    __slots__ = ("fd", "path", "ino", "__weakref__")

    def __init__(self, fd: int, path: str, ino: int) -> None:
        self.fd = fd
        self.path = path
        self.ino = ino

    def still_linked(self) -> bool:
        """Held (not lost to a fork) and still the file at ``path``."""
        if self.fd < 0:
            return False
        try:
            return os.stat(self.path, follow_symlinks=False).st_ino == self.ino
        except OSError:
            return False

    def release(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            close_tracked(fd)  # closing drops flock and msvcrt locks alike


# -------------------------------------------------------------- locking
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


class NotALockFile(Exception):
    """Something that is not a regular file is at a lock path (never opened nor followed)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def acquire(path: str, text: bytes | None, *, attempts: int = 50) -> HeldLock | None:
    """Take the exclusive lock, creating the file (0600) if needed.

    ``text`` (see :func:`holder_text`) replaces the file's content once the
    lock is ours; ``None`` leaves it alone (a transient lock taken by a
    removal). Returns None when another live process holds it. Retries
    briefly because a probe may hold a shared lock for a few microseconds,
    and re-opens when the file was unlinked between open and lock.
    :class:`NotALockFile` when a FIFO, socket, device, link or directory is
    at ``path``: it is never opened, followed or changed.
    """
    for attempt in range(attempts):
        fd, reason = entries.open_or_create_regular(path, 0o600, opener=open_tracked)
        if fd is None:
            raise NotALockFile(path, reason)
        try:
            if not _try_lock(fd, shared=False):
                close_tracked(fd)
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
                close_tracked(fd)
                continue
            if st.st_mode & 0o777 != 0o600 and hasattr(os, "fchmod"):
                os.fchmod(fd, 0o600)
            if text is not None:
                _write_text(fd, text)
            held = HeldLock(fd, path, st.st_ino)
            set_owner(fd, held)
            return held
        except BaseException:
            try:
                close_tracked(fd)
            except OSError:
                pass
            raise
    return None


def _write_text(fd: int, text: bytes) -> None:
    """Replace the file's content with ``text`` through ``fd`` (new text first, then the cut)."""
    if hasattr(os, "pwrite"):
        os.pwrite(fd, text, 0)
    else:  # pragma: no cover - Windows
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, text)
    os.ftruncate(fd, len(text))


def rewrite(lock: HeldLock, text: bytes) -> bool:
    """Replace the text of a lock this process holds, in place: the lock stays held.

    The file is never reopened nor unlocked (a reopen and close would drop a
    POSIX lock). False, nothing written, when the lock is no longer ours or
    no longer the file at its path (lost to a fork, unlinked by a completion).
    """
    if not lock.still_linked():
        return False
    _write_text(lock.fd, text)
    return True


def _open(path: str) -> tuple:
    """``(fd, reason)`` of :func:`.entries.open_regular`, the fd fork-tracked."""
    return entries.open_regular(path, opener=open_tracked)


def _no_fd_state(reason: str | None) -> str:
    if reason is None:
        return ABSENT
    return FOREIGN if reason in entries.KIND_REASONS else UNLOCKED  # unreadable: no live holder we can see


def probe(path: str) -> str:
    """Tell whether ``path`` is ABSENT, LOCKED (a live holder), UNLOCKED, or
    FOREIGN (not a regular file: a FIFO, socket, device, link or directory).

    Never creates the file and never opens anything but a regular file
    (:func:`.entries.open_regular`): opening a FIFO planted there would
    release a writer blocked on it. FOREIGN counts as no lock file.
    """
    fd, reason = _open(path)
    if fd is None:
        return _no_fd_state(reason)
    try:
        if fcntl is None:  # pragma: no cover - Windows
            if _try_lock(fd, shared=False):
                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
                return UNLOCKED
            return LOCKED
        return UNLOCKED if _try_lock(fd, shared=True) else LOCKED
    finally:
        close_tracked(fd)


def open_regular(path: str) -> int | None:
    """A read-only fd on ``path`` when it is a regular file (never a link,
    FIFO, socket or device: those are not even opened), fork-tracked."""
    return _open(path)[0]


def read_text(path: str) -> bytes | None:
    """A lock file's text (regular files only), or None."""
    fd = open_regular(path)
    if fd is None:
        return None
    try:
        return os.read(fd, MAX_HOLDER_BYTES)
    except OSError:
        return None
    finally:
        close_tracked(fd)


def read_info(path: str) -> dict | None:
    """The holder object in a lock file (live or not), or None."""
    text = read_text(path)
    return parse_holder(text) if text else None


def inspect(path: str) -> tuple[str, dict | None]:
    """``(probe outcome, holder object)`` with one open of the lock file.

    Anything at the lock path that is not a regular file is not opened
    and counts as no lock file (``FOREIGN``, as :func:`probe` says).
    """
    fd, reason = _open(path)
    if fd is None:
        return _no_fd_state(reason), None
    try:
        if fcntl is None:  # pragma: no cover - Windows
            state = LOCKED
            if _try_lock(fd, shared=False):
                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
                state = UNLOCKED
        else:
            state = UNLOCKED if _try_lock(fd, shared=True) else LOCKED
        try:
            info = parse_holder(os.pread(fd, MAX_HOLDER_BYTES, 0))
        except OSError:
            info = None
        return state, info
    finally:
        close_tracked(fd)


def remove_if_unlocked(path: str) -> bool:
    """Delete a lock file nobody holds (taking the lock while unlinking)."""
    fd = open_regular(path)
    if fd is None:
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
        close_tracked(fd)
