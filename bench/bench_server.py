#!/usr/bin/env python3
"""Server benchmark: start-up, warm listing, save round trip, idle CPU, as ratios.

Each figure is a ratio against a baseline measured in the same run,
interleaved, so a noisy machine moves both sides together:

- start-up: spawn -> ``opendev/recoverableSessions`` received (10,000
  snapshots on disk, 50 interrupted ones for the workspace, prompt off)
  against spawn -> ``initialize`` response of a bare 15-line pygls server
  run by the same interpreter;
- warm ``listIncomplete`` of the workspace through the server (one JSON-RPC
  round trip) against a naive scan (listdir + json.load each file);
- durable ``save`` round trip against the raw durable write (write + fsync +
  rename + fsync(dir)) of the same bytes; plus a no-op round trip, and both
  again through pygls' stock stdio reader for comparison;
- idle CPU of the running server's watch over 10,000 files.

Usage: python bench/bench_server.py [--files 10000] [--starts 15] [--iterations 300] [--idle 20] [--out FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, TARGET_PROJECT, TARGET_SESSIONS, build, machine, naive_scan, raw_durable_write, stats  # noqa: E402

from opendev_snapshot.core import codec, new_record  # noqa: E402

TARGET = TARGET_PROJECT

BARE_SERVER = """\
import logging
from lsprotocol import types
from pygls.lsp.server import LanguageServer

logging.basicConfig(level=logging.WARNING)
server = LanguageServer("bare", "0.1")


@server.feature(types.INITIALIZED)
def initialized(ls, params):
    pass


if __name__ == "__main__":
    server.start_io()
"""

# Our server's features behind pygls' own stdio loop (stock transport), for comparison.
STOCK_IO_SERVER = """\
import sys
from opendev_snapshot.server.app import create_server, configure_logging
from opendev_snapshot.server.context import ServerContext
configure_logging(None, False)
server = create_server(ServerContext())
server.start_io()
"""


class Rpc:
    """A JSON-RPC client over a subprocess' pipes (blocking, minimal)."""

    def __init__(self, cmd: list, env: dict) -> None:
        self.t_spawn = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, bufsize=0)
        self.fd = self.proc.stdout.fileno()
        self.buf = bytearray()
        self.next_id = 0

    def send(self, obj: dict) -> None:
        body = json.dumps(obj).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def recv(self) -> dict:
        """One framed message; reads in large chunks (no per-byte syscalls)."""
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                length = None
                for line in self.buf[:end].split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                start = end + 4
                if len(self.buf) >= start + length:
                    body = self.buf[start : start + length]
                    del self.buf[: start + length]
                    return json.loads(body)
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                raise EOFError("server closed")
            self.buf += chunk

    def request(self, method: str, params=None):
        self.next_id += 1
        msg = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        while True:
            reply = self.recv()
            if reply.get("id") == self.next_id and "method" not in reply:
                if "error" in reply:
                    raise RuntimeError(reply["error"])
                return reply["result"]

    def initialize(self, root: str, options=None):
        return self.request(
            "initialize",
            {"processId": os.getpid(), "rootUri": "file://" + root, "capabilities": {}, "initializationOptions": options},
        )

    def close(self) -> None:
        try:
            self.request("shutdown")
            self.send({"jsonrpc": "2.0", "method": "exit"})
            self.proc.wait(5)
        except Exception:
            self.proc.kill()
            self.proc.wait()


def env_for(directory: Path) -> dict:
    env = dict(os.environ)
    env["OPENDEV_SNAPSHOT_DIR"] = str(directory)
    env["PYTHONPATH"] = str(ROOT / "server")
    return env


def ours_cmd() -> list:
    return [sys.executable, "-m", "opendev_snapshot", "serve"]


def fmt(xs: list, scale: float = 1000.0, digits: int = 1) -> str:
    lo, med, hi = stats(xs)
    return f"{med * scale:.{digits}f} ({lo * scale:.{digits}f}–{hi * scale:.{digits}f})"


# ----------------------------------------------------------------- start-up
def startup_ours(directory: Path, cmd: list) -> float:
    return startup_ours_env(cmd, env_for(directory))


def startup_bare(bare: Path, directory: Path) -> float:
    rpc = Rpc([sys.executable, str(bare)], env_for(directory))
    rpc.initialize(TARGET)
    elapsed = time.perf_counter() - rpc.t_spawn
    rpc.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
    rpc.close()
    return elapsed


