"""The server's params mapping (+ the core's one validation) and the pydantic wire models agree.

The models in ``server/models.py`` are what editors read (the JSON
Schema); the running server never imports pydantic. Here both judge the
same params: accepted by one iff accepted by the other, refusals naming
the same camelCase field; and what ``server/wire.py`` builds validates
against the models.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from opendev_snapshot.core import codec
from opendev_snapshot.core.errors import InvalidSnapshot
from opendev_snapshot.core.validation import check_session_id, check_tool_result, check_u64
from opendev_snapshot.server import models, params, wire
from opendev_snapshot.server.errors import wire_field

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**65), 2**65), st.floats(), st.text(max_size=6),
    st.sampled_from(["", ".x", "a/b", "x" * 129, "ok-id", "\ud800", "3", "/p"]), st.just(2**64 - 1),
)
tools = st.lists(st.fixed_dictionaries({}, optional={
    "toolName": scalars, "callId": scalars, "outputPreview": scalars, "success": scalars, "tool_name": scalars}), max_size=2)
save_params = st.fixed_dictionaries({}, optional={
    "sessionId": scalars, "projectDir": scalars, "messageCount": scalars, "lastToolResults": st.one_of(scalars, tools),
    "snapshotTimestampMs": scalars, "completed": scalars, "costUsd": scalars, "claim": scalars, "force": scalars,
    "session_id": scalars, "project_dir": scalars,
})


def model_verdict(model, raw) -> str | None:
    """None when the model accepts, else the camelCase field it names first."""
    try:
        model.model_validate(raw)
    except ValidationError as exc:
        loc = exc.errors()[0]["loc"]
        out = ""
        for part in loc:
            out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
        return out or "params"
    return None


def server_verdict(fn) -> str | None:
    try:
        fn()
    except InvalidSnapshot as exc:
        return wire_field(exc.field)
    return None


def save_like_the_server(raw) -> None:
    record, _claim, _force = params.save(raw)
    codec.encode(record)  # what store.save validates, before any file is touched


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(save_params)
def test_save_accepts_and_refuses_like_the_model(raw):
    # A null for an optional field means "absent" to the server (the seed's default applies);
    # the model refuses a null for a non-nullable field. Compare on values without nulls.
    raw = {k: v for k, v in raw.items() if v is not None}
    if "sessionId" in raw and "session_id" in raw:
        raw.pop("session_id")
    if "projectDir" in raw and "project_dir" in raw:
        raw.pop("project_dir")
    ours = server_verdict(lambda: save_like_the_server(raw))
    theirs = model_verdict(models.SaveParams, raw)
    assert (ours is None) == (theirs is None), (raw, ours, theirs)


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"projectDir": "/p"}, "sessionId"),
        ({"sessionId": "a"}, "projectDir"),
        ({"sessionId": "a", "projectDir": "/p", "messageCount": True}, "messageCount"),
        ({"sessionId": "a", "projectDir": "/p", "costUsd": float("inf")}, "costUsd"),
        ({"sessionId": "a", "projectDir": "/p", "claim": 1}, "claim"),
        ({"sessionId": "a", "projectDir": "/p", "force": "yes"}, "force"),
        ({"sessionId": "a", "projectDir": "/p", "lastToolResults": [{"toolName": "t", "callId": "c", "outputPreview": 1, "success": True}]},
         "lastToolResults[0].outputPreview"),
    ],
)
def test_save_refusals_name_the_same_field(raw, field):
    assert server_verdict(lambda: save_like_the_server(raw)) == field
    assert model_verdict(models.SaveParams, raw) == field


def test_save_maps_names_and_fills_the_seeds_defaults():
    record, claim, force = params.save({"session_id": "s", "projectDir": " /p ", "lastToolResults": [
        {"tool_name": "t", "callId": "c", "outputPreview": "o", "success": False, "extra": 1}], "other": 1})
    assert (claim, force) == (True, False)
    assert set(record) == set(wire.SNAPSHOT_ALIASES)  # the codec writes them in the seed's order
    assert record["project_dir"] == " /p "  # stored exactly as given
    assert record["last_tool_results"] == [{"tool_name": "t", "call_id": "c", "output_preview": "o", "success": False}]
    assert codec.decode(codec.encode(record))["session_id"] == "s"


@pytest.mark.parametrize(
    "raw",
    [{"sessionId": "a", "force": True}, {"sessionId": "../a"}, {"sessionId": 5}, {}, {"sessionId": "a", "force": 1}, {"session_id": "b"}],
)
def test_remove_like_the_model(raw):
    def ours():
        sid, _force = params.remove(raw)
        check_session_id(sid)

    assert (server_verdict(ours) is None) == (model_verdict(models.RemoveParams, raw) is None)


@pytest.mark.parametrize(
    "raw",
    [{}, {"status": "running"}, {"status": "completed"}, {"limit": -1}, {"limit": 2}, {"projectDir": 3}, {"projectDir": "/p"},
     {"limit": True}, {"status": 1}],
)
def test_list_incomplete_like_the_model(raw):
    from opendev_snapshot.core.validation import check_str

    def ours():
        project_dir, _status, limit = params.list_incomplete(raw)
        if project_dir is not None:
            check_str(project_dir, "projectDir")
        if limit is not None and (type(limit) is not int or limit < 0):  # as the core's list() checks it
            raise InvalidSnapshot("limit", "must be a non-negative integer")

    assert (server_verdict(ours) is None) == (model_verdict(models.ListIncompleteParams, raw) is None), raw


@pytest.mark.parametrize(
    "raw",
    [{"maxAgeMs": 1}, {}, {"maxAgeMs": "7d"}, {"maxAgeMs": -1}, {"maxAgeMs": 1, "dryRun": "no"}, {"maxAgeMs": 1, "includeIncomplete": False},
     {"max_age_ms": 5, "dry_run": True}],
)
def test_cleanup_like_the_model(raw):
    def ours():
        max_age_ms, *_ = params.cleanup(raw)
        check_u64(max_age_ms, "maxAgeMs")

    assert (server_verdict(ours) is None) == (model_verdict(models.CleanupParams, raw) is None), raw


@pytest.mark.parametrize(
    "raw",
    [
        {"sessionId": "a", "toolName": "t", "callId": "c", "outputPreview": "o", "success": True},
        {"sessionId": "a", "toolName": "t", "callId": "c", "outputPreview": "o"},
        {"sessionId": "a", "toolName": "t", "callId": "c", "outputPreview": "o", "success": True, "maxEntries": -2},
        {"sessionId": "a", "tool_name": "t", "call_id": "c", "output_preview": "o", "success": False, "max_entries": 3},
        {"sessionId": "a", "toolName": 1, "callId": "c", "outputPreview": "o", "success": True},
    ],
)
def test_record_tool_result_like_the_model(raw):
    def ours():
        sid, entry, max_entries = params.record_tool_result(raw)
        check_tool_result(entry, "entry")
        if max_entries is not None:
            check_u64(max_entries, "max_entries")
        check_session_id(sid)

    assert (server_verdict(ours) is None) == (model_verdict(models.RecordToolResultParams, raw) is None), raw


@pytest.mark.parametrize("raw", [None, [], "x", 5])
def test_params_that_are_not_an_object_are_refused(raw):
    if raw is None:
        assert params.list_incomplete(raw) == (None, None, None)
        return
    with pytest.raises(InvalidSnapshot) as info:
        params.list_incomplete(raw)
    assert info.value.field == "params"


# ------------------------------------------------------------ wire vs models
def test_what_wire_builds_validates_against_the_models(tmp_path):
    from opendev_snapshot.core import SnapshotStore, new_record

    with SnapshotStore(tmp_path / "d", use_index=False) as store:
        record = new_record("w-1", "/p")
        record["last_tool_results"] = [{"tool_name": "t", "call_id": "c", "output_preview": "o", "success": True}]
        store.save(record)
        result = store.list()
    listed = wire.list_result_to_wire(result)
    assert models.ListIncompleteResult.model_validate(listed).to_wire() == listed
    one = listed["sessions"][0]
    assert list(one) == [f.alias for f in models.Listing.model_fields.values()]
    assert models.Listing.model_validate(one).to_wire() == one
    trash = wire.trash_to_wire([
        {"session_id": "w-1", "removed_at_ms": 5, "snapshot": record, "holder": None, "file": "x"},
        {"session_id": "junk", "removed_at_ms": 4, "snapshot": None, "holder": None, "file": "junk_session_snapshot.json"},
    ])
    assert models.ListTrashResult.model_validate(trash).to_wire() == trash
    assert trash["entries"][1] == {"sessionId": "junk", "removedAtMs": 4, "snapshot": None}


def test_listing_defaults_kind_to_opendev():
    base = wire.snapshot_to_wire({"session_id": "a", "message_count": 0, "last_tool_results": [], "snapshot_timestamp_ms": 1,
                                  "completed": False, "project_dir": "/p", "cost_usd": 0.0})
    listing = {k: v for k, v in zip(wire.SNAPSHOT_ALIASES, base.values())}
    listing.update(status="interrupted", path="/d/a_session_snapshot.json")
    out = wire.listing_to_wire(listing)
    assert out["kind"] == "opendev" and out["notebook"] is None
    listing.update(kind="ipython", notebook="/p/a.ipynb")
    out = wire.listing_to_wire(listing)
    assert out["kind"] == "ipython" and out["notebook"] == "/p/a.ipynb"
