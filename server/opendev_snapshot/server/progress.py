"""``$/progress`` for a client-supplied ``workDoneToken`` (throttled, thread-safe)."""

from __future__ import annotations

import logging
import time

from lsprotocol import types

log = logging.getLogger(__name__)


class Reporter:
    MIN_INTERVAL_S = 0.1

    def __init__(self, ls, token, title: str) -> None:
        self.ls = ls
        self.token = token if isinstance(token, (str, int)) and not isinstance(token, bool) else None
        self.title = title
        self._loop = None
        self._last = 0.0
        self._last_pct = -1

    def _send(self, value) -> None:
        try:
            self.ls.protocol.notify(types.PROGRESS, types.ProgressParams(token=self.token, value=value))
        except Exception:  # progress is best effort
            log.debug("cannot send progress", exc_info=True)

    def begin(self) -> None:
        if self.token is None:
            return
        import asyncio

        self._loop = asyncio.get_running_loop()
        self._send(types.WorkDoneProgressBegin(title=self.title, cancellable=False, percentage=0))

    def report(self, done: int, total: int) -> None:
        if self.token is None:
            return
        pct = 100 if total <= 0 else min(100, int(done * 100 / total))
        now = time.monotonic()
        if pct == self._last_pct or (now - self._last < self.MIN_INTERVAL_S and pct < 100):
            return
        self._last, self._last_pct = now, pct
        self._send(types.WorkDoneProgressReport(message=f"{done}/{total} files", percentage=pct))

    def threadsafe_report(self, done: int, total: int) -> None:
        if self.token is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self.report, done, total)

    def end(self, message: str) -> None:
        if self.token is None:
            return
        self._send(types.WorkDoneProgressEnd(message=message))
