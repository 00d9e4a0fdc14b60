"""Fast start: answer the LSP handshake while pygls is still being imported.

Importing pygls (lsprotocol's ~1,000 attrs classes) takes ~300 ms of one
core, and an editor spawns this server on every workspace open. Nothing in
``initialize`` / ``initialized`` needs pygls: our capabilities are fixed,
and the on-open listing comes from the pre-scan child. So, on stdio:

1. a loader thread imports pygls and builds the server;
2. meanwhile the main thread reads ``initialize``, answers it with exactly
   the result pygls would build (a unit test keeps the two identical for
   the VS Code, Neovim and Emacs capabilities), reads ``initialized`` and
   sends ``opendev/recoverableSessions``;
3. once pygls is loaded, both handshake messages are *replayed* into it
   with its output discarded, so pygls and our features end up in exactly
   the state the normal path gives (client capabilities, workspace,
   options, folders, the ``processId`` watch; prompts for the announced
   sessions are sent then); every later byte goes through pygls.

Anything unexpected (another first message, params we do not fully
recognise, ``rootPath`` without ``rootUri``, a second message that is not
``initialized``) ends the fast path at once: the messages read so far are
handed to pygls unanswered, as if it had read them itself. Set
``OPENDEV_SNAPSHOT_NO_FAST_START=1`` to always take the normal path.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field

from .names import COMMANDS, RECOVERABLE_SESSIONS

log = logging.getLogger(__name__)

ENV_DISABLE = "OPENDEV_SNAPSHOT_NO_FAST_START"
_ENCODINGS = ("utf-8", "utf-16", "utf-32")  # pygls' supported position encodings
_TRACE = (None, "off", "messages", "verbose")


@dataclass
class Handoff:
    """What the fast path leaves for pygls."""

    replay: list = field(default_factory=list)  # bodies already answered: replay silently
    pending: list = field(default_factory=list)  # bodies not handled yet: dispatch normally
    leftover: bytes = b""  # bytes read past the last complete frame
    announced: dict | None = None  # folder uri -> sessions already notified


def enabled() -> bool:
    return os.name == "posix" and not os.environ.get(ENV_DISABLE)


def _is_str_or_none(value) -> bool:
    return value is None or isinstance(value, str)


def fast_path_params(params) -> bool:
    """Whether these ``initialize`` params are plain enough to answer ourselves."""
    if not isinstance(params, dict) or not isinstance(params.get("capabilities"), dict):
        return False
    pid = params.get("processId")
    if pid is not None and (type(pid) is not int):
        return False
    if not _is_str_or_none(params.get("rootUri")) or not _is_str_or_none(params.get("locale")):
        return False
    if params.get("rootPath") is not None and params.get("rootUri") is None:
        return False  # pygls derives a URI from it; leave that to pygls
    if not isinstance(params.get("rootPath"), (str, type(None))):
        return False
    if params.get("trace") not in _TRACE:
        return False
    token = params.get("workDoneToken")
    if token is not None and (type(token) not in (int, str)):
        return False
    info = params.get("clientInfo")
    if info is not None and not (isinstance(info, dict) and isinstance(info.get("name"), str) and _is_str_or_none(info.get("version"))):
        return False
    folders = params.get("workspaceFolders")
    if folders is not None:
        if not isinstance(folders, list):
            return False
        for f in folders:
            if not (isinstance(f, dict) and isinstance(f.get("uri"), str) and isinstance(f.get("name"), str)):
                return False
    general = params["capabilities"].get("general")
    if general is not None:
        if not isinstance(general, dict):
            return False
        encodings = general.get("positionEncodings")
        if encodings is not None and not (isinstance(encodings, list) and all(isinstance(e, str) for e in encodings)):
            return False
    return True


def position_encoding(params: dict) -> str:
    """pygls' choice: the client's first supported encoding, else UTF-16."""
    general = params["capabilities"].get("general") or {}
    for enc in general.get("positionEncodings") or ():
        if enc in _ENCODINGS:
            return enc
    return "utf-16"


def initialize_result(params: dict) -> dict:
    """The InitializeResult pygls builds for our server (see the unit test)."""
    from .. import __version__

    return {
        "capabilities": {
            "positionEncoding": position_encoding(params),
            "textDocumentSync": {"openClose": False, "change": 0},
            "executeCommandProvider": {"commands": list(COMMANDS)},
            "workspace": {"workspaceFolders": {"supported": True, "changeNotifications": True}, "fileOperations": {}},
        },
        "serverInfo": {"name": "opendev-snapshot", "version": __version__},
    }


def folders_of(params: dict) -> list:
    """Workspace folders, else ``rootUri`` (as :mod:`.lifecycle` computes them)."""
    from .context import folder_from

    out = {}
    for f in params.get("workspaceFolders") or []:
        folder = folder_from(f["uri"], f["name"])
        if folder is not None:
            out[folder.uri] = folder
    if not out and params.get("rootUri"):
        folder = folder_from(params["rootUri"])
        if folder is not None:
            out[folder.uri] = folder
    return list(out.values())


class _Frames:
    """Blocking frame reader on a file descriptor, keeping what it over-reads.

    ``next()`` gives up (returns None) as soon as pygls is loaded and no
    complete message is waiting: from then on pygls reads, so a client that
    pauses mid-handshake is served (and watched) normally.
    """

    def __init__(self, fd: int, ready) -> None:
        self.fd = fd
        self.ready = ready  # threading.Event: pygls is loaded
        self.buf = bytearray()
        self.eof = False

    def next(self) -> bytes | None:
        import select

        from .framing import _content_length

        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                length = _content_length(bytes(self.buf[:end]))
                if length is None:
                    return None  # let the normal reader complain about it
                start = end + 4
                if len(self.buf) >= start + length:
                    body = bytes(self.buf[start : start + length])
                    del self.buf[: start + length]
                    return body
            if self.eof:
                return None
            readable, _, _ = select.select([self.fd], [], [], 0.02)
            if not readable:
                if self.ready.is_set():
                    return None
                continue
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                self.eof = True
                continue
            self.buf += chunk


def _frame(obj: dict) -> bytes:
    body = json.dumps(obj, separators=(",", ":")).encode("utf-8")
    return b"Content-Length: %d\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n" % len(body) + body


def run(in_fd: int, writer, ctx, ready) -> Handoff:
    """Serve the handshake on the main thread; return what pygls must take over.

    ``ready`` is set once pygls is loaded (then we stop waiting for input).
    """
    frames = _Frames(in_fd, ready)
    handoff = Handoff()
    try:
        _serve(frames, writer, ctx, handoff)
    except (BrokenPipeError, ConnectionResetError):
        raise
    except Exception:  # anything odd: pygls takes over from here
        log.exception("fast start failed; handing over")
    handoff.leftover = bytes(frames.buf)
    return handoff


def _serve(frames: _Frames, writer, ctx, handoff: Handoff) -> None:
    body = frames.next()
    if body is None:
        return
    handoff.pending.append(body)
    try:
        msg = json.loads(body)
    except (ValueError, RecursionError):
        return
    if not (
        isinstance(msg, dict)
        and msg.get("jsonrpc") == "2.0"
        and msg.get("method") == "initialize"
        and type(msg.get("id")) in (int, str)
        and fast_path_params(msg.get("params"))
    ):
        return
    params = msg["params"]
    result = initialize_result(params)
    writer.write(_frame({"jsonrpc": "2.0", "id": msg["id"], "result": result}))
    handoff.pending.pop()
    handoff.replay.append(body)

    body = frames.next()
    if body is None:
        return
    try:
        note = json.loads(body)
    except (ValueError, RecursionError):
        note = None
    if not (isinstance(note, dict) and note.get("method") == "initialized" and "id" not in note):
        handoff.pending.append(body)
        return
    handoff.replay.append(body)

    options, problems = ctx.parse_options(params.get("initializationOptions"))
    ctx.configure(options, problems)
    folders = folders_of(params)
    if not folders:
        handoff.announced = {}
        return
    announced: dict = {}
    handoff.announced = announced
    directory = ctx.snapshot_dir()
    lists = None
    prescan, ctx.prescan = ctx.prescan, None
    if prescan is not None:
        lists = prescan.query(directory, options.stale_after_ms, [f.path for f in folders])
    if lists is None:
        from ..core.wire import listing_to_wire

        store = ctx.store
        lists = [
            [listing_to_wire(s) for s in store.list(project_dir=f.path, status="interrupted").sessions]
            for f in folders
        ]
    for folder, sessions in zip(folders, lists):
        if sessions:
            writer.write(
                _frame(
                    {
                        "jsonrpc": "2.0",
                        "method": RECOVERABLE_SESSIONS,
                        "params": {"workspaceFolder": folder.wire(), "sessions": sessions},
                    }
                )
            )
        announced[folder.uri] = sessions
