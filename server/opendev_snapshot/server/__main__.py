"""``python -m opendev_snapshot.server``: the server without the full CLI.

Same options as ``opendev-snapshot [--dir D] serve``; handy for editors
configured by hand and for the tests.
"""

import argparse
import sys

from .app import run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m opendev_snapshot.server")
    parser.add_argument("--dir", default=None, help="snapshot directory")
    parser.add_argument("--tcp", action="store_true", help="serve TCP instead of stdio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2087)
    parser.add_argument("--log-file", dest="log_file", default=None)
    parser.add_argument("-v", "--verbose", action="store_true")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
