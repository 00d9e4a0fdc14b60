"""The contract's value rules, shared by the disk codec and the pydantic models.

Types are strict, as serde's: an integer is a JSON integer (never a bool, a
string or ``1.0``), a bool is a bool, a string is a string that UTF-8 can
encode (no lone surrogates). Every check raises :class:`InvalidSnapshot`
naming the offending field.
"""

from __future__ import annotations

import math
import re

from .errors import InvalidSnapshot

U64_MAX = 2**64 - 1
SESSION_ID_MAX = 128
SESSION_ID_RE = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
MAX_ENCODED_BYTES = 1024 * 1024

SNAPSHOT_FIELDS = (
    "session_id",
    "message_count",
    "last_tool_results",
    "snapshot_timestamp_ms",
    "completed",
    "project_dir",
    "cost_usd",
)
TOOL_FIELDS = ("tool_name", "call_id", "output_preview", "success")


def check_session_id(value: object, field: str = "session_id") -> str:
    if type(value) is not str:
        raise InvalidSnapshot(field, f"must be a string, not {_kind(value)}")
    if not value:
        raise InvalidSnapshot(field, "must not be empty")
    if len(value) > SESSION_ID_MAX:
        raise InvalidSnapshot(field, f"must be at most {SESSION_ID_MAX} characters, got {len(value)}")
    if SESSION_ID_RE.fullmatch(value) is None:
        raise InvalidSnapshot(field, "may contain only A-Z a-z 0-9 . _ - ")
    if value[0] == ".":
        raise InvalidSnapshot(field, "must not start with '.'")
    return value


def check_u64(value: object, field: str) -> int:
    if type(value) is not int:
        raise InvalidSnapshot(field, f"must be an integer, not {_kind(value)}")
    if value < 0 or value > U64_MAX:
        raise InvalidSnapshot(field, "must be an integer from 0 to 2^64-1")
    return value


def check_bool(value: object, field: str) -> bool:
    if type(value) is not bool:
        raise InvalidSnapshot(field, f"must be a boolean, not {_kind(value)}")
    return value


def check_str(value: object, field: str) -> str:
    if type(value) is not str:
        raise InvalidSnapshot(field, f"must be a string, not {_kind(value)}")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidSnapshot(field, "is not valid Unicode (lone surrogate)") from None
    return value


def check_cost(value: object, field: str = "cost_usd") -> float:
    kind = type(value)
    if kind is int:
        try:
            value = float(value)  # type: ignore[arg-type]
        except OverflowError:
            raise InvalidSnapshot(field, "is too large for a 64-bit float") from None
    elif kind is not float:
        raise InvalidSnapshot(field, f"must be a number, not {_kind(value)}")
    if not math.isfinite(value):  # type: ignore[arg-type]
        raise InvalidSnapshot(field, "must be a finite number (NaN and infinities cannot be read back)")
    return value  # type: ignore[return-value]


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def check_tool_result(value: object, field: str) -> dict:
    if not isinstance(value, dict):
        raise InvalidSnapshot(field, f"must be an object, not {_kind(value)}")
    try:
        return {
            "tool_name": check_str(value["tool_name"], f"{field}.tool_name"),
            "call_id": check_str(value["call_id"], f"{field}.call_id"),
            "output_preview": check_str(value["output_preview"], f"{field}.output_preview"),
            "success": check_bool(value["success"], f"{field}.success"),
        }
    except KeyError as exc:
        raise InvalidSnapshot(f"{field}.{exc.args[0]}", "is missing") from None


def _plain_tool_result(value: object) -> dict | None:
    """The common tool result in one step: a plain dict whose four fields have
    their exact types and ASCII text (nothing to check for surrogates). None
    for anything else: :func:`check_tool_result` then finds and names the problem.

    Every save checks ten of these; one call each instead of five matters
    once a save's fsync has let other processes evict the caches.
    """
    if type(value) is dict:
        get = value.get
        name, call_id, preview, success = get("tool_name"), get("call_id"), get("output_preview"), get("success")
        if (
            type(name) is str and type(call_id) is str and type(preview) is str and type(success) is bool
            and name.isascii() and call_id.isascii() and preview.isascii()
        ):
            return {"tool_name": name, "call_id": call_id, "output_preview": preview, "success": success}
    return None


def check_record(value: object, *, strict_id: bool = True) -> dict:
    """Validate a snake_case snapshot (all seven fields) into a fresh dict.

    ``strict_id=False`` is for files read from disk: the seed never checked
    session ids, so any string it wrote is read back as it is.
    """
    if not isinstance(value, dict):
        raise InvalidSnapshot("", f"a snapshot must be a JSON object, not {_kind(value)}")
    for name in SNAPSHOT_FIELDS:
        if name not in value:
            raise InvalidSnapshot(name, "is missing")
    results = value["last_tool_results"]
    if not isinstance(results, list):
        raise InvalidSnapshot("last_tool_results", f"must be an array, not {_kind(results)}")
    return {
        "session_id": (check_session_id if strict_id else check_str)(value["session_id"], "session_id"),
        "message_count": check_u64(value["message_count"], "message_count"),
        "last_tool_results": [
            _plain_tool_result(item) or check_tool_result(item, f"last_tool_results[{i}]") for i, item in enumerate(results)
        ],
        "snapshot_timestamp_ms": check_u64(value["snapshot_timestamp_ms"], "snapshot_timestamp_ms"),
        "completed": check_bool(value["completed"], "completed"),
        "project_dir": check_str(value["project_dir"], "project_dir"),
        "cost_usd": check_cost(value["cost_usd"]),
    }
