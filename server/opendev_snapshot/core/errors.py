"""Errors raised by the domain core.

Front doors translate these in exactly one place each: the JSON-RPC server
into error codes, the IPython extension into ``UsageError`` and the command
line into a message on stderr with a non-zero exit code.
"""

from __future__ import annotations

from .text import printable


class SnapshotError(Exception):
    """Base class of every error the core raises on purpose."""


class InvalidSnapshot(SnapshotError, ValueError):
    """A value does not satisfy the contract; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


class SessionNotFound(SnapshotError, LookupError):
    """No snapshot exists for a session id where one is required."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(f"no snapshot for session {session_id!r}")


class NotInTrash(SessionNotFound):
    """``restore`` of an id that has no restorable entry in the trash."""

    def __init__(self, session_id: str) -> None:
        super().__init__(session_id)
        self.args = (f"session {session_id!r} is not in the trash",)


class SessionRunning(SnapshotError):
    """Another live process holds the session (``-32003``).

    ``holder`` is the lock file's JSON object (``pid``, ``host``,
    ``startedMs``, ``kind``, ...), or None when there is no readable one
    (for example a lock-less snapshot that is running by its age).
    """

    def __init__(self, session_id: str, holder: dict | None) -> None:
        self.session_id = session_id
        self.holder = holder
        who = ""
        if holder and holder.get("pid") is not None:
            who = printable(f" (pid {holder['pid']}" + (f" on {holder['host']}" if holder.get("host") else "") + ")")
        elif holder is None:
            who = " (no lock file; saved moments ago)"
        super().__init__(f"session {session_id!r} is running in another process{who}; use force to override")


class SessionExists(SnapshotError):
    """``restore`` refused: a snapshot with that id exists again (``-32003``)."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(f"session {session_id!r} exists again; not restored over it")


class AmbiguousId(SnapshotError, LookupError):
    """A prefix matches several session ids."""

    def __init__(self, prefix: str, matches: list) -> None:
        self.prefix = prefix
        self.matches = list(matches)
        shown = ", ".join(self.matches[:5]) + (", ..." if len(self.matches) > 5 else "")
        super().__init__(f"{prefix!r} matches {len(self.matches)} sessions: {shown}")


class StorageError(SnapshotError, OSError):
    """The file system refused an operation; the message says what failed."""

    def __init__(self, action: str, path: object, cause: OSError | None = None) -> None:
        self.action = action
        self.path = str(path)
        self.cause = cause
        detail = ""
        if cause is not None:
            detail = f": {cause.strerror or cause}" if isinstance(cause, OSError) else f": {cause}"
        super().__init__(f"{action} {self.path}{detail}")
        if cause is not None and isinstance(cause, OSError):
            self.errno = cause.errno


class ConfigError(SnapshotError):
    """The snapshot directory cannot be determined (no home, bad setting)."""
