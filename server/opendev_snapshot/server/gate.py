"""The TCP gate: pygls reads a connection, nothing reaches a handler before a correct ``initialize``.

See :mod:`.tcp` for the rules (contract section 4).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading

from lsprotocol import types
from pygls.io_ import run_async
from pygls.lsp.server import LanguageServer

from .. import __version__
from .rpc import SnapshotProtocol, converter_factory, parse_error_handler
from .streams import LIMIT, FrameReader

log = logging.getLogger(__name__)

AUTH_TIMEOUT_S = 30.0
MAX_WAITING = 16
MAX_FIRST_FRAME = 1 << 20  # an initialize is a few KiB; a bigger message before authentication ends the connection
MAX_REFUSED = 16
NOT_AUTHENTICATED = -32600


class GateProtocol(SnapshotProtocol):
    """pygls reading a connection that has not authenticated: nothing reaches a handler.

    Messages are read and structured by pygls (``run_async``) and checked by
    :class:`.rpc.SnapshotProtocol` as always; then, instead of dispatching
    them, the gate decides: a correct ``initialize`` is handed to the real
    server, anything else refused.
    """

    def __init__(self, server, converter) -> None:
        super().__init__(server, converter)
        self.connection: Connection | None = None

    def handle_message(self, message) -> None:
        if self._admissible(message):
            self.connection.consider(message)


class Connection:
    """One unauthenticated connection behind the gate."""

    def __init__(self, token: bytes, protocol: GateProtocol, writer: asyncio.StreamWriter) -> None:
        self.token = token
        self.protocol = protocol
        self.writer = writer
        self.stop = threading.Event()  # run_async's: set once a message decided the connection
        self.initialize = None  # the authenticated initialize request, for the real server
        self.refused = 0
        self.reason = "end of input"

    def consider(self, message) -> None:
        method = getattr(message, "method", None)
        is_request = method is not None and hasattr(message, "id")
        if method == types.INITIALIZE and is_request:
            options = message.params.initialization_options
            given = options.get("token") if isinstance(options, dict) else None
            if isinstance(given, str) and hmac.compare_digest(given.encode("utf-8"), self.token):
                self.initialize = message
            else:
                self.protocol.reply_error(
                    message.id, NOT_AUTHENTICATED, "authentication failed: initializationOptions.token is missing or wrong"
                )
                self.reason = "a wrong or missing token"
                self.writer.close()
            self.stop.set()
            return
        self.refused += 1
        if self.refused > MAX_REFUSED:
            self.reason = "too many messages before initialize"
            self.stop.set()
            self.writer.close()
        elif is_request:
            self.protocol.reply_error(
                message.id, NOT_AUTHENTICATED, "not authenticated: send initialize with initializationOptions.token first"
            )


class Gate:
    """Authenticates connections; hands the first good one to ``on_editor``."""

    def __init__(self, token: str, on_editor) -> None:
        self.token = token.encode("utf-8")
        self.on_editor = on_editor  # async (FrameReader, StreamWriter, initialize request) -> None
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
        frames = FrameReader(reader, header_first=True, max_body=MAX_FIRST_FRAME)
        gate = LanguageServer("opendev-snapshot", __version__, protocol_cls=GateProtocol, converter_factory=converter_factory)
        connection = Connection(self.token, gate.protocol, writer)
        gate.protocol.connection = connection
        gate.protocol.set_writer(writer)
        try:
            await asyncio.wait_for(
                run_async(
                    stop_event=connection.stop,
                    reader=frames,
                    protocol=gate.protocol,
                    error_handler=parse_error_handler(gate.protocol),
                ),
                AUTH_TIMEOUT_S,
            )
        except asyncio.TimeoutError:
            connection.reason = f"nothing authenticated in {AUTH_TIMEOUT_S:.0f} s"
        except (ConnectionError, OSError) as exc:
            connection.reason = str(exc) or type(exc).__name__
        finally:
            self.waiting.pop(writer, None)
        if connection.initialize is None:
            if frames.refused_header:
                connection.reason = "the first line is not a Content-Length header (an HTTP request?)"
            log.warning("connection from %s closed before authentication: %s", peer, connection.reason)
            writer.close()
            return
        if self.editor_connected:  # another connection authenticated meanwhile
            writer.close()
            return
        self.editor_connected = True
        for other in list(self.waiting):
            other.close()
        log.info("editor connected from %s", peer)
        frames.max_body = None
        await self.on_editor(frames, writer, connection.initialize)


async def listen(host: str, port: int, gate: Gate) -> asyncio.AbstractServer:
    return await asyncio.start_server(gate.on_connect, host, port, limit=LIMIT)
