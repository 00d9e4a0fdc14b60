"""TRANSITIONAL: until opendev_snapshot.server.wire lands (issue 10)."""
try:
    from .server.wire import list_result_to_wire, listing_to_wire, trash_entry_to_wire  # noqa: F401
except ImportError:
    from .core.wire import list_result_to_wire, listing_to_wire  # noqa: F401

    def trash_entry_to_wire(entry):
        from .core.wire import snapshot_to_wire

        snap = entry.get("snapshot")
        return {"sessionId": entry["session_id"], "removedAtMs": entry["removed_at_ms"],
                "snapshot": snapshot_to_wire(snap) if snap else None}
