"""What a listing is made of: the query, the candidates the cache offers, the result.

The catalog asks each candidate's liveness (that needs probes and lock
handles); everything here works on what the cache already knows: the
fields a listing filters on (session id, completed, project, timestamp)
and the reasons files are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .entries import printable
from .errors import InvalidSnapshot
from .paths import normalize_project, within
from .records import COMPLETED, INTERRUPTED, RUNNING, now_ms
from .validation import check_str


@dataclass(frozen=True, slots=True)
class Skipped:
    """A directory entry that is not listed, and why.

    ``file`` is printable (a name that is not valid UTF-8 shows its bytes
    as ``\\xNN``); ``name`` is the real name, as ``os.listdir`` gives it.
    """

    file: str
    reason: str
    name: str = ""

    @classmethod
    def of(cls, name: str, reason: str) -> "Skipped":
        return cls(printable(name), reason, name)

    def to_dict(self) -> dict:
        return {"file": self.file, "reason": self.reason}


@dataclass(slots=True)
class ListResult:
    """``sessions``: listing dicts (record + status + path); ``skipped``: :class:`Skipped`."""

    sessions: list
    skipped: list = field(default_factory=list)


def check_query(project_dir, status, limit, include_completed: bool) -> tuple:
    """``(normalised project or None, completed wanted)``; InvalidSnapshot naming the field."""
    if status not in (None, RUNNING, INTERRUPTED, COMPLETED):
        raise InvalidSnapshot("status", "must be 'running' or 'interrupted'")
    if limit is not None and (type(limit) is not int or limit < 0):
        raise InvalidSnapshot("limit", "must be a non-negative integer")
    project = None
    if project_dir is not None:
        check_str(project_dir, "projectDir")
        project = normalize_project(project_dir)
    return project, include_completed or status == COMPLETED


class Projects:
    """Project directories as written in snapshots, normalised once each."""

    def __init__(self) -> None:
        self._norm: dict[str, str] = {}
        self._deadline = None  # ((cache version, project_dir, stale_after_ms), deadline)

    def normalize(self, project_dir: str) -> str:
        norm = self._norm.get(project_dir)
        if norm is None:
            norm = normalize_project(project_dir) if isinstance(project_dir, str) else ""
            if len(self._norm) > 100_000:
                self._norm.clear()
            self._norm[project_dir] = norm
        return norm

    def holds(self, project_dir: str, project: str | None) -> bool:
        return project is None or within(self.normalize(project_dir), project)

    def candidates(self, cache, project: str | None, want_completed: bool) -> list:
        """Names of the sessions that may match, newest first (from the cache's fields)."""
        if project is None:
            names = cache.meta.keys()
        else:
            names = [name for raw, group in cache.by_project.items() if self.holds(raw, project) for name in group]
        meta = cache.meta
        found = []
        for name in names:
            sid, completed, _project, ts = meta[name]
            if want_completed or not completed:
                found.append((-ts, sid, name))
        found.sort()
        return [name for _ts, _sid, name in found]

    def next_stale_deadline_ms(self, cache, stale_after_ms: int, project_dir: str | None) -> int | None:
        """When the next lock-less incomplete snapshot turns interrupted.

        Remembered until the cache changes or that moment passes (a server
        asks after every wake-up; the answer is a loop over every session).
        """
        now = now_ms()
        memo = self._deadline
        if memo is not None and memo[0] == (cache.version, project_dir, stale_after_ms):
            if memo[1] is None or memo[1] > now:
                return memo[1]
        project = normalize_project(project_dir) if project_dir else None
        best = None
        for _sid, completed, raw, ts in cache.meta.values():
            if completed or (project is not None and not self.holds(raw, project)):
                continue
            deadline = min(ts, now) + stale_after_ms
            if deadline > now and (best is None or deadline < best):
                best = deadline
        self._deadline = ((cache.version, project_dir, stale_after_ms), best)
        return best


def skipped(cache) -> list:
    """Every file skipped, snapshot and lock files alike, by name."""
    bad = {**cache.errors, **cache.lock_errors}
    return [Skipped.of(name, reason) for name, reason in sorted(bad.items())]
