"""The ``opendev/snapshot.*`` methods (contract section 3): map the params, call the store, answer.

Params arrive as raw JSON (see :mod:`.rpc`); :mod:`.params` maps them onto
the core's arguments and the core validates them, once. Results are the
camelCase dicts of :mod:`.wire`. Every failure leaves through
:mod:`.errors`. Handlers are synchronous (a durable write takes well under
a millisecond) except ``cleanup``, which runs in a worker thread and
reports ``$/progress``.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from . import names, params
from .errors import rpc_errors
from .feature import Feature
from .options import DEFAULTS
from .storage import Storage
from .wire import listing_to_wire, snapshot_to_wire, trash_to_wire

log = logging.getLogger(__name__)


async def run_cleanup(ls, store, max_age_ms, dry_run: bool, include_incomplete: bool, token=None) -> dict:
    """Clean up in a worker thread, reporting ``$/progress`` on ``token``."""
    from .progress import Reporter

    reporter = Reporter(ls, token, "Cleaning up OpenDev snapshots")
    reporter.begin()
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def settle(result, exc) -> None:
        if not future.done():
            future.set_exception(exc) if exc is not None else future.set_result(result)

    def work() -> None:
        try:
            result = store.cleanup(
                max_age_ms, dry_run=dry_run, include_incomplete=include_incomplete, progress=reporter.threadsafe_report
            )
        except BaseException as exc:  # noqa: BLE001 - handed to the loop
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=work, name="cleanup", daemon=True).start()
    try:
        result = await future
    except BaseException:
        reporter.end("Cleanup failed")
        raise
    verb = "Would move" if dry_run else "Moved"
    reporter.end(f"{verb} {result.removed_count} snapshot(s) to the trash")
    return {"removedCount": result.removed_count, "sessionIds": list(result.session_ids), "dryRun": result.dry_run}


class Methods(Feature):
    """Registers the methods; knows the settings that shape their answers."""

    def __init__(self, server) -> None:
        super().__init__(server)
        self.settings = DEFAULTS
        self.storage = server.get_feature(Storage)
        self._register(server)

    def initialize(self, settings, folders) -> None:
        self.settings = settings

    @property
    def store(self):
        return self.storage.store

    def _register(self, server) -> None:
        @server.feature(names.SAVE)
        @rpc_errors
        def save(ls, raw):
            record, claim, force = params.save(raw)
            out = self.store.save(record, claim=claim, force=force)
            return {
                "sessionId": out["session_id"],
                "path": str(out["path"]),
                "snapshotTimestampMs": out["snapshot_timestamp_ms"],
                "claimed": bool(out["claimed"]),
            }

        @server.feature(names.LOAD)
        @rpc_errors
        def load(ls, raw):
            record = self.store.load(params.session_id(raw))
            return None if record is None else snapshot_to_wire(record)

        @server.feature(names.LIST_INCOMPLETE)
        @rpc_errors
        def list_incomplete_(ls, raw):
            return self.storage.list_incomplete(*params.list_incomplete(raw))

        @server.feature(names.CLEANUP)
        @rpc_errors
        async def cleanup(ls, raw):
            max_age_ms, dry_run, include_incomplete, token = params.cleanup(raw)
            return await run_cleanup(ls, self.store, max_age_ms, dry_run, include_incomplete, token)

        @server.feature(names.REMOVE)
        @rpc_errors
        def remove(ls, raw):
            session_id, force = params.remove(raw)
            return {"removed": bool(self.store.remove(session_id, force=force))}

        @server.feature(names.LIST_TRASH)
        @rpc_errors
        def list_trash(ls, raw):
            params.no_params(raw)
            return trash_to_wire(self.store.list_trash())

        @server.feature(names.RESTORE)
        @rpc_errors
        def restore(ls, raw):
            return listing_to_wire(self.store.restore(params.session_id(raw)))

        @server.feature(names.MARK_COMPLETED)
        @rpc_errors
        def mark_completed(ls, raw):
            out = self.store.mark_completed(params.session_id(raw))
            return {"sessionId": out["session_id"], "snapshotTimestampMs": out["snapshot_timestamp_ms"]}

        @server.feature(names.RECORD_TOOL_RESULT)
        @rpc_errors
        def record_tool_result(ls, raw):
            session_id, entry, max_entries = params.record_tool_result(raw)
            count = self.store.record_tool_result(
                session_id,
                entry,
                max_entries=self.settings.max_tool_results if max_entries is None else max_entries,
                preview_chars=self.settings.preview_chars,
            )
            return {"sessionId": session_id, "count": count}
