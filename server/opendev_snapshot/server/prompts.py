"""``window/showMessageRequest`` per interrupted session: Recover / Discard / Later.

Contract section 4. At most one prompt is outstanding: the next is sent
after the client answered the previous one (eglot 1.9 answers a second
concurrent ``showMessageRequest`` with an error; Vim's ALE never answers
one). An error answer, or none, counts as Later. The prompts run in one
task, so a prompt nobody answers blocks only the prompts queued behind
it: requests and notifications keep flowing. A session is prompted at most
once per server run; up to ``maxPrompts`` of each batch, newest first.

- Recover: ``opendev/recoverSession`` with the session's Listing; the
  snapshot stays until the client removes or completes it.
- Discard: to the trash, refused (and the user told) if the session is
  running again by then; ``window/logMessage`` says how to bring it back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque

from lsprotocol import types

from ..core.errors import SessionRunning
from ..core.holder import describe_holder
from ..core.text import format_cost, printable
from .feature import Feature
from .names import RECOVER_SESSION
from .options import DEFAULTS
from .storage import Storage
from .wire import listing_to_wire

log = logging.getLogger(__name__)

RECOVER = "Recover"
DISCARD = "Discard"
LATER = "Later"


def describe_age(ms: int) -> str:
    seconds = max(0, ms // 1000)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def describe(listing: dict, now_ms: int | None = None) -> str:
    """The prompt's text; everything taken from the snapshot is made printable."""
    now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    age = describe_age(now_ms - int(listing.get("snapshotTimestampMs", now_ms)))
    project_dir = str(listing.get("projectDir", ""))
    place = os.path.basename(project_dir.rstrip("/\\")) or project_dir
    what = "OpenDev session"
    if listing.get("kind") == "ipython":
        what = "Notebook session"
        if listing.get("notebook"):
            place = os.path.basename(str(listing["notebook"]))
    count = listing.get("messageCount", 0)
    return (
        f"{what} {printable(listing['sessionId'])} ({printable(place)}) was interrupted {age} ago: "
        f"{count} message{'s' if count != 1 else ''}, {format_cost(listing.get('costUsd', 0.0))}. Recover it?"
    )


class Prompts(Feature):
    def __init__(self, server) -> None:
        super().__init__(server)
        self.storage = server.get_feature(Storage)
        self.settings = DEFAULTS
        self.prompted: set[str] = set()
        self._queue: deque[dict] = deque()
        self._task: asyncio.Task | None = None
        self._stopped = False

    # --------------------------------------------------------------- events
    def initialize(self, settings, folders) -> None:
        self.settings = settings

    def shutdown(self) -> None:
        self._stopped = True
        self._queue.clear()
        if self._task is not None:
            self._task.cancel()

    close = shutdown

    # -------------------------------------------------------------- prompts
    def offer(self, listings: list) -> None:
        """Queue prompts for up to ``maxPrompts`` of these (newest first) not prompted yet."""
        if not self.settings.prompt or self._stopped:
            return
        todo = [s for s in listings if s["sessionId"] not in self.prompted][: self.settings.max_prompts]
        for listing in todo:
            self.prompted.add(listing["sessionId"])
            self._queue.append(listing)
        if todo and (self._task is None or self._task.done()):
            self._task = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        while self._queue and not self._stopped:
            listing = self._queue.popleft()
            try:
                await self._ask(listing)
            except asyncio.CancelledError:
                raise
            except Exception:  # one prompt failing must not stop the others
                log.exception("prompt for %s failed", listing.get("sessionId"))

    async def _ask(self, listing: dict) -> None:
        params = types.ShowMessageRequestParams(
            type=types.MessageType.Warning,
            message=describe(listing),
            actions=[types.MessageActionItem(title=t) for t in (RECOVER, DISCARD, LATER)],
        )
        session_id = listing["sessionId"]
        try:
            choice = await self.server.window_show_message_request_async(params)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an error answer counts as Later
            log.info("the prompt for %s was answered with an error (as Later): %s", session_id, exc)
            return
        title = getattr(choice, "title", None)
        log.info("prompt for %s: %s", session_id, title or "dismissed")
        if title == RECOVER:
            if self.recover(session_id) is None:
                self._tell(types.MessageType.Info, f"session {printable(session_id)} is no longer recoverable.")
        elif title == DISCARD:
            self.discard(session_id)

    def recover(self, session_id: str) -> dict | None:
        """Send ``opendev/recoverSession`` with a fresh Listing; None if not recoverable."""
        store = self.storage.store
        record = store.load(session_id)
        if record is None or record["completed"]:
            return None
        wire = listing_to_wire(store.listing(record))
        self.server.protocol.notify(RECOVER_SESSION, {"session": wire})
        return wire

    def discard(self, session_id: str) -> None:
        """Discard chosen in a prompt: to the trash, never a session that runs again."""
        shown = printable(session_id)
        try:
            removed = self.storage.store.remove(session_id, force=False)
        except SessionRunning as exc:
            where = f" ({printable(describe_holder(exc.holder))})" if exc.holder else ""
            self._tell(types.MessageType.Warning, f"session {shown} is running again{where}; nothing was discarded.")
            return
        except Exception as exc:
            log.warning("discarding %s failed: %s", session_id, exc)
            self._tell(types.MessageType.Error, f"could not discard session {shown}: {exc}")
            return
        if removed:  # no pop-up for what the user just chose; the way back goes to the log panel
            self.server.window_log_message(types.LogMessageParams(
                type=types.MessageType.Info,
                message=f"opendev-snapshot: session {shown} moved to the trash; "
                f"`opendev-snapshot restore {shown}` brings it back.",
            ))
        else:
            self._tell(types.MessageType.Info, f"session {shown} no longer exists.")

    def _tell(self, kind, text: str) -> None:
        self.server.window_show_message(types.ShowMessageParams(type=kind, message=f"opendev-snapshot: {text}"))
