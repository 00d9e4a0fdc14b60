#!/usr/bin/env python3
"""Server benchmark: the five ratios of issue 10, each against a baseline measured in the same run.

Data set: 10,000 snapshots on disk; the workspace project has 50 incomplete
sessions, 47 interrupted and 3 running (fresh, lock-less), prompts off.
Each ratio is ours ÷ a baseline, runs interleaved so a noisy machine moves
both sides together; reported as min / median / max of the per-pair ratios.

1. spawn -> ``opendev/recoverableSessions`` (47 sessions) vs spawn ->
   ``initialize`` answer of a bare 15-line pygls server (same interpreter);
2. spawn -> first ``listIncomplete`` answer (50 sessions) vs the same bare
   spawn -> ``initialize``;
3. warm ``listIncomplete`` round trip vs a naive scan (listdir + json.load);
4. durable ``save`` round trip (a 4.4 KB snapshot) vs the raw durable write
   (write + fsync + rename + fsync(dir)) of the same bytes;
5. server RSS (VmHWM) after the on-open scan of 10,000 files and a listing.

Also: the same start-up without the pre-scan fork, a no-op round trip
against our server behind pygls' stock ``start_io`` reader, idle CPU.

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

from common import (  # noqa: E402
    ROOT,
    TARGET_PROJECT,
    TARGET_SESSIONS,
    build,
    compile_package,
    machine,
    naive_scan,
    paired_ratios,
    raw_durable_write,
)

from opendev_snapshot.core import codec, new_record  # noqa: E402

TARGET = TARGET_PROJECT
RUNNING = 3  # of the target's incomplete sessions, made fresh (lock-less: running)
INTERRUPTED = TARGET_SESSIONS - RUNNING

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

# Our server behind pygls' stock stdio loop (StdinAsyncReader: an executor
# round trip per header line), for comparison with the reader we use.
STOCK_IO_SERVER = """\
from opendev_snapshot.logsetup import configure_logging
from opendev_snapshot.server.app import create_server
configure_logging(None, False)
create_server().start_io()
"""


class Rpc:
    """A JSON-RPC client over a subprocess' pipes (blocking, minimal, one answer per id)."""

    def __init__(self, cmd: list, env: dict) -> None:
        self.t_spawn = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, bufsize=0)
        self.fd = self.proc.stdout.fileno()
        self.buf = bytearray()
        self.next_id = 0
        self.answered: set = set()

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
                    message = json.loads(body)
                    if "method" not in message and message.get("id") is not None:
                        assert message["id"] not in self.answered, f"a second answer to {message['id']}"
                        self.answered.add(message["id"])
                    return message
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


def env_for(directory: Path, **extra) -> dict:
    env = dict(os.environ)
    env["OPENDEV_SNAPSHOT_DIR"] = str(directory)
    env["PYTHONPATH"] = str(ROOT / "server")
    env.update(extra)
    return env


def ours_cmd() -> list:
    return [sys.executable, "-m", "opendev_snapshot", "serve"]


def make_data_set(directory: Path, files: int) -> None:
    """``build`` (every target session 1 h old: interrupted), then RUNNING of them made fresh."""
    build(directory, files, settle=False)
    now = time.time_ns() // 1_000_000
    made = 0
    for path in sorted(directory.glob("*_session_snapshot.json")):
        record = codec.decode(path.read_bytes())
        if record["project_dir"] == TARGET and not record["completed"] and made < RUNNING:
            record["snapshot_timestamp_ms"] = now + 3_600_000  # young for the whole run (the future counts as now)
            path.write_bytes(codec.encode(record))
            made += 1
    assert made == RUNNING
    time.sleep(2.1)  # files on a user's disk are older than the index's racy window


# ----------------------------------------------------------------- start-up
CPU = {"bare": [], "notified": []}  # CPU ms of the server process (all its threads) at the answer


