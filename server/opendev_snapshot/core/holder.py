"""The lock file's text: who holds a session, for display and recovery.

A JSON object, ``{pid, host, startedMs, kind}`` plus, for a notebook
kernel, ``notebook``, ``historySession`` and ``historyDb`` (the holder's
``holder_info``). It never decides liveness (the OS lock does). The older
text ``pid=... host=... started=...`` is still read, as a dict with what it
has.
"""

from __future__ import annotations

import json
import os
import time

from .text import printable, printable_json

MAX_HOLDER_BYTES = 4096


def _hostname() -> str:
    try:
        return os.uname().nodename
    except AttributeError:  # pragma: no cover - Windows
        return os.environ.get("COMPUTERNAME", "unknown")


def holder_text(info: dict | None = None, *, started_ms: int | None = None) -> bytes:
    """The lock file's text: ``{pid, host, startedMs, kind}`` plus ``info``.

    ``started_ms`` is when the lock was taken (now when None): a rewrite of a
    held lock's text keeps the time of its claim.
    """
    started = time.time_ns() // 1_000_000 if started_ms is None else int(started_ms)
    obj = {"pid": os.getpid(), "host": _hostname(), "startedMs": started, "kind": "opendev"}
    for key, value in (info or {}).items():
        if key not in ("pid", "host", "startedMs"):
            obj[key] = value
    data = json.dumps(obj, ensure_ascii=False, separators=(", ", ": "), default=str).encode("utf-8", "replace")
    if len(data) >= MAX_HOLDER_BYTES:  # an absurd notebook path: keep what identifies the holder
        obj = {k: obj[k] for k in ("pid", "host", "startedMs", "kind")}
        data = json.dumps(obj, ensure_ascii=False, separators=(", ", ": "), default=str).encode("utf-8", "replace")
    return data + b"\n"


def parse_holder(data: bytes) -> dict | None:
    """The holder object from a lock file's text (JSON, or the old ``k=v`` line).

    Another process wrote it: a string holding a lone surrogate (a
    ``"\\ud800"`` escape, which no process of ours writes) is made printable
    whole (:func:`.text.printable_json`), so ``"\\ud800evil\\u001b"`` reads
    ``\\ud800evil\\e`` and the object can go on the wire as it is; NaN and
    infinities become names. Other strings stay data (a notebook's path
    must still open): front doors pass them through ``printable`` to show.
    """
    obj = _parse(data.decode("utf-8", "replace").strip())
    return None if obj is None else printable_json(obj, only_unencodable=True)


def _parse(text: str) -> dict | None:
    if not text:
        return None
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
            return None
        return obj if isinstance(obj, dict) else None
    out: dict = {}
    for token in text.split():  # pid=123 host=box started=2026-01-01T10:00:00+0000
        key, sep, value = token.partition("=")
        if not sep or not value:
            continue
        if key == "pid" and value.isdigit():
            out["pid"] = int(value)
        elif key == "host":
            out["host"] = value
        elif key == "started":
            started = _old_started_ms(value)
            if started is None:
                out["started"] = value
            else:
                out["startedMs"] = started
    return out or None


def _old_started_ms(value: str) -> int | None:
    from datetime import datetime

    try:
        return int(datetime.strptime(value, "%Y-%m-%dT%H:%M:%S%z").timestamp() * 1000)
    except ValueError:
        return None


def describe_holder(holder: dict | None) -> str:
    """One line for people: ``pid 123 on box (IPython kernel of /p/a.ipynb)``,
    made printable (another process wrote it: no ESC or bidi mark gets through)."""
    if not holder:
        return "unknown holder"
    text = f"pid {holder['pid']}" if "pid" in holder else "unknown pid"
    if holder.get("host"):
        text += f" on {holder['host']}"
    if holder.get("kind") == "ipython":
        text += f" (IPython kernel of {holder['notebook']})" if holder.get("notebook") else " (IPython kernel)"
    return printable(text)
