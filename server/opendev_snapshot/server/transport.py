"""Message framing and dispatch: stdio (an asyncio pipe reader) and TCP.

pygls stays underneath (its protocol object handles every message), but
the reading loop is ours:

- stdin is read through an asyncio pipe transport into
  :class:`FrameProtocol`, which parses frames as bytes arrive, instead of
  pygls' executor round trip per header line (a no-op round trip: 0.13 ms
  against 0.38 ms); TCP uses an asyncio stream;
- each body is parsed once, then structured at the top level only (pygls'
  ``object_hook`` runs on every nested object);
- a message that cannot be structured still gets an answer: ``-32700`` for
  bad JSON, ``-32600`` for a non-request, ``-32602`` for typed params that
  do not fit; a response we cannot structure fails the waiting request
  instead of leaving it pending forever;
- requests after ``shutdown`` are refused with ``-32600`` (pygls drops
  them silently).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import threading

from lsprotocol.types import ResponseError, ResponseErrorMessage
from pygls.exceptions import JsonRpcException

from .framing import _content_length

log = logging.getLogger(__name__)

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INTERNAL_ERROR = -32603
_MAX_HEADER = 64 * 1024


class StreamWriterAdapter:
    """An asyncio StreamWriter behind pygls' synchronous writer interface."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    def write(self, data: bytes) -> None:
        if self._writer.is_closing():
            raise BrokenPipeError("connection closed")
        self._writer.write(data)

    def close(self) -> None:
        self._writer.close()


class Dispatcher:
    """Turn raw message bodies into pygls ``handle_message`` calls."""

    def __init__(self, protocol) -> None:
        self.protocol = protocol

    def _reply_error(self, msg_id, code: int, message: str) -> None:
        if msg_id is None:  # JSON-RPC 2.0: "id": null when the request's id is unknown
            self.protocol._send_data({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}})
            return
        self.protocol._send_data(
            ResponseErrorMessage(id=msg_id, error=ResponseError(code=code, message=message))
        )

    def dispatch(self, body: bytes) -> None:
        protocol = self.protocol
        try:
            raw = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            # JSON-RPC 2.0: a parse error is answered, with the request's id
            # when it can still be read, else with "id": null.
            msg_id = _guess_id(body)
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            log.warning("unparsable message (id %r): %s", msg_id, reason)
            self._reply_error(msg_id, PARSE_ERROR, f"parse error: {reason}")
            return
        if not isinstance(raw, dict) or raw.get("jsonrpc") != "2.0":
            msg_id = raw.get("id") if isinstance(raw, dict) else None
            if isinstance(raw, list):
                message = "invalid request: batches are not supported"
            else:
                message = 'invalid request: not a JSON-RPC 2.0 object ("jsonrpc": "2.0")'
            log.warning("%s", message)
            self._reply_error(msg_id if _valid_id(msg_id) else None, INVALID_REQUEST, message)
            return
        method = raw.get("method")
        is_request = "id" in raw and method is not None
        if is_request and not _valid_id(raw["id"]):
            log.warning("invalid request: id must be a string or a number: %r", raw["id"])
            self._reply_error(None, INVALID_REQUEST, "invalid request: id must be a string or a number")
            return
        if method is not None and not isinstance(method, str):
            if is_request:
                self._reply_error(raw["id"], INVALID_REQUEST, "invalid request: method must be a string")
            return
        if protocol._shutdown and is_request:
            self._reply_error(raw["id"], INVALID_REQUEST, f"the server is shutting down; {method!r} refused")
            return
        try:
            message = protocol.structure_message(raw)
        except JsonRpcException as exc:
            cause = exc.__cause__
            detail = _first_line(cause) if cause is not None else exc.message
            if is_request:
                code = exc.code
                text = f"invalid params for {method}: {detail}" if code == -32602 else f"{exc.message}: {detail}"
                self._reply_error(raw["id"], code, text)
            elif method is None and "id" in raw:  # a response we cannot read
                protocol._handle_response(
                    raw["id"], None, ResponseError(code=INTERNAL_ERROR, message=f"unreadable response: {detail}")
                )
            else:
                log.warning("dropping malformed notification %r: %s", method, detail)
            return
        protocol.handle_message(message)


