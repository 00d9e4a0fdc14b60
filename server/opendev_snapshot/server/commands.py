"""``workspace/executeCommand``: the contract's four commands, advertised at initialize.

Each handler gets ``(arguments, workDoneToken)`` (see :mod:`.rpc`).
``listIncomplete`` and ``cleanup`` also accept their method's params
object as the single argument.
"""

from __future__ import annotations

from .errors import invalid_params, rpc_errors, session_not_found
from .methods import list_incomplete, parse, run_cleanup

from .names import CMD_CLEANUP as CLEANUP
from .names import CMD_DISCARD as DISCARD
from .names import CMD_LIST_INCOMPLETE as LIST_INCOMPLETE
from .names import CMD_RECOVER as RECOVER


def _one(arguments: list, name: str, required: bool):
    if len(arguments) > 1:
        raise invalid_params("arguments", f"expected at most one argument ({name}), got {len(arguments)}")
    if not arguments:
        if required:
            raise invalid_params(name, "is required (arguments: [" + name + "])")
        return None
    return arguments[0]


def _session_id(arguments: list) -> str:
    value = _one(arguments, "sessionId", True)
    if isinstance(value, dict):
        return parse("SessionParams", value).session_id
    return parse("SessionParams", {"sessionId": value}).session_id


def register(server, ctx) -> None:
    @server.command(RECOVER)
    @rpc_errors
    def recover(ls, arguments, token=None):
        session_id = _session_id(arguments)
        listing = ctx.recovery.prompts.recover(session_id)
        if listing is None:
            raise session_not_found(session_id)
        return listing

    @server.command(DISCARD)
    @rpc_errors
    def discard(ls, arguments, token=None):
        session_id = _session_id(arguments)
        return {"removed": bool(ctx.store.remove(session_id))}

    @server.command(LIST_INCOMPLETE)
    @rpc_errors
    def list_incomplete_(ls, arguments, token=None):
        value = _one(arguments, "projectDir", False)
        params = value if isinstance(value, dict) else {"projectDir": value}
        p = parse("ListIncompleteParams", params)
        return list_incomplete(ctx, p.project_dir, p.status, p.limit)

    @server.command(CLEANUP)
    @rpc_errors
    async def cleanup(ls, arguments, token=None):
        value = _one(arguments, "maxAgeMs", True)
        params = value if isinstance(value, dict) else {"maxAgeMs": value}
        p = parse("CleanupParams", params)
        if isinstance(value, dict) and token is None:
            token = value.get("workDoneToken")
        return await run_cleanup(ls, ctx, p.max_age_ms, p.dry_run, p.include_incomplete, token)
