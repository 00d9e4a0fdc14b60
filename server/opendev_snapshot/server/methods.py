"""The seven ``opendev/snapshot.*`` methods: validate, call the store, answer.

Params arrive as raw JSON (see :mod:`.rpc`), are validated with the
pydantic models of :mod:`opendev_snapshot.core.models` (imported on first
use, off the start-up path) and results are plain camelCase dicts built by
us. Errors leave through :mod:`.errors`.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from .errors import invalid_params, rpc_errors
from .names import CLEANUP, LIST_INCOMPLETE, LOAD, MARK_COMPLETED, RECORD_TOOL_RESULT, REMOVE, SAVE
from .rpc import fast

log = logging.getLogger(__name__)


def models():
    """The pydantic models (first call pays the import; later calls are free)."""
    from ..core import models as m

    return m


def prewarm_models() -> threading.Thread:
    """Import pydantic and build the validators in a background thread.

    Join it before the interpreter exits: a daemon thread torn down inside
    pydantic-core (Rust) aborts the process ("exception not rethrown").
    """

    def work() -> None:
        try:
            m = models()
            m.SaveParams.model_validate({"sessionId": "warm-up", "projectDir": "/"})
        except Exception:  # pragma: no cover - the first request will report it
            log.debug("pre-importing the models failed", exc_info=True)

    thread = threading.Thread(target=work, name="models-prewarm", daemon=True)
    thread.start()
    return thread


def parse(model_name: str, params):
    """Validate raw params into ``model_name`` (missing params = ``{}``)."""
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise invalid_params("params", "must be an object with named fields")
    return getattr(models(), model_name).model_validate(params)


def listing_wire(store, record: dict) -> dict:
    from ..core.wire import listing_to_wire

    listing = dict(record)
    listing["status"] = store.status_of(record)
    listing["path"] = str(store.snapshot_path(record["session_id"]))
    return listing_to_wire(listing)


def list_incomplete(ctx, project_dir=None, status=None, limit=None) -> dict:
    from ..core.wire import list_result_to_wire

    result = ctx.store.list(project_dir=project_dir, status=status, limit=limit)
    return list_result_to_wire(result)


async def run_cleanup(ls, ctx, max_age_ms: int, dry_run: bool, include_incomplete: bool, token=None) -> dict:
    """Clean up in a worker thread, reporting ``$/progress`` on ``token``."""
    from .progress import Reporter

    store = ctx.store
    reporter = Reporter(ls, token, "Cleaning up OpenDev snapshots")
    reporter.begin()
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def work() -> None:
        try:
            result = store.cleanup(
                max_age_ms,
                dry_run=dry_run,
                include_incomplete=include_incomplete,
                progress=reporter.threadsafe_report,
            )
        except BaseException as exc:  # noqa: BLE001 - handed to the loop
            loop.call_soon_threadsafe(_settle, future, None, exc)
        else:
            loop.call_soon_threadsafe(_settle, future, result, None)

    threading.Thread(target=work, name="cleanup", daemon=True).start()
    try:
        result = await future
    except BaseException:
        reporter.end("Cleanup failed")
        raise
    verb = "Would remove" if dry_run else "Removed"
    reporter.end(f"{verb} {result.removed_count} snapshot(s)")
    return models().CleanupResult(
        removed_count=result.removed_count, session_ids=list(result.session_ids), dry_run=result.dry_run
    ).to_wire()


def _settle(future, result, exc) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


def register(server, ctx) -> None:
    @server.feature(SAVE)
    @fast
    @rpc_errors
    def save(ls, params):
        p = parse("SaveParams", params)
        out = ctx.store.save(p.to_record(), claim=p.claim)
        return {
            "sessionId": out["session_id"],
            "path": out["path"],
            "snapshotTimestampMs": out["snapshot_timestamp_ms"],
        }

    @server.feature(LOAD)
    @fast
    @rpc_errors
    def load(ls, params):
        from ..core.wire import snapshot_to_wire

        p = parse("SessionParams", params)
        record = ctx.store.load(p.session_id)
        return None if record is None else snapshot_to_wire(record)

    @server.feature(LIST_INCOMPLETE)
    @fast
    @rpc_errors
    def list_incomplete_(ls, params):
        p = parse("ListIncompleteParams", params)
        return list_incomplete(ctx, p.project_dir, p.status, p.limit)

    @server.feature(CLEANUP)
    @rpc_errors
    async def cleanup(ls, params):
        p = parse("CleanupParams", params)
        token = params.get("workDoneToken") if isinstance(params, dict) else None
        return await run_cleanup(ls, ctx, p.max_age_ms, p.dry_run, p.include_incomplete, token)

    @server.feature(REMOVE)
    @fast
    @rpc_errors
    def remove(ls, params):
        p = parse("SessionParams", params)
        return {"removed": bool(ctx.store.remove(p.session_id))}

    @server.feature(MARK_COMPLETED)
    @fast
    @rpc_errors
    def mark_completed(ls, params):
        p = parse("SessionParams", params)
        out = ctx.store.mark_completed(p.session_id)
        return {"sessionId": out["session_id"], "snapshotTimestampMs": out["snapshot_timestamp_ms"]}

    @server.feature(RECORD_TOOL_RESULT)
    @fast
    @rpc_errors
    def record_tool_result(ls, params):
        p = parse("RecordToolResultParams", params)
        entry = {
            "tool_name": p.tool_name,
            "call_id": p.call_id,
            "output_preview": p.output_preview,
            "success": p.success,
        }
        max_entries = ctx.options.max_tool_results if p.max_entries is None else p.max_entries
        count = ctx.store.record_tool_result(
            p.session_id, entry, max_entries=max_entries, preview_chars=ctx.options.preview_chars
        )
        return {"sessionId": p.session_id, "count": count}
