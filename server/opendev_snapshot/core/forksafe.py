"""File descriptors a forked child must not keep: lock fds.

Every lock fd the core opens (liveness ``flock`` locks, the update lock)
is registered here; a child made by ``fork()`` closes them at once
(``os.register_at_fork``), so a child of a lock holder (multiprocessing's
fork start method, a ``subprocess`` with a ``preexec_fn``, a bare
``os.fork``) never keeps a dead holder's session ``running`` or an update
lock taken. Closing, not unlocking: the locks belong to the open file
description, which the parent still has, so the parent keeps them. The
fds are ``O_CLOEXEC`` as well, for ``exec``. Owners registered with an fd
get ``owner.fd = -1`` in the child, so they never close a reused number.
"""

from __future__ import annotations

import os
import threading
import weakref

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)

_registry_lock = threading.Lock()
_tracked: dict = {}  # fd -> the object whose ``fd`` attribute it is (or None)
_forgetters: "weakref.WeakSet" = weakref.WeakSet()


def open_tracked(path: str, flags: int, mode: int = 0o600) -> int:
    """``os.open`` (close-on-exec) whose fd a forked child closes at once."""
    with _registry_lock:
        fd = os.open(path, flags | _O_CLOEXEC, mode)
        _tracked[fd] = None
    return fd


def set_owner(fd: int, owner) -> None:
    """``owner.fd`` becomes -1 in a forked child."""
    with _registry_lock:
        if fd in _tracked:
            _tracked[fd] = owner


def close_tracked(fd: int) -> None:
    with _registry_lock:
        _tracked.pop(fd, None)
        os.close(fd)


def forget_in_child(obj) -> None:
    """Call ``obj.forget_after_fork()`` in every forked child, after the fds are closed."""
    _forgetters.add(obj)


def _before_fork() -> None:
    _registry_lock.acquire()  # no fd is half-registered while we fork


def _after_fork_in_parent() -> None:
    _registry_lock.release()


def _after_fork_in_child() -> None:
    global _registry_lock
    for fd, owner in _tracked.items():
        try:
            os.close(fd)
        except OSError:
            pass
        if owner is not None:
            owner.fd = -1
    _tracked.clear()
    _registry_lock = threading.Lock()
    for obj in list(_forgetters):
        try:
            obj.forget_after_fork()
        except Exception:  # noqa: BLE001 - a child must come up whatever happens here
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
    )
