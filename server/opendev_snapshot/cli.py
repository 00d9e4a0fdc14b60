"""Command line: ``opendev-snapshot [--dir PATH] list|show|cleanup|remove|serve``.

Human output is a table on stdout, ``--json`` is machine output, errors go
to stderr with a non-zero exit code (1: the operation failed, 2: bad usage).
Only the standard library and the pydantic-free core are imported here.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

from . import __version__
from .core import errors
from .core.durations import format_age, parse_duration
from .core.holder import describe_holder

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAIL) -> None:
        super().__init__(message)
        self.code = code


def _duration(text: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="opendev-snapshot",
        description="Crash-recovery snapshots of OpenDev sessions.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--dir", metavar="PATH", help="snapshot directory (default: $OPENDEV_SNAPSHOT_DIR or ~/.opendev/data/recovery)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    parser.add_argument("--log-file", metavar="FILE", help="write logs to FILE instead of stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # The global options work after the subcommand too (`list --dir X`);
    # SUPPRESS keeps a subcommand's absent option from hiding the global one.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", metavar="PATH", default=argparse.SUPPRESS, help="snapshot directory")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging on stderr")
    common.add_argument("--log-file", metavar="FILE", default=argparse.SUPPRESS, help="write logs to FILE")

    p = sub.add_parser("list", parents=[common], help="list incomplete sessions (newest first)")
    p.add_argument("--all", action="store_true", help="include completed sessions")
    p.add_argument("--project", metavar="DIR", help="only sessions of this project directory (or inside it)")
    p.add_argument("--status", choices=("running", "interrupted"), help="only sessions in this state")
    p.add_argument("--limit", type=int, metavar="N", help="at most N sessions")
    p.add_argument("--json", action="store_true", help="machine output: {sessions, skipped}")

    p = sub.add_parser("show", parents=[common], help="show one session with its tool results")
    p.add_argument("session_id", metavar="ID")
    p.add_argument("--json", action="store_true", help="machine output: the Listing")

    p = sub.add_parser("cleanup", parents=[common], help="remove snapshots older than an age")
    p.add_argument("--max-age", required=True, type=_duration, metavar="DURATION", help="90s, 30m, 12h, 7d, ...")
    p.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    p.add_argument("--keep-incomplete", action="store_true", help="remove only completed sessions")
    p.add_argument("--json", action="store_true", help="machine output")

    p = sub.add_parser("remove", parents=[common], help="remove one session's snapshot")
    p.add_argument("session_id", metavar="ID")

    from .server.args import add_serve_arguments

    add_serve_arguments(sub.add_parser("serve", parents=[common], help="run the JSON-RPC server (stdio by default)"))
    return parser


def _setup_logging(args) -> None:
    level = logging.DEBUG if args.verbose else logging.WARNING
    handler: logging.Handler
    if args.log_file:
        handler = logging.FileHandler(args.log_file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


class Progress:
    """A one-line bar on stderr, only on a terminal and only if slow."""

    def __init__(self, label: str, stream=None, delay: float = 0.2) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.monotonic()
        self.delay = delay
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        if not self.shown and time.monotonic() - self.start < self.delay:
            return
        self.shown = True
        width = 30
        filled = int(width * done / total)
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        self.stream.flush()

    def finish(self) -> None:
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()


def _store(args):
    from .core.paths import resolve_snapshot_dir
    from .core.store import SnapshotStore

    directory = resolve_snapshot_dir(cli_dir=args.dir)
    return SnapshotStore(directory)


def _table(rows: list, headers: list) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = ["  ".join(h.ljust(widths[i]) for i, h in enumerate(headers)).rstrip()]
    for row in rows:
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    return "\n".join(lines)


def _printable(text: str, limit: int = 60) -> str:
    clean = "".join(ch if ch.isprintable() else "\uFFFD" if ord(ch) < 32 else ch for ch in text)
    clean = clean.encode("utf-8", "replace").decode("utf-8")
    return clean if len(clean) <= limit else clean[: limit - 1] + "\u2026"


def _cost(value: float) -> str:
    return f"${value:.4f}" if value < 1 else f"${value:,.2f}"


def cmd_list(args, out) -> int:
    from .server.wire import list_result_to_wire

    store = _store(args)
    progress = Progress("scanning snapshots")
    try:
        result = store.list(
            project_dir=args.project,
            status=args.status,
            include_completed=args.all,
            limit=args.limit,
            progress=progress,
        )
    finally:
        progress.finish()
    if args.json:
        json.dump(list_result_to_wire(result), out, ensure_ascii=False, indent=2)
        out.write("\n")
        return EXIT_OK
    now = int(time.time() * 1000)
    if result.sessions:
        rows = [
            [
                _printable(s["session_id"], 40),
                s["status"],
                format_age(now - s["snapshot_timestamp_ms"]),
                str(s["message_count"]),
                _cost(s["cost_usd"]),
                _printable(s["project_dir"], 60),
            ]
            for s in result.sessions
        ]
        out.write(_table(rows, ["SESSION", "STATUS", "AGE", "MESSAGES", "COST", "PROJECT"]) + "\n")
    else:
        what = "sessions" if args.all else "incomplete sessions"
        where = f" for {args.project}" if args.project else ""
        out.write(f"No {what}{where} in {store.directory}\n")
    for item in result.skipped:
        print(f"skipped {item.file}: {item.reason}", file=sys.stderr)
    return EXIT_OK


def cmd_show(args, out) -> int:
    from .core.validation import check_session_id
    from .server.wire import listing_to_wire

    check_session_id(args.session_id)
    store = _store(args)
    record = store.load(args.session_id)
    if record is None:
        raise CliError(f"no snapshot for session {args.session_id!r} in {store.directory}")
    status = store.status_of(record)
    path = str(store.snapshot_path(args.session_id))
    listing = dict(record, status=status, path=path)
    if args.json:
        json.dump(listing_to_wire(listing), out, ensure_ascii=False, indent=2)
        out.write("\n")
        return EXIT_OK
    now = int(time.time() * 1000)
    ts = record["snapshot_timestamp_ms"]
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(min(ts, 2**62) / 1000)) if ts < 253402300799000 else str(ts)
    lines = [
        f"Session:   {_printable(record['session_id'], 200)}",
        f"Status:    {status}",
        f"Project:   {_printable(record['project_dir'], 200)}",
        f"Saved:     {when} ({format_age(now - ts)} ago)",
        f"Messages:  {record['message_count']}",
        f"Cost:      {_cost(record['cost_usd'])}",
        f"File:      {path}",
    ]
    if status == "running":
        holder = store.lock_holder(args.session_id)
        lines.append(f"Held by:   {describe_holder(holder)}" if holder is not None else "Held by:   (no lock file; recent save)")
    results = record["last_tool_results"]
    lines.append(f"Tool results ({len(results)}):" if results else "Tool results: none")
    for item in results:
        mark = "ok " if item["success"] else "ERR"
        preview = _printable(item["output_preview"].replace("\n", " "), 100)
        lines.append(f"  [{mark}] {_printable(item['tool_name'], 30)} {_printable(item['call_id'], 40)}: {preview}")
    out.write("\n".join(lines) + "\n")
    return EXIT_OK


def cmd_cleanup(args, out) -> int:
    store = _store(args)
    progress = Progress("cleaning up")
    try:
        result = store.cleanup(
            args.max_age,
            dry_run=args.dry_run,
            include_incomplete=not args.keep_incomplete,
            progress=progress,
        )
    finally:
        progress.finish()
    if args.json:
        json.dump(
            {"removedCount": result.removed_count, "sessionIds": result.session_ids, "dryRun": result.dry_run},
            out,
            indent=2,
        )
        out.write("\n")
        return EXIT_OK
    verb = "Would remove" if result.dry_run else "Removed"
    noun = "session" if result.removed_count == 1 else "sessions"
    out.write(f"{verb} {result.removed_count} {noun}" + (":" if result.session_ids else "") + "\n")
    for sid in result.session_ids:
        out.write(f"  {_printable(sid, 200)}\n")
    extras = []
    if result.temp_files_removed:
        extras.append(f"{result.temp_files_removed} stale temporary file(s)")
    if result.lock_files_removed:
        extras.append(f"{result.lock_files_removed} orphan lock file(s)")
    if extras:
        out.write(f"{verb} also " + " and ".join(extras) + "\n")
    return EXIT_OK


def cmd_remove(args, out) -> int:
    store = _store(args)
    if not store.remove(args.session_id):
        raise CliError(f"no snapshot for session {args.session_id!r} in {store.directory}")
    out.write(f"Removed {args.session_id}\n")
    return EXIT_OK


def cmd_serve(args, out) -> int:
    try:
        from .server.args import run
    except ImportError as exc:  # pragma: no cover - packaging error
        raise CliError(f"the server is not available: {exc}") from exc
    return run(args)


COMMANDS = {"list": cmd_list, "show": cmd_show, "cleanup": cmd_cleanup, "remove": cmd_remove, "serve": cmd_serve}


def main(argv: list | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    _setup_logging(args)
    try:
        return COMMANDS[args.command](args, sys.stdout)
    except CliError as exc:
        print(f"opendev-snapshot: {exc}", file=sys.stderr)
        return exc.code
    except errors.InvalidSnapshot as exc:
        print(f"opendev-snapshot: invalid {exc}", file=sys.stderr)
        return EXIT_USAGE
    except errors.ConfigError as exc:
        print(f"opendev-snapshot: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # e.g. `| head`: not an error
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_OK
    except errors.SnapshotError as exc:
        print(f"opendev-snapshot: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except OSError as exc:
        print(f"opendev-snapshot: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        print("opendev-snapshot: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
