"""``python -m opendev_snapshot.server``: the server without the full CLI.

Same options as ``opendev-snapshot [--dir D] [--log-file F] [-v] serve``;
handy for editors configured by hand and for the tests.
"""

import argparse
import sys

from .args import add_serve_arguments, run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m opendev_snapshot.server", description="Run the JSON-RPC server.")
    parser.add_argument("--dir", metavar="PATH", default=None, help="snapshot directory")
    parser.add_argument("--log-file", metavar="FILE", dest="log_file", default=None, help="write logs to FILE (mode 0600)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_serve_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
