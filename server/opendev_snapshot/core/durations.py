"""Human durations: ``90s``, ``30m``, ``12h``, ``7d`` (and ``1d12h``, ``500ms``, ``2w``)."""

from __future__ import annotations

import re

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_PART = re.compile(r"(\d+)(ms|s|m|h|d|w)")
_MAX_MS = 2**64 - 1


def parse_duration(text: str) -> int:
    """Milliseconds in ``text``; ``ValueError`` with a clear message otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"a duration must be text like 7d, not {type(text).__name__}")
    spec = text.strip().lower()
    if not spec:
        raise ValueError("empty duration: use a number and a unit, like 90s, 30m, 12h or 7d")
    pos = 0
    total = 0
    for match in _PART.finditer(spec):
        if match.start() != pos:
            break
        total += int(match.group(1)) * _UNITS_MS[match.group(2)]
        pos = match.end()
    if pos != len(spec) or pos == 0:
        raise ValueError(
            f"invalid duration {text!r}: use a number and a unit (ms, s, m, h, d, w), like 90s, 30m, 12h or 7d"
        )
    if total > _MAX_MS:
        raise ValueError(f"duration {text!r} is too long")
    return total


def format_age(ms: int) -> str:
    """A short human age: ``42s``, ``5m``, ``3h 12m``, ``2d 4h``."""
    ms = max(0, int(ms))
    seconds = ms // 1000
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"
