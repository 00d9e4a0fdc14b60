"""camelCase wire objects from the core's snake_case records (pure functions).

No pygls, no pydantic: the server's listing path and the command line's
``list --json`` / ``trash --json`` build their JSON with these, so both
print exactly what the contract (section 3) names. :mod:`.models`
describes the same shapes for the JSON Schema; a unit test keeps the two
in step.
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
DEFAULT_KIND = "opendev"  # contract section 2: also for a snapshot without a lock file


def tool_to_wire(entry: dict) -> dict:
    return {alias: entry[key] for key, alias in TOOL_ALIASES.items()}


def snapshot_to_wire(record: dict) -> dict:
    """The seven snapshot fields, camelCase, in the seed's order."""
    return {
        "sessionId": record["session_id"],
        "messageCount": record["message_count"],
        "lastToolResults": [tool_to_wire(t) for t in record["last_tool_results"]],
        "snapshotTimestampMs": record["snapshot_timestamp_ms"],
        "completed": record["completed"],
        "projectDir": record["project_dir"],
        "costUsd": record["cost_usd"],
    }


def listing_to_wire(listing: dict) -> dict:
    """A Listing: the snapshot plus ``status``, ``path``, ``kind`` and ``notebook``."""
    out = snapshot_to_wire(listing)
    out["status"] = listing["status"]
    out["path"] = str(listing["path"])
    out["kind"] = listing.get("kind") or DEFAULT_KIND
    out["notebook"] = listing.get("notebook")
    return out


def list_result_to_wire(result) -> dict:
    """``{sessions: [Listing], skipped: [{file, reason}]}`` from a core ``ListResult``."""
    return {
        "sessions": [listing_to_wire(s) for s in result.sessions],
        "skipped": [s.to_dict() for s in result.skipped],
    }


def trash_entry_to_wire(entry: dict) -> dict:
    """``{sessionId, removedAtMs, snapshot}`` (``snapshot`` is null for an unreadable file)."""
    snapshot = entry.get("snapshot")
    return {
        "sessionId": entry["session_id"],
        "removedAtMs": entry["removed_at_ms"],
        "snapshot": None if snapshot is None else snapshot_to_wire(snapshot),
    }


def trash_to_wire(entries: list) -> dict:
    """``listTrash``'s result (and ``trash --json``): ``{entries}``, newest first as given."""
    return {"entries": [trash_entry_to_wire(e) for e in entries]}
