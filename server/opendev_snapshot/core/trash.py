"""``.trash/``: where every removal goes, and where ``restore`` looks.

The trash is a directory (mode 0700) inside the snapshot directory; its
name starts with ``.`` so neither we nor the seed list it. One removal is
one *entry*: the moved file, named ``{removed_ms:013d}-{ns:06d}{random}@{name}``
(``name`` is what it was called in the directory), and for a session the
lock file's text beside it, ``{same prefix}.holder``.

Every move is durable: the file's data is fsynced, the rename made, then
both directories fsynced before the call returns. A crash part-way leaves
either the file where it was or in the trash, never neither; a lock-text
file without its snapshot (a crash between the two) is ignored and purged.

Nothing here checks liveness: :mod:`.removal` does, under the session's
update lock, before it calls :func:`put`. A purge (``cleanup``) is the
only deletion.
"""

from __future__ import annotations

import os
import shutil
import stat
import threading
import time
from dataclasses import dataclass

from .durable import fsync_dir
from .errors import InvalidSnapshot, StorageError
from .forksafe import close_tracked, open_tracked
from .paths import SNAPSHOT_SUFFIX
from .validation import check_session_id

TRASH_NAME = ".trash"
HOLDER_SUFFIX = ".holder"
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_NAME_MAX = 255


@dataclass(frozen=True, slots=True)
class Entry:
    """One removal in the trash."""

    prefix: str  # "{removed_ms:013d}-{ns within the ms:06d}{random}"
    removed_at_ms: int
    name: str  # the name it had in the snapshot directory
    path: str  # where it is now
    lock_path: str | None  # the lock file's text, when there was one

    @property
    def session_id(self) -> str | None:
        """The id its name says, when that is a valid one (a name from disk:
        not UTF-8, or with a control character, is no id and goes nowhere)."""
        if self.name.endswith(SNAPSHOT_SUFFIX):
            sid = self.name[: -len(SNAPSHOT_SUFFIX)]
            try:
                return check_session_id(sid)
            except InvalidSnapshot:
                return None
        return None


def trash_dir(directory: str) -> str:
    return os.path.join(directory, TRASH_NAME)


def ensure(directory: str) -> str:
    """The trash directory, created (0700) when missing; never a link."""
    path = trash_dir(directory)
    try:
        os.mkdir(path, 0o700)
        fsync_dir(directory)
    except FileExistsError:
        pass
    except OSError as exc:
        raise StorageError("cannot create the trash", path, exc) from exc
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise StorageError("cannot access the trash", path, exc) from exc
    if not stat.S_ISDIR(st.st_mode):
        raise StorageError("the trash is not a directory (not followed):", path)
    return path


