"""One pass over a snapshot directory: its own key, its names, every file's ``lstat`` key.

This is the whole cost of a safety check (about 1 µs a file in CPython,
nearly all of it the ``lstat`` call and its result object), so it is done
in C-level ``map`` loops, through full paths (``os.lstat(path)`` costs less
per call than ``lstat`` with ``dir_fd``, a keyword argument), and the
directory is listed only when asked: a name created, removed or renamed
always changes the directory's mtime and ctime.
"""

from __future__ import annotations

import errno
import os
import stat
from operator import attrgetter

from .entries import NOT_UTF8, kind_reason, name_is_utf8, stat_key
from .index import RACY_NS
from .paths import LOCK_SUFFIX, SNAPSHOT_SUFFIX

# A directory whose ctime lies this close to our listing may have changed in
# the same clock tick: it is listed again (the files' rule, kept separate
# so tests may relax the files' one alone).
DIR_RACY_NS = RACY_NS


def dir_key(directory: str) -> tuple:
    """(st_dev, st_ino, st_mtime_ns, st_ctime_ns) of the directory the path names now."""
    dst = os.stat(directory)
    if not stat.S_ISDIR(dst.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), directory)
    return (dst.st_dev, dst.st_ino, dst.st_mtime_ns, dst.st_ctime_ns)


def lock_reason(directory: str, name: str) -> str | None:
    """Why a lock file name is skipped (not a regular file, not UTF-8), or None."""
    try:
        mode = os.lstat(os.path.join(directory, name)).st_mode
    except OSError:
        return None  # gone, or not ours to judge
    return NOT_UTF8 if not name_is_utf8(name) else kind_reason(mode)


def list_dir(directory: str) -> tuple[list, dict]:
    """Snapshot names, and the lock file names that are skipped (with why)."""
    names: list = []
    bad_locks: dict = {}
    with os.scandir(directory) as it:
        for entry in it:
            name = entry.name
            if name.endswith(SNAPSHOT_SUFFIX):
                names.append(name)
            elif name.endswith(LOCK_SUFFIX):
                try:
                    regular = entry.is_file(follow_symlinks=False)  # d_type: no syscall
                except OSError:
                    continue
                if not regular or not name_is_utf8(name):
                    reason = lock_reason(directory, name)
                    if reason is not None:
                        bad_locks[name] = reason
    return names, bad_locks


# What a pass compares: the change time, which the kernel sets on every
# write, truncate, rename and link-count change of the file a name points to
# (a different file under the name has its own; one within the racy window
# of its read is re-read anyway). An int: a list of 10,000 of them is built
# without one object the garbage collector tracks (tuples were 30 % slower
# in a server's heap). On Windows ``st_ctime`` is the creation time: there
# the mtime serves.
_stamp = attrgetter("st_mtime_ns" if os.name == "nt" else "st_ctime_ns")
_STAMP_FIELD = 2 if os.name == "nt" else 3  # its place in a stat key


def stamp_of(key) -> int | None:
    return key[_STAMP_FIELD] if key is not None else None


class KeyTable:
    """Names, their full paths and the change stamps of their known keys, in aligned lists.

    A pass over them is one C-level ``map`` of ``lstat`` and one list
    comparison; names come and go one at a time (the last one moves into a
    hole), so nothing is rebuilt when one file changes.
    """

    def __init__(self, directory: str) -> None:
        self.prefix = os.path.join(directory, "")
        self.clear()

    def clear(self) -> None:
        self.names: list = []
        self.paths: list = []
        self.stamps: list = []
        self._pos: dict | None = {}

    @property
    def pos(self) -> dict:
        """name -> its place (built when first needed: a fresh process may never)."""
        if self._pos is None:
            self._pos = {name: i for i, name in enumerate(self.names)}
        return self._pos

    def load(self, names: list, paths: list, keys) -> None:
        self.names, self.paths = names, paths
        self.stamps = list(map(stamp_of, keys))
        self._pos = None

    def set(self, name: str, key) -> None:
        i = self.pos.get(name)
        if i is not None:
            self.stamps[i] = stamp_of(key)
            return
        self.pos[name] = len(self.names)
        self.names.append(name)
        self.paths.append(self.prefix + name)
        self.stamps.append(stamp_of(key))

    def remove(self, name: str) -> None:
        i = self.pos.pop(name, None)
        if i is None:
            return
        last = len(self.names) - 1
        if i != last:
            self.names[i], self.paths[i], self.stamps[i] = self.names[last], self.paths[last], self.stamps[last]
            self.pos[self.names[i]] = i
        del self.names[last], self.paths[last], self.stamps[last]

    def changes(self) -> tuple[list, list, list]:
        """(names whose file changed, names gone, names that cannot be stat-ed)."""
        try:  # the common case: one C-level loop, one comparison
            current = list(map(_stamp, map(os.lstat, self.paths)))
        except OSError:
            current = None
        if current is not None:
            if current == self.stamps:
                return [], [], []
            return [name for name, now, was in zip(self.names, current, self.stamps) if now != was], [], []
        differ, gone, unknown = [], [], []
        for name, path, was in zip(self.names, self.paths, self.stamps):
            try:
                now = _stamp(os.lstat(path))
            except FileNotFoundError:
                gone.append(name)
                continue
            except OSError:
                unknown.append(name)
                continue
            if now != was:
                differ.append(name)
        return differ, gone, unknown

    def verify(self, keys: dict) -> tuple[list, list, list]:
        """:meth:`changes` for keys adopted from the index: compared whole once
        (a forged one may match a file's change time), then the table holds them."""
        names = list(keys)
        paths = [self.prefix + name for name in names]
        differ, gone, unknown = [], [], []
        try:  # the common case in one C-level loop
            current = list(map(stat_key, map(os.lstat, paths)))
            differ = [name for name, now, was in zip(names, current, keys.values()) if now != was]
        except OSError:
            for name, path in zip(names, paths):
                try:
                    if stat_key(os.lstat(path)) != keys[name]:
                        differ.append(name)
                except FileNotFoundError:
                    gone.append(name)
                except OSError:
                    unknown.append(name)
        self.load(names, paths, keys.values())
        return differ, gone, unknown
