"""Removal and restore: liveness first, then the trash.

``remove`` runs under the session's update lock (:mod:`.serial`), so no
claim, save or update of that session in any process interleaves with it.
Inside it, a session held by another live process is refused
(:class:`SessionRunning`) unless ``force``; otherwise the liveness lock is
taken for an instant (its text left alone) while the snapshot and the lock
file's text move to the trash, so nobody can claim it half-way; then the
lock file is deleted. A lock-less snapshot (the Rust agent's) younger than
``stale_after_ms`` is running by the contract's rule and refused too; so
is one with something that is not a regular file at its lock path (a
FIFO, a link, a directory: never opened nor followed, and left there).

Everything is keyed by the file *name*: a file whose content names another
session, or that is no snapshot at all (corrupt, a link, a FIFO), is moved
to the trash as the entry it is, after the liveness check of *its* name's
lock, so removing it can never touch another session's files or lock.
``load`` refuses such a file; ``restore`` brings back usable snapshots only
(the others stay in ``.trash/`` for the retention time).
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

from . import codec, liveness, trash
from .cache import read_snapshot_file
from .catalog import Skipped
from .durable import fsync_dir, temp_name
from .forksafe import close_tracked, open_tracked
from .errors import AmbiguousId, InvalidSnapshot, NotInTrash, SessionExists, SessionNotFound, SessionRunning, StorageError
from .index import INDEX_NAME
from .paths import LOCK_SUFFIX, SNAPSHOT_SUFFIX
from .serial import UPDATE_LOCK_NAME
from .validation import check_session_id

if TYPE_CHECKING:
    from .store import SnapshotStore


def read_usable(path: str, session_id: str) -> dict | None:
    """The snapshot at ``path`` if it is a usable one of ``session_id``;
    None when absent; :class:`StorageError` naming why it is unusable."""
    data, _key, reason = read_snapshot_file(path)
    if reason:
        raise StorageError(f"snapshot file is not usable ({reason}):", path)
    if data is None:
        return None
    try:
        record = codec.decode(data)
    except InvalidSnapshot as exc:
        raise StorageError(f"snapshot file is corrupt ({exc}):", path) from None
    if record["session_id"] != session_id:
        raise StorageError(
            f"snapshot file is not usable (its content is session {record['session_id']!r}, not {session_id!r}):", path
        )
    return record


def remove(store: "SnapshotStore", session_id: str, force: bool) -> bool:
    check_session_id(session_id)
    directory = store._dir
    if not os.path.isdir(directory):
        return False
    path = os.path.join(directory, session_id + SNAPSHOT_SUFFIX)
    lock_path = os.path.join(directory, session_id + LOCK_SUFFIX)
    with store._mutex, store._updates.hold(session_id):
        if not os.path.lexists(path):
            store._drop_lock(session_id, only_if_unlocked=True)
            return False
        try:
            record = read_usable(path, session_id)
        except StorageError:
            record = None  # not a usable snapshot of this id: moved as the entry it is
        transient, foreign = None, False
        if not store.holds(session_id):
            had_lock_file = os.path.lexists(lock_path)
            try:  # an instant's lock: nobody claims it half-way; its text stays
                transient = liveness.acquire(lock_path, None, attempts=1)
            except liveness.NotALockFile:  # no lock file: judged by age; what is there stays (claims refuse it)
                foreign, had_lock_file = True, False
            except OSError as exc:
                raise StorageError("cannot lock session", lock_path, exc) from exc
            if transient is None and not foreign and not force:
                raise SessionRunning(session_id, liveness.read_info(lock_path))
            young = record is not None and not record["completed"] and store.running_by_age(record)
            if young and not had_lock_file and not force:  # no lock file: running by its age
                if transient is not None:
                    _unlink_same(lock_path, transient)
                    transient.release()
                raise SessionRunning(session_id, None)
            if transient is not None and not had_lock_file:
                _unlink_same(lock_path, transient)  # ours, created just now: nothing to keep
        try:
            text = liveness.read_text(lock_path)
            trash.put(directory, session_id + SNAPSHOT_SUFFIX, lock_text=text)
        except BaseException:
            if transient is not None:
                transient.release()
            raise
        if transient is not None:
            _unlink_same(lock_path, transient)
            transient.release()
        elif not foreign:  # our own claim, or forced over a live holder: its text is in the trash
            store._drop_lock(session_id)
        return True


def _unlink_same(path: str, held: liveness.HeldLock) -> None:
    if held.still_linked():
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def restore(store: "SnapshotStore", session_id: str) -> dict:
    check_session_id(session_id)
    directory = store._dir
    name = session_id + SNAPSHOT_SUFFIX
    if not os.path.isdir(trash.trash_dir(directory)):
        raise NotInTrash(session_id)
    with store._mutex, store._updates.hold(session_id):
        for entry in trash.entries(directory):
            if entry.name == name and _usable(entry, session_id):
                break
        else:
            raise NotInTrash(session_id)
        if os.path.lexists(os.path.join(directory, name)):
            raise SessionExists(session_id)
        text = trash.read_lock_text(entry)
        try:
            path = trash.take(directory, entry, name, sync=False)
        except FileExistsError:
            raise SessionExists(session_id) from None
        if text is not None:
            _put_lock_text(directory, session_id + LOCK_SUFFIX, text)
        fsync_dir(directory)  # the snapshot and its lock file, durable before we return
        fsync_dir(trash.trash_dir(directory))
        record = read_usable(path, session_id)
    return store.listing(record)


def _usable(entry: trash.Entry, session_id: str) -> bool:
    try:
        return read_usable(entry.path, session_id) is not None
    except StorageError:
        return False


def _put_lock_text(directory: str, lock_name: str, text: bytes) -> None:
    """The lock file back, unlocked, unless one exists (then it is someone's).
    Written whole and fsynced under a temporary name, then linked into place
    (a link never replaces); the caller fsyncs the directory."""
    lock_path = os.path.join(directory, lock_name)
    if os.path.lexists(lock_path):
        return
    tmp = os.path.join(directory, temp_name(lock_name))
    try:
        fd = open_tracked(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            os.write(fd, text)
            os.fsync(fd)
        finally:
            close_tracked(fd)
        os.link(tmp, lock_path)
    except OSError:
        pass  # created meanwhile, or no hard links: a lock file's text is only for display
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def list_trash(store: "SnapshotStore") -> list:
    out = []
    for entry in trash.entries(store._dir):
        sid = entry.session_id
        snapshot = None
        if sid is not None:
            try:
                snapshot = read_usable(entry.path, sid)
            except StorageError:
                snapshot = None
        text = trash.read_lock_text(entry)
        out.append({
            "session_id": sid,
            "removed_at_ms": entry.removed_at_ms,
            "snapshot": snapshot,
            "holder": liveness.parse_holder(text) if text else None,
            "file": entry.name,
            "path": entry.path,
        })
    return out


OWN_NAMES = (INDEX_NAME, trash.TRASH_NAME, UPDATE_LOCK_NAME)


def trash_files(store: "SnapshotStore", names) -> tuple:
    """Move unusable directory entries to the trash: ``(moved, refused)``.

    A name is moved as it is, whatever it is (a rename never opens it: a
    FIFO, a socket, a device, a link or a directory moves as the entry it
    is). Refused, with a reason: names that are not a plain entry of the
    directory, our own files, usable snapshots (``remove`` takes those,
    liveness first), regular lock files (``cleanup`` removes orphans).
    """
    directory = store._dir
    moved, refused = [], []
    for name in names:
        reason = _refusal(store, directory, name)
        if reason:
            refused.append(Skipped(_printable(name), reason))
            continue
        try:
            trash.put(directory, name)
        except StorageError as exc:
            refused.append(Skipped(_printable(name), str(exc)))
            continue
        moved.append(_printable(name))
    return moved, refused


def _refusal(store, directory: str, name) -> str | None:
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\0" in name:
        return "not a name of an entry in the snapshot directory"
    if name in OWN_NAMES or name.startswith(".") and name.endswith(".tmp"):
        return "one of this project's own files"
    path = os.path.join(directory, name)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "no such file"
    except OSError as exc:
        return f"cannot access it: {exc.strerror or exc}"
    if stat.S_ISREG(st.st_mode) and name.endswith(LOCK_SUFFIX):
        return "a lock file (cleanup removes the orphan ones)"
    if stat.S_ISREG(st.st_mode) and name.endswith(SNAPSHOT_SUFFIX):
        sid = name[: -len(SNAPSHOT_SUFFIX)]
        try:
            check_session_id(sid)
            if read_usable(path, sid) is not None:
                return "a usable snapshot: remove it by its id (liveness is checked)"
        except (InvalidSnapshot, StorageError):
            pass
    return None


def _printable(name: str) -> str:
    return os.fsencode(name).decode("utf-8", "backslashreplace") if isinstance(name, str) else repr(name)


def resolve_id(store: "SnapshotStore", text: str, in_trash: bool) -> str:
    check_session_id(text, "session_id")
    if in_trash:
        ids = {e.session_id for e in trash.entries(store._dir) if e.session_id}
    else:
        try:
            names = os.listdir(store._dir)
        except (FileNotFoundError, NotADirectoryError):
            names = []
        except OSError as exc:
            raise StorageError("cannot list snapshot directory", store._dir, exc) from exc
        ids = {n[: -len(SNAPSHOT_SUFFIX)] for n in names if n.endswith(SNAPSHOT_SUFFIX) and len(n) > len(SNAPSHOT_SUFFIX)}
    if text in ids:
        return text
    matches = sorted(i for i in ids if i.startswith(text))
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise AmbiguousId(text, matches)
    raise SessionNotFound(text)