def process_cpu_ms(pid: int) -> float:
    """CPU time of every thread of ``pid`` so far (``/proc/PID/task/*/schedstat``, ns
    precision), 0.0 where that is not available. Children (the pre-scan) not included:
    they run beside the server, not on its path."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    except OSError:
        return 0.0
    return total / 1e6


def startup_bare(bare: Path, directory: Path) -> float:
    rpc = Rpc([sys.executable, str(bare)], env_for(directory))
    rpc.initialize(TARGET)
    elapsed = time.perf_counter() - rpc.t_spawn
    CPU["bare"].append(process_cpu_ms(rpc.proc.pid))
    rpc.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
    rpc.close()
    return elapsed


def startup_notified(cmd: list, env: dict, cpu: list | None = None) -> float:
    """spawn -> opendev/recoverableSessions with the 47 interrupted sessions."""
    rpc = Rpc(cmd, env)
    rpc.initialize(TARGET, {"prompt": False})
    rpc.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
    while True:
        msg = rpc.recv()
        if msg.get("method") == "opendev/recoverableSessions":
            elapsed = time.perf_counter() - rpc.t_spawn
            if cpu is not None:
                cpu.append(process_cpu_ms(rpc.proc.pid))
            assert len(msg["params"]["sessions"]) == INTERRUPTED, len(msg["params"]["sessions"])
            break
    rpc.close()
    return elapsed


def startup_listed(cmd: list, env: dict) -> float:
    """spawn -> the first listIncomplete answer (what an editor's panel shows first)."""
    rpc = Rpc(cmd, env)
    rpc.initialize(TARGET, {"prompt": False})
    rpc.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
    result = rpc.request("opendev/snapshot.listIncomplete", {"projectDir": TARGET})
    elapsed = time.perf_counter() - rpc.t_spawn
    assert len(result["sessions"]) == TARGET_SESSIONS, len(result["sessions"])
    rpc.close()
    return elapsed


def bench_startup(directory: Path, bare: Path, starts: int) -> dict:
    startup_notified(ours_cmd(), env_for(directory))  # warm-up: page cache, .pyc, the index
    startup_bare(bare, directory)
    CPU["bare"].clear()
    out: dict = {"bare": [], "notified": [], "listed": [], "notified_no_prescan": [], "module": []}
    for _ in range(starts):
        out["bare"].append(startup_bare(bare, directory))
        out["notified"].append(startup_notified(ours_cmd(), env_for(directory), CPU["notified"]))
        out["listed"].append(startup_listed(ours_cmd(), env_for(directory)))
        out["notified_no_prescan"].append(startup_notified(ours_cmd(), env_for(directory, OPENDEV_SNAPSHOT_NO_PRESCAN="1")))
        out["module"].append(startup_notified([sys.executable, "-m", "opendev_snapshot.server"], env_for(directory)))
    out["cpu_bare"], out["cpu_notified"] = list(CPU["bare"]), list(CPU["notified"])
    CPU["bare"].clear()
    CPU["notified"].clear()
    return out


# -------------------------------------------------------------- warm list
def bench_warm_list(directory: Path, iterations: int) -> dict:
    rpc = Rpc(ours_cmd(), env_for(directory))
    try:
        rpc.initialize(TARGET, {"prompt": False})
        rpc.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
        for _ in range(3):
            res = rpc.request("opendev/snapshot.listIncomplete", {"projectDir": TARGET})
        assert len(res["sessions"]) == TARGET_SESSIONS
        time.sleep(1.0)  # let the warm-up scan finish
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
    r["cost_usd"] = 0.5
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
        "costUsd": r["cost_usd"],
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


# ------------------------------------------------------------ idle and RSS
def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


@contextlib.contextmanager
def settled_server(directory: Path):
    """A server with the workspace open, past its on-open notification and warm-up scan."""
    rpc = Rpc(ours_cmd(), env_for(directory))
    try:
        rpc.initialize(TARGET, {"prompt": False})
        rpc.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
        rpc.recv()
        time.sleep(3.0)  # the warm-up scan
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


# ------------------------------------------------------------------ report
def fmt_ms(xs: list) -> str:
    return f"{statistics.median(xs) * 1e3:.2f}"


def fmt_ms_plain(xs: list) -> str:
    """Median of values already in ms."""
    return f"{statistics.median(xs):.2f}" if xs else "n/a"


def fmt_ratio(ours: list, base: list) -> str:
    lo, med, hi = paired_ratios(ours, base)
    return f"{lo:.4f} / **{med:.4f}** / {hi:.4f}"


def server_rows(work: Path, *, files: int = 10_000, starts: int = 15, iterations: int = 300, idle_s: float = 20.0) -> tuple:
    """``(rows, notes)`` for RESULTS.md: rows are (measure, ours ms, baseline ms, ratios, target)."""
    compile_package()
    sdir = work / "server"
    make_data_set(sdir, files)
    bare = work / "bare_server.py"
    bare.write_text(BARE_SERVER)
    stock = work / "stock_io_server.py"
    stock.write_text(STOCK_IO_SERVER)
    s = bench_startup(sdir, bare, starts)
    w = bench_warm_list(sdir, max(20, iterations // 5))
    v = bench_save(iterations, stock)
    idle = bench_idle(sdir, idle_s)
    rss = server_rss_kib(sdir)
    ours = v["ours"]
    rows = [
        (f"spawn → recoverableSessions ({INTERRUPTED} interrupted), {files:,} files, vs bare pygls spawn → initialize",
         fmt_ms(s["notified"]), fmt_ms(s["bare"]), fmt_ratio(s["notified"], s["bare"]), "≤ 1.10"),
        (f"spawn → first listIncomplete ({TARGET_SESSIONS} sessions) vs bare pygls spawn → initialize",
         fmt_ms(s["listed"]), fmt_ms(s["bare"]), fmt_ratio(s["listed"], s["bare"]), "≤ 1.25"),
        (f"warm listIncomplete round trip, {files:,} files, vs naive scan",
         fmt_ms(w["ours"]), fmt_ms(w["naive"]), fmt_ratio(w["ours"], w["naive"]), "≤ 0.02"),
        (f"durable save round trip ({ours['bytes']:,} bytes) vs raw durable write",
         fmt_ms(ours["save"]), fmt_ms(ours["raw"]), fmt_ratio(ours["save"], ours["raw"]), "≤ 1.5"),
        ("same spawn → recoverableSessions without the pre-scan fork",
         fmt_ms(s["notified_no_prescan"]), fmt_ms(s["bare"]), fmt_ratio(s["notified_no_prescan"], s["bare"]), ""),
        ("same spawn → recoverableSessions, `python -m opendev_snapshot.server`",
         fmt_ms(s["module"]), fmt_ms(s["bare"]), fmt_ratio(s["module"], s["bare"]), ""),
        ("no-op round trip: our reader vs pygls' stock start_io reader",
         fmt_ms(ours["noop"]), fmt_ms(v["stock"]["noop"]), fmt_ratio(ours["noop"], v["stock"]["noop"]), ""),
    ]
    if all(s["cpu_bare"]) and all(s["cpu_notified"]) and s["cpu_bare"]:  # Linux: /proc/PID/task/*/schedstat
        rows.insert(2, (
            "CPU of the server process (all threads; not the pre-scan child, which runs beside it) up to "
            "recoverableSessions vs bare pygls' up to initialize: the start-up's work, whatever the machine's load",
            fmt_ms_plain(s["cpu_notified"]), fmt_ms_plain(s["cpu_bare"]), fmt_ratio(s["cpu_notified"], s["cpu_bare"]), "",
        ))
    notes = (
        f"Server RSS (VmHWM) after the on-open scan of {files:,} files and a listing: "
        f"**{rss / 1024:.1f} MiB** (target ≤ 64 MiB). Idle CPU of the watch, workspace open: "
        f"{100 * idle['cpu'] / idle['wall']:.2f}% of a core over {idle['wall']:.0f} s (target < 1%)."
    )
    return rows, notes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--starts", type=int, default=15)
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--idle", type=float, default=20.0)
    ap.add_argument("--out", help="also write the markdown to this file")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-server-"))
    try:
        rows, notes = server_rows(work, files=args.files, starts=args.starts, iterations=args.iterations, idle_s=args.idle)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = [
        f"Machine: {machine()}. Ratios: min / **median** / max of per-pair ratios; times: medians in ms.",
        "",
        "| measure | ours ms | baseline ms | ratio min / median / max | target |",
        "| --- | ---: | ---: | ---: | --- |",
        *[f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows],
        "",
        notes,
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
