"""What the benchmarks share: the data set, the baselines, statistics.

Imported by the bench scripts (``from common import ...``); the fresh
processes they spawn run :func:`child_script`, built from the same source,
so every baseline is the same code wherever it runs.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVER_SRC = ROOT / "server"
if str(SERVER_SRC) not in sys.path:
    sys.path.insert(0, str(SERVER_SRC))

TARGET_PROJECT = "/home/dev/projects/target"
TARGET_SESSIONS = 50
OTHER_PROJECTS = 200


# ------------------------------------------------------------------ data set
def make_record(i: int, now_ms: int, target: int = TARGET_SESSIONS) -> dict:
    """Snapshot number ``i``: ~4.6 KB with ten tool results; 80% incomplete;
    the first ``target`` belong to the target project (all incomplete)."""
    from opendev_snapshot.core import new_record

    if i < target:
        project, completed = TARGET_PROJECT, False
    else:
        project, completed = f"/home/dev/projects/p{i % OTHER_PROJECTS:03d}", (i % 5 == 0)
    r = new_record(f"sess-{i:06d}", project)
    r["message_count"] = i % 300
    r["cost_usd"] = round(0.01 * (i % 997), 2)
    r["snapshot_timestamp_ms"] = now_ms - 3_600_000 - i * 1000
    r["completed"] = completed
    r["last_tool_results"] = [
        {"tool_name": "bash", "call_id": f"call_{i}_{k}", "output_preview": "x" * 330, "success": k % 3 != 0}
        for k in range(10)
    ]
    return r


def build(directory: Path, n: int, *, settle: bool = True) -> None:
    """``n`` snapshots written with the seed's layout (1 hour old and older,
    so lock-less ones read ``interrupted``), then wait out the index's
    2-second racy window, as files on a user's disk are older than that."""
    from opendev_snapshot.core.codec import encode

    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    now = time.time_ns() // 1_000_000
    target = min(TARGET_SESSIONS, n // 2)
    for i in range(n):
        r = make_record(i, now, target)
        # plain writes: building the data set is not what is measured
        with open(directory / f"{r['session_id']}_session_snapshot.json", "wb") as f:
            f.write(encode(r))
    if settle:
        time.sleep(2.1)


# ----------------------------------------------------------------- baselines
def naive_scan(d: str, project: str) -> list:
    """The baseline: listdir, open + json.load each ``*.json``, filter, sort."""
    out = []
    for name in os.listdir(d):
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(d, name)) as f:
                s = json.load(f)
        except (OSError, ValueError):
            continue
        if not s["completed"] and (s["project_dir"] == project or s["project_dir"].startswith(project + "/")):
            out.append(s)
    out.sort(key=lambda s: -s["snapshot_timestamp_ms"])
    return out


def raw_durable_write(directory: str, name: str, data: bytes, i: int) -> None:
    """The baseline for saves: write + fsync + rename + fsync(dir)."""
    tmp = os.path.join(directory, f".raw-{i}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, os.path.join(directory, name))
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


# -------------------------------------------------------------- statistics
def stats(xs: list) -> tuple:
    return (min(xs), statistics.median(xs), max(xs))


def ms(xs: list) -> str:
    """``median (min–max)`` in milliseconds."""
    lo, med, hi = stats(xs)
    return f"{med * 1e3:.2f} ({lo * 1e3:.2f}–{hi * 1e3:.2f})"


def ratio(ours: list, base: list) -> float:
    return statistics.median(ours) / statistics.median(base)


def paired_ratios(ours: list, base: list) -> tuple:
    """min / median / max of the per-pair ratios of interleaved runs."""
    return stats([a / b for a, b in zip(ours, base) if b > 0])


def machine() -> str:
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
            mem = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} cores, {cpu}{mem}, "
        f"Python {platform.python_version()}"
    )


def compile_package() -> None:
    """Installed packages ship bytecode; a checkout run with
    PYTHONDONTWRITEBYTECODE would bill compilation to every start-up."""
    import subprocess

    subprocess.run([sys.executable, "-m", "compileall", "-q", str(SERVER_SRC)], check=False, capture_output=True)


# ------------------------------------------------- scripts for fresh processes
_CHILD = """\
import json, os, sys, time
t0 = time.perf_counter()
d, project = sys.argv[1], sys.argv[2]
{setup}
t1 = time.perf_counter()
count = {call}
t2 = time.perf_counter()
rss = 0
with open("/proc/self/status") as f:  # VmHWM: unlike ru_maxrss, not inherited from the parent
    for line in f:
        if line.startswith("VmHWM:"):
            rss = int(line.split()[1])
print(json.dumps({{"seconds": t2 - t1, "import": t1 - t0, "count": count, "rss_kib": rss}}))
"""


def child_script(kind: str) -> str:
    """A minimal script (``argv: DIR PROJECT``) that lists once and prints
    JSON timings; the naive one is :func:`naive_scan`'s own source, so the
    baseline in a fresh process is exactly the in-process one."""
    import inspect

    if kind == "naive":
        return _CHILD.format(setup=inspect.getsource(naive_scan), call="len(naive_scan(d, project))")
    if kind == "ours":
        setup = f"sys.path.insert(0, {str(SERVER_SRC)!r})\nfrom opendev_snapshot.core import SnapshotStore"
        return _CHILD.format(setup=setup, call="len(SnapshotStore(d).list(project_dir=project).sessions)")
    raise ValueError(kind)
