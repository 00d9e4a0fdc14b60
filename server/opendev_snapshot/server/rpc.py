"""pygls underneath, with the pygls 2.1.1 behaviours we cannot ship with corrected.

Every message is read by ``pygls.io_.run_async``, structured by pygls'
converter, dispatched by pygls and answered by pygls. What is here corrects
named pygls 2.1.1 behaviours (each has a test in
``tests/unit/test_server_rpc.py`` that fails without it) or sets what we
advertise; nothing here is about speed.

1. :func:`converter_factory` (public converter hooks):

   - messages lsprotocol does not type (our ``opendev/*`` methods) keep their
     params as plain JSON values: pygls' default turns an object into a
     namedtuple ``Object`` (keys like ``class`` are renamed, echoing one
     back serialises as an array);
   - a request without a ``params`` key (legal JSON-RPC; vscode-jsonrpc's
     ``RequestType0``, Neovim's ``nil``) structures with ``params: None``:
     pygls 2.1.1 fails to build it and never answers;
   - an error response keeps ``"id": null``: lsprotocol omits a ``None`` id,
     and JSON-RPC 2.0 requires it for an error whose request is unknown;
   - pygls' generic response and notification (what our handlers' plain
     dicts travel in) unstructure to a plain dict without walking the
     result: cattrs would copy every value of a 230 KB listing in Python
     (~1.5 ms) before ``json.dumps`` encodes it in C. A typed object inside
     still goes through the converter (``json.dumps``' ``default``). Speed,
     through the converter's public hooks.

2. :meth:`SnapshotProtocol.structure_message`: a message pygls cannot
   structure (typed params that do not fit, e.g. ``initialize`` with
   ``capabilities: {"textDocument": 5}``) raises inside ``json.loads``'
   object hook, where ``run_async`` only logs it: the request is never
   answered. It becomes an :class:`Unreadable` that :meth:`handle_message`
   answers. A typed message without params (or ``null``) whose params type
   needs no field is structured with ``{}``: pygls 2.1.1 drops
   ``initialized`` without ``params``.

3. :meth:`SnapshotProtocol.handle_message` answers what pygls drops without a
   word: an :class:`Unreadable` request (``-32602``, ``-32600``), a request
   that is not JSON-RPC 2.0 or has an invalid id or method (``-32600``), a
   batch or a non-object (``-32600``, ``id: null``), a request after
   ``shutdown`` (``-32600``; the LSP says so, pygls drops it and the client
   waits forever); an unreadable response fails the request it answers
   (pygls leaves it pending forever). Then it hands over to pygls.
   Replying outside a handler needs pygls' ``_send_response``: the one
   private call, in :meth:`reply_error`.

4. :meth:`SnapshotProtocol.lsp_initialize` advertises ``openClose: false``
   (pygls counts its own built-in ``didOpen`` as ours and says ``true``): we
   need no documents.

5. :meth:`SnapshotProtocol.lsp_workspace__execute_command` passes the
   request's ``workDoneToken`` to our commands (pygls drops it) and names
   ``command`` in the ``-32602`` of an unknown command.

Parse errors (``-32700``, ``id: null``) are answered by :func:`parse_error_handler`,
given to ``run_async`` as its public ``error_handler``.

:class:`QuietExpectedErrors` (a ``logging.Filter`` on pygls' loggers) keeps
a client's mistake from filling the log with tracebacks: pygls logs every
``-32602`` answer and every unparsable message at ERROR with a traceback;
we answer those and log one warning line instead. Real failures
(``-32603``, anything else) still come through.

The exit code needs no override: pygls' ``exit`` raises ``SystemExit(0)``
after ``shutdown`` and ``SystemExit(1)`` otherwise; ``start_io`` swallows it
(always 0), ``run_async`` driven by us lets it through (see :mod:`.app`).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import attrs
from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.protocol import LanguageServerProtocol, default_converter, lsp_method
from pygls.protocol.json_rpc import (
    JsonRPCNotification,
    JsonRPCRequestMessage,
    JsonRPCResponseMessage,
)

log = logging.getLogger(__name__)

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INTERNAL_ERROR = -32603


# ------------------------------------------------------------------ converter
def _request_hook(obj: dict, cls):
    return cls(id=obj["id"], method=obj["method"], jsonrpc=obj["jsonrpc"], params=obj.get("params"))


def _notification_hook(obj: dict, cls):
    return cls(method=obj["method"], jsonrpc=obj["jsonrpc"], params=obj.get("params"))


def _response_hook(obj: dict, cls):
    return cls(id=obj["id"], jsonrpc=obj["jsonrpc"], result=obj.get("result"))


def converter_factory():
    """lsprotocol's converter; untyped messages keep raw JSON params; error ids stay."""
    converter = default_converter()
    converter.register_structure_hook(JsonRPCRequestMessage, _request_hook)
    converter.register_structure_hook(JsonRPCNotification, _notification_hook)
    converter.register_structure_hook(JsonRPCResponseMessage, _response_hook)
    converter.register_unstructure_hook(
        types.ResponseErrorMessage,
        lambda m: {"jsonrpc": m.jsonrpc, "id": m.id, "error": converter.unstructure(m.error)},
    )
    converter.register_unstructure_hook(
        JsonRPCResponseMessage, lambda m: {"jsonrpc": m.jsonrpc, "id": m.id, "result": m.result}
    )
    converter.register_unstructure_hook(
        JsonRPCNotification, lambda m: {"jsonrpc": m.jsonrpc, "method": m.method, "params": m.params}
    )
    return converter


