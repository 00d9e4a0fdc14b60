#!/usr/bin/env python3
"""Store benchmark: listing (cold and warm) and durable save, as ratios.

Every ratio is against a baseline measured in the same run on the same
directory, interleaved, so a noisy machine moves both sides together:

- naive scan: listdir, open, json.load each file, filter, sort;
- raw durable write: write + fsync + rename + fsync(dir) of the same bytes.

Usage: python bench/bench_store.py [--sizes 100,1000,10000] [--repeat 15] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "server"))

from opendev_snapshot.core import SnapshotStore, new_record  # noqa: E402

TARGET_PROJECT = "/home/dev/projects/target"
TARGET_SESSIONS = 50

NAIVE = r'''
import json, os, sys, time
d, project = sys.argv[1], sys.argv[2]
def naive():
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
t = time.perf_counter(); n = len(naive()); t = time.perf_counter() - t
print(json.dumps({"seconds": t, "count": n}))
'''

OURS = r'''
import json, sys, time
t0 = time.perf_counter()
sys.path.insert(0, sys.argv[3])
from opendev_snapshot.core import SnapshotStore
t1 = time.perf_counter()
r = SnapshotStore(sys.argv[1]).list(project_dir=sys.argv[2])
t2 = time.perf_counter()
print(json.dumps({"seconds": t2 - t1, "import": t1 - t0, "count": len(r.sessions)}))
'''


def naive_scan(d: str, project: str) -> list:
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


def build(directory: Path, n: int) -> None:
    """n snapshots of ~3.8 KB, 80% incomplete, 50 of them the target project's."""
    store = SnapshotStore(directory, use_index=False)
    now = int(time.time() * 1000)
    target = min(TARGET_SESSIONS, n // 2)
    for i in range(n):
        if i < target:
            project, completed = TARGET_PROJECT, False
        else:
            project, completed = f"/home/dev/projects/p{i % 200:03d}", (i % 5 == 0)
        r = new_record(f"sess-{i:06d}", project)
        r["message_count"] = i % 300
        r["cost_usd"] = round(0.01 * (i % 997), 2)
        r["snapshot_timestamp_ms"] = now - 3_600_000 - i * 1000
        r["completed"] = completed
        r["last_tool_results"] = [
            {"tool_name": "bash", "call_id": f"call_{i}_{k}", "output_preview": ("x" * 330), "success": k % 3 != 0}
            for k in range(10)
        ]
        store.save(r)
    # Files on a user's disk were written seconds to days ago: wait out the
    # index's racy window (2 s of ctime) so the steady state is measured.
    time.sleep(2.1)


def fresh(script: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def timed_process(script: str, *args: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", script, *args], capture_output=True, check=True)
    return time.perf_counter() - t


def stats(xs: list) -> tuple:
    return (min(xs), statistics.median(xs), max(xs))


def ratio(ours: list, base: list) -> str:
    return f"{statistics.median(ours) / statistics.median(base):.4f}"


def ms(xs: list) -> str:
    lo, med, hi = stats(xs)
    return f"{med * 1e3:.2f} ({lo * 1e3:.2f}–{hi * 1e3:.2f})"


def bench_listing(directory: Path, repeat: int) -> dict:
    d = str(directory)
    server = str(ROOT / "server")
    # first cold listing ever (no index yet), then the steady state
    first = fresh(OURS, d, TARGET_PROJECT, server)
    naive_cold, ours_cold, naive_proc, ours_proc = [], [], [], []
    for _ in range(repeat):
        a = fresh(NAIVE, d, TARGET_PROJECT)
        b = fresh(OURS, d, TARGET_PROJECT, server)
        assert a["count"] == b["count"], (a, b)
        naive_cold.append(a["seconds"])
        ours_cold.append(b["seconds"])
    for _ in range(max(3, repeat // 3)):
        naive_proc.append(timed_process(NAIVE, d, TARGET_PROJECT))
        ours_proc.append(timed_process(OURS, d, TARGET_PROJECT, server))
    store = SnapshotStore(d, watch=True)
    store.list(project_dir=TARGET_PROJECT)
    naive_warm, ours_warm = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        naive_scan(d, TARGET_PROJECT)
        naive_warm.append(time.perf_counter() - t)
        t = time.perf_counter()
        got = store.list(project_dir=TARGET_PROJECT)
        ours_warm.append(time.perf_counter() - t)
    assert len(got.sessions) == b["count"]
    store_nowatch = SnapshotStore(d, watch=False)
    store_nowatch.list(project_dir=TARGET_PROJECT)
    ours_warm_stat = []
    for _ in range(repeat):
        t = time.perf_counter()
        store_nowatch.list(project_dir=TARGET_PROJECT)
        ours_warm_stat.append(time.perf_counter() - t)
    store.close()
    return {
        "first_cold": first["seconds"],
        "naive_cold": naive_cold,
        "ours_cold": ours_cold,
        "naive_proc": naive_proc,
        "ours_proc": ours_proc,
        "naive_warm": naive_warm,
        "ours_warm": ours_warm,
        "ours_warm_stat": ours_warm_stat,
        "count": b["count"],
    }


def raw_durable_write(directory: str, name: str, data: bytes, i: int) -> None:
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


def bench_save(directory: Path, iterations: int) -> dict:
    store = SnapshotStore(directory)
    store.ensure_dir()
    r = new_record("save-bench", TARGET_PROJECT)
    r["last_tool_results"] = [
        {"tool_name": "bash", "call_id": f"c{k}", "output_preview": "x" * 330, "success": True} for k in range(10)
    ]
    from opendev_snapshot.core.codec import encode

    data = encode(r)
    raw, ours = [], []
    for i in range(iterations):
        t = time.perf_counter()
        raw_durable_write(str(directory), "raw_session_snapshot.json", data, i)
        raw.append(time.perf_counter() - t)
        t = time.perf_counter()
        store.save(r)
        ours.append(time.perf_counter() - t)
    return {"raw": raw, "ours": ours, "bytes": len(data)}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{platform.system()} {platform.release()}, {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--save-iterations", type=int, default=300)
    parser.add_argument("--out", help="also write the Markdown report here")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    # Installed packages ship compiled bytecode; a checkout may not have it
    # (PYTHONDONTWRITEBYTECODE), which would bill compilation to start-up.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "server")], check=False, capture_output=True)
    work = Path(tempfile.mkdtemp(prefix="odsbench-"))
    lines = [f"Machine: {machine()}", ""]
    try:
        lines += [
            "| files | naive scan ms | ours cold ms (ratio) | first cold, no index ms | naive whole process ms | ours whole process ms | ours warm ms (ratio) | warm without inotify ms |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for n in sizes:
            d = work / f"n{n}"
            build(d, n)
            res = bench_listing(d, args.repeat)
            lines.append(
                f"| {n:,} | {ms(res['naive_cold'])} | {ms(res['ours_cold'])} ({ratio(res['ours_cold'], res['naive_cold'])}) "
                f"| {res['first_cold'] * 1e3:.1f} | {ms(res['naive_proc'])} | {ms(res['ours_proc'])} "
                f"| {ms(res['ours_warm'])} ({ratio(res['ours_warm'], res['naive_warm'])}) | {ms(res['ours_warm_stat'])} |"
            )
            print(lines[-1], flush=True)
            shutil.rmtree(d)
        save = bench_save(work / "save", args.save_iterations)
        lines += [
            "",
            f"Durable save of a {save['bytes']:,}-byte snapshot, {args.save_iterations} interleaved iterations:",
            f"raw write+fsync+rename+fsync-dir {ms(save['raw'])} ms; SnapshotStore.save {ms(save['ours'])} ms; "
            f"ratio (median) {ratio(save['ours'], save['raw'])}",
        ]
        print("\n".join(lines[-3:]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = "\n".join(lines) + "\n"
    if args.out:
        Path(args.out).write_text(report)
    else:
        print("\n" + report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
