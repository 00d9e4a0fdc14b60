"""The READMEs work as written: their shell blocks, run in a fresh copy with an empty HOME.

Every fenced ``sh``/``bash``/``shell`` block of ``README.md`` and
``client-config/README.md`` runs, in document order. Each document gets
its own empty temporary ``HOME`` with a fresh copy of the repository's
tracked files at ``~/src/opendev-snapshot`` (as a ``git clone`` has them:
no ``.venv``, nothing beside it), so each install is really done from
scratch. A document's blocks run one after another in that copy (the
first creates the ``.venv`` the later ones use), each with ``bash -e``.

A block that must not run here carries the marker line
``<!-- readme-test: skip: REASON -->`` just before its fence; the test
reports it as skipped with that reason.

The environment is the caller's, except: ``HOME`` is the empty directory;
the test's own virtual environment is taken off ``PATH`` (the README must
not lean on it); ``~/.local/bin`` of that home is put first on ``PATH``,
as Debian's and most distributions' login profile does once it exists.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT

DOCS = ("README.md", "client-config/README.md")
SHELLS = {"sh", "bash", "shell"}
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
SKIP = re.compile(r"<!--\s*readme-test:\s*skip:\s*(.+?)\s*-->")
BLOCK_TIMEOUT_S = 600


def shell_blocks(doc: str) -> list:
    """``(doc, line, code, skip_reason)`` for each shell block of ``doc``."""
    lines = (ROOT / doc).read_text("utf-8").splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang = m.group(1), m.group(2).lower()
        start = i
        i += 1
        body = []
        while i < len(lines) and not FENCE.match(lines[i]):
            line = lines[i]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            i += 1
        i += 1
        if lang in SHELLS:
            marker = SKIP.search(lines[start - 1]) if start else None
            blocks.append((doc, start + 1, "\n".join(body) + "\n", marker.group(1) if marker else None))
    return blocks


BLOCKS = [b for doc in DOCS for b in shell_blocks(doc)]


def _tracked_files() -> list:
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
        ).stdout
        return [Path(p) for p in out.decode().split("\0") if p]
    except (OSError, subprocess.SubprocessError):  # not a git checkout: everything but local state
        ignore = {".venv", ".git", "node_modules", "__pycache__", ".pytest_cache", ".hypothesis"}
        return [
            p.relative_to(ROOT)
            for p in ROOT.rglob("*")
            if p.is_file() and not ignore.intersection(p.relative_to(ROOT).parts)
        ]


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory):
    """Run every block once, in order, each document in its own fresh HOME
    with the clone at ``~/src/opendev-snapshot`` (where the editor guide
    assumes it); map ``(doc, line)`` to its result."""
    venv_bin = str(Path(sys.prefix) / "bin")
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and Path(p) != Path(venv_bin)]
    base_env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "OPENDEV_SNAPSHOT_DIR")}
    files = _tracked_files()
    results, homes = {}, {}
    for doc in DOCS:
        home = tmp_path_factory.mktemp("home")
        clone = home / "src" / "opendev-snapshot"
        for rel in files:
            if (ROOT / rel).is_file():
                (clone / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / rel, clone / rel)
        env = dict(base_env, HOME=str(home), PATH=os.pathsep.join([str(home / ".local" / "bin"), *path]))
        homes[doc] = home
        for block_doc, line, code, skip in BLOCKS:
            if block_doc != doc or skip:
                continue
            try:
                proc = subprocess.run(
                    ["bash", "-e", "-o", "pipefail", "-c", code], cwd=clone, env=env, stdin=subprocess.DEVNULL,
                    capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S,
                )
                results[(doc, line)] = (proc.returncode, proc.stdout, proc.stderr)
            except subprocess.TimeoutExpired as exc:
                results[(doc, line)] = (None, exc.stdout or "", f"timed out after {BLOCK_TIMEOUT_S} s")
    return {"results": results, "homes": homes}


def test_the_readme_has_the_blocks_a_newcomer_runs():
    code = "".join(c for doc, _l, c, skip in BLOCKS if doc == "README.md" and not skip)
    assert "python3 -m venv .venv && .venv/bin/pip install ." in code
    assert "opendev-snapshot --version" in code  # the PATH step
    assert "pip install opendev-snapshot" not in "".join(c for _d, _l, c, _s in BLOCKS)  # no such PyPI package
    skipped = [(doc, line) for doc, line, _c, skip in BLOCKS if skip]
    assert len(skipped) <= 3, f"most blocks must run, not be skipped: {skipped}"


@pytest.mark.parametrize("doc,line,code,skip", BLOCKS, ids=[f"{d}:{n}" for d, n, _c, _s in BLOCKS])
def test_shell_block_works_as_written(readme_run, doc, line, code, skip):
    if skip:
        pytest.skip(f"{doc}:{line} is marked: {skip}")
    rc, out, err = readme_run["results"][(doc, line)]
    assert rc == 0, f"{doc}:{line} failed (exit {rc})\n--- block\n{code}--- stdout\n{out}--- stderr\n{err}"
    assert "Traceback" not in out + err


def test_quick_start_leaves_a_working_command_on_path(readme_run):
    link = readme_run["homes"]["README.md"] / ".local" / "bin" / "opendev-snapshot"
    assert link.exists(), "the Quick start should leave opendev-snapshot in ~/.local/bin"
    proc = subprocess.run([str(link), "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("opendev-snapshot ")
