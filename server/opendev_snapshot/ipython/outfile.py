"""Write a file the person asked for (``%opendev recover ID --to FILE``).

Never overwrites: an existing file is the person's work. The text is
written whole to a temporary file beside the target, fsynced, and then
hard-linked into place, which fails if the name exists meanwhile (no
check-then-write race); where hard links are not supported, an exclusive
create is used instead. A reader never sees half a file; a failure leaves
nothing behind.
"""

from __future__ import annotations

import errno
import os

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class CannotWrite(ValueError):
    """Nothing was written; the message says why (the file exists, permission denied, ...)."""


class FileExists(CannotWrite):
    """The target exists: nothing was written."""


def write_new_file(target: str | os.PathLike, text: str, *, mode: int = 0o644) -> str:
    """Create ``target`` holding ``text`` (UTF-8); returns its absolute path.

    Raises :class:`FileExists` when it exists, :class:`CannotWrite` when
    the file system refuses (the message names the path and the reason).
    """
    path = os.path.abspath(os.path.expanduser(os.fspath(target)))
    try:
        return _write_new(path, text, mode)
    except CannotWrite:
        raise
    except OSError as exc:
        raise CannotWrite(f"cannot write {path}: {exc.strerror or exc}") from exc


def _write_new(path: str, text: str, mode: int) -> str:
    if os.path.lexists(path):
        raise FileExists(f"{path} exists: not overwritten (choose another name, or remove it first)")
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise CannotWrite(f"cannot write {path}: {directory} is not a directory")
    data = text.encode("utf-8")
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}-{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise FileExists(f"{path} exists: not overwritten (choose another name, or remove it first)") from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV):
                raise
            _exclusive_copy(data, path, mode)
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass
    _fsync_dir(directory)
    return path


def _exclusive_copy(data: bytes, path: str, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, mode)
    except FileExistsError:
        raise FileExists(f"{path} exists: not overwritten (choose another name, or remove it first)") from None
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)


def _fsync_dir(directory: str) -> None:
    try:
        dfd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)
