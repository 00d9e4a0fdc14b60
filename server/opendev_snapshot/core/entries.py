"""Directory entries: what kind they are, what they are called, opening them safely.

Reading a snapshot directory never follows a symbolic link and never opens
a FIFO, socket or device (contract section 2): opening a FIFO for reading
releases a writer blocked on it, and a device can do anything on open.
:func:`open_regular` opens a path only once it is known to be a regular
file. On Linux it takes an ``O_PATH`` handle (which opens nothing: no
FIFO end, no device, no inotify open/close event), checks the type with
``fstat`` and re-opens that very inode through ``/proc/self/fd``, so no
rename between the check and the open can slip another file in. Where
that is not available it falls back to ``lstat`` + ``O_NOFOLLOW |
O_NONBLOCK`` + ``fstat`` (never blocks; a FIFO swapped in during the
microseconds between the two calls is opened and closed at once).

A name that is not valid UTF-8 comes from ``os.listdir`` with surrogate
escapes; it cannot go on the wire or through ``json.dumps`` to a UTF-8
stream, so it is skipped and shown with ``\\xNN`` escapes.
"""

from __future__ import annotations

import os
import stat
from operator import attrgetter

from .validation import MAX_ENCODED_BYTES

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_O_PATH = getattr(os, "O_PATH", 0)
_PROC_FD = bool(_O_PATH) and os.path.isdir("/proc/self/fd")

stat_key = attrgetter("st_ino", "st_size", "st_mtime_ns", "st_ctime_ns")

NOT_UTF8 = "file name is not valid UTF-8"


_KINDS = (
    (stat.S_ISLNK, "symbolic link, not followed"),
    (stat.S_ISDIR, "a directory, not a file"),
    (stat.S_ISFIFO, "a FIFO (named pipe), not opened"),
    (stat.S_ISSOCK, "a socket, not opened"),
    (stat.S_ISCHR, "a device, not opened"),
    (stat.S_ISBLK, "a device, not opened"),
)
_OTHER = "not a regular file"
KIND_REASONS = frozenset([reason for _test, reason in _KINDS] + [_OTHER])


def kind_reason(mode: int) -> str | None:
    """Why an entry that is not a regular file is skipped, or None."""
    if stat.S_ISREG(mode):
        return None
    for test, reason in _KINDS:
        if test(mode):
            return reason
    return _OTHER


def name_is_utf8(name: str) -> bool:
    """False for a name ``os.listdir`` decoded with surrogate escapes."""
    if name.isascii():
        return True
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(name: str) -> str:
    """The name itself when it is valid UTF-8, else its bytes with ``\\xNN`` escapes."""
    if name_is_utf8(name):
        return name
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def open_regular(path: str, flags: int = os.O_RDONLY, *, opener=os.open) -> tuple:
    """Open ``path`` only if it is a regular file: ``(fd, None)``.

    ``(None, None)`` when nothing is there; ``(None, reason)`` when it is
    not a regular file (never opened) or cannot be opened. ``opener(path,
    flags)`` makes the final open (e.g. one that registers lock fds to be
    closed in forked children).
    """
    flags |= _O_CLOEXEC | _O_NONBLOCK
    if _PROC_FD:
        try:
            handle = os.open(path, _O_PATH | _O_NOFOLLOW | _O_CLOEXEC)
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            return None, f"unreadable: {exc.strerror or exc}"
        try:
            reason = kind_reason(os.fstat(handle).st_mode)
            if reason is not None:
                return None, reason
            try:
                return opener(f"/proc/self/fd/{handle}", flags), None
            except FileNotFoundError:
                pass  # /proc went away: the fallback below
            except OSError as exc:
                return None, f"unreadable: {exc.strerror or exc}"
        finally:
            os.close(handle)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"unreadable: {exc.strerror or exc}"
    reason = kind_reason(st.st_mode)
    if reason is not None:
        return None, reason
    try:
        fd = opener(path, flags | _O_NOFOLLOW)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        if os.path.islink(path):
            return None, kind_reason(stat.S_IFLNK)
        return None, f"unreadable: {exc.strerror or exc}"
    try:
        reason = kind_reason(os.fstat(fd).st_mode)
    except OSError as exc:
        reason = f"unreadable: {exc.strerror or exc}"
    if reason is not None:
        os.close(fd)
        return None, reason
    return fd, None


def open_or_create_regular(path: str, mode: int = 0o600, *, opener=os.open) -> tuple:
    """Open ``path`` read-write if it is a regular file, else create it
    (``O_EXCL``, never through a link): ``(fd, None)``.

    ``(None, reason)`` when something else is there (a FIFO, socket,
    device, link or directory: never opened nor followed). Other failures
    raise ``OSError``.
    """
    for _attempt in range(100):
        fd, reason = open_regular(path, os.O_RDWR, opener=opener)
        if fd is not None or reason in KIND_REASONS:
            return fd, reason
        if reason is not None:
            raise OSError(reason)  # unreadable (permissions): says why
        try:
            return opener(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC, mode), None
        except FileExistsError:
            continue  # created meanwhile: open what is there now
    raise FileExistsError(f"{path} keeps appearing and vanishing")


def read_snapshot_file(path: str) -> tuple:
    """Read a snapshot file safely: ``(data, key, reason)``.

    Never follows a link, never opens a FIFO, socket or device, never reads
    more than 1 MiB. ``(None, None, None)`` means the file does not exist.
    """
    fd, reason = open_regular(path)
    if fd is None:
        return None, None, reason
    try:
        st = os.fstat(fd)
        if st.st_size > MAX_ENCODED_BYTES:
            return None, stat_key(st), f"larger than 1 MiB ({st.st_size} bytes), not read"
        chunks = []
        remaining = MAX_ENCODED_BYTES + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
        if len(data) > MAX_ENCODED_BYTES:
            return None, stat_key(st), "larger than 1 MiB, not read"
        return data, stat_key(os.fstat(fd)), None
    except OSError as exc:
        return None, None, f"unreadable: {exc.strerror or exc}"
    finally:
        os.close(fd)
