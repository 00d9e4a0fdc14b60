"""The one place where failures become JSON-RPC errors (contract section 3).

- ``-32602`` invalid params, naming the offending field in camelCase (also
  in ``error.data.field``);
- ``-32001`` no snapshot for that ``sessionId`` (``error.data.sessionId``),
  also a restore of an id that is not in the trash;
- ``-32002`` storage failure, the message says what failed;
- ``-32003`` the session is running in another live process
  (``error.data.holder``: the lock file's object), or a restore finds the
  id in place again;
- anything else: ``-32603``, logged with its traceback; the server carries on.

No message or data carries a lone surrogate or a raw control character.
"""

from __future__ import annotations

import functools
import inspect
import logging

from pygls.exceptions import JsonRpcException, JsonRpcInternalError, JsonRpcInvalidParams

from ..core.errors import (
    ConfigError,
    InvalidSnapshot,
    NotInTrash,
    SessionExists,
    SessionNotFound,
    SessionRunning,
    StorageError,
)
from ..core.holder import describe_holder
from ..core.text import printable, printable_json

log = logging.getLogger(__name__)

INVALID_PARAMS = -32602
SESSION_NOT_FOUND = -32001
STORAGE_FAILURE = -32002
SESSION_RUNNING = -32003

# The core names a tool result's fields under the argument it checked them
# in (``entry.tool_name``); on the wire they are top-level params.
_PREFIXES = ("entry.",)


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def wire_field(field: str) -> str:
    """``last_tool_results[0].call_id`` -> ``lastToolResults[0].callId``."""
    if not field:
        return "params"
    for prefix in _PREFIXES:
        if field.startswith(prefix):
            field = field[len(prefix) :]
    return ".".join(camel(part) for part in field.split("."))


def invalid_params(field: str, message: str) -> JsonRpcException:
    field = wire_field(field)
    return JsonRpcInvalidParams(message=f"invalid params: {field}: {message}", data={"field": field})


def session_not_found(session_id: str, message: str | None = None) -> JsonRpcException:
    return JsonRpcException(
        code=SESSION_NOT_FOUND,
        message=message or f"no snapshot for session {session_id!r}",
        data={"sessionId": session_id},
    )


def storage_failure(message: str, path: str | None = None, errno: int | None = None) -> JsonRpcException:
    data: dict = {}
    if path:
        data["path"] = path
    if errno is not None:
        data["errno"] = errno
    return JsonRpcException(code=STORAGE_FAILURE, message=f"storage failure: {message}", data=data or None)


def session_running(exc: SessionRunning) -> JsonRpcException:
    holder = exc.holder if isinstance(exc.holder, dict) else None
    if holder:
        where = f" ({describe_holder(holder)})"
    elif exc.holder is None:
        where = " (saved moments ago without a lock file)"
    else:
        where = ""
    return JsonRpcException(
        code=SESSION_RUNNING,
        message=f"session {exc.session_id!r} is running in another live process{where}; pass force: true to override",
        data={"sessionId": exc.session_id, "holder": holder},
    )


def to_rpc_error(exc: BaseException) -> JsonRpcException:
    """Translate any exception raised by a handler.

    Its message and data are made printable (:mod:`..core.text`): they can
    carry text from disk (a file name that is not UTF-8, a holder object),
    and one lone surrogate, sent as ``"\\ud800"``, makes a strict JSON
    parser (Emacs, Neovim) drop the whole reply.
    """
    err = _translate(exc)
    message, data = printable(err.message), printable_json(err.data)
    if message != err.message or data != err.data:
        err = type(err)(message=message, code=err.code, data=data)
    return err


def _translate(exc: BaseException) -> JsonRpcException:
    if isinstance(exc, JsonRpcException):
        return exc
    if isinstance(exc, InvalidSnapshot):
        return invalid_params(exc.field, exc.message)
    if isinstance(exc, NotInTrash):
        return session_not_found(exc.session_id, f"session {exc.session_id!r} is not in the trash")
    if isinstance(exc, SessionNotFound):
        return session_not_found(exc.session_id)
    if isinstance(exc, SessionRunning):
        return session_running(exc)
    if isinstance(exc, SessionExists):
        return JsonRpcException(
            code=SESSION_RUNNING,
            message=f"session {exc.session_id!r} exists again; remove it before restoring",
            data={"sessionId": exc.session_id},
        )
    if isinstance(exc, StorageError):
        return storage_failure(str(exc), exc.path, getattr(exc, "errno", None))
    if isinstance(exc, ConfigError):
        return storage_failure(str(exc))
    if isinstance(exc, OSError):
        return storage_failure(f"{exc.strerror or exc}", getattr(exc, "filename", None), exc.errno)
    log.error("unexpected error in a handler", exc_info=exc)
    return JsonRpcInternalError(message=f"internal error: {type(exc).__name__}: {exc}")


def rpc_errors(fn):
    """Decorate a handler so every failure leaves as a proper JSON-RPC error."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args, **kwargs):
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:
                raise to_rpc_error(exc) from exc

        return async_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise to_rpc_error(exc) from exc

    return wrapper
