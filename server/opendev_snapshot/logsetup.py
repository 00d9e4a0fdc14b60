"""One logging setup for every front door (``serve``, the other subcommands).

``configure_logging(log_file, verbose)`` sends every record to stderr, or to
``log_file`` (never to stdout: in ``serve`` it is the protocol stream):

- a log file is created with mode 0600 and an existing one is never
  widened (group and other bits are dropped, none are added): logs of a
  session may name projects and sessions;
- tool output previews never reach a log: any ``outputPreview`` /
  ``output_preview`` value in a message (pygls logs whole JSON-RPC bodies
  at INFO and DEBUG) is replaced before the record is written;
- a message is cut to 200 characters (a JSON-RPC body in full would be
  megabytes, and most of it is the user's data);
- a bad path (a directory, a missing parent, no permission) raises
  :class:`LogFileError` with a one-line message for the CLI to print.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import sys

MAX_MESSAGE_CHARS = 200
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# A preview value after its key, as JSON ("outputPreview": "...") or as a
# Python repr ('output_preview': '...'); an unterminated value (a message
# someone else already cut) runs to the end of the text.
_PREVIEW = re.compile(
    r"""(?P<key>["']?(?:outputPreview|output_preview)["']?\s*[:=]\s*)"""
    r"""(?:"(?:[^"\\]|\\.)*(?:"|$)|'(?:[^'\\]|\\.)*(?:'|$))""",
    re.DOTALL,
)
PREVIEW_OMITTED = '"<preview omitted>"'


class LogFileError(Exception):
    """``--log-file`` cannot be used; ``str()`` is one line for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def scrub(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """Drop tool previews from ``text``, then cut it to ``limit`` characters."""
    if "review" in text:  # cheap test before the regular expression
        text = _PREVIEW.sub(lambda m: m.group("key") + PREVIEW_OMITTED, text)
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text) - limit} more characters)"
    return text


class ScrubbingFormatter(logging.Formatter):
    """Formats the message through :func:`scrub`; tracebacks keep their
    frames, but their text is scrubbed of previews too (an exception's
    message may quote a value)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = scrub(record.message)
        return super().formatMessage(record)

    def formatException(self, ei) -> str:  # noqa: N802
        return scrub(super().formatException(ei), limit=20_000)


def _open_log_file(path: str):
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise LogFileError(f"cannot open log file {path}: {reason}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):  # pragma: no cover - open() refuses directories already
            raise LogFileError(f"cannot open log file {path}: Is a directory")
        narrowed = stat.S_IMODE(st.st_mode) & 0o600
        if (
            stat.S_ISREG(st.st_mode)
            and stat.S_IMODE(st.st_mode) != narrowed
            and hasattr(os, "fchmod")
            and st.st_uid == os.geteuid()
        ):
            os.fchmod(fd, narrowed)
        return os.fdopen(fd, "a", encoding="utf-8", errors="backslashreplace")
    except BaseException:
        os.close(fd)
        raise


def configure_logging(log_file: str | None, verbose: bool) -> None:
    """Route the root logger to stderr or ``log_file`` (replacing earlier handlers).

    Raises :class:`LogFileError` when ``log_file`` cannot be opened; nothing
    is changed then.
    """
    if log_file is not None and not log_file:
        raise LogFileError("the log file name is empty")
    if log_file:
        handler: logging.Handler = logging.StreamHandler(_open_log_file(log_file))
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ScrubbingFormatter(FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        if getattr(old, "stream", None) not in (sys.stderr, sys.__stderr__, sys.stdout, sys.__stdout__):
            try:
                old.close()
            except Exception:  # pragma: no cover - best effort
                pass
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
