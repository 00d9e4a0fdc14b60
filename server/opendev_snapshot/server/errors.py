"""The one place where failures become JSON-RPC errors.

- ``-32602`` invalid params, naming the offending field in camelCase
  (also in ``error.data.field``);
- ``-32001`` no snapshot for that ``sessionId`` (``error.data.sessionId``);
- ``-32002`` storage failure, the message says what failed;
- ``-32003`` the session is running in another live process
  (``error.data.holder``), or a restore meets a session that exists again;
- anything else: ``-32603``, logged with its traceback; the server carries on.
"""

from __future__ import annotations

import functools
import inspect
import logging

from pygls.exceptions import JsonRpcException, JsonRpcInternalError, JsonRpcInvalidParams

from ..core.errors import ConfigError, InvalidSnapshot, SessionExists, SessionNotFound, SessionRunning, StorageError

log = logging.getLogger(__name__)

INVALID_PARAMS = -32602
SESSION_NOT_FOUND = -32001
STORAGE_FAILURE = -32002
SESSION_RUNNING = -32003

SESSION_ID_RULE = "must be 1 to 128 characters from A-Z a-z 0-9 . _ - and not start with '.'"


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def invalid_params(field: str, message: str) -> JsonRpcException:
    field = ".".join(camel(part) for part in field.split(".")) if field else "params"
    return JsonRpcInvalidParams(message=f"invalid params: {field}: {message}", data={"field": field})


def session_not_found(session_id: str) -> JsonRpcException:
    return JsonRpcException(
        code=SESSION_NOT_FOUND,
        message=f"no snapshot for session {session_id!r}",
        data={"sessionId": session_id},
    )


def storage_failure(message: str, path: str | None = None, errno: int | None = None) -> JsonRpcException:
    data: dict = {}
    if path:
        data["path"] = path
    if errno is not None:
        data["errno"] = errno
    return JsonRpcException(code=STORAGE_FAILURE, message=f"storage failure: {message}", data=data or None)


def _loc_to_field(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + camel(str(part))
    return out or "params"


def from_validation_error(exc) -> JsonRpcException:
    """A pydantic ``ValidationError`` -> -32602 naming the first bad field."""
    errors = exc.errors(include_url=False)
    if not errors:
        return invalid_params("params", str(exc))
    first = errors[0]
    loc = tuple(p for p in first.get("loc", ()) if not (isinstance(p, str) and p.startswith("function-")))
    field = _loc_to_field(loc)
    kind = first.get("type", "")
    message = first.get("msg", "invalid value")
    if field == "sessionId" and kind in ("string_pattern_mismatch", "string_too_short", "string_too_long"):
        message = SESSION_ID_RULE
    elif kind == "model_type" or (kind == "dict_type" and field == "params"):
        message = "params must be an object"
    elif kind == "missing":
        message = "is required"
    jre = JsonRpcInvalidParams(message=f"invalid params: {field}: {message}", data={"field": field})
    return jre


def to_rpc_error(exc: BaseException) -> JsonRpcException:
    """Translate any exception raised by a handler."""
    if isinstance(exc, JsonRpcException):
        return exc
    if isinstance(exc, InvalidSnapshot):
        return invalid_params(exc.field or "params", exc.message)
    if isinstance(exc, SessionNotFound):
        return session_not_found(exc.session_id)
    if isinstance(exc, StorageError):
        return storage_failure(str(exc), exc.path, getattr(exc, "errno", None))
    if isinstance(exc, SessionRunning):
        return JsonRpcException(code=SESSION_RUNNING, message=str(exc), data={"sessionId": exc.session_id, "holder": exc.holder})
    if isinstance(exc, SessionExists):
        return JsonRpcException(code=SESSION_RUNNING, message=str(exc), data={"sessionId": exc.session_id})
    if isinstance(exc, ConfigError):
        return storage_failure(str(exc))
    if type(exc).__name__ == "ValidationError" and hasattr(exc, "errors"):
        return from_validation_error(exc)
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
