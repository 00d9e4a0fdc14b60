"""The write path of one session: save, update, and the writes built on update.

Every write runs under the store's mutex and the session's update lock
(:mod:`.serial`), so no save is lost to a concurrent read-modify-write. A
record is validated once (:func:`prepare`: a fresh dict, previews redacted),
encoded once and written durably (:mod:`.durable`); the listing view keeps
it with its bytes (``Catalog.wrote``) instead of parsing that file again
when the change feed reports it.

``SnapshotStore.save``, ``update``, ``record_tool_result`` and
``mark_completed`` are the documented entry points (``docs/CORE_API.md``);
each is one call into this module (the save path's only call more than
the code it runs here).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable

from . import codec, liveness
from .durable import write_atomic
from .errors import InvalidSnapshot, SessionNotFound, SessionRunning, StorageError
from .paths import SNAPSHOT_SUFFIX
from .records import append_tool_result, complete_record, now_ms, tool_result_entry
from .redact import redact
from .validation import MAX_ENCODED_BYTES, check_record, check_session_id

if TYPE_CHECKING:
    from .store import SnapshotStore


def save(store: "SnapshotStore", record: dict, claim: bool, force: bool) -> dict:
    clean = prepare(store, record)
    try:
        return _save(store, clean, claim, force)
    except StorageError:
        # Not stat-ed before every save: a save that fails where the
        # directory is missing (the first one, or one removed since)
        # makes it (mode 0700) and tries once more; a file in its place
        # is refused here with ensure_dir's own words.
        if os.path.isdir(store._dir):
            raise
        store.ensure_dir()
        return _save(store, clean, claim, force)


def _save(store: "SnapshotStore", clean: dict, claim: bool, force: bool) -> dict:
    session_id = clean["session_id"]
    with store._mutex, store._updates.hold(session_id):
        if claim:
            claimed = store._claims.claim(session_id)
            if not claimed and not force:
                raise SessionRunning(session_id, liveness.read_info(store._lock(session_id)))
        else:
            claimed = store.holds(session_id)
        path = write(store, clean, remember=True)
    return {"session_id": session_id, "path": path, "snapshot_timestamp_ms": clean["snapshot_timestamp_ms"], "claimed": claimed}


def prepare(store: "SnapshotStore", record: dict) -> dict:
    clean = check_record(record)  # a fresh dict: the caller's record is left alone
    if store.redact_secrets:
        for item in clean["last_tool_results"]:
            item["output_preview"] = redact(item["output_preview"])
    return clean


def write(store: "SnapshotStore", clean: dict, *, remember: bool = False) -> str:
    """Encode a record ``prepare`` validated (once: not again) and write it durably.

    ``remember``: ``clean`` is ours alone (``save`` hands it to nobody,
    ``update`` a copy), so the listing view may keep it as the record of
    the file just written instead of parsing that file again when the
    change feed reports it.
    """
    data = codec.encode_record(clean)
    if len(data) > MAX_ENCODED_BYTES:
        raise InvalidSnapshot(
            "last_tool_results" if clean["last_tool_results"] else "project_dir",
            f"snapshot encodes to {len(data)} bytes, over the 1 MiB limit",
        )
    name = clean["session_id"] + SNAPSHOT_SUFFIX
    path = write_atomic(store._dir, name, data, what="snapshot")
    if remember:
        store._catalog.wrote(name, data, clean)
    return path


def update(store: "SnapshotStore", session_id: str, fn: Callable[[dict], object]) -> dict:
    check_session_id(session_id)
    if not os.path.isdir(store._dir):
        raise SessionNotFound(session_id)
    with store._mutex, store._updates.hold(session_id):
        record = store.load(session_id)
        if record is None:
            raise SessionNotFound(session_id)
        fn(record)
        if record.get("session_id") != session_id:
            raise InvalidSnapshot("session_id", "an update cannot change the session id")
        clean = prepare(store, record)
        write(store, clean, remember=True)
        # the listing view keeps ``clean``: the caller gets its own copy
        return {**clean, "last_tool_results": [dict(item) for item in clean["last_tool_results"]]}


def record_tool_result(store: "SnapshotStore", session_id: str, entry: dict, max_entries: int, preview_chars: int) -> int:
    clean = tool_result_entry(entry, max_entries, preview_chars, redact if store.redact_secrets else None)

    def append(record: dict) -> None:
        append_tool_result(record, clean, max_entries)
        record["snapshot_timestamp_ms"] = now_ms()

    return len(update(store, session_id, append)["last_tool_results"])


def mark_completed(store: "SnapshotStore", session_id: str) -> dict:
    check_session_id(session_id)
    if not os.path.isdir(store._dir):
        raise SessionNotFound(session_id)
    with store._mutex, store._updates.hold(session_id):
        record = update(store, session_id, complete_record)
        store._drop_lock(session_id)
    path = os.path.join(store._dir, session_id + SNAPSHOT_SUFFIX)
    return {"session_id": session_id, "path": path, "snapshot_timestamp_ms": record["snapshot_timestamp_ms"]}
