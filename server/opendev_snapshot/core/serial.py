"""The per-session update lock: read-modify-write serialised across processes.

Every write of a session (``save``, ``update`` and so ``record_tool_result``
and ``mark_completed``, ``remove``, ``restore``, a claim, a cleanup's
removal) runs under this lock, so no acknowledged update is lost to a
concurrent read-modify-write in another process, and nobody claims a
session half-way through its removal.

It is an OFD byte-range lock (``fcntl.F_OFD_SETLK``, Linux) on one hidden
file, ``.opendev-update.lock``, at an offset hashed from the session id:

- the OS releases it when its holder dies, like the liveness lock;
- it never touches ``{id}_session_snapshot.lock``, so it does not disturb
  liveness (creating a lock file for a lock-less snapshot written by the
  Rust agent would wrongly flip it to ``interrupted``);
- OFD locks belong to the open file description, so two stores in one
  process exclude each other too, and closing another fd of the file
  drops nothing (unlike classic ``lockf`` locks);
- the file is opened for each hold and closed after it: nothing stays open
  for writing (a file system with a file open for writing cannot be
  remounted read-only), and a directory deleted and re-created is simply
  the new file next time;
- only a regular file is opened: a FIFO, link or directory there is never
  opened nor followed (a :class:`StorageError` says what is there).

Two bytes per id make a turnstile, so a process updating in a tight loop
cannot starve another: everyone takes the *gate* byte, then the *main*
byte, then lets the gate go; a waiter for the main byte holds the gate, so
a holder that comes back for more queues at the gate behind it. Waiting polls with a short backoff and gives
up with a :class:`StorageError` after ``timeout`` seconds (a stopped
process holding it), never a hang. Where OFD locks are missing, classic
``lockf`` byte-range locks are used (same semantics between processes).
"""

from __future__ import annotations

import errno
import hashlib
import os
import struct
import threading
import time

from .entries import open_or_create_regular
from .errors import StorageError
from .forksafe import close_tracked, open_tracked, set_owner

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: in-process serialisation only
    fcntl = None  # type: ignore[assignment]

UPDATE_LOCK_NAME = ".opendev-update.lock"
DEFAULT_TIMEOUT_S = 30.0
_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", None) if fcntl is not None else None
_BUSY = {errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK}


def offset_of(session_id: str) -> int:
    """The main byte of ``session_id`` (even; the gate byte follows it)."""
    digest = hashlib.blake2b(session_id.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 3) * 2  # < 2**62: any off_t holds it


_FLOCK = struct.Struct("@hhqqi4x")  # struct flock {short l_type, l_whence; off_t l_start, l_len; pid_t l_pid;} (LP64)


def _ofd(fd: int, kind: int, start: int, length: int = 1) -> bool:
    try:
        fcntl.fcntl(fd, _OFD_SETLK, _FLOCK.pack(kind, os.SEEK_SET, start, length, 0))
        return True
    except OSError as exc:
        if exc.errno in _BUSY:
            return False
        raise


def _try(fd: int, start: int, length: int = 1) -> bool:
    if _OFD_SETLK is not None:
        return _ofd(fd, fcntl.F_WRLCK, start, length)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, length, start)
        return True
    except OSError as exc:
        if exc.errno in _BUSY:
            return False
        raise


def _unlock(fd: int, start: int) -> None:
    if _OFD_SETLK is not None:
        _ofd(fd, fcntl.F_UNLCK, start)
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, start)


_offsets: dict = {}  # session id -> offset (a hash: computed once)


class _Hold:
    __slots__ = ("_locks", "_sid", "_fd", "_main")

    def __init__(self, locks: "UpdateLocks", session_id: str) -> None:
        self._locks, self._sid = locks, session_id

    def __enter__(self) -> "_Hold":
        self._fd, self._main = self._locks._enter(self._sid)
        return self

    def __exit__(self, *exc) -> None:
        self._locks._exit(self._sid, self._fd, self._main)


class UpdateLocks:
    """The update locks of one directory."""

    def __init__(self, directory: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.path = os.path.join(directory, UPDATE_LOCK_NAME)
        self.timeout = timeout
        self.fd = -1  # open while a hold is in force (one fd for this store's nested holds)
        self._local = threading.RLock()  # the OFD lock is shared by this store's threads
        self._depth: dict = {}

    def hold(self, session_id: str) -> "_Hold":
        """``with locks.hold(sid):`` holds ``sid``'s update lock (re-entrant)."""
        return _Hold(self, session_id)

    def _open(self) -> int:
        if self.fd < 0:
            try:
                fd, reason = open_or_create_regular(self.path, 0o600, opener=open_tracked)
            except OSError as exc:
                raise StorageError("cannot open the update lock", self.path, exc) from exc
            if fd is None:
                raise StorageError(f"the update lock is not a regular file ({reason}); remove it:", self.path)
            set_owner(fd, self)
            self.fd = fd
        return self.fd

    def _close_if_idle(self) -> None:
        if self.fd >= 0 and not self._depth:
            fd, self.fd = self.fd, -1
            close_tracked(fd)  # drops every lock taken through it

    def _acquire(self, session_id: str, main: int) -> int:
        deadline = time.monotonic() + self.timeout
        fd = self._open()
        try:
            if not _try(fd, main, 2):  # uncontended: gate and main in one call
                delay = 0.00005
                while not _try(fd, main + 1):  # the gate: next in line
                    delay = self._pause(session_id, deadline, delay)
                try:
                    while not _try(fd, main):
                        delay = self._pause(session_id, deadline, delay)
                except BaseException:
                    _unlock(fd, main + 1)
                    raise
            _unlock(fd, main + 1)
            return fd
        except StorageError:
            self._close_if_idle()
            raise
        except OSError as exc:
            self._close_if_idle()
            raise StorageError("cannot lock the update lock", self.path, exc) from exc

    def _pause(self, session_id: str, deadline: float, delay: float) -> float:
        if time.monotonic() > deadline:
            raise StorageError(
                f"timed out after {self.timeout:g} s waiting for another process's update of session "
                f"{session_id!r} (is a process holding it stopped?); lock file",
                self.path,
            )
        time.sleep(delay)
        return min(delay * 2, 0.002)

    def _enter(self, session_id: str) -> tuple:
        self._local.acquire()
        try:
            depth = self._depth.get(session_id)
            if depth:
                self._depth[session_id] = depth + 1
                return -1, 0
            main = _offsets.get(session_id)
            if main is None:
                if len(_offsets) > 10_000:
                    _offsets.clear()
                main = _offsets[session_id] = offset_of(session_id)
            fd = self._acquire(session_id, main) if fcntl is not None else -1
            self._depth[session_id] = 1
            return fd, main
        except BaseException:
            self._local.release()
            raise

    def _exit(self, session_id: str, fd: int, main: int) -> None:
        try:
            depth = self._depth[session_id] - 1
            if depth:
                self._depth[session_id] = depth
            else:
                del self._depth[session_id]
                if fd >= 0 and fd == self.fd:  # else: closed by a fork, nothing to unlock
                    if self._depth:
                        _unlock(fd, main)  # other sessions' holds go on through this fd
                    else:
                        self._close_if_idle()
        finally:
            self._local.release()

    def close(self) -> None:
        with self._local:
            self._depth.clear()
            self._close_if_idle()

    def forget_after_fork(self) -> None:
        """In a forked child: the fd is closed already; nothing is held."""
        self.fd = -1
        self._local = threading.RLock()
        self._depth.clear()