# ------------------------------------------------------------------ messages
@attrs.define
class Unreadable:
    """A JSON-RPC message pygls could not structure, and why."""

    raw: dict
    error: JsonRpcException


def _valid_id(value) -> bool:
    return type(value) in (int, str)


def describe(exc: BaseException) -> str:
    """One line on why a message could not be structured (cattrs' notes when there are some)."""
    cause = exc.__cause__ or exc
    subs = getattr(cause, "exceptions", None)
    if subs:
        parts = []
        for sub in subs:
            notes = getattr(sub, "__notes__", None) or []
            parts.append(f"{notes[0]}: {sub}" if notes else describe(sub))
        return "; ".join(parts)[:500]
    text = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
    return text[:500]


class SnapshotProtocol(LanguageServerProtocol):
    """LanguageServerProtocol with the corrections listed in the module docstring."""

    def __init__(self, server, converter):
        super().__init__(server, converter)
        self._structure = converter.structure  # our own handle on the converter we were given
        self.shutdown_received = False  # pygls keeps its own flag private
        self._fills_empty: dict[str, bool] = {}

    # ---------------------------------------------------------- 2. structure
    def structure_message(self, data: dict[str, Any]):
        if "jsonrpc" not in data:  # a nested object (json.loads' object hook sees every one)
            return data
        method = data.get("method")
        if isinstance(method, str) and data.get("params") is None and self._empty_params_fit(method):
            data = {**data, "params": {}}
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            return Unreadable(raw=data, error=exc)

    def _empty_params_fit(self, method: str) -> bool:
        """Whether ``method`` is typed with a params object that needs no field."""
        known = self._fills_empty.get(method)
        if known is None:
            known = False
            message_type = self.get_message_type(method)
            if message_type is not None and attrs.has(message_type):
                field = attrs.fields_dict(message_type).get("params")
                if field is not None and field.default is attrs.NOTHING and attrs.has(field.type):
                    try:
                        self._structure({}, field.type)
                        known = True
                    except Exception:
                        known = False
            self._fills_empty[method] = known
        return known

    # ------------------------------------------------------------- 3. handle
    def handle_message(self, message):
        if not self._admissible(message):
            return
        super().handle_message(message)

    def _admissible(self, message) -> bool:
        """Answer (or drop) what pygls would drop silently; True to hand over."""
        if isinstance(message, Unreadable):
            raw = message.raw
            if "method" in raw:
                if "id" in raw:
                    if not _valid_id(raw["id"]):
                        self.reply_error(None, INVALID_REQUEST, "invalid request: id must be a string or an integer")
                    elif not isinstance(raw["method"], str):
                        self.reply_error(raw["id"], INVALID_REQUEST, "invalid request: method must be a string")
                    else:
                        code = message.error.code
                        what = "invalid params" if code == JsonRpcInvalidParams.CODE else message.error.message
                        self.reply_error(raw["id"], code, f"{what} for {raw['method']}: {describe(message.error)}")
                else:
                    log.warning("dropping a malformed %r notification: %s", raw.get("method"), describe(message.error))
            elif "id" in raw and _valid_id(raw["id"]):
                # An answer to one of our requests that we cannot read: fail
                # that request (pygls would leave it pending forever).
                super().handle_message(
                    types.ResponseErrorMessage(
                        id=raw["id"],
                        error=types.ResponseError(code=INTERNAL_ERROR, message=f"unreadable response: {describe(message.error)}"),
                    )
                )
            return False
        if not attrs.has(type(message)):  # a batch, a scalar, or an object without "jsonrpc"
            if isinstance(message, dict) and "method" not in message and ("result" in message or "error" in message):
                log.warning("dropping a response without \"jsonrpc\": \"2.0\"")
                return False
            if isinstance(message, list):
                reason = "invalid request: batches are not supported" if message else "invalid request: empty batch"
            else:
                reason = 'invalid request: not a JSON-RPC 2.0 object ("jsonrpc": "2.0")'
            msg_id = message.get("id") if isinstance(message, dict) and "method" in message else None
            self.reply_error(msg_id if _valid_id(msg_id) else None, INVALID_REQUEST, reason)
            return False
        method = getattr(message, "method", None)
        is_request = method is not None and hasattr(message, "id")
        if message.jsonrpc != "2.0":
            if is_request:
                self.reply_error(message.id if _valid_id(message.id) else None, INVALID_REQUEST,
                                 'invalid request: "jsonrpc" must be "2.0"')
            return False
        if is_request and not _valid_id(message.id):
            self.reply_error(None, INVALID_REQUEST, "invalid request: id must be a string or an integer")
            return False
        if method is not None and not isinstance(method, str):
            if is_request:
                self.reply_error(message.id, INVALID_REQUEST, "invalid request: method must be a string")
            return False
        if is_request and self.shutdown_received and method != types.EXIT:
            self.reply_error(message.id, INVALID_REQUEST, f"the server is shutting down; {method!r} refused")
            return False
        if is_request and method == types.SHUTDOWN:
            self.shutdown_received = True  # every later request is refused (LSP: InvalidRequest)
        return True

    def reply_error(self, msg_id, code: int, message: str, data=None) -> None:
        """Answer ``msg_id`` (``None``: ``"id": null``) with an error, outside any handler."""
        log.warning("answering %r with %s: %s", msg_id, code, message)
        self._send_response(msg_id, error=types.ResponseError(code=code, message=message, data=data))

    # -------------------------------------------------------- 4. capabilities
    @lsp_method(types.INITIALIZE)
    def lsp_initialize(self, params: types.InitializeParams):
        result = yield from super().lsp_initialize(params)
        result.capabilities.text_document_sync = types.TextDocumentSyncOptions(
            open_close=False, change=types.TextDocumentSyncKind.None_
        )
        return result

    # ------------------------------------------------------------ 5. commands
    @lsp_method(types.WORKSPACE_EXECUTE_COMMAND)
    def lsp_workspace__execute_command(self, params: types.ExecuteCommandParams):
        """Our commands get ``(arguments, workDoneToken)``; unknown names are -32602."""
        handler = self.fm.commands.get(params.command)
        if handler is None:
            raise JsonRpcInvalidParams(
                message=f"invalid params: command: unknown command {params.command!r}",
                data={"field": "command"},
            )
        arguments = list(params.arguments) if params.arguments is not None else []
        result = yield handler, (arguments, params.work_done_token), None
        return result


