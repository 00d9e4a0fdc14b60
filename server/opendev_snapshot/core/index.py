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
digest; one that is corrupt, foreign-owned or writable by others is ignored.
"""

from __future__ import annotations

import hashlib
import logging
import marshal
import os
import secrets
import stat

log = logging.getLogger(__name__)

INDEX_NAME = ".opendev-index-v1"
MAGIC = b"ODSIDX1\n"
RACY_NS = 2_000_000_000
_MAX_INDEX_BYTES = 256 * 1024 * 1024
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


def load_index(directory: str) -> dict:
    """name -> (key, session_id, completed, project_dir, ts); {} if unusable."""
    path = os.path.join(directory, INDEX_NAME)
    try:
        fd = os.open(path, os.O_RDONLY | _O_CLOEXEC | _O_NOFOLLOW | _O_NONBLOCK)
    except OSError:
        return {}
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_INDEX_BYTES:
            return {}
        if hasattr(os, "getuid") and (st.st_uid != os.getuid() or st.st_mode & 0o022):
            return {}
        with os.fdopen(os.dup(fd), "rb") as handle:
            blob = handle.read()
    except OSError:
        return {}
    finally:
        os.close(fd)
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 32:
        return {}
    digest = blob[len(MAGIC) : len(MAGIC) + 32]
    payload = blob[len(MAGIC) + 32 :]
    if hashlib.blake2b(payload, digest_size=32).digest() != digest:
        log.debug("index %s has a bad digest; ignored", path)
        return {}
    try:
        rows = marshal.loads(payload)
        out = {}
        for name, ino, size, mtime, ctime, sid, completed, project, ts in rows:
            out[name] = ((ino, size, mtime, ctime), sid, completed, project, ts)
        return out
    except (ValueError, TypeError, EOFError):
        return {}


def write_index(directory: str, entries: dict) -> bool:
    """Write the index for the parsed, non-racy entries; False on failure."""
    rows = []
    for name, entry in entries.items():
        if entry.error is not None or entry.key is None or entry.racy:
            continue
        ino, size, mtime, ctime = entry.key
        rows.append((name, ino, size, mtime, ctime, entry.session_id, entry.completed, entry.project, entry.ts))
    try:
        payload = marshal.dumps(rows, 4)
    except ValueError:  # an unmarshallable value (should not happen): skip
        return False
    blob = MAGIC + hashlib.blake2b(payload, digest_size=32).digest() + payload
    path = os.path.join(directory, INDEX_NAME)
    tmp = os.path.join(directory, f"{INDEX_NAME}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC | _O_NOFOLLOW, 0o600)
        try:
            view = memoryview(blob)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
        return True
    except OSError as exc:
        log.debug("cannot write index %s: %s", path, exc)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return False
