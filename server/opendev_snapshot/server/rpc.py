"""pygls underneath, with its 2.1.1 traps closed.

- :func:`converter_factory` keeps the params of messages lsprotocol does not
  type (our ``opendev/*`` methods) as plain JSON values instead of pygls'
  namedtuple ``Object`` (which renames keys like ``class`` and echoes back
  as an array), and defaults a missing ``params`` key to ``None`` (pygls
  otherwise fails to build the message and never answers the request).
  Custom params are *not* typed through ``get_message_type``: malformed
  params would then fail while the message is read, with no reply at all.
  Handlers validate them with the pydantic models instead.
- :class:`SnapshotProtocol` serialises plain-dict results and params
  straight to JSON (our results are already camelCase wire dicts), records
  the exit code instead of calling ``sys.exit`` inside a handler (pygls
  2.1.1 swallows it and always exits 0), passes ``workDoneToken`` to
  commands, and advertises no text document sync (we need no documents).
"""

from __future__ import annotations

import contextvars
import json
import logging
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInternalError, JsonRpcInvalidParams
from pygls.protocol import LanguageServerProtocol, default_converter, lsp_method
from pygls.protocol.json_rpc import (
    JsonRPCNotification,
    JsonRPCRequestMessage,
    JsonRPCResponseMessage,
)

log = logging.getLogger(__name__)

_HEADER = "Content-Length: {}\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n"


def _request_hook(obj: dict, cls):
    return cls(id=obj["id"], method=obj["method"], jsonrpc=obj["jsonrpc"], params=obj.get("params"))


def _notification_hook(obj: dict, cls):
    return cls(method=obj["method"], jsonrpc=obj["jsonrpc"], params=obj.get("params"))


def _response_hook(obj: dict, cls):
    return cls(id=obj["id"], jsonrpc=obj["jsonrpc"], result=obj.get("result"))


def converter_factory():
    """lsprotocol's converter, but untyped messages keep raw JSON params."""
    converter = default_converter()
    converter.register_structure_hook(JsonRPCRequestMessage, _request_hook)
    converter.register_structure_hook(JsonRPCNotification, _notification_hook)
    converter.register_structure_hook(JsonRPCResponseMessage, _response_hook)
    return converter


class SnapshotProtocol(LanguageServerProtocol):
    """LanguageServerProtocol with the fixes above; see the module docstring."""

    def __init__(self, server, converter):
        super().__init__(server, converter)
        self.exit_code: int | None = None
        self.on_exit = None  # set by the composition root: called once on `exit`

    # ------------------------------------------------------------ incoming
    def handle_message(self, message):
        """pygls' dispatch without its runtime ``Protocol`` isinstance checks
        (about 20 µs a message); same routing, same shutdown rule."""
        if message.jsonrpc != "2.0":
            log.warning("unknown message %r", message)
            return
        method = getattr(message, "method", None)
        if self._shutdown and method != types.EXIT:
            log.warning("server shutting down; ignoring %r", method)
            return
        ctx = contextvars.copy_context()
        if method is not None:
            if hasattr(message, "id"):
                ctx.run(self._handle_request, message.id, method, message.params)
            else:
                ctx.run(self._handle_notification, method, message.params)
        elif hasattr(message, "error"):
            ctx.run(self._handle_response, message.id, None, message.error)
        else:
            ctx.run(self._handle_response, message.id, message.result)

    def _handle_request(self, msg_id, method_name, params):
        """Plain synchronous handlers of ours (marked ``fast``) are called
        directly and answered at once; everything else goes through pygls'
        Future/callback machinery. Either way every request is answered."""
        handler = self.fm.features.get(method_name)
        if handler is None or self._shutdown or not getattr(getattr(handler, "func", handler), "fast", False):
            return super()._handle_request(msg_id, method_name, params)
        try:
            result = handler(params)
        except JsonRpcException as exc:
            log.debug("request %s answered with error %s: %s", msg_id, exc.code, exc.message)
            self._send_data({"jsonrpc": "2.0", "id": msg_id, "error": _error_dict(exc)})
        except Exception as exc:  # rpc_errors maps ours; this is a last resort
            log.exception("unexpected error in %s", method_name)
            error = JsonRpcInternalError(message=f"internal error: {type(exc).__name__}: {exc}")
            self._send_data({"jsonrpc": "2.0", "id": msg_id, "error": _error_dict(error)})
        else:
            self._send_data({"jsonrpc": "2.0", "id": msg_id, "result": result})

    # ------------------------------------------------------------ outgoing
    def _send_data(self, data: Any):
        kind = type(data)
        if kind is JsonRPCResponseMessage and _plain(data.result):
            data = {"jsonrpc": "2.0", "id": data.id, "result": data.result}
        elif kind is JsonRPCNotification and _plain(data.params):
            data = {"jsonrpc": "2.0", "method": data.method, "params": data.params}
        if type(data) is not dict:
            return super()._send_data(data)
        if self.writer is None:
            log.error("cannot send a message: no transport")
            return
        body = json.dumps(data, separators=(",", ":")).encode("utf-8")
        if log.isEnabledFor(logging.DEBUG):
            log.debug("-> %s", body[:2000])
        frame = _HEADER.format(len(body)).encode("ascii") + body if self._include_headers else body
        self.writer.write(frame)

    def _send_handler_result(self, future, *, msg_id):
        """Answer a request; expected protocol errors are not logged as crashes."""
        if not future.cancelled():
            exc = future.exception()
            if isinstance(exc, JsonRpcException) and exc.code != -32603:
                self._request_futures.pop(msg_id, None)
                log.debug("request %s answered with error %s: %s", msg_id, exc.code, exc.message)
                self._send_response(msg_id, error=exc.to_response_error())
                return
        super()._send_handler_result(future, msg_id=msg_id)

    # ------------------------------------------------------------ lifecycle
    @lsp_method(types.INITIALIZE)
    def lsp_initialize(self, params: types.InitializeParams):
        result = yield from super().lsp_initialize(params)
        # We track no documents: ask the client not to send them.
        result.capabilities.text_document_sync = types.TextDocumentSyncOptions(
            open_close=False, change=types.TextDocumentSyncKind.None_
        )
        return result

    @lsp_method(types.EXIT)
    def lsp_exit(self, *args):
        """Record 0 after `shutdown`, 1 otherwise; the transport then stops."""
        if self.exit_code is None:
            self.exit_code = 0 if self._shutdown else 1
        callback, self.on_exit = self.on_exit, None
        if callback is not None:
            callback(self.exit_code)

    @lsp_method(types.WORKSPACE_EXECUTE_COMMAND)
    def lsp_workspace__execute_command(self, params: types.ExecuteCommandParams):
        """Commands get ``(arguments, workDoneToken)``; unknown names are -32602."""
        handler = self.fm.commands.get(params.command)
        if handler is None:
            raise JsonRpcInvalidParams(
                message=f"invalid params: command: unknown command {params.command!r}",
                data={"field": "command"},
            )
        arguments = list(params.arguments) if params.arguments is not None else []
        result = yield handler, (arguments, params.work_done_token), None
        return result


def _error_dict(exc: JsonRpcException) -> dict:
    error = {"code": exc.code, "message": exc.message}
    if exc.data is not None:
        error["data"] = exc.data
    return error


def fast(handler):
    """Mark a plain, synchronous, already error-mapped handler for the direct path."""
    handler.fast = True
    return handler


def _plain(value: Any) -> bool:
    return value is None or type(value) in (dict, list, str, int, float, bool)
