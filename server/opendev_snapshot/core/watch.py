"""Directory change feed (Linux inotify through ctypes), used for warm listings.

A long-lived process asks the kernel which names changed instead of
re-statting every file: a listing with no pending event costs one
non-blocking ``read``. Events are queued before the modifying syscall
returns, so an empty queue proves nothing changed *in the watched
directory, through it*. What the feed cannot see is left to the catalog's
safety check: the path re-pointed to another directory (a symlink, a
renamed parent, the directory deleted and re-created while something still
pins the old one), a write through a hard link elsewhere, and other hosts
on a network file system.

One inotify instance lives as long as the watcher, so its descriptor (what
an event loop waits on) never changes; :meth:`DirWatcher.attach` moves the
watch to whatever directory the path names now and records that
directory's identity (``st_dev``, ``st_ino``) from the very inode it
watches (``/proc/self/fd`` of a handle opened first), so the identity can
never describe a different directory than the one watched.

``IN_CLOSE_NOWRITE`` is watched only on the lock files of sessions known
to be held (:meth:`DirWatcher.watch_file`, see :mod:`.lockwatch`): a
holder that opened its lock file read-only leaves no other trace when it
dies. On the directory it would report every reader of every snapshot
(other servers' listings, the seed's, ours), so it is not asked for there.
"""

from __future__ import annotations

import os
import struct
import sys

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_CLOSE_NOWRITE = 0x00000010
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

MASK = (
    IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO
    | IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR
)
_SELF_GONE = IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED
_HEADER = struct.Struct("iIII")
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_PATH = getattr(os, "O_PATH", 0)

OVERFLOW = object()  # sentinel in the result of drain(): rescan everything

# statfs f_type of file systems whose changes can come from elsewhere (other
# hosts, other cluster nodes, a FUSE daemon): there inotify reports only what
# this machine's kernel did, so the directory is listed again by the safety check.
REMOTE_FS = frozenset({
    0x6969,  # nfs
    0x517B, 0xFF534D42, 0xFE534D42,  # smb, cifs, smb2
    0x65735546,  # fuse (sshfs, s3fs, ...)
    0x01021997,  # 9p
    0x00C36400,  # ceph
    0x5346414F, 0x6B414653,  # afs
    0x73757245,  # coda
    0x0BD00BD0,  # lustre
    0x47504653,  # gpfs
    0x01161970, 0x7461636F,  # gfs2, ocfs2
    0x564C,  # ncp
    0x20030528,  # orangefs
})


class DirWatcher:
    """Watch one directory; ``drain()`` returns ``{name: event mask}``."""

    def __init__(self, fd: int, libc) -> None:
        self._fd = fd
        self._libc = libc
        self.wd: int | None = None
        self.identity: tuple | None = None  # (st_dev, st_ino) of the watched directory
        self.local = False  # every name change in it is reported (not a remote file system)
        self._files: dict = {}  # wd -> name, for the files watched for IN_CLOSE_NOWRITE

    @classmethod
    def create(cls) -> "DirWatcher | None":
        """A new inotify instance, or None where there is none."""
        if not sys.platform.startswith("linux"):
            return None
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        except (OSError, AttributeError, ImportError):
            return None
        return cls(fd, libc) if fd >= 0 else None

    @property
    def attached(self) -> bool:
        return self.wd is not None and self._fd >= 0

    def fileno(self) -> int:
        return self._fd

    def attach(self, directory: str) -> bool:
        """Watch the directory ``directory`` names now (moving the watch if
        it named another one); False when it cannot be watched."""
        if self._fd < 0:
            return False
        try:
            handle = os.open(directory, (_O_PATH or os.O_RDONLY) | _O_DIRECTORY | _O_CLOEXEC)
        except OSError:
            self.detach()
            return False
        try:
            st = os.fstat(handle)
            target = f"/proc/self/fd/{handle}" if _O_PATH and os.path.isdir("/proc/self/fd") else directory
            wd = self._libc.inotify_add_watch(self._fd, os.fsencode(target), MASK)
            local = self._fs_type(target) not in REMOTE_FS
        finally:
            os.close(handle)
        if wd < 0:
            self.detach()
            return False
        if self.wd is not None and self.wd != wd:
            self._libc.inotify_rm_watch(self._fd, self.wd)  # its IN_IGNORED is not ours to act on
        self.wd = wd
        self.identity = (st.st_dev, st.st_ino)
        self.local = local
        return True

    def _fs_type(self, path: str) -> int | None:
        """``statfs(2)``'s ``f_type`` (its first field, a C long), None if unknown."""
        import ctypes

        buf = ctypes.create_string_buffer(512)
        if self._libc.statfs(os.fsencode(path), buf) != 0:
            return None
        return struct.unpack_from("l", buf.raw)[0] & 0xFFFFFFFF

    def detach(self) -> None:
        if self.wd is not None and self._fd >= 0:
            self._libc.inotify_rm_watch(self._fd, self.wd)
        self.wd = None
        self.identity = None
        self.local = False

    def watch_file(self, path: str, name: str) -> int | None:
        """Report ``IN_CLOSE_NOWRITE`` on the file ``path`` names now (e.g.
        ``/proc/self/fd/N`` of a handle on it) as an event for ``name``."""
        if not self.attached:
            return None
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(path), IN_CLOSE_NOWRITE)
        if wd < 0 or wd == self.wd:
            return None
        self._files[wd] = name
        return wd

    def unwatch_file(self, wd: int) -> None:
        if self._files.pop(wd, None) is not None and self._fd >= 0:
            self._libc.inotify_rm_watch(self._fd, wd)

    def drain(self) -> dict | object:
        """``{name: OR of event masks}`` since the last call, or OVERFLOW
        when it is unknown what changed (queue overflow, or the watched
        directory itself deleted or moved: then the watch is detached)."""
        if not self.attached:
            return OVERFLOW
        names: dict = {}
        overflow = gone = False
        current = self.wd
        while True:
            try:
                buf = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                break
            except OSError:
                self.close()
                return OVERFLOW
            if not buf:
                break
            pos = 0
            while pos + 16 <= len(buf):
                wd, mask, _cookie, length = _HEADER.unpack_from(buf, pos)
                pos += 16
                name = buf[pos : pos + length].rstrip(b"\0")
                pos += length
                if mask & IN_Q_OVERFLOW:
                    overflow = True
                elif wd != current:
                    file_name = self._files.get(wd)
                    if file_name is not None and mask & IN_CLOSE_NOWRITE:
                        names[file_name] = names.get(file_name, 0) | IN_CLOSE_NOWRITE
                    continue  # else: left over from a directory watched before
                elif mask & _SELF_GONE:
                    gone = True
                elif name:
                    key = os.fsdecode(name)
                    names[key] = names.get(key, 0) | mask
        if gone and self.wd == current:
            self.detach()  # the caller re-attaches to what the path names now, and rescans
        if overflow or gone:
            return OVERFLOW
        return names

    def close(self) -> None:
        self.wd = None
        self.identity = None
        self._files.clear()
        if self._fd >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = -1
