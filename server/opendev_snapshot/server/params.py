"""Raw JSON params of our methods -> the core's arguments, validated once.

The snapshot rules live in the core (:mod:`opendev_snapshot.core.validation`)
and the store applies them on every write, so the server does not check
them a second time: it only maps camelCase (or snake_case) names onto the
core's, fills the seed's defaults, and checks the few params the core does
not know (``claim``, ``force``, ``dryRun``, ...) with the same rule
functions. Every failure is :class:`InvalidSnapshot` naming the field; the
error layer turns it into ``-32602`` with the camelCase name.

:mod:`.models` declares the same shapes with pydantic for the JSON Schema;
``tests/unit/test_server_params.py`` checks both accept and refuse alike.
"""

from __future__ import annotations

from ..core.errors import InvalidSnapshot
from ..core.records import now_ms
from ..core.validation import check_bool
from .wire import SNAPSHOT_ALIASES, TOOL_ALIASES

STATUSES = ("running", "interrupted")


def _object(params) -> dict:
    """A missing ``params`` key (legal JSON-RPC) reads as ``{}``."""
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InvalidSnapshot("params", "must be an object with named fields")
    return params


def _get(params: dict, snake: str, camel: str, default=None):
    """The camelCase key wins over its snake_case twin; ``null`` means absent."""
    value = params.get(camel)
    if value is None and camel != snake:
        value = params.get(snake)
    return default if value is None else value


def _flag(params: dict, snake: str, camel: str, default: bool) -> bool:
    return check_bool(_get(params, snake, camel, default), camel)


def _tool_entry(value):
    """A tool result with snake_case keys (values untouched: the core checks them)."""
    if type(value) is dict:
        try:  # what clients send: the four camelCase keys (ten times a save)
            return {"tool_name": value["toolName"], "call_id": value["callId"],
                    "output_preview": value["outputPreview"], "success": value["success"]}
        except KeyError:
            pass
    if not isinstance(value, dict):
        return value
    out = {}
    for snake, camel in TOOL_ALIASES.items():
        if camel in value:
            out[snake] = value[camel]
        elif snake in value:
            out[snake] = value[snake]
    return out


def snapshot_record(params) -> dict:
    """``opendev/snapshot.save`` params -> the record the store validates and writes.

    ``sessionId`` and ``projectDir`` are required (left out, the core names
    them); the other fields default as the seed's ``new`` does. Unknown keys
    (``claim``, ``force``, anything else) are not part of the snapshot.
    """
    params = _object(params)
    record = {}
    for snake, camel in SNAPSHOT_ALIASES.items():
        if camel in params:
            record[snake] = params[camel]
        elif snake in params:
            record[snake] = params[snake]
    record.setdefault("message_count", 0)
    record.setdefault("last_tool_results", [])
    record.setdefault("snapshot_timestamp_ms", now_ms())
    record.setdefault("completed", False)
    record.setdefault("cost_usd", 0.0)
    results = record["last_tool_results"]
    if isinstance(results, list):
        record["last_tool_results"] = [_tool_entry(entry) for entry in results]
    return record


def save(params) -> tuple[dict, bool, bool]:
    """``(record, claim, force)``; ``claim`` defaults to true, ``force`` to false."""
    params = _object(params)
    claim = _flag(params, "claim", "claim", True)
    force = _flag(params, "force", "force", False)
    return snapshot_record(params), claim, force


def session_id(params):
    """The ``sessionId`` as given (the core checks it where it uses it)."""
    params = _object(params)
    if "sessionId" in params:
        return params["sessionId"]
    if "session_id" in params:
        return params["session_id"]
    raise InvalidSnapshot("sessionId", "is required")


def remove(params) -> tuple[str, bool]:
    """``(sessionId, force)``."""
    params = _object(params)
    return session_id(params), _flag(params, "force", "force", False)


def list_incomplete(params) -> tuple[str | None, str | None, int | None]:
    """``(projectDir, status, limit)``; the core checks ``projectDir`` and ``limit``."""
    params = _object(params)
    status = _get(params, "status", "status")
    if status is not None and status not in STATUSES:
        raise InvalidSnapshot("status", "must be 'running' or 'interrupted'")
    return _get(params, "project_dir", "projectDir"), status, _get(params, "limit", "limit")


def cleanup(params) -> tuple[object, bool, bool, object]:
    """``(maxAgeMs, dryRun, includeIncomplete, workDoneToken)``; the core checks ``maxAgeMs``."""
    params = _object(params)
    if _get(params, "max_age_ms", "maxAgeMs") is None:
        raise InvalidSnapshot("maxAgeMs", "is required")
    return (
        _get(params, "max_age_ms", "maxAgeMs"),
        _flag(params, "dry_run", "dryRun", False),
        _flag(params, "include_incomplete", "includeIncomplete", True),
        _get(params, "work_done_token", "workDoneToken"),
    )


def record_tool_result(params) -> tuple[str, dict, object]:
    """``(sessionId, entry, maxEntries or None)``; the core checks the entry."""
    params = _object(params)
    sid = session_id(params)
    return sid, _tool_entry(params), _get(params, "max_entries", "maxEntries")


def no_params(params) -> None:
    """``listTrash``: ``{}`` or nothing."""
    _object(params)
