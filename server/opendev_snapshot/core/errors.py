"""Errors raised by the domain core.

Front doors translate these in exactly one place each: the JSON-RPC server
into error codes, the IPython extension into ``UsageError`` and the command
line into a message on stderr with a non-zero exit code.
"""

from __future__ import annotations


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
