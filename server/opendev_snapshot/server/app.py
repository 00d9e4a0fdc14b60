"""Composition root and entry point of ``opendev-snapshot serve``.

``run(args)`` (``args.dir``, ``tcp``, ``host``, ``port``, ``log_file``,
``verbose``) configures logging (stderr or ``--log-file``; never stdout),
forks the start-up pre-scan, imports pygls, wires the features (one module
each; a feature that fails to register is logged and the rest carry on),
serves stdio or TCP, and returns the exit code: 0 after ``shutdown`` +
``exit``, 1 for ``exit`` alone, end of input without ``shutdown``, or the
editor's process dying.
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger("opendev_snapshot.server")

FEATURES = ("methods", "recovery", "commands", "lifecycle")


def configure_logging(log_file: str | None, verbose: bool) -> None:
    """stderr or ``--log-file``; never stdout. Keeps handlers the CLI set up."""
    root = logging.getLogger()
    for old in list(root.handlers):  # nothing may reach stdout, the protocol stream
        if getattr(old, "stream", None) is sys.stdout:
            root.removeHandler(old)
    if not root.handlers:
        if log_file:
            handler: logging.Handler = logging.FileHandler(log_file, encoding="utf-8")
        else:
            handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)


def create_server(ctx, features=FEATURES):
    """Build the pygls server and register each feature module on it."""
    from lsprotocol import types
    from pygls.lsp.server import LanguageServer

    from .. import __version__
    from .rpc import SnapshotProtocol, converter_factory

    server = LanguageServer(
        "opendev-snapshot",
        __version__,
        text_document_sync_kind=types.TextDocumentSyncKind.None_,
        protocol_cls=SnapshotProtocol,
        converter_factory=converter_factory,
    )
    import importlib

    for name in features:
        try:
            module = importlib.import_module(f".{name}", __package__)
            module.register(server, ctx)
        except Exception:
            log.exception("feature %s failed to register; carrying on without it", name)
    return server


def _take_stdio() -> tuple[int, int]:
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


def run(args) -> int:
    configure_logging(getattr(args, "log_file", None), bool(getattr(args, "verbose", False)))
    cli_dir = getattr(args, "dir", None)

    # Fork the pre-scan before pygls is imported (see prescan.py).
    from .context import ServerContext
    from .prescan import Prescan

    ctx = ServerContext(cli_dir=cli_dir)
    try:
        ctx.prescan = Prescan.start(ctx.snapshot_dir())
    except Exception:  # ConfigError is reported at initialize / first request
        ctx.prescan = None

    tcp = bool(getattr(args, "tcp", False))
    try:
        if tcp:
            server = create_server(ctx)
            host, port = getattr(args, "host", "127.0.0.1"), int(getattr(args, "port", 2087))
            coro = serve_tcp(server, ctx, host, port)
        else:
            in_fd, out_fd = _take_stdio()
            try:
                server, handoff = _start_stdio(ctx, in_fd, out_fd)
            except (BrokenPipeError, ConnectionResetError):
                log.warning("the client went away during the handshake")
                return 1
            coro = serve_stdio(server, ctx, in_fd, out_fd, handoff)
        import asyncio

        try:
            return asyncio.run(coro)
        except KeyboardInterrupt:
            return 1
    finally:
        ctx.stopping = True
        if ctx.prescan is not None:
            ctx.prescan.close()
        ctx.close_store()
        for thread in ctx.threads:
            thread.join(timeout=10)


def _start_stdio(ctx, in_fd: int, out_fd: int):
    """Build the server; on POSIX answer the handshake meanwhile (see handshake.py)."""
    from . import handshake
    from .framing import FdWriter

    if not handshake.enabled():
        return create_server(ctx), None
    import threading

    built: dict = {}
    ready = threading.Event()

    def load() -> None:
        try:
            built["server"] = create_server(ctx)
        except BaseException as exc:  # noqa: BLE001 - reported below
            built["error"] = exc
        finally:
            ready.set()

    loader = threading.Thread(target=load, name="pygls-loader", daemon=True)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)  # the handshake gets the GIL back quickly
    loader.start()
    try:
        handoff = handshake.run(in_fd, FdWriter(out_fd), ctx, ready)
    finally:
        loader.join()  # never leave a thread importing while the interpreter exits
        sys.setswitchinterval(interval)
    if "error" in built:
        raise built["error"]
    return built["server"], handoff


def _exit_code(protocol) -> int:
    if protocol.exit_code is not None:
        return protocol.exit_code
    return 0 if protocol._shutdown else 1


def _install_stop(server, ctx):
    """An event set by ``exit``, the editor's death or a fatal transport error.

    Installed before any message is dispatched (the fast start may hand over
    an ``exit`` that arrived with the handshake).
    """
    import asyncio

    stop = asyncio.Event()

    def on_exit(code: int) -> None:
        ctx.stopping = True
        if ctx.recovery is not None:
            ctx.recovery.stop()
        ctx.release_locks()
        stop.set()

    server.protocol.on_exit = on_exit
    ctx.request_stop = stop.set
    return stop


async def _run_until_stopped(server, ctx, main_coro, stop) -> int:
    import asyncio

    main = asyncio.ensure_future(main_coro(stop))
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({main, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (main, waiter):
            task.cancel()
        ctx.stopping = True
        if ctx.recovery is not None:
            ctx.recovery.stop()
    if main.done() and not main.cancelled() and main.exception() is not None:
        log.error("transport failed", exc_info=main.exception())
    return _exit_code(server.protocol)


async def serve_stdio(server, ctx, in_fd: int, out_fd: int, handoff=None) -> int:
    import asyncio

    from .framing import FdWriter
    from .transport import Dispatcher, FrameProtocol, attach_fd

    protocol = server.protocol
    writer = FdWriter(out_fd)
    dispatcher = Dispatcher(protocol)
    stop = _install_stop(server, ctx)
    ended = asyncio.Event()

    def on_eof() -> None:
        if not ended.is_set():
            log.info("end of input")
            ended.set()

    frames = FrameProtocol(dispatcher, on_eof)
    if handoff is not None:
        if handoff.announced is not None:
            ctx.announced = handoff.announced
        protocol.set_writer(_Discard())  # already answered by the fast start
        for body in handoff.replay:
            try:
                dispatcher.dispatch(body)
            except Exception:
                log.exception("replaying the handshake into pygls failed")
    # Replayed handlers ran synchronously; what they scheduled (prompts,
    # option warnings) runs later, through the real writer.
    protocol.set_writer(writer)
    if handoff is not None:
        for body in handoff.pending:
            dispatcher.dispatch(body)
        if handoff.leftover:
            frames.data_received(handoff.leftover)
    transport = await attach_fd(in_fd, frames)

    async def main(stop):
        await ended.wait()

    try:
        return await _run_until_stopped(server, ctx, main, stop)
    finally:
        if transport is not None:
            transport.close()
        try:
            os.set_blocking(in_fd, True)
        except OSError:
            pass
        writer.close()


class _Discard:
    def write(self, data: bytes) -> None:
        log.debug("fast start: pygls' own handshake output discarded: %r", data[:200])

    def close(self) -> None:
        pass


async def serve_tcp(server, ctx, host: str, port: int) -> int:
    import asyncio

    from .transport import Dispatcher, StreamWriterAdapter, read_frames

    protocol = server.protocol
    stop = _install_stop(server, ctx)
    connected = asyncio.Event()
    finished = asyncio.Event()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if connected.is_set():  # one editor per server, as with stdio
            writer.close()
            return
        connected.set()
        protocol.set_writer(StreamWriterAdapter(writer))
        try:
            await read_frames(reader, Dispatcher(protocol), asyncio.Event())
        finally:
            writer.close()
            finished.set()

    tcp_server = await asyncio.start_server(on_connect, host, port)
    addrs = ", ".join(str(sock.getsockname()[:2]) for sock in tcp_server.sockets)
    log.warning("opendev-snapshot server listening on %s", addrs)
    print(f"opendev-snapshot: listening on {addrs}", file=sys.stderr, flush=True)

    async def main(stop):
        async with tcp_server:
            await finished.wait()

    return await _run_until_stopped(server, ctx, main, stop)
