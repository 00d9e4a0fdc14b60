"""Start the opendev-snapshot server bundled in the VS Code extension.

Run as ``python -I opendev_snapshot_server.py serve`` with the user's Python
(3.11 or newer): it puts ``bundled/native/cpXY`` (the compiled part of
pydantic for this Python) and ``bundled/libs`` (everything else) first on
``sys.path`` and runs the server's own command line. A Python it cannot
serve gets one line on stderr naming what to change, and exit code 3.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BUNDLED = os.path.dirname(HERE)
EXIT_UNSUPPORTED = 3


def fail(message: str) -> None:
    sys.stderr.write(f"opendev-snapshot: {message}\n")
    sys.stderr.flush()
    sys.exit(EXIT_UNSUPPORTED)


def bundle_info() -> dict:
    try:
        with open(os.path.join(BUNDLED, "BUNDLE.json"), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def main() -> None:
    version = "%d.%d" % sys.version_info[:2]
    info = bundle_info()
    supported = ", ".join(info.get("pythons", [])) or "none"
    advice = (
        "select another interpreter with the Python extension, set opendevSnapshot.interpreter, "
        "or set opendevSnapshot.serverPath to an installed opendev-snapshot"
    )
    if sys.version_info < (3, 11):
        fail(f"needs Python 3.11 or newer; {sys.executable} is {version}: {advice}")
    native = os.path.join(BUNDLED, "native", "cp%d%d" % sys.version_info[:2])
    if not os.path.isdir(native):
        fail(
            f"this build of the extension bundles the server for Python {supported} "
            f"({info.get('target', 'unknown platform')}); {sys.executable} is {version}: {advice}"
        )
    sys.path[:0] = [native, os.path.join(BUNDLED, "libs")]
    from opendev_snapshot.cli import main as cli_main

    sys.exit(cli_main(sys.argv[1:] or ["serve"]))


if __name__ == "__main__":
    main()
