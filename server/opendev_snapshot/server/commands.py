"""``workspace/executeCommand``: the contract's commands, advertised at ``initialize``.

Each handler gets ``(arguments, workDoneToken)`` (see :mod:`.rpc`).
``listIncomplete`` and ``cleanup`` also accept their method's params object
as the single argument.
"""

from __future__ import annotations

from . import names, params
from .errors import invalid_params, rpc_errors, session_not_found
from .feature import Feature
from .methods import run_cleanup
from .prompts import Prompts
from .storage import Storage
from .wire import listing_to_wire


def _one(arguments: list, name: str, required: bool):
    if len(arguments) > 1:
        raise invalid_params("arguments", f"expected at most one argument ({name}), got {len(arguments)}")
    if not arguments:
        if required:
            raise invalid_params(name, f"is required (arguments: [{name}])")
        return None
    return arguments[0]


def _session_id(arguments: list):
    value = _one(arguments, "sessionId", True)
    return params.session_id(value if isinstance(value, dict) else {"sessionId": value})


class Commands(Feature):
    def __init__(self, server) -> None:
        super().__init__(server)
        self.storage = server.get_feature(Storage)
        self.prompts = server.get_feature(Prompts)
        self._register(server)

    def _register(self, server) -> None:
        @server.command(names.CMD_RECOVER)
        @rpc_errors
        def recover(ls, arguments, token=None):
            session_id = _session_id(arguments)
            listing = self.prompts.recover(session_id)
            if listing is None:
                raise session_not_found(session_id, f"session {session_id!r} is not recoverable (no incomplete snapshot)")
            return listing

        @server.command(names.CMD_DISCARD)
        @rpc_errors
        def discard(ls, arguments, token=None):
            return {"removed": bool(self.storage.store.remove(_session_id(arguments), force=False))}

        @server.command(names.CMD_RESTORE)
        @rpc_errors
        def restore(ls, arguments, token=None):
            return listing_to_wire(self.storage.store.restore(_session_id(arguments)))

        @server.command(names.CMD_LIST_INCOMPLETE)
        @rpc_errors
        def list_incomplete_(ls, arguments, token=None):
            value = _one(arguments, "projectDir", False)
            raw = value if isinstance(value, dict) else {"projectDir": value}
            return self.storage.list_incomplete(*params.list_incomplete(raw))

        @server.command(names.CMD_CLEANUP)
        @rpc_errors
        async def cleanup(ls, arguments, token=None):
            value = _one(arguments, "maxAgeMs", True)
            raw = value if isinstance(value, dict) else {"maxAgeMs": value}
            max_age_ms, dry_run, include_incomplete, own_token = params.cleanup(raw)
            return await run_cleanup(
                ls, self.storage.store, max_age_ms, dry_run, include_incomplete, token if token is not None else own_token
            )
