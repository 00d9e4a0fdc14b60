"""Composition root of ``opendev-snapshot serve``: the server, its features, its loop.

:func:`main` builds the pygls server with its features (the start-up
pre-scan was forked by :mod:`.args` before pygls was imported) and serves
stdio or TCP through ``pygls.io_.run_async``. It returns the exit code:

- 0 after ``shutdown`` + ``exit`` (or ``shutdown`` and end of input);
- 1 for ``exit`` alone, end of input without ``shutdown``, or the editor's
  process dying.

pygls' own ``exit`` handler raises ``SystemExit`` with exactly that code
once it has closed the writer; ``start_io`` would swallow it, our
``asyncio.run`` lets it through to :func:`main`.

Features (esbonio's composition): each module's feature object is built
here and added to the server; the lifecycle handlers below fan every event
(``initialize``, ``initialized``, folders changed, ``shutdown``, the end of
the process) out to every feature, each failing alone.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import os
import signal
import sys
import threading

from lsprotocol import types
from pygls.io_ import StdinAsyncReader, StdoutWriter, run_async
from pygls.lsp.server import LanguageServer

from .. import __version__
from .feature import Feature, folder_from, folders_of
from .options import parse_init_options
from .rpc import QuietExpectedErrors, SnapshotProtocol, converter_factory, parse_error_handler
from .streams import FrameReader, stdin_reader

log = logging.getLogger("opendev_snapshot.server")


class SnapshotServer(LanguageServer):
    """pygls' LanguageServer holding our features and the way to end the run."""

    def __init__(self) -> None:
        super().__init__(
            "opendev-snapshot",
            __version__,
            text_document_sync_kind=types.TextDocumentSyncKind.None_,
            protocol_cls=SnapshotProtocol,
            converter_factory=converter_factory,
        )
        self._features: dict[type, Feature] = {}
        self._stop: asyncio.Future | None = None

    # ------------------------------------------------------------ features
    def add_feature(self, feature: Feature) -> None:
        self._features[type(feature)] = feature

    def get_feature(self, cls: type) -> Feature:
        try:
            return self._features[cls]
        except KeyError:
            raise LookupError(f"feature {cls.__name__} is not available") from None

    def fan_out(self, event: str, *args) -> list:
        """Call ``event`` on every feature, each failing alone; returns what is still to await."""
        pending = []
        for feature in list(self._features.values()):
            try:
                result = getattr(feature, event)(*args)
            except Exception:
                log.exception("%s.%s failed; the other features carry on", type(feature).__name__, event)
                continue
            if inspect.isawaitable(result):
                pending.append((feature, result))
        return pending

    async def fan_out_async(self, event: str, *args) -> None:
        for feature, result in self.fan_out(event, *args):
            try:
                await result
            except Exception:
                log.exception("%s.%s failed; the other features carry on", type(feature).__name__, event)

    # ------------------------------------------------------------- running
    def request_stop(self, code: int) -> None:
        """End the run with ``code`` (the editor died, SIGTERM)."""
        if self._stop is not None and not self._stop.done():
            self._stop.set_result(code)

    async def serve(self, reader) -> int:
        """Let pygls read ``reader`` until end of input, ``exit`` or :meth:`request_stop`."""
        stop = self.stop_future()
        stop_event = threading.Event()
        loop_task = asyncio.ensure_future(
            run_async(
                stop_event=stop_event,
                reader=reader,
                protocol=self.protocol,
                error_handler=parse_error_handler(self.protocol),
            )
        )
        try:
            await asyncio.wait({loop_task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_event.set()
            loop_task.cancel()
        if stop.done():
            return stop.result()
        if not loop_task.cancelled() and loop_task.exception() is not None:
            log.error("reading messages failed", exc_info=loop_task.exception())
        log.info("end of input")
        return 0 if self.protocol.shutdown_received else 1

    def stop_future(self) -> asyncio.Future:
        if self._stop is None:
            self._stop = asyncio.get_running_loop().create_future()
            try:
                asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self.request_stop, 1)
            except (NotImplementedError, RuntimeError, ValueError):  # not POSIX, or not the main thread
                pass
        return self._stop


# ------------------------------------------------------------------ lifecycle
def _show(ls, problems: list, kind=types.MessageType.Warning) -> None:
    for problem in problems:
        log.warning("%s", problem)
        ls.window_show_message(types.ShowMessageParams(type=kind, message=f"opendev-snapshot: {problem}"))


def _wire_lifecycle(server: SnapshotServer, storage) -> None:
    @server.feature(types.INITIALIZE)
    def initialize(ls: SnapshotServer, params: types.InitializeParams):
        settings, problems = parse_init_options(params.initialization_options)
        ls.fan_out("initialize", settings, folders_of(params))
        loop = asyncio.get_running_loop()
        if problems:  # shown right after the response
            loop.call_soon(_show, ls, problems)
        problem = storage.problem() if storage is not None else None
        if problem:
            loop.call_soon(_show, ls, [problem], types.MessageType.Error)

    @server.feature(types.INITIALIZED)
    async def initialized(ls: SnapshotServer, params: types.InitializedParams):
        await ls.fan_out_async("initialized")

    @server.feature(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
    def folders_changed(ls: SnapshotServer, params: types.DidChangeWorkspaceFoldersParams):
        event = params.event
        added = [folder_from(f.uri, f.name) for f in (event.added or [])]
        removed = [folder_from(f.uri, f.name) for f in (event.removed or [])]
        ls.fan_out("folders_changed", [f for f in added if f], [f for f in removed if f])

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: SnapshotServer, params=None):
        ls.fan_out("shutdown")


def create_server(cli_dir: str | None = None, prescan=None) -> SnapshotServer:
    """The server with every feature; one that fails to set up is logged and left out."""
    from .commands import Commands
    from .editor import EditorWatch
    from .methods import Methods
    from .prompts import Prompts
    from .recovery import Recovery
    from .storage import Storage

    QuietExpectedErrors.install()
    server = SnapshotServer()
    builders = [
        lambda: Storage(server, cli_dir, prescan),
        lambda: Prompts(server),
        lambda: Methods(server),
        lambda: Recovery(server),
        lambda: Commands(server),
        lambda: EditorWatch(server),
    ]
    for build in builders:
        try:
            server.add_feature(build())
        except Exception:
            log.exception("a feature failed to set up; carrying on without it")
    try:
        storage = server.get_feature(Storage)
    except LookupError:
        storage = None
    _wire_lifecycle(server, storage)
    return server


# --------------------------------------------------------------------- stdio
def take_stdio() -> tuple[int, int]:
    """Private copies of stdin/stdout for the protocol; fd 1 then points at stderr.

    A stray ``print`` (ours or a library's) can no longer corrupt the
    protocol stream, and child processes cannot read our input.
    """
    in_fd = os.dup(0)
    out_fd = os.dup(1)
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdout = sys.stderr
    return in_fd, out_fd


async def serve_stdio(server: SnapshotServer, in_fd: int, out_fd: int) -> int:
    stream = await stdin_reader(in_fd)
    if stream is None:  # not pollable (a file, /dev/null): pygls' own executor-based reader
        stream = StdinAsyncReader(os.fdopen(in_fd, "rb", closefd=False))
    writer = StdoutWriter(os.fdopen(out_fd, "wb"))  # closed by pygls' ``exit``: the client sees EOF at once
    server.protocol.set_writer(writer)
    try:
        return await server.serve(FrameReader(stream))
    finally:
        try:
            writer.close()
        except (OSError, ValueError):  # the client went away first, or ``exit`` closed it
            pass


# ----------------------------------------------------------------------- tcp
async def serve_tcp(server: SnapshotServer, host: str, port: int, token: str, token_file: str | None = None) -> int:
    from .gate import Gate, listen
    from .tcp import TcpConfigError, write_token_file

    stop = server.stop_future()
    finished: asyncio.Future = asyncio.get_running_loop().create_future()

    async def on_editor(frames: FrameReader, writer: asyncio.StreamWriter, initialize) -> None:
        listener.close()  # one editor per server: nobody else connects from now on
        server.protocol.set_writer(writer)
        server.protocol.handle_message(initialize)  # read and checked at the gate, answered here
        try:
            code = await server.serve(frames)
        finally:
            writer.close()
        if not finished.done():
            finished.set_result(code)

    try:
        listener = await listen(host, port, Gate(token, on_editor))
    except OSError as exc:
        print(f"opendev-snapshot: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr, flush=True)
        return 1
    try:
        if token_file:  # after listening: whoever reads the token can connect
            write_token_file(token_file, token)
    except TcpConfigError as exc:
        listener.close()
        print(f"opendev-snapshot: {exc}", file=sys.stderr, flush=True)
        return 1
    for sock in listener.sockets:
        addr = sock.getsockname()
        shown = f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"
        print(f"opendev-snapshot: listening on {shown}", file=sys.stderr, flush=True)
    print(f"opendev-snapshot: token: {token} (send it as initializationOptions.token)", file=sys.stderr, flush=True)
    try:
        await asyncio.wait({finished, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        listener.close()
    return finished.result() if finished.done() else stop.result()


# ---------------------------------------------------------------------- main
def main(cli_dir: str | None, prescan=None, tcp: tuple | None = None, *, gc_thresholds: tuple | None = None) -> int:
    """Serve until the end; ``tcp`` is ``(host, port, token, token_file)`` or None for stdio.

    ``prescan`` was forked by the caller before this module (and pygls) was imported.
    ``gc_thresholds``: the caller kept the garbage collector to young
    collections for start-up; once the server is built, what start-up made
    is frozen (``gc.freeze``: pygls, lsprotocol, cattrs and our modules live
    as long as the process and are never scanned again) and these
    thresholds are put back, before any message is read.
    """
    server = create_server(cli_dir, prescan)
    if gc_thresholds is not None:
        gc.freeze()
        gc.set_threshold(*gc_thresholds)
    try:
        if tcp is None:
            in_fd, out_fd = take_stdio()
            coro = serve_stdio(server, in_fd, out_fd)
        else:
            coro = serve_tcp(server, *tcp)
        try:
            return asyncio.run(coro)
        except SystemExit as exc:  # pygls' ``exit``: 0 after shutdown, else 1
            return exc.code if isinstance(exc.code, int) else 0
        except KeyboardInterrupt:
            return 130
    finally:
        server.fan_out("close")
