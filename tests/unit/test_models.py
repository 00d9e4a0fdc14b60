"""The pydantic models and the pydantic-free validators enforce the same rules."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from opendev_snapshot.core.errors import InvalidSnapshot
from opendev_snapshot.core.models import AppStateSnapshot, ToolResultEntry
from opendev_snapshot.core.validation import check_record
from opendev_snapshot.server.models import Listing, SaveParams
from opendev_snapshot.server.wire import SNAPSHOT_ALIASES, TOOL_ALIASES, snapshot_to_wire

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=8),
    st.sampled_from(["", ".x", "a/b", "x" * 129, "ok-id", "\ud800", "3", "1.0"]),
    st.just(2**64 - 1),
    st.just(2**64),
)
tool_like = st.fixed_dictionaries(
    {"tool_name": json_scalars, "call_id": json_scalars, "output_preview": json_scalars, "success": json_scalars}
)
field_values = {
    "session_id": json_scalars,
    "message_count": json_scalars,
    "last_tool_results": st.one_of(json_scalars, st.lists(tool_like, max_size=2)),
    "snapshot_timestamp_ms": json_scalars,
    "completed": json_scalars,
    "project_dir": json_scalars,
    "cost_usd": json_scalars,
}


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return a == b


@given(st.fixed_dictionaries(field_values))
@settings(max_examples=1500)
def test_pydantic_and_core_validators_agree(value):
    try:
        core = check_record(value)
    except InvalidSnapshot:
        core = None
    try:
        model = AppStateSnapshot.model_validate(value).to_record()
    except ValidationError:
        model = None
    assert (core is None) == (model is None), (value, core, model)
    if core is not None:
        assert list(core) == list(model)
        assert all(_same(core[k], model[k]) for k in core)


def test_wire_aliases_match_models():
    assert {f: AppStateSnapshot.model_fields[f].alias for f in SNAPSHOT_ALIASES} == SNAPSHOT_ALIASES
    assert {f: ToolResultEntry.model_fields[f].alias for f in TOOL_ALIASES} == TOOL_ALIASES


def test_defaults_follow_the_seed_new():
    m = SaveParams.model_validate({"sessionId": "a", "projectDir": "/p"})
    r = m.to_record()
    assert (r["message_count"], r["last_tool_results"], r["completed"], r["cost_usd"]) == (0, [], False, 0.0)
    assert r["snapshot_timestamp_ms"] > 1_600_000_000_000 and m.claim is True


def test_snake_case_accepted_and_wire_is_camel():
    m = AppStateSnapshot.model_validate({"session_id": "a", "project_dir": "/p", "message_count": 2})
    assert m.to_wire() == snapshot_to_wire(m.to_record())
    listing = Listing.model_validate({**m.to_wire(), "status": "running", "path": "/x"})
    assert listing.to_wire()["status"] == "running"


@pytest.mark.parametrize(
    "params,field",
    [
        ({"sessionId": "../x", "projectDir": "/p"}, "sessionId"),
        ({"sessionId": "a"}, "projectDir"),
        ({"sessionId": "a", "projectDir": "/p", "costUsd": float("nan")}, "costUsd"),
        ({"sessionId": "a", "projectDir": "/p", "claim": "yes"}, "claim"),
        ({"sessionId": "a", "projectDir": "/p", "lastToolResults": [{"toolName": "t"}]}, "lastToolResults"),
    ],
)
def test_refusals_name_the_wire_field(params, field):
    with pytest.raises(ValidationError) as info:
        SaveParams.model_validate(params)
    assert info.value.errors()[0]["loc"][0] == field
