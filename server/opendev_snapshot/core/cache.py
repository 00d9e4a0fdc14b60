"""What a process knows about a snapshot directory, kept in step with the disk.

Every ``*_session_snapshot.json`` name maps to the ``lstat`` key it had when
it was examined (inode, size, mtime, ctime) and either the fields listings
filter on or the reason it was skipped. Full records are kept for the
incomplete sessions this process parsed; others are read on demand.

A full scan ``lstat``s every name (one C-level ``map``) and compares the keys
with what is known in one dict comparison; only names whose key changed are
read again. Keys change on every rename-based save (new inode and ctime) and
on every in-place write (mtime/ctime), except for an in-place write in the
same clock tick as our read: entries whose ctime lies within ``RACY_NS`` of
the read are marked racy and always re-read by stat-based scans.
"""

from __future__ import annotations

import os
import stat
import sys
from functools import partial
from operator import attrgetter

from . import codec
from .errors import InvalidSnapshot
from .index import RACY_NS
from .paths import SNAPSHOT_SUFFIX
from .validation import MAX_ENCODED_BYTES

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)

stat_key = attrgetter("st_ino", "st_size", "st_mtime_ns", "st_ctime_ns")


def kind_reason(mode: int) -> str | None:
    """Why an entry that is not a regular file is skipped, or None."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "symbolic link, not followed"
    if stat.S_ISDIR(mode):
        return "a directory, not a snapshot file"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe), not opened"
    if stat.S_ISSOCK(mode):
        return "a socket, not opened"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device, not opened"
    return "not a regular file"


def read_snapshot_file(path: str) -> tuple[bytes | None, tuple | None, str | None]:
    """Read a snapshot file safely: ``(data, key, reason)``.

    Never follows a link, never blocks on a FIFO, never reads more than
    1 MiB. ``(None, None, None)`` means the file does not exist.
    """
    try:
        fd = os.open(path, os.O_RDONLY | _O_CLOEXEC | _O_NOFOLLOW | _O_NONBLOCK)
    except FileNotFoundError:
        return None, None, None
    except OSError as exc:
        if os.path.islink(path):
            return None, None, "symbolic link, not followed"
        return None, None, f"unreadable: {exc.strerror or exc}"
    try:
        st = os.fstat(fd)
        reason = kind_reason(st.st_mode)
        if reason:
            return None, stat_key(st), reason
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


class ListingCache:
    """Per-name knowledge of one directory (see the module docstring)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.keys: dict = {}  # name -> stat key (None: unknown, always re-examined)
        self.meta: dict = {}  # name -> (session_id, completed, project_dir, ts) for good files
        self.records: dict = {}  # name -> full record (incomplete ones parsed here)
        self.errors: dict = {}  # name -> reason it is skipped
        self.racy: set = set()
        self.by_project: dict = {}  # raw project_dir -> set of names
        self.dirty = False  # differs from the persistent index

    # ---------------------------------------------------------------- state
    def drop(self, name: str) -> None:
        self.keys.pop(name, None)
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

    def set_error(self, name: str, key, reason: str) -> None:
        self.drop(name)
        self.keys[name] = key
        self.errors[name] = reason

    def set_record(self, name: str, key, record: dict, racy: bool) -> None:
        self.drop(name)
        project = sys.intern(record["project_dir"])  # one object per project, stored once in the index
        self.keys[name] = key
        self.meta[name] = (record["session_id"], record["completed"], project, record["snapshot_timestamp_ms"])
        self.by_project.setdefault(project, set()).add(name)
        if not record["completed"]:
            self.records[name] = record
        if racy:
            self.racy.add(name)

    def load_rows(self, names, keys, metas, groups) -> None:
        """Adopt a persistent index (columnar; names grouped by project)."""
        self.keys = dict(zip(names, keys))
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
        """Bring one name up to date from its ``lstat`` (None: lstat it now).

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
        reason = kind_reason(st.st_mode)
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
            record = codec.decode(data or b"")
        except InvalidSnapshot as exc:
            self.set_error(name, key2, str(exc))
            return True
        self.set_record(name, key2, record, racy=key2 is not None and key2[3] >= scan_ns - RACY_NS)
        return True

    def full_scan(self, scan_ns: int, progress=None) -> tuple[set, int]:
        """``lstat`` every name; returns (changed names, files parsed).

        Raises FileNotFoundError when the directory is missing (after
        forgetting everything) and OSError when it cannot be listed.
        """
        try:
            names = [n for n in os.listdir(self.directory) if n.endswith(SNAPSHOT_SUFFIX)]
        except FileNotFoundError:
            changed = set(self.keys)
            for name in list(self.keys):
                self.drop(name)
            raise
        total = len(names)
        if progress is not None:
            progress(0, total)
        stats = self._stat_all(names)
        current = {n: stat_key(st) for n, st in stats.items() if st is not None}
        if current == self.keys and not self.racy:
            del stats, current
            if progress is not None:
                progress(total, total)
            return set(), 0
        changed = set(self.keys) - set(stats)
        for name in changed:
            self.drop(name)
        parsed = 0
        for i, (name, st) in enumerate(stats.items()):
            known = self.keys.get(name, False)
            if st is None or known is None or name in self.racy or known != current.get(name):
                changed.add(name)
                parsed += self.examine(name, st, scan_ns)
            if progress is not None and (i & 127) == 0:
                progress(i, total)
        if progress is not None:
            progress(total, total)
        if parsed or changed:
            self.dirty = True
        return changed, parsed

    def _stat_all(self, names: list) -> dict:
        """name -> lstat result (None when it could not be stat-ed)."""
        dfd = None
        if os.stat in os.supports_dir_fd:
            try:
                dfd = os.open(self.directory, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
            except OSError:
                dfd = None
        try:
            if dfd is not None:
                stat_one = partial(os.stat, dir_fd=dfd, follow_symlinks=False)
            else:
                stat_one = partial(os.stat, follow_symlinks=False)
                names_for_stat = [os.path.join(self.directory, n) for n in names]
            try:  # the common case in one C-level loop
                stats = list(map(stat_one, names if dfd is not None else names_for_stat))
                return dict(zip(names, stats))
            except OSError:
                pass
            out: dict = {}
            for name in names:
                try:
                    out[name] = stat_one(name if dfd is not None else os.path.join(self.directory, name))
                except FileNotFoundError:
                    continue
                except OSError:
                    out[name] = None
            return out
        finally:
            if dfd is not None:
                os.close(dfd)

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
            record = codec.decode(data)
        except InvalidSnapshot as exc:
            self.set_error(name, key, str(exc))
            self.dirty = True
            return None
        if key != self.keys.get(name):  # changed since it was indexed: take what is there now
            self.set_record(name, key, record, racy=True)
            self.dirty = True
        elif not record["completed"]:
            self.records[name] = record
        return record