_PARSE_ERRORS = (json.JSONDecodeError, UnicodeDecodeError, RecursionError)


class QuietExpectedErrors(logging.Filter):
    """Drop pygls' traceback records for errors that are the client's, answered by us."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        message = record.msg if isinstance(record.msg, str) else ""
        if message.startswith("Exception occurred for message") and isinstance(exc, JsonRpcException):
            return exc.code == INTERNAL_ERROR  # an expected -32602/-32001/...: already answered
        if message.startswith("Unable to deserialize message"):
            return False  # structure_message: answered as Unreadable, with a warning
        if message.startswith("Unable to handle message") and isinstance(exc, _PARSE_ERRORS):
            return False  # run_async: answered -32700 by parse_error_handler, with a warning
        return True

    @classmethod
    def install(cls) -> None:
        quiet = cls()
        for name in ("pygls.protocol.json_rpc", "pygls.io_"):
            logger = logging.getLogger(name)
            if not any(isinstance(f, cls) for f in logger.filters):
                logger.addFilter(quiet)


def parse_error_handler(protocol: SnapshotProtocol):
    """``run_async``'s ``error_handler``: a body that is not JSON gets -32700 with ``id: null``.

    (JSON-RPC 2.0 section 5: the id of an unparsable request cannot be known;
    guessing it could answer another request twice.)
    """

    def on_error(exc: Exception, _source=None) -> None:
        if isinstance(exc, _PARSE_ERRORS):
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
            try:
                protocol.reply_error(None, PARSE_ERROR, f"parse error: {reason}")
            except Exception:  # the client is gone; end of input follows
                log.debug("cannot answer a parse error", exc_info=True)
        else:
            log.error("a message failed outside every handler", exc_info=exc)

    return on_error
