#!/usr/bin/env python3
"""Command-line benchmark: the whole `opendev-snapshot list` process, and what `rich` would cost.

The command line stays on the standard library unless a library fits the
budget the project set for it: `opendev-snapshot list` on 10,000 files
within 10 % of its own whole-process time. This measures, interleaved in
one run on one directory (10,000 snapshots, 8,010 of them listed):

- ours: the whole process of `opendev-snapshot list` printing its table to
  a pseudo-terminal (the path a person sees), the baseline;
- ours, piped: the same with stdout a pipe (tab-separated rows);
- with rich: the same process, plus `import rich.console, rich.table` and
  the same rows rendered by `rich.table.Table` to the same terminal width
  (only when `rich` is importable: `pip install rich` to measure it).

Usage: python bench/bench_cli.py [--files 10000] [--repeat 9]
"""

from __future__ import annotations

import argparse
import os
import pty
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import build, compile_package, machine  # noqa: E402

RICH_SCRIPT = r"""
import sys, time
from opendev_snapshot import cli, cli_table
from rich.console import Console
from rich.table import Table
console = Console(width=160, force_terminal=True)

def render(columns, rows, width, *, wide=False):
    table = Table(box=None, pad_edge=False)
    for c in columns:
        table.add_column(c.header, no_wrap=True, overflow="fold", justify="right" if c.right else "left")
    for row in rows:
        table.add_row(*row)
    with console.capture() as capture:
        console.print(table)
    return capture.get().rstrip("\n")

cli_table.render = render
sys.exit(cli.main(["--dir", sys.argv[1], "list"]))
"""


def on_pty(cmd: list, env: dict) -> float:
    """Wall time of ``cmd`` with stdout on a 160-column pseudo-terminal (output drained)."""
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=slave, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=env)
    os.close(slave)
    while True:
        try:
            if not os.read(master, 1 << 16):
                break
        except OSError:
            break
    proc.wait()
    elapsed = time.perf_counter() - t
    os.close(master)
    return elapsed


def piped(cmd: list, env: dict) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=9)
    args = ap.parse_args()
    compile_package()
    try:
        import rich  # noqa: F401

        have_rich = True
    except ImportError:
        have_rich = False
    tmp = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    try:
        d = tmp / "d"
        build(d, args.files)
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        ours = [sys.executable, "-m", "opendev_snapshot", "--dir", str(d), "list"]
        with_rich = [sys.executable, "-c", RICH_SCRIPT, str(d)]
        piped(ours, env)  # the first listing writes the index
        res: dict = {"ours": [], "piped": [], "rich": []}
        for _ in range(args.repeat):
            res["ours"].append(on_pty(ours, env))
            res["piped"].append(piped(ours, env))
            if have_rich:
                res["rich"].append(on_pty(with_rich, env))
        base = statistics.median(res["ours"])
        print(f"# opendev-snapshot list, {args.files} files ({machine()})")
        print("| run | whole process, median (min-max) | ratio to ours on a terminal |")
        print("| --- | --- | --- |")
        for key, label in (("ours", "ours, on a terminal"), ("piped", "ours, piped"), ("rich", "with rich, on a terminal")):
            xs = res[key]
            if not xs:
                print(f"| {label} | not measured (rich is not installed) | |")
                continue
            med = statistics.median(xs)
            print(f"| {label} | {med * 1e3:.0f} ms ({min(xs) * 1e3:.0f}-{max(xs) * 1e3:.0f}) | {med / base:.2f} |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
