"""The domain core: models, codec, durable store. No editor or protocol imports."""

from .errors import ConfigError, InvalidSnapshot, SessionNotFound, SnapshotError, StorageError
from .records import COMPLETED, INTERRUPTED, RUNNING, new_record
from .store import SnapshotStore

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
