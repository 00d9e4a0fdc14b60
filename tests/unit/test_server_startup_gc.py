"""Start-up and the garbage collector: no full collection on the way to the first answer.

Importing pygls and building its converter make ~50,000 long-lived
objects; CPython ran several full collections over them during start-up
(~30 ms of CPU before ``initialize`` could be answered, measured in
``bench/README.md``). ``serve`` keeps the collector to young collections
(which still free start-up's short-lived cycles) while it builds the
server, then freezes what start-up made (``gc.freeze``: never scanned
again) and puts the thresholds back before the first message is read.

Runs in a subprocess: the collector's state is process-wide.
"""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import ROOT

SCRIPT = r"""
import argparse, gc, json, sys
from opendev_snapshot.server import app, args

before = gc.get_threshold()
seen = {}
real_create = app.create_server


def create_server(*a, **k):
    seen["enabled_while_building"] = gc.isenabled()
    seen["full_while_building"] = gc.get_threshold()[2] < 10**9
    return real_create(*a, **k)


async def serve_stdio(server, in_fd, out_fd):
    seen["thresholds_when_serving"] = list(gc.get_threshold())
    seen["frozen"] = gc.get_freeze_count()
    return 0


app.create_server = create_server
app.take_stdio = lambda: (-1, -1)
app.serve_stdio = serve_stdio
ns = argparse.Namespace(dir=sys.argv[1], log_file=None, verbose=False, tcp=False, token_file=None, allow_remote=False)
seen["exit_code"] = args.run(ns)
seen["thresholds_before"] = list(before)
seen["thresholds_after"] = list(gc.get_threshold())
print(json.dumps(seen))
"""


def test_no_full_collection_while_building_then_start_up_frozen(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={"PYTHONPATH": str(ROOT / "server"), "OPENDEV_SNAPSHOT_NO_PRESCAN": "1", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["exit_code"] == 0
    assert seen["enabled_while_building"] is True  # young collections go on
    assert seen["full_while_building"] is False
    assert seen["thresholds_when_serving"] == seen["thresholds_before"]
    assert seen["frozen"] > 10_000  # pygls, lsprotocol, cattrs, our modules: never scanned again
    assert seen["thresholds_after"] == seen["thresholds_before"]
