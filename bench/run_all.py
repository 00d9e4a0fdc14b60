#!/usr/bin/env python3
"""Run every benchmark and write ``bench/RESULTS.md`` and ``bench/growth.png``.

One command, every figure a ratio against a baseline measured in the same
run (naive scan, bare pygls server, raw durable write), reported as the
min / median / max of the per-pair ratios of interleaved runs:

- listing one project's 50 incomplete sessions at 100 / 1,000 / 10,000 files,
  cold (fresh process, persistent index) and warm (long-lived process);
- the store's safety check per tick at 10,000 files (CPU ms), and two
  servers idle on one directory with running sessions;
- how cost grows: listing time and peak RSS at 100 / 1,000 / 10,000 / 50,000
  files for the naive scan and ours, with a plot;
- the server's five ratios (``bench_server.server_rows``): spawn ->
  ``opendev/recoverableSessions`` and spawn -> first ``listIncomplete``
  against a bare pygls server's spawn -> ``initialize``, warm
  ``listIncomplete`` against a naive scan, durable ``save`` round trip
  against a raw durable write, and the server's RSS; idle CPU.

Usage: python bench/run_all.py [--quick] [--growth 100,1000,10000,50000]
Needs the ``bench`` extra for the plot: pip install -e '.[bench]'.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_server  # noqa: E402
import bench_store  # noqa: E402
from common import build, compile_package, machine, paired_ratios  # noqa: E402



def fmt_ratio(ours: list, base: list) -> str:
    lo, med, hi = paired_ratios(ours, base)
    return f"{lo:.4f} / **{med:.4f}** / {hi:.4f}"


def fmt_ms(xs: list) -> str:
    return f"{statistics.median(xs) * 1e3:.2f}"


def plot(points: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no plot", file=sys.stderr)
        return False
    sizes = sorted(points)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, label, style in (
        ("naive_cold", "naive scan (listdir + json.load each)", "o-"),
        ("ours_cold", "ours, fresh process (index)", "s-"),
        ("ours_warm", "ours, long-lived process (inotify)", "^-"),
    ):
        ax.plot(sizes, [statistics.median(points[n][key]) * 1e3 for n in sizes], style, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("snapshot files in the directory")
    ax.set_ylabel("listing one project's sessions, ms (median)")
    ax.set_title("Listing time")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    for key, label, style in (("naive_rss", "naive scan", "o-"), ("ours_rss", "ours, fresh process", "s-")):
        ax2.plot(sizes, [statistics.median(points[n][key]) / 1024 for n in sizes], style, label=label)
    ax2.set_xscale("log")
    ax2.set_xlabel("snapshot files in the directory")
    ax2.set_ylabel("peak RSS of the listing process, MiB")
    ax2.set_title("Memory")
    ax2.grid(True, which="both", alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run, noisier)")
    ap.add_argument("--sizes", default="100,1000,10000", help="listing ratio sizes")
    ap.add_argument("--growth", default="100,1000,10000,50000", help="growth curve sizes")
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"))
    ap.add_argument("--plot", default=str(HERE / "growth.png"))
    args = ap.parse_args()
    repeat = 5 if args.quick else 15
    compile_package()
    started = time.strftime("%Y-%m-%d %H:%M")
    work = Path(tempfile.mkdtemp(prefix="odsbench-all-"))
    rows = []
    try:
        # ---------------------------------------------------------------- store
        sizes = [int(x) for x in args.sizes.split(",")]
        growth_sizes = [int(x) for x in args.growth.split(",")]
        listing = {}  # one measurement per size serves the ratio table and the growth curve
        for n in sorted(set(sizes) | set(growth_sizes)):
            d = work / f"list{n}"
            build(d, n)
            listing[n] = bench_store.bench_listing(d, max(3, repeat // 3) if n >= 50_000 else repeat)
            if n == 10_000 and n in sizes:  # the read side's 10-second tick, and two servers idle beside each other
                tick = bench_store.bench_safety_tick(d, repeat)
                pair = bench_store.bench_two_servers_idle(d, 10.0 if args.quick else 30.0)
            shutil.rmtree(d)
            print(f"listing {n}: done", file=sys.stderr)
        growth = {n: listing[n] for n in growth_sizes}
        for n in sizes:
            r = listing[n]
            rows.append((f"cold listing, fresh process, {n:,} files", fmt_ms(r["ours_cold"]), fmt_ms(r["naive_cold"]),
                         fmt_ratio(r["ours_cold"], r["naive_cold"]), "≤ 0.1 at 10,000" if n == 10_000 else ""))
            rows.append((f"warm listing, long-lived process, {n:,} files", fmt_ms(r["ours_warm"]), fmt_ms(r["naive_warm"]),
                         fmt_ratio(r["ours_warm"], r["naive_warm"]), "≤ 0.01 at 10,000" if n == 10_000 else ""))
        if 10_000 in sizes:
            rows.append(("safety check per tick, 10,000 files + a lock file each, quiet (CPU ms; baseline: naive scan)",
                         fmt_ms(tick["quiet"]), fmt_ms(tick["naive"]), fmt_ratio(tick["quiet"], tick["naive"]), "≤ 20 ms"))
            rows.append(("same, a session saved since the last tick", fmt_ms(tick["saved"]), fmt_ms(tick["naive"]),
                         fmt_ratio(tick["saved"], tick["naive"]), "≤ 20 ms"))
            rows.append(("same without a change feed (watch=False: the directory listed again)", fmt_ms(tick["unwatched"]),
                         fmt_ms(tick["naive"]), fmt_ratio(tick["unwatched"], tick["naive"]), ""))
        save = bench_store.bench_save(work / "save", 60 if args.quick else 300)
        rows.append(("durable save, store API", fmt_ms(save["ours"]), fmt_ms(save["raw"]),
                     fmt_ratio(save["ours"], save["raw"]), "≤ 1.1"))
        print("store save: done", file=sys.stderr)

        # -------------------------------------------------------------- server
        files = 10_000
        server_table, server_notes = bench_server.server_rows(
            work, files=files, starts=5 if args.quick else 15, iterations=60 if args.quick else 300,
            idle_s=5.0 if args.quick else 20.0,
        )
        print("server: done", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    lines = [
        "# Benchmark results",
        "",
        f"Made by `python bench/run_all.py{' --quick' if args.quick else ''}` on {started}.",
        f"Machine: {machine()}.",
        "",
        "Every ratio is ours ÷ a baseline measured in the same run, interleaved; "
        "the ratio column is min / **median** / max of the per-pair ratios. Times are medians in ms.",
        "",
        "| measure | ours ms | baseline ms | ratio min / median / max | target |",
        "| --- | ---: | ---: | ---: | --- |",
        *[f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows],
        "",
        *([bench_store.idle_line(10_000, pair), ""] if 10_000 in sizes else []),
        "## The server (issue 10's five ratios)",
        "",
        f"{files:,} snapshot files; the workspace project has {bench_server.TARGET_SESSIONS} incomplete sessions, "
        f"{bench_server.INTERRUPTED} interrupted. See `bench/README.md` for what each row measures.",
        "",
        "| measure | ours ms | baseline ms | ratio min / median / max | target |",
        "| --- | ---: | ---: | ---: | --- |",
        *[f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in server_table],
        "",
        server_notes,
        "",
        "## How cost grows",
        "",
        "Listing one project's 50 incomplete sessions; peak RSS of the fresh listing process.",
        "",
        "| files | naive scan ms | ours cold ms | ours warm ms | naive RSS MiB | ours cold RSS MiB |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n in sorted(growth):
        g = growth[n]
        lines.append(
            f"| {n:,} | {fmt_ms(g['naive_cold'])} | {fmt_ms(g['ours_cold'])} | {fmt_ms(g['ours_warm'])} "
            f"| {statistics.median(g['naive_rss']) / 1024:.1f} | {statistics.median(g['ours_rss']) / 1024:.1f} |"
        )
    if plot(growth, Path(args.plot)):
        lines += ["", f"![listing time and memory against file count]({Path(args.plot).name})"]
    report = "\n".join(lines) + "\n"
    Path(args.out).write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
