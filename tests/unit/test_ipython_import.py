"""IPython stays an optional extra: the core, the server and the CLI never import it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

CHECK = "import sys, {mods}; bad = sorted(m for m in sys.modules if m == 'IPython' or m.startswith(('IPython.', 'ipykernel'))); print(bad); sys.exit(1 if bad else 0)"

FRONT_DOORS = [
    "opendev_snapshot",
    "opendev_snapshot.core",
    "opendev_snapshot.core.models",
    "opendev_snapshot.cli",
    "opendev_snapshot.server",
]


def _run(mods: list[str]) -> subprocess.CompletedProcess:
    code = CHECK.format(mods=", ".join(mods))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("module", FRONT_DOORS)
def test_front_door_does_not_import_ipython(module):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} does not exist yet")
    proc = _run([module])
    assert proc.returncode == 0, f"{module} imported {proc.stdout.strip()} {proc.stderr[-2000:]}"


def test_cli_main_help_does_not_import_ipython():
    code = (
        "import sys\n"
        "from opendev_snapshot import cli\n"
        "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "bad = [m for m in sys.modules if m == 'IPython' or m.startswith('IPython.')]\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_the_check_can_fail():
    pytest.importorskip("IPython")
    proc = _run(["opendev_snapshot.ipython.magics"])
    assert proc.returncode == 1
    assert "IPython" in proc.stdout