def bench_startup(directory: Path, bare: Path, starts: int) -> dict:
    startup_ours(directory, ours_cmd())  # warm-up: page cache, .pyc, the index
    startup_bare(bare, directory)
    variants = {
        "ours": ({}, ours_cmd()),
        "module": ({}, [sys.executable, "-m", "opendev_snapshot.server"]),
        "pygls_handshake": ({"OPENDEV_SNAPSHOT_NO_FAST_START": "1"}, ours_cmd()),
        "plain": ({"OPENDEV_SNAPSHOT_NO_FAST_START": "1", "OPENDEV_SNAPSHOT_NO_PRESCAN": "1"}, ours_cmd()),
    }
    out: dict = {"bare": []}
    for name in variants:
        out[name] = []
    for _ in range(starts):
        out["bare"].append(startup_bare(bare, directory))
        for name, (extra, cmd) in variants.items():
            env = env_for(directory)
            env.update(extra)
            out[name].append(startup_ours_env(cmd, env))
    return out


def startup_ours_env(cmd: list, env: dict) -> float:
    rpc = Rpc(cmd, env)
    rpc.initialize(TARGET, {"prompt": False})
    rpc.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
    while True:
        msg = rpc.recv()
        if msg.get("method") == "opendev/recoverableSessions":
            elapsed = time.perf_counter() - rpc.t_spawn
            assert len(msg["params"]["sessions"]) == TARGET_SESSIONS
            break
    rpc.close()
    return elapsed


# -------------------------------------------------------------- warm list
def bench_warm_list(directory: Path, iterations: int) -> dict:
    rpc = Rpc(ours_cmd(), env_for(directory))
    try:
        rpc.initialize(TARGET, {"prompt": False})
        rpc.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
        for _ in range(3):
            res = rpc.request("opendev/snapshot.listIncomplete", {"projectDir": TARGET})
        assert len(res["sessions"]) == TARGET_SESSIONS
        time.sleep(1.0)  # let the warm-up scan and the model import finish
        ours, base = [], []
        for _ in range(iterations):
            t = time.perf_counter()
            naive_scan(str(directory), TARGET)
            base.append(time.perf_counter() - t)
            t = time.perf_counter()
            rpc.request("opendev/snapshot.listIncomplete", {"projectDir": TARGET})
            ours.append(time.perf_counter() - t)
        return {"ours": ours, "naive": base}
    finally:
        rpc.close()


# ------------------------------------------------------------------ save
def save_params() -> tuple[dict, bytes]:
    r = new_record("bench-save", TARGET)
    r["message_count"] = 42
    r["last_tool_results"] = [
        {"tool_name": "bash", "call_id": f"call_{k}", "output_preview": "y" * 330, "success": True} for k in range(10)
    ]
    wire = {
        "sessionId": r["session_id"],
        "messageCount": r["message_count"],
        "lastToolResults": [
            {"toolName": t["tool_name"], "callId": t["call_id"], "outputPreview": t["output_preview"], "success": t["success"]}
            for t in r["last_tool_results"]
        ],
        "snapshotTimestampMs": r["snapshot_timestamp_ms"],
        "completed": False,
        "projectDir": TARGET,
        "costUsd": 0.5,
    }
    return wire, codec.encode(r)


def bench_save(iterations: int, stock_script: Path) -> dict:
    out = {}
    for label, cmd in (("ours", ours_cmd()), ("stock", [sys.executable, str(stock_script)])):
        d = Path(tempfile.mkdtemp(prefix="bench-save-"))
        raw_dir = Path(tempfile.mkdtemp(prefix="bench-raw-", dir=d.parent))
        rpc = Rpc(cmd, env_for(d))
        try:
            rpc.initialize("/nonexistent/workspace", {"prompt": False})
            rpc.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
            params, data = save_params()
            for _ in range(20):
                rpc.request("opendev/snapshot.save", params)
                rpc.request("opendev/snapshot.load", {"sessionId": "none"})
            time.sleep(0.5)
            saves, raws, noops = [], [], []
            for i in range(iterations):
                t = time.perf_counter()
                raw_durable_write(str(raw_dir), "bench_session_snapshot.json", data, i)
                raws.append(time.perf_counter() - t)
                t = time.perf_counter()
                rpc.request("opendev/snapshot.save", params)
                saves.append(time.perf_counter() - t)
                t = time.perf_counter()
                rpc.request("opendev/snapshot.load", {"sessionId": "none"})
                noops.append(time.perf_counter() - t)
            out[label] = {"save": saves, "raw": raws, "noop": noops, "bytes": len(data)}
        finally:
            rpc.close()
            shutil.rmtree(d, ignore_errors=True)
            shutil.rmtree(raw_dir, ignore_errors=True)
    return out


# ------------------------------------------------------------------ idle
def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


