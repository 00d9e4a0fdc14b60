"""What a process knows about a snapshot directory, kept in step with the disk.

Every ``*_session_snapshot.json`` name maps to the ``lstat`` key it had when
it was examined (inode, size, mtime, ctime) and either the fields listings
filter on or the reason it was skipped. Full records are kept for the
incomplete sessions this process parsed; others are read on demand. A
file this store just wrote is read too, but not parsed again when its
bytes are the ones written (:mod:`.ownwrites`). Lock file names that
are not regular files (a FIFO, a link, ...) are kept with the reason they
are skipped; they are never opened.

A full scan ``lstat``s every snapshot name (one C-level ``map``) and
compares their change times with the known keys' in one list comparison
(:class:`.dirscan.KeyTable`); only names whose file changed are read again.
The change time moves on every rename-based save, every in-place write
(also one through a hard link elsewhere), except for an in-place write in
the same clock tick as our read: entries whose ctime lies within
``RACY_NS`` of the read are marked racy and always re-read by stat-based
scans. Keys adopted from the index are compared whole once (a forged one
could match a change time: :meth:`.dirscan.KeyTable.verify`), then the
same way.

The directory itself is listed again only when its own key (device, inode,
mtime, ctime) changed or is racy: creating, removing or renaming a name
always changes the directory's mtime and ctime. Knowledge is about one
directory inode: when the path names another directory, all of it is
forgotten.

A file is skipped (with its reason) when its name is not valid UTF-8 or
when the ``session_id`` inside differs from its name: such a file is not
that session, and listing it would show a session twice and follow
another session's lock.
"""

from __future__ import annotations

import os
import sys

from . import dirscan
from .entries import NOT_UTF8, kind_reason, name_is_utf8, read_snapshot_file, stat_key
from .errors import InvalidSnapshot
from .index import RACY_NS
from .ownwrites import OwnWrites
from .paths import SNAPSHOT_SUFFIX
from .validation import MAX_ENCODED_BYTES

__all__ = ["ListingCache", "kind_reason", "read_snapshot_file", "stat_key"]  # the last three: moved to .entries



def mismatch_reason(session_id: str) -> str:
    return f"session_id {session_id!r} differs from its file name"


