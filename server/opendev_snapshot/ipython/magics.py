"""The ``%opendev`` line magic: thin argument parsing over the core.

Settings are traitlets (``%config OpendevMagics.preview_chars = 200`` or
``c.OpendevMagics.autosave = True`` in an IPython profile). Every core error
becomes a plain ``UsageError`` in :func:`usage_errors`, the one place that
translates them.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from contextlib import contextmanager

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.utils.process import arg_split
from traitlets import Bool, Int, TraitError, Unicode, observe, validate

from ..core import INTERRUPTED, SessionNotFound, SnapshotError, SnapshotStore
from ..core.durations import parse_duration
from ..core.holder import describe_holder
from ..core.paths import resolve_snapshot_dir
from .display import SessionTable, SessionView
from .session import KernelSession, describe_outcome, kernel_session_id

log = logging.getLogger(__name__)

SUBCOMMANDS = ("list", "show", "save", "autosave", "complete", "discard", "cleanup")
# options each subcommand accepts, and how many positional arguments
_OPTIONS = {"list": {"all", "project"}, "cleanup": {"max_age", "dry_run"}}
_POSITIONALS = {"show": 1, "discard": 1, "autosave": 1}
_OPTION_FLAGS = {"all": "--all", "project": "--project", "max_age": "--max-age", "dry_run": "--dry-run"}
RECOVER_HINT = "Inspect one with %opendev show ID, remove it with %opendev discard ID."


@contextmanager
def usage_errors():
    """Translate core errors into plain ``UsageError`` (no traceback shown)."""
    try:
        yield
    except UsageError:
        raise
    except SessionNotFound as exc:
        raise UsageError(f"no snapshot for session {exc.session_id!r}") from exc
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
        self._store: SnapshotStore | None = None
        self._session: KernelSession | None = None
        self._hooked = False
        self._armed_at = 0
        self._warned = False
        self._atexit_registered = False

    # ------------------------------------------------------------- plumbing
    @validate("snapshot_dir")
    def _check_snapshot_dir(self, proposal):
        session = getattr(self, "_session", None)
        if session is not None and session.held:
            raise TraitError("turn %opendev autosave off (or complete) before changing snapshot_dir")
        if getattr(self, "_store", None) is not None:
            self._store.close()
            self._store = None
            self._session = None
        return proposal["value"]

    @observe("stale_after_ms")
    def _stale_changed(self, change):
        if self._store is not None:
            self._store.stale_after_ms = change["new"]

    @property
    def store(self) -> SnapshotStore:
        if self._store is None:
            directory = resolve_snapshot_dir(cli_dir=self.snapshot_dir or None)
            self._store = SnapshotStore(directory, stale_after_ms=self.stale_after_ms)
        return self._store

    @property
    def session(self) -> KernelSession:
        if self._session is None:
            self._session = KernelSession(self.store, kernel_session_id(self.shell), os.getcwd())
        return self._session

    def _message_count(self) -> int:
        # during a cell, shell.execution_count already names the next cell
        return max(int(getattr(self.shell, "execution_count", 1) or 1) - 1, 0)

    # ------------------------------------------------------------- lifecycle
    def on_load(self) -> None:
        """Called by ``load_ipython_extension``: exit hook, autosave default, recovery notice."""
        if not self._atexit_registered:
            atexit.register(self.at_exit)
            self._atexit_registered = True
        if self.autosave:
            try:
                with usage_errors():
                    self.enable_autosave()
            except UsageError as exc:
                print(f"opendev: autosave not turned on: {exc}", file=sys.stderr)
        try:
            table = self.recoverable_table(os.getcwd())
        except (SnapshotError, OSError) as exc:
            print(f"opendev: cannot list interrupted sessions: {exc}", file=sys.stderr)
            return
        if table is not None:
            from IPython.display import display

            display(table)

    def recoverable_table(self, project_dir: str) -> SessionTable | None:
        """The interrupted sessions of ``project_dir``'s project, or None when there are none."""
        result = self.store.list(project_dir=project_dir, status=INTERRUPTED)
        own = self._session.session_id if self._session is not None else None
        sessions = [s for s in result.sessions if s["session_id"] != own]
        if not sessions:
            return None
        n = len(sessions)
        title = f"opendev: {n} interrupted session{'s' if n != 1 else ''} in project {project_dir}"
        return SessionTable(sessions, result.skipped, title=title, hint=RECOVER_HINT)

    def at_exit(self) -> None:
        """Clean shutdown (interpreter exit, kernel shutdown): complete our held session."""
        self._unhook()
        session = self._session
        if session is None:
            return
        try:
            if session.saved and session.held:
                session.complete()
        except (SnapshotError, OSError) as exc:
            print(f"opendev: cannot mark session {session.session_id} completed: {exc}", file=sys.stderr)
        finally:
            if self._store is not None:
                self._store.close()

    def on_unload(self) -> None:
        """``%unload_ext``: like ``autosave off`` (release, not complete), then forget."""
        if self._atexit_registered:
            atexit.unregister(self.at_exit)
            self._atexit_registered = False
        self._unhook()
        if self._store is not None:
            self._store.close()  # releases held locks: the session reads interrupted
            self._store = None
        self._session = None

    # --------------------------------------------------------------- autosave
    def enable_autosave(self) -> str:
        """Save now, hold the lock, and hook ``post_run_cell``; returns the snapshot path."""
        session = self.session
        result = session.save(self._message_count())
        self._armed_at = self._message_count()  # this cell itself is not recorded
        if not self._hooked:
            self.shell.events.register("post_run_cell", self.post_run_cell)
            self._hooked = True
        self._warned = False
        return result["path"]

    def _unhook(self) -> None:
        if self._hooked:
            try:
                self.shell.events.unregister("post_run_cell", self.post_run_cell)
            except ValueError:
                pass
            self._hooked = False

    def post_run_cell(self, result) -> None:
        """One durable snapshot per executed cell (the hook ``autosave on`` installs)."""
        count = getattr(result, "execution_count", None)
        info = getattr(result, "info", None)
        if getattr(info, "silent", False) or not getattr(info, "store_history", True):
            return  # not a cell of the notebook's history (In[N] would name the next one)
        if count is None or count <= self._armed_at or self._session is None:
            return  # the cell that turned autosave on
        source = getattr(info, "raw_cell", "") or ""
        outcome, success = describe_outcome(result, self.preview_chars)
        try:
            self._session.record_cell(
                count, source, outcome, success,
                max_entries=self.max_tool_results, preview_chars=self.preview_chars,
            )
        except (SnapshotError, OSError) as exc:
            if not self._warned:  # once, not after every cell
                print(f"opendev: autosave failed for In[{count}]: {exc}", file=sys.stderr)
                self._warned = True
        else:
            self._warned = False

    # ------------------------------------------------------------------ magic
    @magic_arguments()
    @argument("command", nargs="?", metavar="SUBCOMMAND", help="one of: " + ", ".join(SUBCOMMANDS))
    @argument("args", nargs="*", metavar="ARG", help="ID for show/discard; on|off for autosave")
    @argument("--all", action="store_true", dest="all", help="list: include completed sessions")
    @argument("--project", metavar="DIR", help="list: only sessions of the project at DIR")
    @argument("--max-age", metavar="DURATION", dest="max_age", help="cleanup: remove snapshots older than this (90s, 30m, 12h, 7d)")
    @argument("--dry-run", action="store_true", dest="dry_run", help="cleanup: only report what would be removed")
    @line_magic
    def opendev(self, line):
        """Crash-recovery snapshots of sessions (opendev-snapshot).

        Subcommands:
          list [--all] [--project DIR]    incomplete sessions (--all: completed too)
          show ID                         one session and its last tool results
          save                            snapshot this kernel's session now
          autosave on|off                 snapshot after every cell; off releases
                                          the session (it then reads interrupted)
          complete                        mark this kernel's session completed
          discard ID                      remove a session's snapshot
          cleanup --max-age 7d [--dry-run]
                                          remove old snapshots (never running ones)

        A clean kernel shutdown marks this kernel's session completed; a killed
        kernel leaves it interrupted, shown by the next %load_ext opendev_snapshot.
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
            what = {"show": "a session ID", "discard": "a session ID", "autosave": "on or off"}.get(command)
            if wanted:
                raise UsageError(f"%opendev {command} takes {what}")
            raise UsageError(f"%opendev {command} takes no argument, got {' '.join(args.args)!r}")
        with usage_errors():
            return getattr(self, "_cmd_" + command)(args)

    # ------------------------------------------------------------ subcommands
    def _cmd_list(self, args):
        result = self.store.list(project_dir=args.project, include_completed=args.all)
        empty = "No sessions." if args.all else "No incomplete sessions."
        return SessionTable(result.sessions, result.skipped, empty=empty)

    def _cmd_show(self, args):
        session_id = args.args[0]
        record = self.store.load(session_id)
        if record is None:
            raise SessionNotFound(session_id)
        status = self.store.status_of(record)
        holder = self.store.lock_holder(session_id)
        held_by = None if holder is None else describe_holder(holder)
        return SessionView(record, status, str(self.store.snapshot_path(session_id)), held_by)

    def _cmd_save(self, args):
        session = self.session
        result = session.save(self._message_count())
        print(f"opendev: saved session {session.session_id} ({result['path']})")

    def _cmd_autosave(self, args):
        mode = args.args[0].lower()
        if mode not in ("on", "off"):
            raise UsageError(f"%opendev autosave takes on or off, not {args.args[0]!r}")
        session = self.session
        if mode == "on":
            was = self._hooked
            path = self.enable_autosave()
            state = "already on" if was else "on"
            print(f"opendev: autosave {state} for session {session.session_id} (project {session.project_dir}; {path})")
            return
        if not self._hooked and not session.held:
            print("opendev: autosave is already off")
            return
        self._unhook()
        session.release()  # also after a bare %opendev save
        print(f"opendev: autosave off; session {session.session_id} released (it now reads interrupted)")

    def _cmd_complete(self, args):
        session = self.session
        if not session.saved:
            raise UsageError(
                f"this kernel's session {session.session_id} has no snapshot yet: "
                "nothing to complete (use %opendev save or autosave on first)"
            )
        self._unhook()
        session.complete()
        print(f"opendev: session {session.session_id} marked completed; autosave off")

    def _cmd_discard(self, args):
        session_id = args.args[0]
        own = self._session is not None and self._session.session_id == session_id
        if not own:
            holder = self.store.lock_holder(session_id)
            if holder is not None:
                raise UsageError(f"session {session_id!r} is running ({describe_holder(holder)}); not discarded")
        elif self._hooked:
            self._unhook()
        if not self.store.remove(session_id):
            raise SessionNotFound(session_id)
        if own:
            self._session.forget()
        print(f"opendev: discarded session {session_id}" + ("; autosave off" if own else ""))

    def _cmd_cleanup(self, args):
        if args.max_age is None:
            raise UsageError("%opendev cleanup needs --max-age DURATION (for example 7d)")
        max_age_ms = parse_duration(args.max_age)
        result = self.store.cleanup(max_age_ms, dry_run=args.dry_run)
        verb = "would remove" if result.dry_run else "removed"
        ids = ", ".join(result.session_ids)
        extra = []
        if result.temp_files_removed:
            extra.append(f"{result.temp_files_removed} temporary file(s)")
        if result.lock_files_removed:
            extra.append(f"{result.lock_files_removed} orphan lock file(s)")
        tail = f" and {', '.join(extra)}" if extra else ""
        print(f"opendev: {verb} {result.removed_count} session(s){': ' + ids if ids else ''}{tail}")
        return None
