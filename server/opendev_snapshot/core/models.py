"""Pydantic v2 models of the stored objects: ``AppStateSnapshot`` and ``ToolResultEntry``.

Fields use the seed's snake_case names (on disk) with camelCase aliases
(on the wire); both are accepted on input. Validation mirrors
:mod:`.validation` (which the codec uses on the pydantic-free listing
path); ``tests/unit/test_models.py`` checks the two agree. The JSON-RPC
params and results built on these live in ``opendev_snapshot.server.models``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

from .records import new_record, now_ms
from .validation import U64_MAX, check_str

U64 = Annotated[int, Field(ge=0, le=U64_MAX, strict=True)]
Text = Annotated[str, Field(strict=True), AfterValidator(lambda v: check_str(v, "string"))]
SessionId = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]*$"),
]
Cost = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class WireModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        frozen=False,
    )

    def to_wire(self) -> dict:
        return self.model_dump(mode="json", by_alias=True)


class ToolResultEntry(WireModel):
    tool_name: Text
    call_id: Text
    output_preview: Text
    success: Annotated[bool, Field(strict=True)]


class AppStateSnapshot(WireModel):
    """The seed's ``AppStateSnapshot`` with its ``new`` defaults."""

    session_id: SessionId
    message_count: U64 = 0
    last_tool_results: list[ToolResultEntry] = Field(default_factory=list)
    snapshot_timestamp_ms: U64 = Field(default_factory=now_ms)
    completed: Annotated[bool, Field(strict=True)] = False
    project_dir: Text
    cost_usd: Cost = 0.0

    def to_record(self) -> dict:
        """The snake_case dict the store writes (field order = the seed's)."""
        return self.model_dump(mode="python", by_alias=False, include=set(type(self).record_fields()))

    @staticmethod
    def record_fields() -> tuple:
        return tuple(new_record("x", "").keys())
