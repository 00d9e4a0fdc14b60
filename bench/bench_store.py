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
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    TARGET_PROJECT,
    build,
    child_script,
    compile_package,
    machine,
    make_record,
    ms,
    naive_scan,
    raw_durable_write,
    ratio,
)

from opendev_snapshot.core import SnapshotStore  # noqa: E402


def fresh(kind: str, d: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", child_script(kind), d, TARGET_PROJECT], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def timed_process(kind: str, d: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", child_script(kind), d, TARGET_PROJECT], capture_output=True, check=True)
    return time.perf_counter() - t


def bench_listing(directory: Path, repeat: int) -> dict:
    """Cold (fresh process) and warm (long-lived process) listing vs naive."""
    d = str(directory)
    first = fresh("ours", d)  # no index yet: parses everything, writes the index
    res: dict = {k: [] for k in ("naive_cold", "ours_cold", "naive_proc", "ours_proc", "naive_rss", "ours_rss")}
    for _ in range(repeat):
        a = fresh("naive", d)
        b = fresh("ours", d)
        assert a["count"] == b["count"], (a, b)
        res["naive_cold"].append(a["seconds"])
        res["ours_cold"].append(b["seconds"])
        res["naive_rss"].append(a["rss_kib"])
        res["ours_rss"].append(b["rss_kib"])
    for _ in range(max(3, repeat // 3)):
        res["naive_proc"].append(timed_process("naive", d))
        res["ours_proc"].append(timed_process("ours", d))
    store = SnapshotStore(d, watch=True)
    store.list(project_dir=TARGET_PROJECT)
    res["naive_warm"], res["ours_warm"], res["ours_warm_stat"] = [], [], []
    for _ in range(repeat):
        t = time.perf_counter()
        naive_scan(d, TARGET_PROJECT)
        res["naive_warm"].append(time.perf_counter() - t)
        t = time.perf_counter()
        got = store.list(project_dir=TARGET_PROJECT)
        res["ours_warm"].append(time.perf_counter() - t)
    assert len(got.sessions) == b["count"]
    store.close()
    stat_store = SnapshotStore(d, watch=False)
    stat_store.list(project_dir=TARGET_PROJECT)
    for _ in range(repeat):
        t = time.perf_counter()
        stat_store.list(project_dir=TARGET_PROJECT)
        res["ours_warm_stat"].append(time.perf_counter() - t)
    res["first_cold"] = first["seconds"]
    res["count"] = b["count"]
    return res


def bench_save(directory: Path, iterations: int, *, fresh_previews: bool = False) -> dict:
    """SnapshotStore.save (redaction on, the default) against the raw durable
    write of the same bytes, interleaved.

    ``fresh_previews``: every save carries ten realistic previews (diffs,
    test logs, JSON, code; ``eval_redaction.clean_corpus``) never seen
    before, so redaction's memo never helps: the worst case. Otherwise the
    same record is saved again and again, as autosave does.
    """
    from opendev_snapshot.core.codec import encode

    store = SnapshotStore(directory)
    store.ensure_dir()
    now = time.time_ns() // 1_000_000
    corpus = []
    if fresh_previews:
        from eval_redaction import clean_corpus

        corpus = clean_corpus()
    raw, ours = [], []
    size = 0
    for i in range(iterations):
        r = make_record(0, now)
        if corpus:
            for k, item in enumerate(r["last_tool_results"]):
                item["output_preview"] = f"{i}-{k} " + corpus[(i * 10 + k) % len(corpus)][:490]
        data = encode(r)  # the same size as what the store writes (nothing here to redact); no memo warmed
        size = len(data)
        t = time.perf_counter()
        raw_durable_write(str(directory), "raw_session_snapshot.json", data, i)
        raw.append(time.perf_counter() - t)
        t = time.perf_counter()
        store.save(r)
        ours.append(time.perf_counter() - t)
    store.close()
    return {"raw": raw, "ours": ours, "bytes": size}


LISTING_HEADER = [
    "| files | naive scan ms | ours cold ms (ratio) | first cold, no index ms | naive whole process ms "
    "| ours whole process ms | ours warm ms (ratio) | warm without inotify ms |",
    "|---:|---:|---:|---:|---:|---:|---:|---:|",
]


def listing_row(n: int, res: dict) -> str:
    return (
        f"| {n:,} | {ms(res['naive_cold'])} | {ms(res['ours_cold'])} ({ratio(res['ours_cold'], res['naive_cold']):.4f}) "
        f"| {res['first_cold'] * 1e3:.1f} | {ms(res['naive_proc'])} | {ms(res['ours_proc'])} "
        f"| {ms(res['ours_warm'])} ({ratio(res['ours_warm'], res['naive_warm']):.4f}) | {ms(res['ours_warm_stat'])} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--save-iterations", type=int, default=300)
    parser.add_argument("--out", help="also write the Markdown report here")
    parser.add_argument("--save-only", action="store_true", help="only the durable-save measurements")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    compile_package()
    work = Path(tempfile.mkdtemp(prefix="odsbench-"))
    lines = [f"Machine: {machine()}", "", *LISTING_HEADER]
    try:
        for n in [] if args.save_only else sizes:
            d = work / f"n{n}"
            build(d, n)
            lines.append(listing_row(n, bench_listing(d, args.repeat)))
            print(lines[-1], flush=True)
            shutil.rmtree(d)
        for fresh, what in ((False, "the same record (autosave)"), (True, "ten never-seen realistic previews each")):
            save = bench_save(work / f"save-{fresh}", args.save_iterations, fresh_previews=fresh)
            lines += [
                "",
                f"Durable save of a {save['bytes']:,}-byte snapshot, {what}, redaction on, "
                f"{args.save_iterations} interleaved iterations:",
                f"raw write+fsync+rename+fsync-dir {ms(save['raw'])} ms; SnapshotStore.save {ms(save['ours'])} ms; "
                f"ratio (median) {ratio(save['ours'], save['raw']):.4f}",
            ]
            print("\n".join(lines[-3:]), flush=True)
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