class ListingCache:
    """Per-name knowledge of one directory (see the module docstring)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.keys: dict = {}  # name -> stat key (None: unknown, always re-examined)
        self.meta: dict = {}  # name -> (session_id, completed, project_dir, ts) for good files
        self.records: dict = {}  # name -> full record (incomplete ones parsed here)
        self.errors: dict = {}  # name -> reason it is skipped
        self.lock_errors: dict = {}  # lock file name -> reason it is skipped
        self.racy: set = set()
        self.by_project: dict = {}  # raw project_dir -> set of names
        self.dirty = False  # differs from the persistent index
        self.names: list | None = None  # snapshot names at the last listing of the directory
        self.dir_key: tuple | None = None  # the directory's key at that listing
        self.listed_ns = 0
        self.table = dirscan.KeyTable(directory)  # ``keys`` again, in lists a pass runs over
        self.version = 0  # changes whenever what is known of a session changes
        self.unverified = False  # keys adopted from the index, not yet compared in full
        self.own = OwnWrites()  # this store's last saves, taken instead of a second parse

    # ---------------------------------------------------------------- state
    def drop(self, name: str) -> None:
        self.version += 1
        self.keys.pop(name, None)
        self.table.remove(name)
        self.errors.pop(name, None)
        self.records.pop(name, None)
        self.racy.discard(name)
        meta = self.meta.pop(name, None)
        if meta is not None:
            names = self.by_project.get(meta[2])
            if names is not None:
                names.discard(name)
                if not names:
                    del self.by_project[meta[2]]

    def forget_all(self) -> set:
        """Forget everything (another directory, or none); returns the names known."""
        known = set(self.keys) | set(self.lock_errors)
        self.keys, self.meta, self.records, self.errors, self.lock_errors = {}, {}, {}, {}, {}
        self.racy, self.by_project = set(), {}
        self.names = self.dir_key = None
        self.table.clear()
        self.unverified = False
        self.version += 1
        self.dirty = bool(known)
        return known

    def set_error(self, name: str, key, reason: str) -> None:
        self.drop(name)
        self.keys[name] = key
        self.table.set(name, key)
        self.errors[name] = reason

    def set_record(self, name: str, key, record: dict, racy: bool) -> None:
        self.drop(name)
        project = sys.intern(record["project_dir"])  # one object per project, stored once in the index
        self.keys[name] = key
        self.table.set(name, key)
        self.meta[name] = (record["session_id"], record["completed"], project, record["snapshot_timestamp_ms"])
        self.by_project.setdefault(project, set()).add(name)
        if not record["completed"]:
            self.records[name] = record
        if racy:
            self.racy.add(name)

    def load_rows(self, names, keys, metas, groups) -> None:
        """Adopt a persistent index (validated by :func:`.index.load_index`)."""
        self.version += 1
        self.keys = dict(zip(names, keys))
        self.unverified = True  # a pass compares the whole keys once: the index only vouches for them
        self.meta = dict(zip(names, metas))
        self.by_project = {project: set(names[start:end]) for project, start, end in groups}

    def index_rows(self) -> tuple:
        """(names, keys, metas, groups) of the good, non-racy entries."""
        rows = sorted(
            (meta[2], name)
            for name, meta in self.meta.items()
            if name not in self.racy and self.keys.get(name) is not None
        )
        names, keys, metas, groups = [], [], [], []
        start = 0
        for i, (project, name) in enumerate(rows):
            names.append(name)
            keys.append(self.keys[name])
            metas.append(self.meta[name])
            if i + 1 == len(rows) or rows[i + 1][0] != project:
                groups.append((project, start, i + 1))
                start = i + 1
        return names, keys, metas, groups

    # ------------------------------------------------------------- scanning
    def examine(self, name: str, st: os.stat_result | None, scan_ns: int) -> bool:
        """Bring one snapshot name up to date from its ``lstat`` (None: lstat it now).

        Returns True when a file was read and parsed.
        """
        path = os.path.join(self.directory, name)
        if st is None:
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                self.drop(name)
                return False
            except OSError as exc:
                self.set_error(name, None, f"unreadable: {exc.strerror or exc}")
                return False
        key = stat_key(st)
        reason = NOT_UTF8 if not name_is_utf8(name) else kind_reason(st.st_mode)
        if reason is None and st.st_size > MAX_ENCODED_BYTES:
            reason = f"larger than 1 MiB ({st.st_size} bytes), not read"
        if reason is not None:
            self.set_error(name, key, reason)
            return False
        data, key2, why = read_snapshot_file(path)
        if data is None and why is None:  # vanished meanwhile
            self.drop(name)
            return False
        if why is not None:
            self.set_error(name, key2 or key, why)
            return False
        try:
            record = self.own.decode(name, data or b"")
        except InvalidSnapshot as exc:
            self.set_error(name, key2, str(exc))
            return True
        if record["session_id"] + SNAPSHOT_SUFFIX != name:
            self.set_error(name, key2, mismatch_reason(record["session_id"]))
            return True
        self.set_record(name, key2, record, racy=key2 is not None and key2[3] >= scan_ns - RACY_NS)
        return True

    def _dir_key(self) -> tuple:
        try:
            return dirscan.dir_key(self.directory)
        except FileNotFoundError:
            self.forget_all()
            raise

    def examine_lock(self, name: str) -> None:
        """Bring one lock file name's skip reason up to date (never opens it)."""
        reason = dirscan.lock_reason(self.directory, name)
        if reason is None:
            self.lock_errors.pop(name, None)
        else:
            self.lock_errors[name] = reason


    def full_scan(self, scan_ns: int, progress=None, *, trust_names: bool = False) -> tuple[set, int]:
        """``lstat`` every snapshot name; returns (changed names, files parsed).

        ``trust_names``: the names known are the directory's (a change feed
        that reports every name change says so); the directory is then not
        listed again. Raises FileNotFoundError when the directory is
        missing (after forgetting everything), NotADirectoryError, or
        OSError when it cannot be listed.
        """
        dir_key = self._dir_key()
        changed = set()
        if self.dir_key is not None and self.dir_key[:2] != dir_key[:2]:
            changed = self.forget_all()  # the path names another directory now
            trust_names = False
        parsed = 0
        fresh: set = set()
        if not (trust_names and self.names is not None):
            if self.names is None or dir_key != self.dir_key or dir_key[3] >= self.listed_ns - dirscan.DIR_RACY_NS:
                self.names, self.lock_errors = dirscan.list_dir(self.directory)
                self.dir_key, self.listed_ns = dir_key, scan_ns
                listed = set(self.names)
                if listed != self.keys.keys():
                    for name in self.keys.keys() - listed:
                        self.drop(name)
                        changed.add(name)
                    fresh = listed - self.keys.keys()
                    for name in fresh:
                        parsed += self.examine(name, None, scan_ns)
                    changed |= fresh
        total = len(self.keys)
        if progress is not None:
            progress(0, total)
        differ, gone, unknown = self.table.verify(self.keys) if self.unverified else self.table.changes()
        self.unverified = False  # adopted keys are compared whole once, by the first pass
        if self._dir_key()[:2] != dir_key[:2]:  # re-pointed while we looked: start again
            self.forget_all()
            return self.full_scan(scan_ns, progress)
        for name in gone:
            self.drop(name)
        stale = set(differ).union(unknown, self.racy) - fresh
        for i, name in enumerate(stale):
            parsed += self.examine(name, None, scan_ns)
            if progress is not None and (i & 127) == 0:
                progress(i, total)
        if progress is not None:
            progress(total, total)
        changed.update(gone, stale)
        if parsed or changed:
            self.dirty = True
        return changed, parsed

    # ---------------------------------------------------------------- reads
    def full_record(self, name: str) -> dict | None:
        """The complete record for a known good name (read if not kept)."""
        record = self.records.get(name)
        if record is not None:
            return record
        data, key, why = read_snapshot_file(os.path.join(self.directory, name))
        if data is None:
            if why is None:
                self.drop(name)
            else:
                self.set_error(name, key, why)
            self.dirty = True
            return None
        try:
            record = self.own.decode(name, data)
        except InvalidSnapshot as exc:
            self.set_error(name, key, str(exc))
            self.dirty = True
            return None
        if record["session_id"] + SNAPSHOT_SUFFIX != name:
            self.set_error(name, key, mismatch_reason(record["session_id"]))
            self.dirty = True
            return None
        if key != self.keys.get(name):  # changed since it was indexed: take what is there now
            self.set_record(name, key, record, racy=True)
            self.dirty = True
        elif not record["completed"]:
            self.records[name] = record
        return record
