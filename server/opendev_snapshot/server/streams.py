"""The reader pygls' ``run_async`` reads from: an ``asyncio.StreamReader``, made safe.

``pygls.io_.run_async`` takes any object with ``readline()`` and
``readexactly(n)`` coroutines. On stdio we give it an
``asyncio.StreamReader`` fed by ``loop.connect_read_pipe`` (no executor
round trip per header line, unlike pygls' ``StdinAsyncReader``); on TCP the
connection's own reader. :class:`FrameReader` wraps either and corrects
what would otherwise stop pygls' loop or lose messages (pygls 2.1.1):

- a header name in another case or spacing (``content-length:12``; HTTP
  header names are case-insensitive, and vscode-jsonrpc reads them so) is
  given to pygls as ``Content-Length: 12``: pygls matches the exact text
  only, and would then read the body as more header lines;
- a line longer than the reader's limit (a body sent without a header)
  is dropped instead of raising out of ``run_async`` (which ends the server);
- end of input in the middle of a body ends the loop instead of raising.

For a connection that has not authenticated (TCP) it also ends the input
at a first line that is not a ``Content-Length`` header (``header_first``)
and at a body over ``max_body`` bytes.
"""

from __future__ import annotations

import asyncio
import re

LIMIT = 1 << 20  # longest header line kept; longer ones are dropped
_HEADER = re.compile(rb"^\s*content-length\s*:\s*(\d{1,12})\s*$", re.IGNORECASE)
_DROPPED = b"X-Dropped: a line over the reader's limit\r\n"


def canonical_header(line: bytes) -> bytes:
    """``Content-Length: N\\r\\n`` for any spelling of that header; the line otherwise."""
    match = _HEADER.match(line)
    if match is None:
        return line
    return b"Content-Length: %d\r\n" % int(match.group(1))


def new_stream_reader() -> asyncio.StreamReader:
    return asyncio.StreamReader(limit=LIMIT)


class FrameReader:
    """pygls' reader interface over an ``asyncio.StreamReader`` (see the module docstring)."""

    def __init__(self, reader, *, header_first: bool = False, max_body: int | None = None) -> None:
        self._reader = reader
        self.header_first = header_first
        self.max_body = max_body
        self.refused_header = False  # the first line was not a Content-Length header

    async def readline(self) -> bytes:
        try:
            line = await self._reader.readline()
        except ValueError:  # over the limit: asyncio has dropped it already
            line = _DROPPED
        line = canonical_header(line)
        if self.header_first:
            self.header_first = False
            if not line.startswith(b"Content-Length: "):
                self.refused_header = True
                return b""  # pygls' loop ends: the caller closes the connection
        if self.max_body is not None and line.startswith(b"Content-Length: "):
            if int(line[len(b"Content-Length: ") :]) > self.max_body:
                return b""
        return line

    async def readexactly(self, n: int) -> bytes:
        try:
            return await self._reader.readexactly(n)
        except asyncio.IncompleteReadError:
            return b""  # end of input mid-body: pygls' loop ends


def _pollable(fd: int) -> bool:
    """Whether the loop's selector can watch ``fd``: epoll refuses regular files
    and devices such as ``/dev/null`` (EPERM), which asyncio's pipe transport
    only finds out in a callback, after which nothing is ever read."""
    import selectors

    selector = selectors.DefaultSelector()
    try:
        selector.register(fd, selectors.EVENT_READ)
        return True
    except (OSError, ValueError):
        return False
    finally:
        selector.close()


async def stdin_reader(fd: int) -> asyncio.StreamReader | None:
    """A StreamReader fed by ``fd`` through the loop's pipe transport (None if
    that cannot watch it: a regular file, ``/dev/null``)."""
    import os

    if not _pollable(fd):
        return None
    loop = asyncio.get_running_loop()
    reader = new_stream_reader()
    try:
        pipe = os.fdopen(fd, "rb", buffering=0, closefd=False)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    except (ValueError, OSError):  # a regular file or a terminal: pygls' own reader then
        return None
    return reader
