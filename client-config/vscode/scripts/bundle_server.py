"""Bundle the server and its Python dependencies into ``bundled/`` for the .vsix.

The layout follows Microsoft's Python tools extension template
(``bundled/libs`` filled with ``pip install --target``), with one addition:
pydantic's compiled core differs per CPython version, so it is kept per
version, next to the pure-Python packages shared by all of them::

    bundled/tool/opendev_snapshot_server.py   the launcher (checked in)
    bundled/libs/                             opendev_snapshot, pygls, lsprotocol, pydantic, ...
    bundled/native/cp311/ ... cp314/          pydantic_core for that CPython, for the target platform
    bundled/BUNDLE.json                       what was bundled, for the launcher's messages

usage: python scripts/bundle_server.py [--target linux-x64] [--pythons 3.11,3.12,3.13,3.14] [--print-target]

Needs pip and the package index (or its cache); the host Python installs the
pure-Python part, and ``pip download`` fetches each version's binary wheel.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]  # client-config/vscode
ROOT = HERE.parents[1]  # the repository: the opendev-snapshot distribution
BUNDLED = HERE / "bundled"
PYTHONS = ("3.11", "3.12", "3.13", "3.14")
# vsce's --target names -> the wheel platform tags pip may pick for it
PLATFORMS = {
    "linux-x64": ["manylinux_2_17_x86_64", "manylinux2014_x86_64"],
    "linux-arm64": ["manylinux_2_17_aarch64", "manylinux2014_aarch64"],
    "darwin-x64": ["macosx_10_12_x86_64"],
    "darwin-arm64": ["macosx_11_0_arm64"],
    "win32-x64": ["win_amd64"],
}
NATIVE = ("pydantic_core",)  # the only compiled dependency


def host_target() -> str:
    machine = platform.machine().lower()
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    system = {"linux": "linux", "darwin": "darwin", "win32": "win32"}.get(sys.platform, sys.platform)
    return f"{system}-{arch}"


def pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"bundle_server: {' '.join(cmd)} failed:\n{proc.stdout}{proc.stderr}")


def clean_caches(tree: Path) -> None:
    for cache in list(tree.rglob("__pycache__")):
        shutil.rmtree(cache)
    for compiled in tree.rglob("*.pyc"):
        compiled.unlink()


def bundle(target: str, pythons: list) -> dict:
    libs = BUNDLED / "libs"
    native = BUNDLED / "native"
    for d in (libs, native):
        shutil.rmtree(d, ignore_errors=True)
    (BUNDLED / "BUNDLE.json").unlink(missing_ok=True)
    # 1. The server and every dependency, as the host Python installs them.
    pip("install", "--no-compile", "--target", str(libs), str(ROOT))
    shutil.rmtree(libs / "bin", ignore_errors=True)
    # 2. The compiled core leaves libs/: one copy per CPython version instead.
    versions = {}
    for name in NATIVE:
        infos = list(libs.glob(f"{name}-*.dist-info"))
        assert len(infos) == 1, f"expected one {name} in {libs}, found {infos}"
        versions[name] = infos[0].name[len(name) + 1 : -len(".dist-info")]
        shutil.rmtree(libs / name)
        shutil.rmtree(infos[0])
    bundled_for = []
    with tempfile.TemporaryDirectory() as tmp:
        for py in pythons:
            tag = "cp" + py.replace(".", "")
            wheels = Path(tmp) / tag
            for name, version in versions.items():
                platform_args = [a for p in PLATFORMS[target] for a in ("--platform", p)]
                pip("download", f"{name.replace('_', '-')}=={version}", "--no-deps", "--only-binary=:all:",
                    "--python-version", py, "--implementation", "cp", "--abi", tag, *platform_args,
                    "--dest", str(wheels))  # fmt: skip
            for wheel in wheels.glob("*.whl"):
                with zipfile.ZipFile(wheel) as z:
                    z.extractall(native / tag)
            bundled_for.append(py)
    clean_caches(BUNDLED)
    version = next(libs.glob("opendev_snapshot-*.dist-info")).name[len("opendev_snapshot-") : -len(".dist-info")]
    info = {"target": target, "pythons": bundled_for, "opendevSnapshot": version, **versions}
    (BUNDLED / "BUNDLE.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default=host_target(), choices=sorted(PLATFORMS), help="vsce target (default: this machine)")
    parser.add_argument("--pythons", default=",".join(PYTHONS), help="CPython versions to bundle the compiled core for")
    parser.add_argument("--print-target", action="store_true", help="print this machine's vsce target and exit")
    args = parser.parse_args()
    if args.print_target:
        print(host_target())
        return 0
    pythons = [p for p in args.pythons.split(",") if p]
    if not all(re.fullmatch(r"3\.\d+", p) and int(p.split(".")[1]) >= 11 for p in pythons):
        parser.error("--pythons takes versions 3.11 and newer, e.g. 3.11,3.12")
    info = bundle(args.target, pythons)
    size = sum(f.stat().st_size for f in BUNDLED.rglob("*") if f.is_file())
    print(f"bundled opendev-snapshot {info['opendevSnapshot']} for {info['target']}, "
          f"Python {', '.join(info['pythons'])}: {size / 1e6:.1f} MB in {BUNDLED}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
