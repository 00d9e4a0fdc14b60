"""Command line: ``opendev-snapshot [--dir PATH] list|show|cleanup|remove|trash|restore|serve``.

Manners (``gh``, ``cargo``, ``pip``):

- stdout carries the result: a table fitted to the terminal, plain
  tab-separated rows when piped, ``--json`` for machines;
- every failure is one line on stderr and an exit code (1: the operation
  failed, 2: bad usage, 130: interrupted), never a traceback: one handler
  in :func:`main` turns every exception into that line; ``-v`` adds the
  traceback;
- session ids are never cut, and a unique prefix of one is accepted
  wherever an id is taken;
- anything that came from a snapshot or a lock file goes through
  :func:`~opendev_snapshot.core.text.printable` before it is printed;
- nothing is deleted: ``remove``, ``cleanup`` and ``cleanup --skipped``
  move to the trash (``trash`` lists it, ``restore`` undoes), and a
  running session is removed only with ``--force``.

Only the standard library and the pydantic-free core are imported on the
listing path (see ``cli_table`` for why not ``rich``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from . import __version__
from .core import errors
from .core.durations import format_age, parse_duration
from .core.text import format_cost, printable

PROG = "opendev-snapshot"
EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
RESUME_COMMAND = "opendev --resume {sid}"
MAX_SKIPPED_SHOWN = 10
MAX_PREVIEW_LINES = 12


class CliError(Exception):
    """A failure to report as one line on stderr with an exit code."""

    def __init__(self, message: str, code: int = EXIT_FAIL) -> None:
        super().__init__(message)
        self.code = code


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``opendev-snapshot list: ... (see --help)``."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: {printable(message)} (see '{self.prog} --help')\n")


# ------------------------------------------------------------------ parsing
def _duration(text: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _count(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG,
        description="Crash-recovery snapshots of OpenDev sessions: list, inspect, remove and restore them.",
        epilog=f"Run '{PROG} COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--dir", metavar="PATH",
        help="snapshot directory (default: $OPENDEV_SNAPSHOT_DIR, else ~/.opendev/data/recovery)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, and tracebacks with errors")
    parser.add_argument("--log-file", metavar="FILE", help="write logs to FILE instead of stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    # The global options work after the subcommand too (`list --dir X`);
    # SUPPRESS keeps a subcommand's absent option from hiding the global one.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", metavar="PATH", default=argparse.SUPPRESS, help="snapshot directory")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging, tracebacks")
    common.add_argument("--log-file", metavar="FILE", default=argparse.SUPPRESS, help="write logs to FILE")

    p = sub.add_parser("list", parents=[common], help="list incomplete sessions, newest first")
    p.add_argument("--all", action="store_true", help="include completed sessions")
    p.add_argument("--project", metavar="DIR", help="only sessions of this project directory (or inside it)")
    p.add_argument("--status", choices=("running", "interrupted"), help="only sessions in this state")
    p.add_argument("--limit", type=_count, metavar="N", help="at most N sessions")
    p.add_argument("--wide", action="store_true", help="never drop or shorten columns to fit the terminal")
    p.add_argument("--json", action="store_true", help="machine output: {sessions, skipped}")

    p = sub.add_parser("show", parents=[common], help="one session: details, tool results and what to do next")
    p.add_argument("session_id", metavar="ID", help="a session id or a unique prefix of one")
    p.add_argument("--json", action="store_true", help="machine output: the Listing")

    p = sub.add_parser("cleanup", parents=[common], help="move old snapshots (or unusable files) to the trash")
    p.add_argument("--max-age", type=_duration, metavar="DURATION", help="older than this: 90s, 30m, 12h, 7d, 1d12h, ...")
    p.add_argument("--skipped", action="store_true", help="move files that are not usable snapshots (corrupt, too big, ...) to the trash")
    p.add_argument("--dry-run", action="store_true", help="only say what would be moved")
    p.add_argument("--keep-incomplete", action="store_true", help="only completed sessions (with --max-age)")
    p.add_argument("--json", action="store_true", help="machine output")

    p = sub.add_parser("remove", parents=[common], help="move one session's snapshot to the trash")
    p.add_argument("session_id", metavar="ID", help="a session id or a unique prefix of one")
    p.add_argument("--force", action="store_true", help="also when the session is running in another process")

    p = sub.add_parser("trash", parents=[common], help="list what is in the trash, newest first")
    p.add_argument("--wide", action="store_true", help="never drop or shorten columns to fit the terminal")
    p.add_argument("--json", action="store_true", help="machine output: {entries}")

    p = sub.add_parser("restore", parents=[common], help="put a session back from the trash")
    p.add_argument("session_id", metavar="ID", help="a session id in the trash, or a unique prefix of one")

    from .server.args import add_serve_arguments

    add_serve_arguments(sub.add_parser("serve", parents=[common], help="run the JSON-RPC server (stdio by default)"))
    return parser


# ------------------------------------------------------------------ logging
def _setup_logging(args) -> None:
    from .logsetup import LogFileError, configure_logging

    try:
        configure_logging(args.log_file, args.verbose)
    except LogFileError as exc:
        raise CliError(str(exc)) from exc


# ------------------------------------------------------------------- output
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


def _is_tty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _terminal_width() -> int:
    import shutil

    return shutil.get_terminal_size((80, 24)).columns


def _note(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def _dump_json(obj, out) -> None:
    json.dump(obj, out, ensure_ascii=False, indent=2)
    out.write("\n")


def _when(ms: int) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))
    except (OverflowError, OSError, ValueError):
        return f"{ms} ms since 1970"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _ago(ms: object, now: int) -> str:
    return format_age(now - ms) if isinstance(ms, int) and not isinstance(ms, bool) else "?"


def describe_holder(holder: object) -> str:
    """The lock file's object as one safe line: the core's wording
    (``pid 42 on box (IPython kernel of /p/a.ipynb)``) plus when it started."""
    from .core.holder import describe_holder as describe

    if not isinstance(holder, dict):
        return printable(holder) if holder else "an unknown process"
    text = printable(describe(holder))
    started = holder.get("startedMs")
    if isinstance(started, int) and not isinstance(started, bool):
        text += f", since {_when(started)}"
    return text


# ---------------------------------------------------------------- the store
def _refuse_empty_dir(args) -> None:
    """``--dir ""`` is an error for every command, never the default directory
    (a script with an unset variable must not clean up the real store)."""
    if args.dir is not None and not args.dir.strip():
        raise CliError(
            "--dir is empty: give the snapshot directory's path (is a shell variable unset?)", EXIT_USAGE
        )


def _directory(args):
    """The snapshot directory and where it came from; ``--dir ""`` is refused."""
    from .core.paths import ENV_VAR, resolve_snapshot_dir

    _refuse_empty_dir(args)
    directory = resolve_snapshot_dir(cli_dir=args.dir)
    if args.dir is not None:
        source = "--dir"
    elif os.environ.get(ENV_VAR):
        source = ENV_VAR
    else:
        source = "the default"
    return directory, source


def _store(args, *, must_exist: bool = True):
    """Open the store; ``None`` when the directory is missing and ``must_exist`` is false."""
    import stat

    from .core.store import SnapshotStore

    directory, source = _directory(args)
    shown = printable(str(directory))
    try:
        st = os.stat(directory)
    except FileNotFoundError:
        if must_exist:
            raise CliError(f"snapshot directory {shown} ({source}) does not exist") from None
        _note(f"note: snapshot directory {shown} ({source}) does not exist yet")
        return None, directory
    except NotADirectoryError:
        raise CliError(f"snapshot directory {shown} ({source}) is not a directory") from None
    except OSError as exc:
        raise CliError(f"cannot access snapshot directory {shown} ({source}): {exc.strerror or exc}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise CliError(f"snapshot directory {shown} ({source}) is not a directory")
    return SnapshotStore(directory), directory


def _resolve(store, text: str, *, in_trash: bool = False) -> str:
    """An exact id or a unique prefix, as the store resolves it, with one-line errors."""
    from .core.validation import check_session_id

    try:
        check_session_id(text)
    except errors.InvalidSnapshot as exc:
        raise CliError(f"invalid session id {printable(repr(text))}: {exc.message}", EXIT_USAGE) from None
    try:
        return store.resolve_id(text, in_trash=in_trash)
    except errors.AmbiguousId as exc:
        matches = sorted(exc.matches)
        listed = ", ".join(printable(m) for m in matches[:5]) + (", …" if len(matches) > 5 else "")
        raise CliError(f"{text!r} matches {len(matches)} sessions ({listed}): give more of the id") from None
    except errors.SessionNotFound:
        where = "in the trash of" if in_trash else "in"
        message = f"no session {text!r} {where} {printable(str(store.directory))}"
        trashed = None if in_trash else _in_trash(store, text)
        if trashed:
            message += f"; it is in the trash: {PROG} restore {trashed}"
        raise CliError(message) from None


def _in_trash(store, text: str) -> str | None:
    """The id in the trash that ``text`` names, if exactly one."""
    try:
        return store.resolve_id(text, in_trash=True)
    except errors.SnapshotError:
        return None


# ------------------------------------------------------------------ listing
def _nothing_found(args, directory) -> str:
    what = {"running": "running sessions", "interrupted": "interrupted sessions"}.get(
        args.status, "sessions" if args.all else "incomplete sessions"
    )
    where = f" of project {printable(args.project)}" if args.project else ""
    return f"No {what}{where} in {printable(str(directory))}."


def _listing_rows(sessions, now: int) -> list:
    return [
        [
            printable(s["session_id"]),
            s["status"],
            printable(s.get("kind") or "opendev"),
            _ago(s["snapshot_timestamp_ms"], now),
            str(s["message_count"]),
            format_cost(s["cost_usd"]),
            printable(s["project_dir"]),
        ]
        for s in sessions
    ]


def _list_columns():
    from .cli_table import Column

    return [
        Column("SESSION", keep=True),
        Column("STATUS", keep=True),
        Column("KIND", drop=2),
        Column("AGE", drop=4, stacked="{} ago"),
        Column("MESSAGES", drop=1, right=True, stacked="{} messages"),
        Column("COST", drop=3, right=True),
        Column("PROJECT", squeeze=16),
    ]


def _print_rows(columns, rows, out, *, wide: bool) -> None:
    from .cli_table import render, tsv

    if _is_tty(out):
        out.write(render(columns, rows, _terminal_width(), wide=wide) + "\n")
    elif rows:
        out.write(tsv(rows) + "\n")


def _say_nothing(message: str, out) -> None:
    """A "nothing found" sentence: on the terminal, or on stderr when stdout is a pipe."""
    if _is_tty(out):
        out.write(message + "\n")
    else:
        _note(message)


def _report_skipped(skipped) -> None:
    for item in skipped[:MAX_SKIPPED_SHOWN]:
        _note(f"skipped {printable(item.file)}: {printable(item.reason)}")
    more = len(skipped) - MAX_SKIPPED_SHOWN
    if more > 0:
        _note(f"… and {more} more not usable")
    if skipped:
        _note(f"hint: '{PROG} cleanup --skipped' shows them all and moves them to the trash")


def cmd_list(args, out) -> int:
    store, directory = _store(args, must_exist=False)
    if store is None:
        if args.json:
            _dump_json({"sessions": [], "skipped": []}, out)
        elif args.limit != 0:
            _say_nothing(_nothing_found(args, directory), out)
        return EXIT_OK
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
        from .server.wire import list_result_to_wire

        _dump_json(list_result_to_wire(result), out)
    elif result.sessions:
        _print_rows(_list_columns(), _listing_rows(result.sessions, _now_ms()), out, wide=args.wide)
    elif args.limit != 0:
        _say_nothing(_nothing_found(args, directory), out)
    _report_skipped(result.skipped)
    return EXIT_OK


def _next_steps(listing: dict, holder) -> list:
    """What the user can do with this session: sentences, each command on its own line."""
    sid = listing["session_id"]
    status = listing["status"]
    kind = listing.get("kind") or "opendev"
    remove = ["Discard it (to the trash; undo with 'restore'):", f"{PROG} remove {sid}"]
    if status == "running":
        who = f"pid {printable(holder['pid'])}" if isinstance(holder, dict) and "pid" in holder else "its process"
        steps = [
            "It is running: nothing to recover.",
            f"If {who} is stuck or gone, remove it anyway:",
            f"{PROG} remove --force {sid}",
        ]
    elif status == "completed":
        steps = ["It completed: there is nothing to recover.", *remove]
    elif kind == "ipython":
        notebook = listing.get("notebook")
        steps = [f"Open its notebook: {printable(notebook)}"] if notebook else []
        steps += [
            f"Get its code back, in IPython or Jupyter in {printable(listing['project_dir'])}:",
            "%load_ext opendev_snapshot",
            f"%opendev recover {sid}",
            "(--to FILE.py writes them to a file, --run runs them)",
            *remove,
        ]
    else:
        steps = [
            f"Resume it, in {printable(listing['project_dir'])}:",
            RESUME_COMMAND.format(sid=sid),
            *remove,
        ]
    lines = ["", "Next steps:"]
    for step in steps:
        sentence = step.endswith((":", ".", ")")) or step.startswith(("If ", "It ", "Open ", "("))
        lines.append(("  " if sentence else "    ") + step)
    return lines


def cmd_show(args, out) -> int:
    store, _directory_ = _store(args)
    sid = _resolve(store, args.session_id)
    record = store.load(sid)
    if record is None:  # removed between resolving and loading
        raise CliError(f"no session {sid!r} in {printable(str(store.directory))}")
    listing = store.listing(record)  # record + status, kind, notebook, path
    status = listing["status"]
    if args.json:
        from .server.wire import listing_to_wire

        _dump_json(listing_to_wire(listing), out)
        return EXIT_OK
    now = _now_ms()
    ts = record["snapshot_timestamp_ms"]
    holder = store.lock_holder(sid) if status == "running" else None
    lines = [
        f"Session:   {printable(sid)}",
        f"Status:    {status}",
        f"Kind:      {printable(listing['kind'])}",
        f"Project:   {printable(record['project_dir'])}",
        f"Saved:     {_when(ts)} ({format_age(now - ts)} ago)",
        f"Messages:  {record['message_count']}",
        f"Cost:      {format_cost(record['cost_usd'])}",
        f"File:      {printable(listing['path'])}",
    ]
    if listing["notebook"]:
        lines.append(f"Notebook:  {printable(listing['notebook'])}")
    if status == "running":
        lines.append(f"Held by:   {describe_holder(holder)}" if holder else "Held by:   no lock file; saved recently")
    results = record["last_tool_results"]
    lines.append(f"Tool results ({len(results)}, oldest first):" if results else "Tool results: none")
    for item in results:
        mark = "ok " if item["success"] else "ERR"
        preview = printable(item["output_preview"], keep_layout=True).expandtabs(4).split("\n")
        shown = preview[:MAX_PREVIEW_LINES]
        if len(preview) > MAX_PREVIEW_LINES:
            shown.append(f"… {len(preview) - MAX_PREVIEW_LINES} more lines ('{PROG} show ID --json' has them all)")
        lines.append(f"  [{mark}] {printable(item['tool_name'])} {printable(item['call_id'])}: {shown[0]}")
        lines.extend(f"        {line}" for line in shown[1:])
    lines.extend(_next_steps(listing, holder))
    out.write("\n".join(lines) + "\n")
    return EXIT_OK


# ----------------------------------------------------------------- removing
def cmd_remove(args, out) -> int:
    store, _directory_ = _store(args)
    sid = _resolve(store, args.session_id)
    try:
        removed = store.remove(sid, force=args.force)
    except errors.SessionRunning as exc:
        who = describe_holder(exc.holder) if exc.holder else "no lock file; saved moments ago"
        raise CliError(
            f"session {sid} is running ({who}): not removed; "
            f"'{PROG} remove --force {sid}' removes it anyway"
        ) from exc
    if not removed:
        raise CliError(f"no session {sid!r} in {printable(str(store.directory))}")
    out.write(f"Moved {sid} to the trash. Undo: {PROG} restore {sid}\n")
    return EXIT_OK


def cmd_restore(args, out) -> int:
    store, _directory_ = _store(args)
    sid = _resolve(store, args.session_id, in_trash=True)
    try:
        listing = store.restore(sid)
    except errors.SessionExists:
        raise CliError(
            f"a session {sid} exists again in {printable(str(store.directory))}: not restored "
            f"(see it with '{PROG} show {sid}')"
        ) from None
    status = listing.get("status", "?") if isinstance(listing, dict) else "?"
    out.write(f"Restored {sid} ({status}).\n")
    return EXIT_OK


def cmd_cleanup(args, out) -> int:
    if args.max_age is None and not args.skipped:
        raise CliError("cleanup needs --max-age DURATION (e.g. 7d), --skipped, or both", EXIT_USAGE)
    if args.keep_incomplete and args.max_age is None:
        raise CliError("--keep-incomplete goes with --max-age", EXIT_USAGE)
    store, _directory_ = _store(args)
    verb = "Would move" if args.dry_run else "Moved"
    report: dict = {"dryRun": args.dry_run}
    text = []
    if args.skipped:
        skipped = store.list(include_completed=True).skipped
        moved, refused = [], []
        if skipped and not args.dry_run:
            # `.name` is the entry's real name (`.file` is for display: a name
            # that is not UTF-8 shows its bytes as \xNN).
            moved, refused = store.trash_files([s.name or s.file for s in skipped])
        refused_files = {r.file for r in refused}
        report["skipped"] = [s.to_dict() for s in skipped]
        report["skippedMoved"] = len(skipped) if args.dry_run else len(moved)
        report["skippedRefused"] = [r.to_dict() for r in refused]
        if skipped:
            count = report["skippedMoved"]
            noun = "file" if count == 1 else "files"
            text.append(f"{verb} {count} unusable {noun} to the trash:")
            text.extend(
                f"  {printable(s.file)}: {printable(s.reason)}" for s in skipped if s.file not in refused_files
            )
            if refused:
                text.append(f"Left {len(refused)} in place:")
                text.extend(f"  {printable(r.file)}: {printable(r.reason)}" for r in refused)
        else:
            text.append("No unusable files.")
    if args.max_age is not None:
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
        report.update(removedCount=result.removed_count, sessionIds=result.session_ids)
        purged = getattr(result, "purged_count", 0)
        report["purgedCount"] = purged
        noun = "session" if result.removed_count == 1 else "sessions"
        text.append(f"{verb} {result.removed_count} {noun} to the trash" + (":" if result.session_ids else "."))
        text.extend(f"  {printable(sid)}" for sid in result.session_ids)
        extras = []
        if result.temp_files_removed:
            extras.append(f"{result.temp_files_removed} stale temporary file(s)")
        if result.lock_files_removed:
            extras.append(f"{result.lock_files_removed} orphan lock file(s)")
        if extras:
            text.append(("Would also delete " if args.dry_run else "Also deleted ") + " and ".join(extras) + ".")
        if purged:
            text.append(("Would purge " if args.dry_run else "Purged ") + f"{purged} old trash entr{'y' if purged == 1 else 'ies'}.")
    if args.json:
        _dump_json(report, out)
    else:
        if not args.dry_run and report.get("removedCount"):
            text.append(f"Undo with '{PROG} restore ID' ('{PROG} trash' lists what is there).")
        elif not args.dry_run and report.get("skippedMoved"):
            text.append(f"They stay in {printable(str(store.directory))}/.trash until a cleanup purges them after 7 days.")
        out.write("\n".join(text) + "\n")
    return EXIT_OK


def cmd_trash(args, out) -> int:
    store, directory = _store(args, must_exist=False)
    entries = store.list_trash() if store is not None else []
    if args.json:
        from .server.wire import trash_entry_to_wire

        _dump_json({"entries": [trash_entry_to_wire(e) for e in entries]}, out)
        return EXIT_OK
    if not entries:
        _say_nothing(f"The trash of {printable(str(directory))} is empty.", out)
        return EXIT_OK
    from .cli_table import Column

    now = _now_ms()
    rows = []
    for e in entries:
        snap = e.get("snapshot")
        removed = f"{_ago(e.get('removed_at_ms'), now)} ago"
        if snap:
            rows.append([
                printable(e["session_id"]), removed, str(snap["message_count"]),
                format_cost(snap["cost_usd"]), printable(snap["project_dir"]),
            ])
        else:
            rows.append([printable(e["session_id"]), removed, "-", "-", f"(not a usable snapshot: {printable(e.get('file') or '?')})"])
    columns = [
        Column("SESSION", keep=True),
        Column("REMOVED", keep=True, stacked="removed {}"),
        Column("MESSAGES", drop=1, right=True, stacked="{} messages"),
        Column("COST", drop=2, right=True),
        Column("PROJECT", squeeze=16),
    ]
    _print_rows(columns, rows, out, wide=args.wide)
    if _is_tty(out):
        out.write(f"\nRestore one with '{PROG} restore ID'; the next cleanup purges entries older than 7 days.\n")
    return EXIT_OK


def cmd_serve(args, out) -> int:
    from .server.args import run

    return run(args)


COMMANDS = {
    "list": cmd_list,
    "show": cmd_show,
    "cleanup": cmd_cleanup,
    "remove": cmd_remove,
    "trash": cmd_trash,
    "restore": cmd_restore,
    "serve": cmd_serve,
}


# ------------------------------------------------------------ the one handler
def _message(exc: BaseException) -> tuple:
    """The one line and the exit code for an exception."""
    if isinstance(exc, CliError):
        return str(exc), exc.code
    if isinstance(exc, errors.InvalidSnapshot):
        return f"invalid {exc}", EXIT_USAGE
    if isinstance(exc, errors.ConfigError):
        return str(exc), EXIT_USAGE
    if isinstance(exc, errors.SnapshotError):
        return str(exc), EXIT_FAIL
    if isinstance(exc, OSError):
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        return f"{exc.strerror or exc}:{where}" if where else str(exc.strerror or exc), EXIT_FAIL
    return f"internal error: {type(exc).__name__}: {exc} (please report it; -v shows the traceback)", EXIT_FAIL


def _safe_streams() -> None:
    """Text that cannot be encoded (a lone surrogate from a name that is not
    UTF-8, a terminal in another encoding) is written as an escape, never
    raised as an error halfway through a table."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError, OSError):  # not a TextIOWrapper (tests, IDEs)
            pass


def main(argv: list | None = None) -> int:
    verbose = False
    _safe_streams()
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        verbose = bool(args.verbose)
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        _refuse_empty_dir(args)
        if args.command != "serve":  # the server configures its own logging
            _setup_logging(args)
        return COMMANDS[args.command](args, sys.stdout)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `opendev-snapshot list | head`: not an error. Point stdout at
        # /dev/null so the interpreter's final flush does not complain.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_OK
    except Exception as exc:  # the one place an error becomes a line and an exit code
        if verbose:
            import traceback

            traceback.print_exc()
        line, code = _message(exc)
        print(f"{PROG}: {printable(line)}", file=sys.stderr)
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
