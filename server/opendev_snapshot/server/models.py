"""Pydantic v2 models of the JSON-RPC params, results and notifications (contract 3 and 4).

They describe the wire for people and for editors: ``client-config/schema``
is generated from :data:`WIRE_MODELS`, and the VS Code extension's types
follow it. The running server does not import pydantic (it would cost
~80 ms of start-up and ~11 MiB of memory): it maps params with
:mod:`.params` and lets the core validate, once, and builds results with
:mod:`.wire`. ``tests/unit/test_server_params.py`` checks that the models
and the server accept and refuse the same params, and that what
:mod:`.wire` builds validates against these models.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import Field

from ..core.models import U64, AppStateSnapshot, SessionId, Text, ToolResultEntry, WireModel

Status = Literal["running", "interrupted"]
Strict = Annotated[bool, Field(strict=True)]


# ------------------------------------------------------------------ objects
class Listing(AppStateSnapshot):
    """A snapshot plus its liveness, absolute path, and who held it."""

    status: Literal["running", "interrupted", "completed"]
    path: str
    kind: Literal["opendev", "ipython"] = "opendev"
    notebook: Optional[str] = None


class Skipped(WireModel):
    file: str
    reason: str


class Holder(WireModel):
    """The lock file's object (``error.data.holder`` of ``-32003``)."""

    pid: int
    host: Optional[str] = None
    started_ms: Optional[int] = None
    kind: Literal["opendev", "ipython"] = "opendev"
    notebook: Optional[str] = None
    history_session: Optional[int] = None


class TrashEntry(WireModel):
    """``sessionId`` and ``snapshot`` are null for a trashed file that was not a usable snapshot."""

    session_id: Optional[str]
    removed_at_ms: int
    snapshot: Optional[AppStateSnapshot]


# ----------------------------------------------------------- method params
class SaveParams(AppStateSnapshot):
    claim: Strict = True
    force: Strict = False


class SaveResult(WireModel):
    session_id: str
    path: str
    snapshot_timestamp_ms: int
    claimed: bool


class SessionParams(WireModel):
    session_id: SessionId


class RemoveParams(SessionParams):
    force: Strict = False


class RemoveResult(WireModel):
    removed: bool


class RestoreParams(SessionParams):
    pass


class ListIncompleteParams(WireModel):
    project_dir: Optional[Text] = None
    status: Optional[Status] = None
    limit: Optional[Annotated[int, Field(ge=0, strict=True)]] = None


class ListIncompleteResult(WireModel):
    sessions: list[Listing]
    skipped: list[Skipped]


class ListTrashResult(WireModel):
    entries: list[TrashEntry]


class CleanupParams(WireModel):
    max_age_ms: U64
    dry_run: Strict = False
    include_incomplete: Strict = True
    work_done_token: Optional[Union[int, str]] = None


class CleanupResult(WireModel):
    removed_count: int
    session_ids: list[str]
    dry_run: bool


class MarkCompletedResult(WireModel):
    session_id: str
    snapshot_timestamp_ms: int


class RecordToolResultParams(WireModel):
    session_id: SessionId
    tool_name: Text
    call_id: Text
    output_preview: Text
    success: Strict
    max_entries: Optional[U64] = None


class RecordToolResultResult(WireModel):
    session_id: str
    count: int


# --------------------------------------------------------- server to client
class WorkspaceFolder(WireModel):
    uri: str
    name: str


class RecoverableSessions(WireModel):
    workspace_folder: WorkspaceFolder
    sessions: list[Listing]


class RecoverSession(WireModel):
    session: Listing


class InitializationOptions(WireModel):
    """``initializationOptions`` (all optional; a wrong type is shown and the default used)."""

    snapshot_dir: Optional[str] = None
    prompt: bool = True
    max_prompts: Annotated[int, Field(ge=0)] = 3
    stale_after_ms: Annotated[int, Field(ge=0)] = 120_000
    max_tool_results: Annotated[int, Field(ge=0)] = 10
    preview_chars: Annotated[int, Field(ge=0)] = 500
    redact_secrets: bool = True
    trash_retention_ms: Annotated[int, Field(ge=0)] = 604_800_000
    token: Optional[str] = None


WIRE_MODELS = {
    "AppStateSnapshot": AppStateSnapshot,
    "ToolResultEntry": ToolResultEntry,
    "Listing": Listing,
    "Skipped": Skipped,
    "Holder": Holder,
    "TrashEntry": TrashEntry,
    "SaveParams": SaveParams,
    "SaveResult": SaveResult,
    "SessionParams": SessionParams,
    "RemoveParams": RemoveParams,
    "RemoveResult": RemoveResult,
    "RestoreParams": RestoreParams,
    "ListIncompleteParams": ListIncompleteParams,
    "ListIncompleteResult": ListIncompleteResult,
    "ListTrashResult": ListTrashResult,
    "CleanupParams": CleanupParams,
    "CleanupResult": CleanupResult,
    "MarkCompletedResult": MarkCompletedResult,
    "RecordToolResultParams": RecordToolResultParams,
    "RecordToolResultResult": RecordToolResultResult,
    "RecoverableSessions": RecoverableSessions,
    "RecoverSession": RecoverSession,
    "InitializationOptions": InitializationOptions,
}
