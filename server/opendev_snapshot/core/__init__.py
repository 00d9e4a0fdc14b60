"""The domain core: models, codec, durable store. No editor or protocol imports."""

from .errors import ConfigError, InvalidSnapshot, SessionNotFound, SnapshotError, StorageError
from .store import COMPLETED, INTERRUPTED, RUNNING, SnapshotStore, new_record

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
