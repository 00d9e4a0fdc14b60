"""``serve --tcp``: closed by default (contract section 4).

- It binds ``127.0.0.1`` unless ``--host`` says otherwise, and an address
  that is not loopback also needs ``--allow-remote``.
- Every connection must authenticate: a random token is made at start,
  printed on stderr and written to ``--token-file`` (mode 0600); the
  client sends it as ``initializationOptions.token``.
- The gate reads each connection's first frames before pygls does. A first
  line that is not a ``Content-Length`` header (an HTTP request: a browser
  page or ``curl`` posting to the port) closes the connection; so does an
  ``initialize`` with a wrong or missing token (after one error answer).
  Any other message before a correct ``initialize`` is refused (a request
  gets ``-32600``; nothing reaches a handler). Unauthenticated connections
  time out after 30 s; at most 16 wait at once, and a new one pushes out
  the oldest (so idle connections cannot keep the editor out).
- The first connection that authenticates is the editor: its
  ``initialize`` goes to pygls as it came, and from then on pygls reads the
  connection with ``run_async``. No other connection is accepted after it.
  A port scanner's connect/close, or a failed authentication, before the
  editor locks nobody out.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import os
import secrets
import socket

from .streams import LIMIT, FrameReader

log = logging.getLogger(__name__)

AUTH_TIMEOUT_S = 30.0
MAX_WAITING = 16
MAX_FIRST_FRAME = 1 << 20  # an initialize is a few KiB; anything bigger before auth is refused
MAX_HEADER_LINES = 16
MAX_REFUSED = 16
NOT_AUTHENTICATED = -32600


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


def check_host(host: str, port: int, allow_remote: bool) -> None:
    if not is_loopback(host, port) and not allow_remote:
        raise TcpConfigError(
            f"--host {host} is not a loopback address: anyone who can reach it could read and delete "
            "snapshots with the token; add --allow-remote if that is what you want"
        )


def write_token_file(path: str, token: str) -> None:
    """Write the token to ``path`` with mode 0600, atomically (a reader never sees half of it)."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, token.encode("ascii") + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise TcpConfigError(f"cannot write the token file {path}: {exc.strerror or exc}") from None


class Refused(Exception):
    """The connection is closed without more words."""


class Gate:
    """Authenticates connections; hands the first good one to ``on_editor``."""

    def __init__(self, token: str, on_editor) -> None:
        self.token = token.encode("utf-8")
        self.on_editor = on_editor  # async (FrameReader, StreamWriter) -> None
        self.editor_connected = False
        self.waiting: dict[asyncio.StreamWriter, None] = {}  # oldest first

    async def on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        if self.editor_connected:
            log.info("connection from %s refused: an editor is connected", peer)
            writer.close()
            return
        while len(self.waiting) >= MAX_WAITING:
            oldest = next(iter(self.waiting))
            self.waiting.pop(oldest)
            log.warning("too many unauthenticated connections: closing the oldest")
            oldest.close()
        self.waiting[writer] = None
        frames = FrameReader(reader)
        try:
            await asyncio.wait_for(self._authenticate(frames, writer), AUTH_TIMEOUT_S)
        except (Refused, asyncio.TimeoutError, ConnectionError, asyncio.IncompleteReadError) as exc:
            log.warning("connection from %s closed before authentication: %s", peer, exc or type(exc).__name__)
            writer.close()
            return
        finally:
            self.waiting.pop(writer, None)
        if self.editor_connected:  # another connection authenticated meanwhile
            writer.close()
            return
        self.editor_connected = True
        for other in list(self.waiting):
            other.close()
        log.info("editor connected from %s", peer)
        await self.on_editor(frames, writer)

    async def _authenticate(self, frames: FrameReader, writer: asyncio.StreamWriter) -> None:
        """Return once a correct ``initialize`` has been read (and pushed back for pygls)."""
        refused = 0
        first = True
        while True:
            raw, body = await self._read_frame(frames, first)
            first = False
            try:
                message = json.loads(body)
            except (ValueError, RecursionError):
                raise Refused("not JSON") from None
            if not isinstance(message, dict):
                raise Refused("not a JSON-RPC object")
            method, msg_id = message.get("method"), message.get("id")
            is_request = "id" in message and type(msg_id) in (int, str)
            if method == "initialize" and is_request:
                params = message.get("params")
                options = params.get("initializationOptions") if isinstance(params, dict) else None
                given = options.get("token") if isinstance(options, dict) else None
                if isinstance(given, str) and hmac.compare_digest(given.encode("utf-8"), self.token):
                    frames.push_back(raw)
                    return
                self._refuse(writer, msg_id, "authentication failed: initializationOptions.token is missing or wrong")
                await writer.drain()
                raise Refused("wrong or missing token")
            refused += 1
            if refused > MAX_REFUSED:
                raise Refused("too many messages before initialize")
            if is_request:
                self._refuse(writer, msg_id, "not authenticated: send initialize with initializationOptions.token first")
                await writer.drain()

    async def _read_frame(self, frames: FrameReader, first: bool) -> tuple[bytes, bytes]:
        lines = []
        length = None
        while True:
            line = await frames.readline()
            if not line:
                raise Refused("end of input")
            if first and not lines and not line.startswith(b"Content-Length: "):  # e.g. "POST / HTTP/1.1"
                raise Refused("the first line is not a Content-Length header")
            lines.append(line)
            if line.startswith(b"Content-Length: "):
                length = int(line[len(b"Content-Length: ") :])
            elif not line.strip():
                break
            if len(lines) > MAX_HEADER_LINES:
                raise Refused("too many header lines")
        if length is None or length > MAX_FIRST_FRAME:
            raise Refused("no usable Content-Length")
        body = await frames.readexactly(length)
        if len(body) != length:
            raise Refused("end of input")
        return b"".join(lines) + body, body

    @staticmethod
    def _refuse(writer: asyncio.StreamWriter, msg_id, message: str) -> None:
        body = json.dumps({"jsonrpc": "2.0", "id": msg_id, "error": {"code": NOT_AUTHENTICATED, "message": message}})
        data = body.encode("utf-8")
        writer.write(b"Content-Length: %d\r\n\r\n" % len(data) + data)


async def listen(host: str, port: int, gate: Gate) -> asyncio.AbstractServer:
    return await asyncio.start_server(gate.on_connect, host, port, limit=LIMIT)