def _fsync_file(path: str) -> None:
    """Flush a regular file's data before it is renamed (never opens anything else)."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            return
        fd = open_tracked(path, os.O_RDONLY | _O_NOFOLLOW | _O_NONBLOCK)
    except OSError:
        return
    try:
        if os.fstat(fd).st_ino == st.st_ino:
            os.fsync(fd)
    finally:
        close_tracked(fd)


def entry_name(prefix: str, name: str) -> str:
    """``prefix@name``, the name cut (keeping its end) to fit NAME_MAX."""
    full = f"{prefix}@{name}"
    while len(os.fsencode(full)) > _NAME_MAX:
        name = name[1:]
        full = f"{prefix}@~{name}"
    return full


_stamp_lock = threading.Lock()
_last_stamp = 0


def _stamp() -> int:
    """Nanoseconds since the epoch, strictly increasing in this process, so
    two removals in one millisecond still sort in the order they happened
    (removals of one session by two processes are serialised by its update
    lock, so the clock orders those)."""
    global _last_stamp
    with _stamp_lock:
        _last_stamp = max(time.time_ns(), _last_stamp + 1)
        return _last_stamp


def put(directory: str, name: str, *, lock_text: bytes | None = None, sync: bool = True) -> Entry:
    """Move ``directory/name`` (as it is: never followed or opened unless a
    regular file) into the trash, with ``lock_text`` beside it; durable
    (``sync=False``: the caller fsyncs both directories before it returns)."""
    tdir = ensure(directory)
    stamp = _stamp()
    removed = stamp // 1_000_000
    prefix = f"{removed:013d}-{stamp % 1_000_000:06d}{os.urandom(5).hex()}"
    lock_path = None
    if lock_text is not None:
        lock_path = os.path.join(tdir, prefix + HOLDER_SUFFIX)
        try:
            fd = open_tracked(lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW, 0o600)
            try:
                os.write(fd, lock_text)
                os.fsync(fd)
            finally:
                close_tracked(fd)
        except OSError as exc:
            raise StorageError("cannot write the lock text into the trash", lock_path, exc) from exc
    source = os.path.join(directory, name)
    target = os.path.join(tdir, entry_name(prefix, name))
    _fsync_file(source)
    try:
        os.rename(source, target)
    except OSError as exc:
        if lock_path is not None:
            _unlink_quietly(lock_path)
        raise StorageError("cannot move into the trash", source, exc) from exc
    if sync:
        fsync_dir(tdir)
        fsync_dir(directory)
    return Entry(prefix, removed, name, target, lock_path)


def entries(directory: str) -> list:
    """Every entry, newest first (lock-text files ride along with theirs)."""
    tdir = trash_dir(directory)
    try:
        names = os.listdir(tdir)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        raise StorageError("cannot list the trash", tdir, exc) from exc
    locks: dict = {}
    files: list = []
    for full in names:
        prefix, sep, name = full.partition("@")
        if not sep and full.endswith(HOLDER_SUFFIX):
            locks[full[: -len(HOLDER_SUFFIX)]] = os.path.join(tdir, full)
            continue
        ms, dash, rand = prefix.partition("-")
        if sep and dash and len(ms) == 13 and ms.isdigit() and rand:
            files.append((prefix, int(ms), name, os.path.join(tdir, full)))
    out = [Entry(prefix, ms, name, path, locks.get(prefix)) for prefix, ms, name, path in files]
    out.sort(key=lambda e: (e.removed_at_ms, e.prefix), reverse=True)
    return out


def orphan_lock_texts(directory: str) -> list:
    """``(removed_ms, path)`` of lock texts whose file never made it (a crash between the two)."""
    tdir = trash_dir(directory)
    try:
        names = os.listdir(tdir)
    except OSError:
        return []
    prefixes = {full.partition("@")[0] for full in names if "@" in full}
    out = []
    for full in names:
        if "@" not in full and full.endswith(HOLDER_SUFFIX) and full[: -len(HOLDER_SUFFIX)] not in prefixes:
            ms = full.partition("-")[0]
            out.append((int(ms) if ms.isdigit() else 0, os.path.join(tdir, full)))
    return out


def read_lock_text(entry: Entry) -> bytes | None:
    if entry.lock_path is None:
        return None
    try:
        fd = open_tracked(entry.lock_path, os.O_RDONLY | _O_NOFOLLOW | _O_NONBLOCK)
    except OSError:
        return None
    try:
        return os.read(fd, 8192)
    except OSError:
        return None
    finally:
        close_tracked(fd)


def take(directory: str, entry: Entry, target_name: str, *, sync: bool = True) -> str:
    """Put ``entry`` back as ``directory/target_name``, never over an
    existing file (``FileExistsError``); durable (``sync=False``: the caller
    fsyncs both directories before it returns). Returns the new path."""
    target = os.path.join(directory, target_name)
    try:
        os.link(entry.path, target)  # atomic, and refuses to replace
    except FileExistsError:
        raise
    except OSError as exc:
        if os.path.lexists(target):
            raise FileExistsError(target) from exc
        try:  # a file system without hard links: the caller holds the update lock
            os.rename(entry.path, target)
        except OSError as exc2:
            raise StorageError("cannot restore from the trash", entry.path, exc2) from exc2
    else:
        _unlink_quietly(entry.path)
    if entry.lock_path is not None:
        _unlink_quietly(entry.lock_path)
    if sync:
        fsync_dir(directory)
        fsync_dir(trash_dir(directory))
    return target


def purge(directory: str, older_than_ms: int, *, dry_run: bool = False) -> int:
    """Delete entries removed before ``older_than_ms``; returns how many."""
    count = 0
    for entry in entries(directory):
        if entry.removed_at_ms >= older_than_ms:
            continue
        count += 1
        if not dry_run:
            _delete(entry.path)
            if entry.lock_path is not None:
                _unlink_quietly(entry.lock_path)
    if not dry_run:
        for ms, path in orphan_lock_texts(directory):
            if ms < older_than_ms:
                _unlink_quietly(path)
        if count:
            fsync_dir(trash_dir(directory))
    return count


def _delete(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StorageError("cannot purge from the trash", path, exc) from exc
    try:
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(path)  # never follows links inside it
        else:
            os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise StorageError("cannot purge from the trash", path, exc) from exc


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
