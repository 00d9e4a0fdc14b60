"""The one durable write: every file this project puts in the directory.

A unique hidden temporary file in the same directory (its name never ends
in ``.json``, so neither we nor the seed ever list it), written whole,
fsynced, renamed over the target, then the directory fsynced: a reader
sees the old file or the new one, never half of one, and once this
returns the new one survives a power cut.
"""

from __future__ import annotations

import itertools
import os
import stat

from .errors import StorageError

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


class _TempNames:
    """Per process: its pid and 6 random bytes, read once (again in a forked
    child), and a counter, so a temporary name costs no system call. The
    file is created with ``O_EXCL`` all the same."""

    def __init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        self.prefix = f"{os.getpid()}-{os.urandom(6).hex()}"
        self.counter = itertools.count()


_names = _TempNames()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_names.reseed)


def temp_name(name: str) -> str:
    """A unique hidden temporary name for ``name`` (ends in ``.tmp``)."""
    return f".{name}.{_names.prefix}-{next(_names.counter):x}.tmp"


def write_atomic(directory: str, name: str, data: bytes, *, what: str = "file", sync: bool = True) -> str:
    """Replace ``directory/name`` with ``data`` atomically; returns the path.

    ``what`` names the file in errors ("snapshot"); ``sync=False`` skips
    both fsyncs (for caches that may be lost).
    Raises :class:`StorageError` naming what failed; the temporary file is
    removed on failure and the previous file is left as it was.
    """
    path = os.path.join(directory, name)
    tmp = os.path.join(directory, temp_name(name))
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC | _O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise StorageError("cannot create temporary file in", directory, exc) from exc
    try:
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, 0o600)  # whatever the umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise StorageError(f"cannot write {what}", path, exc) from exc
    if sync:
        fsync_dir(directory)
    return path


def fsync_dir(directory: str) -> None:
    """Make renames and unlinks in ``directory`` durable."""
    if os.name == "nt":  # pragma: no cover - directories cannot be fsynced there
        return
    try:
        dfd = os.open(directory, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
    except OSError as exc:
        raise StorageError("cannot open directory for fsync", directory, exc) from exc
    try:
        os.fsync(dfd)
    except OSError as exc:
        raise StorageError("cannot fsync directory", directory, exc) from exc
    finally:
        os.close(dfd)


def ensure_dir(directory: str) -> None:
    """Create ``directory`` (and missing parents) with mode 0700."""
    try:
        st = os.stat(directory)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise StorageError("cannot access snapshot directory", directory, exc) from exc
    else:
        if not stat.S_ISDIR(st.st_mode):
            raise StorageError("snapshot directory is not a directory:", directory)
        return
    missing = []
    path = os.path.abspath(directory)
    while not os.path.exists(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for item in reversed(missing):
        try:
            os.mkdir(item, 0o700)
            os.chmod(item, 0o700)
        except FileExistsError:
            continue
        except OSError as exc:
            raise StorageError("cannot create snapshot directory", item, exc) from exc
