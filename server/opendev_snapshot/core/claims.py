"""The sessions this store holds: claim, release, and the lock file's fate.

A claim is the liveness lock (:mod:`.liveness`) with this store's holder
text written into the lock file. Callers hold the session's update lock
(:mod:`.serial`) around a claim, so a claim never meets a removal or a
cleanup half-way through. Releasing keeps the lock file (the session then
reads ``interrupted``); completing or removing deletes it. Something that
is not a regular file at the lock path (a FIFO, a link, a directory) is
never opened, followed or deleted: a claim refuses with a
:class:`StorageError` saying what is there.
"""

from __future__ import annotations

import os
import stat
import time

from . import liveness
from .errors import StorageError
from .holder import holder_text
from .paths import LOCK_SUFFIX

from ._log import logger


class Claims:
    """The liveness locks one store holds, by session id."""

    def __init__(self, directory: str, holder_info: dict) -> None:
        self._dir = directory
        self.holder_info = holder_info
        self._held: dict[str, liveness.HeldLock] = {}
        self._started: dict[str, int] = {}  # session id -> startedMs its lock text says

    def lock_path(self, session_id: str) -> str:
        return os.path.join(self._dir, session_id + LOCK_SUFFIX)

    def claim(self, session_id: str) -> bool:
        """Hold the lock (True), or False when another live process does."""
        held = self._held.get(session_id)
        if held is not None and held.still_linked():
            return True
        if held is not None:  # lost: unlinked by a completer or a forced removal, or a fork
            held.release()
            del self._held[session_id]
        path = self.lock_path(session_id)
        started = time.time_ns() // 1_000_000
        try:
            lock = liveness.acquire(path, holder_text(self.holder_info, started_ms=started))
        except liveness.NotALockFile as exc:
            raise StorageError(
                f"cannot claim session {session_id!r}: its lock path holds no lock file ({exc.reason}); "
                "remove what is there to claim the session:",
                path,
            ) from None
        except OSError as exc:
            raise StorageError("cannot lock session", path, exc) from exc
        if lock is None:
            return False
        self._held[session_id] = lock
        self._started[session_id] = started
        return True

    def set_holder_info(self, info: dict) -> list:
        """Use ``info`` from now on, and rewrite the text of every lock held, in place.

        Nothing is written when ``info`` is what the locks already say. The
        locks stay held (:func:`.liveness.rewrite`); each keeps its ``startedMs``.
        Returns the session ids whose lock text was rewritten.
        """
        info = dict(info)
        if info == self.holder_info:
            return []
        self.holder_info = info
        rewritten = []
        for session_id, lock in sorted(self._held.items()):
            text = holder_text(info, started_ms=self._started.get(session_id))
            try:
                if liveness.rewrite(lock, text):
                    rewritten.append(session_id)
            except OSError as exc:  # the text is for display: a failed rewrite never costs the lock
                logger(__name__).warning("cannot rewrite lock file %s: %s", lock.path, exc)
        return rewritten

    def release(self, session_id: str) -> bool:
        held = self._held.pop(session_id, None)
        self._started.pop(session_id, None)
        if held is None:
            return False
        held.release()
        return True

    def release_all(self) -> None:
        for session_id in list(self._held):
            self.release(session_id)

    def held(self) -> list:
        return sorted(sid for sid, lock in self._held.items() if lock.fd >= 0)

    def holds(self, session_id: str) -> bool:
        lock = self._held.get(session_id)
        return lock is not None and lock.still_linked()

    def drop(self, session_id: str, *, only_if_unlocked: bool = False) -> None:
        """Release our claim and delete the lock file (completing, removing).

        Without a claim of ours the file is deleted as well, unless
        ``only_if_unlocked`` (then only when nobody holds it); something
        that is not a regular file there is no lock file: left alone.
        """
        path = self.lock_path(session_id)
        held = self._held.pop(session_id, None)
        self._started.pop(session_id, None)
        try:
            if held is not None:
                if held.still_linked():
                    os.unlink(path)
            elif only_if_unlocked:
                liveness.remove_if_unlocked(path)
            elif stat.S_ISREG(os.lstat(path).st_mode):
                os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            logger(__name__).warning("cannot remove lock file %s: %s", path, exc)
        finally:
            if held is not None:
                held.release()

    def forget_after_fork(self) -> None:
        """In a forked child: the fds are closed already; nothing is held."""
        self._held.clear()
        self._started.clear()
