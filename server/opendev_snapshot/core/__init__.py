"""The domain core: models, codec, durable store. No editor or protocol imports.

``SnapshotStore`` is imported on first use (PEP 562): importing
``opendev_snapshot.core.errors`` (the CLI, the server) no longer pays for
the whole store (~15 ms) on the start-up path of ``opendev-snapshot serve``.
"""

from .errors import ConfigError, InvalidSnapshot, SessionNotFound, SnapshotError, StorageError
from .records import COMPLETED, INTERRUPTED, RUNNING, new_record

__all__ = [
    "COMPLETED",
    "INTERRUPTED",
    "RUNNING",
    "ConfigError",
    "InvalidSnapshot",
    "SessionNotFound",
    "SnapshotError",
    "SnapshotStore",
    "StorageError",
    "new_record",
]


def __getattr__(name: str):
    if name == "SnapshotStore":
        from .store import SnapshotStore

        return SnapshotStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