_ID = re.compile(rb'"id"\s*:\s*(-?\d{1,18}(?![\d.eE])|"(?:[^"\\]|\\.){0,200}")')


def _guess_id(body: bytes):
    match = _ID.search(body)
    if match is None:
        return None
    try:
        return json.loads(match.group(1))
    except ValueError:
        return None


def _valid_id(value) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool)


def _first_line(exc: BaseException) -> str:
    try:
        from cattrs.errors import ClassValidationError

        if isinstance(exc, ClassValidationError):
            parts = []
            for sub in exc.exceptions:
                note = getattr(sub, "__notes__", None)
                parts.append(f"{note[0] if note else ''}: {sub}".strip(": "))
            return "; ".join(parts)[:500] or str(exc)
    except ImportError:  # pragma: no cover
        pass
    return str(exc).splitlines()[0][:500] if str(exc) else type(exc).__name__


async def read_frames(reader: asyncio.StreamReader, dispatcher: Dispatcher, stop: asyncio.Event) -> str:
    """Read ``Content-Length`` framed messages until EOF or ``stop``."""
    while not stop.is_set():
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return "eof"
        except asyncio.LimitOverrunError:
            log.error("message header too long; closing")
            return "error"
        length = None
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    length = None
        if length is None or length < 0:
            log.error("message without a valid Content-Length header: %r", head[:200])
            continue
        try:
            body = await reader.readexactly(length)
        except asyncio.IncompleteReadError:
            return "eof"
        try:
            dispatcher.dispatch(body)
        except (BrokenPipeError, ConnectionResetError):
            log.info("the client closed its end")
            return "eof"
        except Exception:  # never let one message take the server down
            log.exception("failed to handle a message")
    return "stopped"


class FrameProtocol(asyncio.Protocol):
    """Parse ``Content-Length`` frames as bytes arrive and dispatch them at once.

    No coroutine or future per message: on stdio this halves the cost of a
    round trip compared with pygls' executor-based reader.
    """

    def __init__(self, dispatcher: Dispatcher, on_eof) -> None:
        self.dispatcher = dispatcher
        self.on_eof = on_eof
        self.buf = bytearray()
        self._need = 0  # bytes needed before the next parse attempt

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if len(buf) < self._need:
            return
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > _MAX_HEADER:
                    log.error("message header too long; dropping %d bytes", len(buf))
                    buf.clear()
                self._need = 0
                return
            length = _content_length(bytes(buf[:end]))
            start = end + 4
            if length is None:
                log.error("message without a valid Content-Length header: %r", bytes(buf[: min(end, 200)]))
                del buf[:start]
                continue
            if len(buf) < start + length:
                self._need = start + length
                return
            body = bytes(buf[start : start + length])
            del buf[: start + length]
            self._need = 0
            try:
                self.dispatcher.dispatch(body)
            except (BrokenPipeError, ConnectionResetError):
                log.info("the client closed its end")
                self.on_eof()
                return
            except Exception:  # never let one message take the server down
                log.exception("failed to handle a message")

    def eof_received(self):
        self.on_eof()
        return False

    def connection_lost(self, exc) -> None:
        self.on_eof()


async def attach_fd(fd: int, protocol: FrameProtocol):
    """Feed ``fd`` into ``protocol``: a pipe transport where possible, else a thread."""
    loop = asyncio.get_running_loop()
    if os.name == "posix":
        try:
            pipe = os.fdopen(fd, "rb", buffering=0, closefd=False)
            transport, _ = await loop.connect_read_pipe(lambda: protocol, pipe)
            return transport
        except (ValueError, OSError) as exc:  # a regular file, etc.
            log.debug("no pipe transport for fd %d (%s); using a reader thread", fd, exc)

    def pump() -> None:
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except OSError:
                chunk = b""
            try:
                if not chunk:
                    loop.call_soon_threadsafe(protocol.eof_received)
                    return
                loop.call_soon_threadsafe(protocol.data_received, chunk)
            except RuntimeError:  # loop closed
                return

    threading.Thread(target=pump, name="stdin-reader", daemon=True).start()
    return None
