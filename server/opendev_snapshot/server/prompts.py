"""``window/showMessageRequest`` per interrupted session: Recover / Discard / Later.

Each prompt runs in its own task, so the user's decision never blocks
other requests; a session is prompted at most once per server run.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from lsprotocol import types

log = logging.getLogger(__name__)

RECOVER = "Recover"
DISCARD = "Discard"
LATER = "Later"
from .names import RECOVER_SESSION


def describe_age(ms: int) -> str:
    seconds = max(0, ms // 1000)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def describe(listing: dict, now_ms: int | None = None) -> str:
    now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    age = describe_age(now_ms - int(listing.get("snapshotTimestampMs", now_ms)))
    project = os.path.basename(str(listing.get("projectDir", "")).rstrip("/\\")) or listing.get("projectDir", "")
    count = listing.get("messageCount", 0)
    cost = listing.get("costUsd", 0.0)
    return (
        f"OpenDev session {listing['sessionId']} ({project}) was interrupted {age} ago: "
        f"{count} message{'s' if count != 1 else ''}, ${cost:.2f}. Recover it?"
    )


class Prompts:
    def __init__(self, server, ctx) -> None:
        self.server = server
        self.ctx = ctx
        self.prompted: set = set()
        self._tasks: set = set()

    def offer(self, sessions: list) -> None:
        """Prompt for up to ``maxPrompts`` of these sessions (newest first)."""
        if not self.ctx.options.prompt or self.ctx.stopping:
            return
        todo = [s for s in sessions if s["sessionId"] not in self.prompted][: self.ctx.options.max_prompts]
        for listing in todo:
            self.prompted.add(listing["sessionId"])
            task = asyncio.ensure_future(self._ask(listing))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _ask(self, listing: dict) -> None:
        params = types.ShowMessageRequestParams(
            type=types.MessageType.Warning,
            message=describe(listing),
            actions=[types.MessageActionItem(title=t) for t in (RECOVER, DISCARD, LATER)],
        )
        try:
            choice = await self.server.window_show_message_request_async(params)
        except asyncio.CancelledError:
            return
        except Exception as exc:
            log.info("prompt for %s failed or was refused: %s", listing["sessionId"], exc)
            return
        title = getattr(choice, "title", None)
        if title is None and isinstance(choice, dict):
            title = choice.get("title")
        session_id = listing["sessionId"]
        try:
            if title == RECOVER:
                if self.recover(session_id) is None:
                    self.server.window_show_message(
                        types.ShowMessageParams(
                            type=types.MessageType.Info,
                            message=f"opendev-snapshot: session {session_id} no longer exists.",
                        )
                    )
            elif title == DISCARD:
                removed = self.ctx.store.remove(session_id)
                log.info("discarded %s (removed=%s)", session_id, removed)
        except Exception as exc:
            log.warning("acting on the prompt for %s failed: %s", session_id, exc)
            self.server.window_show_message(
                types.ShowMessageParams(type=types.MessageType.Error, message=f"opendev-snapshot: {exc}")
            )

    def recover(self, session_id: str) -> dict | None:
        """Send ``opendev/recoverSession`` with a fresh Listing; None if gone."""
        from .methods import listing_wire

        store = self.ctx.store
        record = store.load(session_id)
        if record is None:
            return None
        listing = listing_wire(store, record)
        self.server.protocol.notify(RECOVER_SESSION, {"session": listing})
        return listing

    def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
