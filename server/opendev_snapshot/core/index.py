"""A persistent listing index, so a fresh process need not parse every file.

The index maps each snapshot file name to the ``lstat`` key it had when it
was parsed (inode, size, mtime, ctime) and the few fields a listing filters
on. A reader still ``lstat``s every name and re-reads any file whose key
differs, so the index can make a listing faster but never staler. Files
whose ctime lies within ``RACY_NS`` of the moment they were read are stored
without a key (always re-read): a same-tick in-place rewrite could keep
every stat field and still change the content.

The file is ``.opendev-index-v1`` in the snapshot directory (it does not
end in ``.json``, so the seed ignores it), written atomically, with a
length and checksum; one that is corrupt, foreign-owned or writable by others is ignored.

The index is a hint, never an authority. A checksum only proves the bytes
are the ones written; :func:`load_index` also checks the structure (column
types and lengths, every key four integers, every row's ``session_id``
being its file name, the project groups contiguous and consistent with the
rows) and any inconsistency means "no index": everything is read and a
new one written. It cannot hide a session either: every name in the
directory is ``lstat``-ed and a file whose key differs from the one the
index vouches for is read. (A process of this user could forge an index
holding a file's exact current key with other fields; it could as well
rewrite or delete the snapshot itself.)
"""

from __future__ import annotations

import marshal
import os
import zlib
import stat

from ._log import logger
from .durable import write_atomic
from .errors import StorageError
from .paths import SNAPSHOT_SUFFIX

INDEX_NAME = ".opendev-index-v1"
MAGIC = b"ODSIDX2\n"
RACY_NS = 2_000_000_000
_MAX_INDEX_BYTES = 256 * 1024 * 1024
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


def _head(payload: bytes) -> bytes:
    """Length and CRC-32 of the payload: catches truncation and corruption."""
    return len(payload).to_bytes(8, "little") + zlib.crc32(payload).to_bytes(4, "little")


def load_index(directory: str):
    """``(names, keys, metas, groups)`` from the index, or None if unusable.

    Columnar: names grouped by project, ``groups`` = (project, start, end).
    """
    path = os.path.join(directory, INDEX_NAME)
    try:
        fd = os.open(path, os.O_RDONLY | _O_CLOEXEC | _O_NOFOLLOW | _O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_INDEX_BYTES:
            return None
        if hasattr(os, "getuid") and (st.st_uid != os.getuid() or st.st_mode & 0o022):
            return None
        with os.fdopen(os.dup(fd), "rb") as handle:
            blob = handle.read()
    except OSError:
        return None
    finally:
        os.close(fd)
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 12:
        return None
    head = blob[len(MAGIC) : len(MAGIC) + 12]
    payload = blob[len(MAGIC) + 12 :]
    if head != _head(payload):
        logger(__name__).debug("index %s is corrupt; ignored", path)
        return None
    try:
        rows = _valid(marshal.loads(payload))
    except Exception:  # noqa: BLE001 - whatever is wrong with a hint, it is not used
        rows = None
    if rows is None:
        logger(__name__).debug("index %s is inconsistent; ignored", path)
    return rows


def _all(column, kind) -> bool:
    return set(map(type, column)) <= {kind}


def _valid(value):
    """The columns when they are exactly what :func:`write_index` writes, else None."""
    if type(value) is not tuple or len(value) != 4 or not _all(value, tuple):
        return None
    names, keys, metas, groups = value
    n = len(names)
    if not (len(keys) == len(metas) == n) or not _all(names, str) or len(set(names)) != n:
        return None
    if n == 0:
        return (names, keys, metas, groups) if groups == () else None
    if not (_all(keys, tuple) and _all(metas, tuple) and _all(groups, tuple)):
        return None
    if set(map(len, keys)) != {4} or set(map(len, metas)) != {4} or set(map(len, groups)) != {3}:
        return None
    if not all(_all(column, int) for column in zip(*keys)):
        return None
    sids, completed, projects, stamps = zip(*metas)
    if not (_all(sids, str) and _all(completed, bool) and _all(projects, str) and _all(stamps, int)):
        return None
    if min(stamps) < 0 or max(stamps) >= 1 << 64:
        return None
    if [sid + SNAPSHOT_SUFFIX for sid in sids] != list(names):
        return None  # a row describing another session than its file name
    if len({group[0] for group in groups}) != len(groups):
        return None  # a project split over two groups
    expected = 0
    for project, start, end in groups:
        if type(project) is not str or type(start) is not int or type(end) is not int:
            return None
        if start != expected or end <= start or set(projects[start:end]) != {project}:
            return None
        expected = end
    if expected != n:
        return None
    return names, keys, metas, groups


def write_index(directory: str, rows: tuple) -> bool:
    """Write ``(names, keys, metas, groups)`` atomically; False on failure."""
    try:
        payload = marshal.dumps(tuple(tuple(column) for column in rows), 4)
    except ValueError:  # an unmarshallable value (should not happen): skip
        return False
    blob = MAGIC + _head(payload) + payload
    try:
        write_atomic(directory, INDEX_NAME, blob, what="index", sync=False)  # a hint: losing it loses nothing
        return True
    except StorageError as exc:
        logger(__name__).debug("cannot write the index in %s: %s", directory, exc)
        return False
