"""Noticing a lock holder's death when all inotify says is ``IN_CLOSE_NOWRITE``.

A holder that opened its lock file read-only (``flock`` works on any
descriptor) dies with nothing but an ``IN_CLOSE_NOWRITE`` on its lock
file. Every reader causes that event too: our own liveness probes, other
servers' probes, anyone reading the holder text. Re-probing the usual way
(open, ``flock``, close) would cause another one, so two servers watching
one directory would wake each other forever.

So this process keeps a read-only handle open on the lock file of each
session it has seen ``running`` (a lock it knows is held), watches that
very inode for ``IN_CLOSE_NOWRITE`` (:meth:`.watch.DirWatcher.watch_file`
on ``/proc/self/fd`` of the handle), and answers "is it still locked?"
with a non-blocking shared ``flock`` on the handle and an unlock: no open,
no close, no inotify event, nothing for anyone to react to. Other lock
files and snapshot files are not watched for ``IN_CLOSE_NOWRITE`` at all
(a reader closing them is never a change). Any other event on a lock file
(written, created, deleted, renamed) drops its handle: the file is no
longer the one the handle holds.

Handles are opened with :func:`.entries.open_regular` (never a FIFO),
close-on-exec, closed in a forked child (:mod:`.forksafe`), and capped at
:data:`MAX_TRACKED`; a session beyond the cap is still seen by the safety
check (10 s).
"""

from __future__ import annotations

import errno
import os

from .entries import open_regular
from .forksafe import close_tracked, forget_in_child, open_tracked

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no inotify there either
    fcntl = None  # type: ignore[assignment]

MAX_TRACKED = 256
_BUSY = {errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK}

LOCKED = "locked"
UNLOCKED = "unlocked"
ABSENT = "absent"
FULL = "full"  # not tracked: the cap is reached


def _locked(fd: int) -> bool:
    """True while another open file description holds an exclusive lock."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in _BUSY:
            return True
        return False  # a descriptor we cannot lock holds no one's lock
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


class LockTracker:
    """Read-only handles on the lock files of sessions known ``running``."""

    def __init__(self, directory: str) -> None:
        self._dir = directory
        self._fds: dict = {}  # lock file name -> (fd, st_ino, watch descriptor)
        self.watcher = None  # the DirWatcher whose feed reports the tracked files' closes
        forget_in_child(self)

    def __len__(self) -> int:
        return len(self._fds)

    def __contains__(self, name: str) -> bool:
        return name in self._fds

    def track(self, name: str) -> str:
        """Start tracking ``name`` if it is locked now; returns what it is.

        The probe is repeated once the watch is in place, so a holder that
        went away in between is not missed.
        """
        if name in self._fds:
            return LOCKED
        if fcntl is None or self.watcher is None or len(self._fds) >= MAX_TRACKED:
            return FULL
        fd, _reason = open_regular(os.path.join(self._dir, name), opener=open_tracked)
        if fd is None:
            return ABSENT
        try:
            if not _locked(fd):
                return UNLOCKED
            wd = self.watcher.watch_file(f"/proc/self/fd/{fd}", name)
            if wd is None:
                return FULL  # cannot be watched: the safety check will see it
            self._fds[name] = (fd, os.fstat(fd).st_ino, wd)
            fd = -1
        finally:
            if fd >= 0:
                close_tracked(fd)
        return LOCKED if self.still_locked(name) else UNLOCKED

    def still_locked(self, name: str) -> bool | None:
        """None when ``name`` is not tracked; else whether it is still locked
        (a lock found released is no longer tracked)."""
        entry = self._fds.get(name)
        if entry is None:
            return None
        if _locked(entry[0]):
            return True
        self.forget(name)
        return False

    def recheck(self) -> set:
        """Names whose lock was released or whose file was replaced (untracked)."""
        gone = set()
        for name, (fd, ino, _wd) in list(self._fds.items()):
            try:
                same = os.lstat(os.path.join(self._dir, name)).st_ino == ino
            except OSError:
                same = False
            if not same or not _locked(fd):
                self.forget(name)
                gone.add(name)
        return gone

    def forget(self, name: str) -> None:
        entry = self._fds.pop(name, None)
        if entry is not None:
            if self.watcher is not None:
                self.watcher.unwatch_file(entry[2])
            try:
                close_tracked(entry[0])
            except OSError:
                pass

    def close(self) -> None:
        for name in list(self._fds):
            self.forget(name)

    def forget_after_fork(self) -> None:
        """In a forked child: :mod:`.forksafe` closed the handles already."""
        self._fds = {}
