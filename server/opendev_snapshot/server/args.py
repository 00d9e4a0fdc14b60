"""The one ``serve`` argument parser, used by ``opendev-snapshot serve`` and
``python -m opendev_snapshot.server``.

``add_serve_arguments(parser)`` adds ``--tcp``, ``--host``, ``--port``,
``--allow-remote`` and ``--token-file``; ``run(args)`` (``args`` also carries
the global ``dir``, ``log_file`` and ``verbose``) serves and returns the
exit code. Nothing heavy is imported here: the start-up pre-scan is forked
before pygls is imported.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys

log = logging.getLogger("opendev_snapshot.server")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 2087
NO_FULL_COLLECTION = 2**31 - 1  # a third-generation threshold never reached


def port_number(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: use a number from 1 to 65535") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: use a number from 1 to 65535")
    return value


def add_serve_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--tcp", action="store_true", help="listen on TCP instead of stdio (for debugging and remote setups)")
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"TCP address to bind (default {DEFAULT_HOST}; an address that is not loopback also needs --allow-remote)",
    )
    parser.add_argument("--port", type=port_number, default=DEFAULT_PORT, help=f"TCP port, 1-65535 (default {DEFAULT_PORT})")
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="accept a --host that other machines can reach (anyone with the token can then read and delete snapshots)",
    )
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        help="also write the TCP token to FILE (mode 0600); clients send it as initializationOptions.token",
    )
    return parser


def _fail(message: str, code: int) -> int:
    print(f"opendev-snapshot: {message}", file=sys.stderr, flush=True)
    return code


def run(args) -> int:
    """Serve stdio (default) or TCP; returns the process exit code."""
    from ..logsetup import LogFileError, configure_logging

    try:
        configure_logging(getattr(args, "log_file", None), bool(getattr(args, "verbose", False)))
    except LogFileError as exc:
        return _fail(str(exc), 1)
    cli_dir = getattr(args, "dir", None)
    if cli_dir is not None and not cli_dir:
        return _fail('--dir "" is empty: name a directory', 2)
    token_file = getattr(args, "token_file", None)
    if token_file is not None:
        from .tcp import TcpConfigError, check_token_file

        try:
            check_token_file(token_file)
        except TcpConfigError as exc:
            return _fail(str(exc), 2)
    tcp = None
    if getattr(args, "tcp", False):
        from .tcp import TcpConfigError, check_host, make_token

        host = getattr(args, "host", DEFAULT_HOST)
        port = getattr(args, "port", DEFAULT_PORT)
        try:
            if not host:
                raise TcpConfigError("--host is empty: name an address (127.0.0.1 by default)")
            warning = check_host(host, port, bool(getattr(args, "allow_remote", False)))
        except TcpConfigError as exc:
            return _fail(str(exc), 2)
        if warning:
            print(f"opendev-snapshot: warning: {warning}", file=sys.stderr, flush=True)
        tcp = (host, port, make_token(), token_file)
    elif token_file is not None or getattr(args, "allow_remote", False):
        return _fail("--token-file and --allow-remote are for --tcp", 2)

    # Fork the pre-scan before pygls is imported (see prescan.py).
    from .prescan import Prescan

    prescan = None
    try:
        from ..core.paths import resolve_snapshot_dir

        prescan = Prescan.start(os.fspath(resolve_snapshot_dir(cli_dir, None)))
    except Exception:  # no directory yet: reported at initialize or the first request
        log.debug("no pre-scan", exc_info=True)
    # Young collections only while pygls is imported and the server built: a
    # full collection walks every object start-up has made so far (~50,000),
    # and CPython ran several of them here, ~30 ms of CPU before ``initialize``
    # could be answered. ``main`` freezes what start-up made and puts the
    # thresholds back before the first message is read.
    thresholds = gc.get_threshold()
    gc.set_threshold(thresholds[0], thresholds[1], NO_FULL_COLLECTION)
    try:
        from .app import main

        return main(cli_dir, prescan, tcp, gc_thresholds=thresholds)
    finally:
        gc.set_threshold(*thresholds)
        if prescan is not None:
            prescan.close()