@contextlib.contextmanager
def settled_server(directory: Path):
    """A server with the workspace open, past its on-open scan and model import."""
    rpc = Rpc(ours_cmd(), env_for(directory))
    try:
        rpc.initialize(TARGET, {"prompt": False})
        rpc.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
        rpc.recv()
        time.sleep(3.0)  # warm-up scan, model import
        yield rpc
    finally:
        rpc.close()


def bench_idle(directory: Path, seconds: float) -> dict:
    with settled_server(directory) as rpc:
        c0, t0 = cpu_seconds(rpc.proc.pid), time.monotonic()
        time.sleep(seconds)
        c1, t1 = cpu_seconds(rpc.proc.pid), time.monotonic()
        return {"cpu": c1 - c0, "wall": t1 - t0}


def server_rss_kib(directory: Path) -> int:
    """Peak RSS (VmHWM) of a server after its on-open scan and one listing."""
    with settled_server(directory) as rpc:
        rpc.request("opendev/snapshot.listIncomplete", {"projectDir": TARGET})
        with open(f"/proc/{rpc.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--starts", type=int, default=15)
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--idle", type=float, default=20.0)
    ap.add_argument("--out", help="also write the markdown to this file")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-server-"))
    lines = []
    try:
        directory = work / "snapshots"
        build(directory, args.files)
        bare = work / "bare_server.py"
        bare.write_text(BARE_SERVER)
        stock = work / "stock_io_server.py"
        stock.write_text(STOCK_IO_SERVER)

        s = bench_startup(directory, bare, args.starts)
        w = bench_warm_list(directory, max(20, args.iterations // 10))
        v = bench_save(args.iterations, stock)
        idle = bench_idle(directory, args.idle)

        ours_med, bare_med = statistics.median(s["ours"]), statistics.median(s["bare"])
        mod_med = statistics.median(s["module"])
        w_ours, w_naive = statistics.median(w["ours"]), statistics.median(w["naive"])
        sv = v["ours"]
        st = v["stock"]
        lines += [
            f"Machine: {machine()}; "
            f"{args.files:,} snapshot files; median (min–max).",
            "",
            "| measure | ours | baseline | ratio | target |",
            "| --- | ---: | ---: | ---: | ---: |",
            f"| spawn → recoverableSessions (`opendev-snapshot serve`) vs spawn → initialize result (bare pygls), {args.starts} interleaved starts, ms | "
            f"{fmt(s['ours'])} | {fmt(s['bare'])} | **{ours_med / bare_med:.3f}** | ≤ 1.05 |",
            f"| same, `python -m opendev_snapshot.server`, ms | {fmt(s['module'])} | {fmt(s['bare'])} | {mod_med / bare_med:.3f} | |",
            f"| same, handshake left to pygls (`OPENDEV_SNAPSHOT_NO_FAST_START=1`), ms | {fmt(s['pygls_handshake'])} | {fmt(s['bare'])} | "
            f"{statistics.median(s['pygls_handshake']) / bare_med:.3f} | |",
            f"| same, neither fast start nor pre-scan fork, ms | {fmt(s['plain'])} | {fmt(s['bare'])} | "
            f"{statistics.median(s['plain']) / bare_med:.3f} | |",
            f"| warm `listIncomplete` (50 sessions) round trip vs naive scan, {len(w['ours'])} interleaved, ms | {fmt(w['ours'], digits=2)} | "
            f"{fmt(w['naive'])} | **{w_ours / w_naive:.4f}** | ≤ 0.02 |",
            f"| durable `save` round trip ({sv['bytes']:,}-byte snapshot) vs raw durable write, {args.iterations} interleaved, ms | "
            f"{fmt(sv['save'], digits=3)} | {fmt(sv['raw'], digits=3)} | **{statistics.median(sv['save']) / statistics.median(sv['raw']):.2f}** | ≤ 1.5 |",
            f"| same through pygls' stock stdio reader, ms | {fmt(st['save'], digits=3)} | {fmt(st['raw'], digits=3)} | "
            f"{statistics.median(st['save']) / statistics.median(st['raw']):.2f} | |",
            f"| no-op round trip (`load` of a missing id): ours vs pygls' stock reader, ms | {fmt(sv['noop'], digits=3)} | "
            f"{fmt(st['noop'], digits=3)} | {statistics.median(sv['noop']) / statistics.median(st['noop']):.2f} | |",
            f"| idle CPU of the watch, {args.files:,} files, workspace open, {idle['wall']:.0f} s | "
            f"{100 * idle['cpu'] / idle['wall']:.2f}% of a core | | | < 1% |",
        ]
        text = "\n".join(lines)
        print(text)
        if args.out:
            Path(args.out).write_text(text + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
