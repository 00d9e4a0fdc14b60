"""camelCase wire shapes of the core's snake_case records (no pydantic).

The listing path (server start-up, CLI) converts with these plain
functions; :mod:`.models` describes the same shapes for validation and the
JSON Schema, and a test keeps the two in step.
"""

from __future__ import annotations

SNAPSHOT_ALIASES = {
    "session_id": "sessionId",
    "message_count": "messageCount",
    "last_tool_results": "lastToolResults",
    "snapshot_timestamp_ms": "snapshotTimestampMs",
    "completed": "completed",
    "project_dir": "projectDir",
    "cost_usd": "costUsd",
}
TOOL_ALIASES = {
    "tool_name": "toolName",
    "call_id": "callId",
    "output_preview": "outputPreview",
    "success": "success",
}


def tool_to_wire(entry: dict) -> dict:
    return {TOOL_ALIASES[k]: entry[k] for k in TOOL_ALIASES}


def snapshot_to_wire(record: dict) -> dict:
    out = {}
    for key, alias in SNAPSHOT_ALIASES.items():
        value = record[key]
        if key == "last_tool_results":
            value = [tool_to_wire(t) for t in value]
        out[alias] = value
    return out


def listing_to_wire(listing: dict) -> dict:
    out = snapshot_to_wire(listing)
    out["status"] = listing["status"]
    out["path"] = listing["path"]
    return out


def list_result_to_wire(result) -> dict:
    return {
        "sessions": [listing_to_wire(s) for s in result.sessions],
        "skipped": [s.to_dict() for s in result.skipped],
    }
