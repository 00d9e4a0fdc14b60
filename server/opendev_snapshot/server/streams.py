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

It can also give back bytes already read (``pushback``): the TCP gate reads
the first frame to check the token, then pygls reads it again.
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

    def __init__(self, reader: asyncio.StreamReader, pushback: bytes = b"") -> None:
        self._reader = reader
        self._pending = bytearray(pushback)

    def push_back(self, data: bytes) -> None:
        self._pending[:0] = data

    async def _raw_line(self) -> bytes:
        if self._pending:
            end = self._pending.find(b"\n")
            if end >= 0:
                line = bytes(self._pending[: end + 1])
                del self._pending[: end + 1]
                return line
            head = bytes(self._pending)
            self._pending.clear()
            return head + await self._raw_line()
        try:
            return await self._reader.readline()
        except ValueError:  # over the limit: asyncio has dropped it already
            return _DROPPED

    async def readline(self) -> bytes:
        return canonical_header(await self._raw_line())

    async def readexactly(self, n: int) -> bytes:
        head = b""
        if self._pending:
            head = bytes(self._pending[:n])
            del self._pending[:n]
            n -= len(head)
            if n == 0:
                return head
        try:
            return head + await self._reader.readexactly(n)
        except asyncio.IncompleteReadError:
            return b""  # end of input mid-body: pygls' loop ends


async def stdin_reader(fd: int) -> asyncio.StreamReader | None:
    """A StreamReader fed by ``fd`` through the loop's pipe transport (None if not a pipe)."""
    import os

    loop = asyncio.get_running_loop()
    reader = new_stream_reader()
    try:
        pipe = os.fdopen(fd, "rb", buffering=0, closefd=False)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    except (ValueError, OSError):  # a regular file or a terminal: pygls' own reader then
        return None
    return reader
