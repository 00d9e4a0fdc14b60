"""``serve --tcp``: closed by default (contract section 4).

- It binds ``127.0.0.1`` unless ``--host`` says otherwise, and an address
  that is not loopback also needs ``--allow-remote``.
- Every connection must authenticate: a random token is made at start,
  printed on stderr and written to ``--token-file`` (mode 0600, atomically
  and durably; an empty name or a directory is refused at start); the
  client sends it as ``initializationOptions.token``.
- pygls reads every connection (``run_async``), but until it has
  authenticated a :class:`GateProtocol` stands in for the server's: a
  first line that is not a ``Content-Length`` header (an HTTP request: a
  browser page or ``curl`` posting to the port) ends it unread; an
  ``initialize`` with a wrong or missing token gets one error answer and
  the connection is closed; any other request is refused with ``-32600``
  (a notification dropped): nothing reaches a handler. Unauthenticated
  connections time out after 30 s and may send 1 MiB per message; at most
  16 wait at once, and a new one pushes out the oldest (so idle
  connections cannot keep the editor out).
- The first connection that authenticates is the editor: pygls' own
  ``handle_message`` gives its ``initialize`` to the real server, which
  then reads the rest of the connection. No other connection is accepted
  after it. A port scanner's connect/close, or a failed authentication,
  before the editor locks nobody out.

The gate itself (pygls reading unauthenticated connections) is in
:mod:`.gate`; this module holds what is decided before pygls is imported.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import socket

from ..core.durable import write_atomic
from ..core.errors import StorageError
from ..core.text import printable

log = logging.getLogger(__name__)


class TcpConfigError(Exception):
    """A TCP setting that cannot be served safely; ``str()`` is one line for the user."""


def make_token() -> str:
    return secrets.token_urlsafe(32)


def is_loopback(host: str, port: int) -> bool:
    """Whether every address ``host`` resolves to is a loopback address."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TcpConfigError(f"cannot resolve --host {host}: {exc.strerror or exc}") from None
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a.split("%", 1)[0]).is_loopback for a in addresses)


def check_host(host: str, port: int, allow_remote: bool) -> str | None:
    """Refuse a non-loopback address without ``--allow-remote``; else a warning to print, or None."""
    if is_loopback(host, port):
        return None
    if not allow_remote:
        raise TcpConfigError(
            f"--host {host} is not a loopback address: anyone who can reach it could read and delete "
            "snapshots with the token; add --allow-remote if that is what you want"
        )
    return (
        f"listening on {host}, reachable from other machines (--allow-remote): anyone with the token "
        "can read and delete snapshots; the connection is not encrypted"
    )


def check_token_file(path: str) -> None:
    """Refuse a ``--token-file`` that cannot be a file: empty, or a directory."""
    if not path.strip():
        raise TcpConfigError('--token-file "" is empty: name a file (is a shell variable unset?)')
    if os.path.isdir(path):
        raise TcpConfigError(f"--token-file {printable(path)} is a directory: name a file")


def write_token_file(path: str, token: str) -> None:
    """Write the token to ``path`` with mode 0600 through the core's durable
    write: a reader never sees half of it, a failure leaves no file, and a
    link at ``path`` is replaced, never followed."""
    directory, name = os.path.split(os.path.abspath(path))
    try:
        write_atomic(directory, name, token.encode("ascii") + b"\n", what="the token file")
    except StorageError as exc:
        why = exc.cause.strerror if isinstance(exc.cause, OSError) and exc.cause.strerror else exc
        raise TcpConfigError(f"cannot write the token file {printable(path)}: {why}") from None
