"""The ``%opendev`` line magic: thin argument parsing over the core.

Settings are traitlets (``%config OpendevMagics.preview_chars = 200`` or
``c.OpendevMagics.autosave = True`` in an IPython profile). What belongs to
the kernel (store, session, lock, autosave) lives in :mod:`.kernel` and
survives ``%reload_ext``. Every core error becomes a plain ``UsageError``
in :func:`usage_errors`, the one place that translates them.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.utils.process import arg_split
from traitlets import Bool, Int, TraitError, Unicode, observe, validate

from ..core.durations import parse_duration
from ..core.errors import (
    AmbiguousId,
    NotInTrash,
    SessionExists,
    SessionNotFound,
    SessionRunning,
    SnapshotError,
)
from ..core.records import INTERRUPTED, RUNNING
from ..core.text import printable
from . import history
from .display import SessionTable, SessionView, TrashTable, describe_holder, notebook_name, short_ids
from .kernel import default_history_db, state_for
from .outfile import write_new_file
from .session import kernel_session_id

log = logging.getLogger(__name__)

SUBCOMMANDS = ("list", "show", "recover", "save", "autosave", "complete", "discard", "restore", "trash", "cleanup")
# options each subcommand accepts, and how many positional arguments
_OPTIONS = {"list": {"all", "project"}, "cleanup": {"max_age", "dry_run"}, "recover": {"to", "run"}}
_POSITIONALS = {"show": 1, "discard": 1, "restore": 1, "recover": 1, "autosave": 1}
_WHAT = {"show": "a session ID", "discard": "a session ID", "restore": "a session ID", "recover": "a session ID",
         "autosave": "on or off"}
_OPTION_FLAGS = {"all": "--all", "project": "--project", "max_age": "--max-age", "dry_run": "--dry-run",
                 "to": "--to", "run": "--run"}
NOTICE_HINT = (
    "Get a kernel's code back: %opendev recover ID ({where}); add --to FILE for a .py file "
    "or --run to re-run it here. %opendev show ID shows one; %opendev discard ID moves it to the trash."
)


def _holder_text(holder) -> str:
    return f"a live process ({describe_holder(holder)})"


@contextmanager
def usage_errors(action: str = ""):
    """Translate core errors into plain ``UsageError`` (no traceback shown)."""
    try:
        yield
    except UsageError:
        raise
    except NotInTrash as exc:
        raise UsageError(f"session {exc.session_id!r} is not in the trash (%opendev trash lists it)") from exc
    except SessionNotFound as exc:
        raise UsageError(f"no snapshot for session {exc.session_id!r}") from exc
    except AmbiguousId as exc:
        matches = list(getattr(exc, "matches", []) or [])
        shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise UsageError(
            f"{getattr(exc, 'prefix', '')!r} matches {len(matches)} sessions ({shown}): type more of the id"
        ) from exc
    except SessionRunning as exc:
        tail = f"; {action}" if action else ""
        raise UsageError(f"session {exc.session_id} is running in {_holder_text(exc.holder)}{tail}") from exc
    except SessionExists as exc:
        raise UsageError(f"a session {exc.session_id} exists again; not restored") from exc
    except SnapshotError as exc:
        raise UsageError(f"opendev: {exc}") from exc
    except ValueError as exc:  # e.g. parse_duration
        raise UsageError(f"opendev: {exc}") from exc
    except OSError as exc:
        raise UsageError(f"opendev: storage failure: {exc}") from exc


@magics_class
class OpendevMagics(Magics):
    """Crash-recovery snapshots of this kernel's session (opendev-snapshot)."""

    snapshot_dir = Unicode(
        None,
        allow_none=True,
        config=True,
        help="Snapshot directory. Unset: $OPENDEV_SNAPSHOT_DIR, else ~/.opendev/data/recovery.",
    )
    autosave = Bool(False, config=True, help="Turn autosave on when the extension loads.")
    preview_chars = Int(500, min=0, config=True, help="Characters kept of each cell's preview.")
    max_tool_results = Int(10, min=0, config=True, help="Cells kept in a snapshot (oldest dropped).")
    stale_after_ms = Int(
        120_000, min=0, config=True,
        help="A lock-less incomplete snapshot older than this reads interrupted.",
    )

    def __init__(self, shell=None, **kwargs):
        super().__init__(shell=shell, **kwargs)
        self.state = state_for(shell)
        self.state.preview_chars = self.preview_chars
        self.state.max_tool_results = self.max_tool_results

    # ------------------------------------------------------------- plumbing
    @validate("snapshot_dir")
    def _check_snapshot_dir(self, proposal):
        state = getattr(self, "state", None)
        session = state.session if state is not None else None
        if session is not None and session.held:
            raise TraitError(
                f"this kernel's session is held in {session.store.directory} until the kernel exits: "
                "set snapshot_dir before the first save"
            )
        return proposal["value"]

    @observe("preview_chars", "max_tool_results")
    def _limits_changed(self, change):
        setattr(self.state, change["name"], change["new"])

    @property
    def store(self):
        try:
            return self.state.open_store(self.snapshot_dir, self.stale_after_ms)
        except ValueError as exc:
            raise UsageError(f"opendev: {exc}") from exc

    @property
    def session(self):
        return self.state.kernel_session(self.store)

    def _own_id(self) -> str:
        return self.state.own_id or kernel_session_id(self.shell)

    def _all_ids(self) -> list[str]:
        """Every session id of the directory: short prefixes are unique among them."""
        return [s["session_id"] for s in self.store.list(include_completed=True).sessions]

    # ------------------------------------------------------------- lifecycle
    def on_load(self) -> None:
        """Called by ``load_ipython_extension``: autosave as it was (or as configured), the notice."""
        state = self.state
        state.closed = False
        if state.in_kernel_startup():
            state.at_first_cell(self._first_cell)  # loaded from the profile: nothing runs before a cell
        else:
            self._arm_autosave()
            self.show_notice()

    def _first_cell(self) -> None:
        self._arm_autosave(this_cell=True)
        self.show_notice()

    def _arm_autosave(self, *, this_cell: bool = False) -> None:
        """Autosave as it was (``%reload_ext``), or as configured."""
        state = self.state
        if state.autosave:
            state.hook()  # %reload_ext: same session, same lock, autosave as it was
        elif self.autosave:
            try:
                with usage_errors("autosave not turned on"):
                    state.enable_autosave(self.store, this_cell=this_cell)
            except UsageError as exc:
                print(f"opendev: autosave not turned on: {exc}", file=sys.stderr)

    def on_unload(self) -> None:
        """``%unload_ext``: stop hooking cells; the kernel keeps its session and lock."""
        self.state.unhook()

    def show_notice(self) -> None:
        try:
            table = self.recoverable_table(os.getcwd())
        except (SnapshotError, OSError, UsageError) as exc:
            print(f"opendev: cannot list interrupted sessions: {exc}", file=sys.stderr)
            return
        if table is not None:
            from IPython.display import display

            display(table)

    def recoverable_table(self, project_dir: str) -> SessionTable | None:
        """The interrupted sessions of ``project_dir``'s project (never this kernel's own), or None."""
        store = self.store
        result = store.list(project_dir=project_dir, status=INTERRUPTED)
        own = self._own_id()
        sessions = [s for s in result.sessions if s["session_id"] != own]
        if not sessions:
            return None
        n = len(sessions)
        title = f"opendev: {n} interrupted session{'s' if n != 1 else ''} in project {project_dir}"
        where = "as the next cell" if self._in_kernel() else "prints it"
        return SessionTable(sessions, result.skipped, title=title, hint=NOTICE_HINT.format(where=where),
                            all_ids=self._all_ids())

    def _in_kernel(self) -> bool:
        """A notebook front end (ipykernel), not a terminal: set_next_input makes a new cell."""
        return getattr(self.shell, "kernel", None) is not None

    # ------------------------------------------------------------------ magic
    @magic_arguments()
    @argument("command", nargs="?", metavar="SUBCOMMAND", help="one of: " + ", ".join(SUBCOMMANDS))
    @argument("args", nargs="*", metavar="ARG", help="ID (a unique prefix is enough) for show/recover/discard/restore; on|off for autosave")
    @argument("--all", action="store_true", dest="all", help="list: include completed sessions")
    @argument("--project", metavar="DIR", help="list: only sessions of the project at DIR")
    @argument("--to", metavar="FILE", dest="to", help="recover: write the cells to FILE, a runnable .py (never overwrites)")
    @argument("--run", action="store_true", dest="run", help="recover: re-run the cells here, in order, stopping at the first error")
    @argument("--max-age", metavar="DURATION", dest="max_age", help="cleanup: move snapshots older than this to the trash (90s, 30m, 12h, 7d)")
    @argument("--dry-run", action="store_true", dest="dry_run", help="cleanup: only report what would be moved")
    @line_magic
    def opendev(self, line):
        """Crash-recovery snapshots of sessions (opendev-snapshot).

        Subcommands (ID: a session id, or any unique prefix of one):
          list [--all] [--project DIR]    incomplete sessions (--all: completed too)
          show ID                         one session and its last cells
          recover ID [--to FILE] [--run]  a dead kernel's code: every cell it ran,
                                          in order, from IPython's history; as the
                                          next cell (printed in a terminal), --to
                                          FILE writes a .py, --run re-runs them here
          save                            snapshot this kernel's session now
          autosave on|off                 snapshot after every cell; off stops saving
                                          (the session stays running while the kernel lives)
          complete                        mark this kernel's session completed
          discard ID                      move a session to the trash (not a running one)
          restore ID                      bring a session back from the trash
          trash                           what is in the trash
          cleanup --max-age 7d [--dry-run]
                                          move old snapshots to the trash (never running ones)

        A clean kernel shutdown marks this kernel's session completed; a killed
        kernel leaves it interrupted, shown by the next kernel of the project
        (when loaded from the IPython profile, at its first cell).
        """
        # intermixed: options may come before or after the subcommand's arguments
        try:
            argv = arg_split(line, posix=True, strict=True)
        except ValueError as exc:  # e.g. an unbalanced quote
            raise UsageError(f"cannot parse {line!r}: {exc}") from exc
        args = self.opendev.parser.parse_intermixed_args(argv)
        command = args.command
        if command is None:
            raise UsageError("missing subcommand: use one of " + ", ".join(SUBCOMMANDS) + " (see %opendev?)")
        if command not in SUBCOMMANDS:
            raise UsageError(f"unknown subcommand {command!r}: use one of " + ", ".join(SUBCOMMANDS))
        allowed = _OPTIONS.get(command, set())
        for name, flag in _OPTION_FLAGS.items():
            if name not in allowed and getattr(args, name) not in (None, False):
                raise UsageError(f"{flag} does not apply to %opendev {command}")
        wanted = _POSITIONALS.get(command, 0)
        if len(args.args) != wanted:
            if wanted:
                raise UsageError(f"%opendev {command} takes {_WHAT[command]}")
            raise UsageError(f"%opendev {command} takes no argument, got {' '.join(args.args)!r}")
        with usage_errors({"discard": "not discarded"}.get(command, "")):
            return getattr(self, "_cmd_" + command)(args)

    # ------------------------------------------------------------ subcommands
    def _cmd_list(self, args):
        result = self.store.list(project_dir=args.project, include_completed=args.all)
        empty = "No sessions." if args.all else "No incomplete sessions."
        return SessionTable(result.sessions, result.skipped, empty=empty, all_ids=self._all_ids(),
                            own_id=self._own_id())

    def _cmd_show(self, args):
        store = self.store
        session_id = store.resolve_id(args.args[0])
        record = store.load(session_id)
        if record is None:
            raise SessionNotFound(session_id)
        status = store.status_of(record)
        holder = store.lock_holder(session_id) if status == RUNNING else None
        return SessionView(record, status, str(store.snapshot_path(session_id)), store.lock_info(session_id), holder)

    def _cmd_save(self, args):
        session = self.session
        session.save(self.state.message_count())
        print(f"opendev: saved session {session.session_id} ({session.path})")

    def _cmd_autosave(self, args):
        mode = args.args[0].lower()
        if mode not in ("on", "off"):
            raise UsageError(f"%opendev autosave takes on or off, not {args.args[0]!r}")
        state = self.state
        if mode == "on":
            was = state.autosave and state.hooked
            state.enable_autosave(self.store)
            session = state.session
            status = "already on" if was else "on"
            print(f"opendev: autosave {status} for session {session.session_id} "
                  f"(project {session.project_dir}; {session.path})")
            return
        if not state.autosave:
            print("opendev: autosave is already off")
            return
        state.disable_autosave()
        session = state.session
        if session is not None and session.held:
            print(f"opendev: autosave off; session {session.session_id} stays running while this kernel lives "
                  "(%opendev complete marks it done)")
        else:
            print("opendev: autosave off")

    def _cmd_complete(self, args):
        session = self.session
        if not session.saved:
            raise UsageError(
                f"this kernel's session {session.session_id} has no snapshot yet: "
                "nothing to complete (use %opendev save or autosave on first)"
            )
        self.state.disable_autosave()
        session.complete()
        print(f"opendev: session {session.session_id} marked completed; autosave off")

    def _short(self, session_id: str, *, in_trash: bool = False) -> str:
        ids = [e["session_id"] for e in self.store.list_trash()] if in_trash else self._all_ids()
        return short_ids(set(ids) | {session_id})[session_id]

    def _cmd_discard(self, args):
        store = self.store
        session_id = store.resolve_id(args.args[0])
        own = session_id == self._own_id()
        notebook = (store.lock_info(session_id) or {}).get("notebook")
        if own:
            self.state.disable_autosave()
        if not store.remove(session_id):
            raise SessionNotFound(session_id)
        if own and self.state.session is not None:
            self.state.session.forget()
        short = self._short(session_id, in_trash=True)
        name = f" ({printable(notebook_name(notebook))})" if isinstance(notebook, str) and notebook else ""
        print(f"opendev: moved session {session_id}{name} to the trash" + ("; autosave off" if own else "")
              + f" (undo: %opendev restore {short})")

    def _cmd_restore(self, args):
        store = self.store
        try:
            session_id = store.resolve_id(args.args[0], in_trash=True)
        except SessionNotFound as exc:  # nothing in the trash by that id or prefix
            raise NotInTrash(args.args[0]) from exc
        listing = store.restore(session_id)
        listing = listing if isinstance(listing, dict) else {}
        notebook = listing.get("notebook")
        about = [printable(notebook_name(notebook))] if isinstance(notebook, str) and notebook else []
        about += [listing["status"]] if listing.get("status") else []
        short = self._short(session_id)
        tail = f"; its code: %opendev recover {short}" if listing.get("kind") == "ipython" else ""
        print(f"opendev: restored session {session_id}" + (f" ({', '.join(about)})" if about else "") + tail)

    def _cmd_trash(self, args):
        return TrashTable(self.store.list_trash())

    def _cmd_cleanup(self, args):
        if args.max_age is None:
            raise UsageError("%opendev cleanup needs --max-age DURATION (for example 7d)")
        max_age_ms = parse_duration(args.max_age)
        result = self.store.cleanup(max_age_ms, dry_run=args.dry_run)
        verb = "would move" if result.dry_run else "moved"
        ids = ", ".join(result.session_ids)
        extra = []
        if getattr(result, "temp_files_removed", 0):
            extra.append(f"removed {result.temp_files_removed} temporary file(s)")
        if getattr(result, "lock_files_removed", 0):
            extra.append(f"removed {result.lock_files_removed} orphan lock file(s)")
        if getattr(result, "purged_count", 0):
            extra.append(f"purged {result.purged_count} old trash entr{'y' if result.purged_count == 1 else 'ies'}")
        tail = f"; {', '.join(extra)}" if extra else ""
        print(f"opendev: {verb} {result.removed_count} session(s) to the trash{': ' + ids if ids else ''}{tail}")
        return None

    # ---------------------------------------------------------------- recover
    def _cmd_recover(self, args):
        store = self.store
        session_id = store.resolve_id(args.args[0])
        if session_id == self._own_id():
            raise UsageError("that is this kernel's own session: its cells are in %history")
        record = store.load(session_id)
        if record is None:
            raise SessionNotFound(session_id)
        status = store.status_of(record)
        lock = store.lock_info(session_id)
        if (lock or {}).get("kind", "opendev") != "ipython" and not history.cells_from_record(record):
            raise UsageError(
                f"session {session_id} is an OpenDev agent session, not a notebook kernel: it has no cells "
                f"to recover (%opendev show {args.args[0]} shows it)"
            )
        recovery = history.recover(record, lock, default_db=default_history_db())
        name = f" ({notebook_name(recovery.notebook)})" if recovery.notebook else ""
        if status == RUNNING:
            print(f"opendev: session {session_id}{name} is still running; these are the cells it has run so far",
                  file=sys.stderr)
        for note in recovery.notes:
            print(f"opendev: {note}", file=sys.stderr)
        if not recovery.cells:
            print(f"opendev: session {session_id}{name} recorded no cells: nothing to recover")
            return None
        n = len(recovery.cells)
        where = "IPython's history" if recovery.from_history else "the snapshot's previews"
        summary = f"{n} cell{'s' if n != 1 else ''} of session {session_id}{name}, {history.span(recovery.cells)}, from {where}"
        transform = self._transformer()
        if args.to:
            path = write_new_file(args.to, history.as_script(recovery, transform))
            print(f"opendev: wrote {summary} to {path}")
        if args.run:
            self._rerun(recovery, session_id)
        if not args.to and not args.run:
            text = history.as_next_input(recovery, transform)
            if self._in_kernel():
                self.shell.set_next_input(text, replace=False)
                print(f"opendev: the next cell holds {summary}. "
                      "Run it, or use --to FILE for a .py file, --run to re-run them here.")
            else:  # a terminal: a screenful of code in the prompt is no help; print it
                print(printable(text, keep_layout=True))
                print(f"opendev: above: {summary}. "
                      f"Write them to a file with %opendev recover {args.args[0]} --to FILE, "
                      f"or re-run them here with --run.")
        return None

    def _transformer(self):
        """IPython syntax (magics, ``!shell``) the way this shell runs it."""
        transform = getattr(self.shell, "transform_cell", None)
        if transform is None:
            from IPython.core.inputtransformer2 import TransformerManager

            transform = TransformerManager().transform_cell
        return transform

    def _rerun(self, recovery: history.Recovery, session_id: str) -> None:
        cells, skipped, stop = history.cells_to_run(recovery)
        if skipped:
            print("opendev: not re-run: " + ", ".join(skipped))
        total = len(cells)
        print(f"opendev: re-running {total} cell{'s' if total != 1 else ''} of session {session_id}"
              + (f" ({history.span(cells)})" if cells else ""))
        for i, cell in enumerate(cells, start=1):
            result = self.shell.run_cell(cell.source, store_history=True)
            if not result.success:
                error = result.error_before_exec or result.error_in_exec
                why = f"{type(error).__name__}: {error}" if error is not None else "it failed"
                before = " (it failed in the dead kernel too)" if cell.success is False else ""
                rest = [c.number for c in cells[i:]] + ([stop.number] if stop else [])
                left = f" Not run: {', '.join(f'In[{n}]' for n in rest)}." if rest else ""
                raise UsageError(
                    f"re-run stopped at In[{cell.number}] (cell {i} of {total}): {why}{before}.{left}"
                )
        if stop is not None:
            reason = "it is only known from a cut preview" if not stop.complete else (
                "it may have been running when the kernel died (and may be what killed it)")
            print(f"opendev: stopped before In[{stop.number}]: {reason}. "
                  f"See it with %opendev recover {session_id} (without --run).")
        else:
            print(f"opendev: re-ran {total} cell{'s' if total != 1 else ''}")


__all__ = ["OpendevMagics", "usage_errors"]
