"""What lives as long as the kernel: its store, its session, its lock, autosave.

``%reload_ext opendev_snapshot`` (and ``%unload_ext`` then ``%load_ext``)
makes a new :class:`~.magics.OpendevMagics`; the kernel's session must not
notice. So the state that belongs to the kernel process is kept here, one
:class:`KernelState` per shell, outside the magics: the reload finds the
same store (and so the same held lock), the same session and the same
autosave setting. Unloading only unhooks the cell events; the lock is
held until the kernel exits (a clean exit completes the session).

No IPython import at module level: the shell is used by duck typing.
"""

from __future__ import annotations

import atexit
import logging
import os
import sqlite3
import sys
import weakref

from ..core.errors import SnapshotError
from ..core.paths import resolve_snapshot_dir
from ..core.store import SnapshotStore
from .session import KernelSession, SessionRemoved, describe_outcome, kernel_session_id

log = logging.getLogger(__name__)

_STATES: "weakref.WeakKeyDictionary[object, KernelState]" = weakref.WeakKeyDictionary()
# Variables a front end sets to the notebook's path: VS Code's Jupyter extension and ipykernel
# (which copies jupyter_server's JPY_SESSION_NAME into __session__).
_NOTEBOOK_VARIABLES = ("__vsc_ipynb_file__", "__session__")


def state_for(shell) -> "KernelState":
    """The one :class:`KernelState` of ``shell`` (created on first use)."""
    state = _STATES.get(shell)
    if state is None:
        state = _STATES[shell] = KernelState(shell)
    return state


def drop_state(shell) -> None:
    """Forget ``shell``'s state, releasing its locks (a shell being torn down; tests)."""
    state = _STATES.pop(shell, None)
    if state is not None:
        state.close()


def notebook_path(shell) -> str | None:
    """The notebook this kernel runs for, when the front end says (else None)."""
    name = os.environ.get("JPY_SESSION_NAME")
    if not name:
        ns = getattr(shell, "user_ns", None) or {}
        for var in _NOTEBOOK_VARIABLES:
            value = ns.get(var)
            if isinstance(value, str) and value:
                name = value
                break
    if not name:
        return None
    if name.startswith("file://"):
        from urllib.parse import unquote, urlparse

        name = unquote(urlparse(name).path)
    return name


def default_history_db() -> str:
    """IPython's default history database: ``$IPYTHONDIR/profile_default/history.sqlite``."""
    from IPython.paths import get_ipython_dir

    return os.path.join(get_ipython_dir(), "profile_default", "history.sqlite")


def history_location(shell) -> tuple[int | None, str | None]:
    """``(history session number, database path)`` of ``shell``; ``":memory:"`` when not on disk."""
    manager = getattr(shell, "history_manager", None)
    if manager is None:
        return None, None
    number = getattr(manager, "session_number", None)
    number = number if type(number) is int and number > 0 else None
    hist_file = getattr(manager, "hist_file", None)
    if not getattr(manager, "enabled", True) or hist_file is None or str(hist_file) == ":memory:":
        return number, ":memory:"
    return number, os.path.abspath(os.fspath(hist_file))


def holder_info(shell) -> dict:
    """The lock file's object for this kernel (``kind``, ``notebook``, ``historySession``, ``historyDb``)."""
    number, db = history_location(shell)
    info: dict = {"kind": "ipython", "notebook": notebook_path(shell), "historySession": number}
    if db is not None:
        try:
            default = default_history_db()
        except Exception:  # no IPython paths: always name the database
            default = None
        if db == ":memory:" or default is None or os.path.realpath(db) != os.path.realpath(default):
            info["historyDb"] = db
    return info


class KernelState:
    """One kernel's store, session and autosave; outlives any one ``OpendevMagics``."""

    def __init__(self, shell) -> None:
        self._shell = weakref.ref(shell)
        self.pid = os.getpid()  # the kernel's process: a forked child never completes or releases its session
        self.store: SnapshotStore | None = None
        self.session: KernelSession | None = None
        self.autosave = False  # wanted: stays True across %unload_ext / %load_ext
        self.armed_at = 0  # the cell that turned autosave on (not recorded)
        self.preview_chars = 500
        self.max_tool_results = 10
        self._hooked = False
        self._warned = False
        self._exit_registered = False
        self._pending_first_cell = None
        self.closed = False

    @property
    def shell(self):
        return self._shell()

    # ------------------------------------------------------------- storage
    def open_store(self, snapshot_dir: str | None, stale_after_ms: int) -> SnapshotStore:
        """The store of ``snapshot_dir`` (resolved as the contract says), opened once."""
        directory = resolve_snapshot_dir(cli_dir=snapshot_dir or None)
        store = self.store
        if store is not None and os.path.abspath(store.directory) != os.path.abspath(directory):
            if self.session is not None and self.session.held:
                raise ValueError(
                    f"this kernel's session is held in {store.directory} until the kernel exits: "
                    "set snapshot_dir before the first save"
                )
            store.close()
            store = self.store = None
            self.session = None
        if store is None:
            store = self.store = SnapshotStore(
                directory, stale_after_ms=stale_after_ms, holder_info=holder_info(self.shell)
            )
        store.stale_after_ms = stale_after_ms
        if not self._exit_registered:
            atexit.register(self.at_exit)
            self._exit_registered = True
        return store

    def kernel_session(self, store: SnapshotStore) -> KernelSession:
        if self.session is None or self.session.store is not store:
            self.session = KernelSession(store, kernel_session_id(self.shell), os.getcwd(),
                                         holder=lambda: holder_info(self.shell))
        return self.session

    @property
    def own_id(self) -> str | None:
        return self.session.session_id if self.session is not None else None

    # -------------------------------------------------------------- events
    def hook(self) -> None:
        """Install the cell hooks autosave needs (idempotent)."""
        if not self._hooked and self.autosave:
            self.shell.events.register("post_run_cell", self.post_run_cell)
            self._hooked = True

    def unhook(self) -> None:
        if self._hooked:
            try:
                self.shell.events.unregister("post_run_cell", self.post_run_cell)
            except ValueError:
                pass
            self._hooked = False
        self.cancel_first_cell()

    @property
    def hooked(self) -> bool:
        return self._hooked

    def message_count(self) -> int:
        # during a cell, shell.execution_count already names the next cell
        return max(int(getattr(self.shell, "execution_count", 1) or 1) - 1, 0)

    def enable_autosave(self, store: SnapshotStore, *, this_cell: bool = False) -> dict:
        """Save now (taking the lock for the kernel's life) and record every later cell.

        The cell that turns autosave on is not recorded, unless ``this_cell``
        (autosave armed from the profile at the first cell: that cell is the person's).
        """
        session = self.kernel_session(store)
        count = self.message_count() - (1 if this_cell else 0)
        record = session.save(count)
        self.armed_at = count
        self.autosave = True
        self.hook()
        self._warned = False
        return record

    def disable_autosave(self) -> None:
        """Stop saving; the lock stays held (a live kernel never reads interrupted)."""
        self.autosave = False
        if self._hooked:
            self.shell.events.unregister("post_run_cell", self.post_run_cell)
            self._hooked = False

    def _flush_history(self) -> None:
        """Write IPython's pending history now, so the snapshot never names a cell the database lacks."""
        manager = getattr(self.shell, "history_manager", None)
        try:
            if manager is not None and getattr(manager, "enabled", False):
                manager.writeout_cache()
        except (sqlite3.Error, OSError) as exc:  # the history is IPython's: its trouble is not ours
            log.debug("history writeout failed: %s", exc)

    def post_run_cell(self, result) -> None:
        """One durable snapshot per executed cell (the hook ``autosave on`` installs)."""
        count = getattr(result, "execution_count", None)
        info = getattr(result, "info", None)
        if getattr(info, "silent", False) or not getattr(info, "store_history", True):
            return  # not a cell of the notebook's history (In[N] would name the next one)
        if count is None or count <= self.armed_at or self.session is None or not self.autosave:
            return  # the cell that turned autosave on
        source = getattr(info, "raw_cell", "") or ""
        outcome, success = describe_outcome(result, self.preview_chars)
        self._flush_history()
        try:
            self.session.record_cell(
                count, source, outcome, success,
                max_entries=self.max_tool_results, preview_chars=self.preview_chars,
            )
        except SessionRemoved as exc:
            self.disable_autosave()
            print(f"opendev: {exc}; autosave is off", file=sys.stderr)
        except (SnapshotError, OSError) as exc:
            if not self._warned:  # once, not after every cell
                print(f"opendev: autosave failed for In[{count}]: {exc}", file=sys.stderr)
                self._warned = True
        else:
            self._warned = False

    # -------------------------------------------------------------- notice
    def in_kernel_startup(self) -> bool:
        """True while a kernel starts (extension loaded from the profile): no cell to show output in."""
        shell = self.shell
        if getattr(shell, "kernel", None) is None:
            return False  # a terminal shows what is printed at start-up
        try:
            parent = shell.parent_header
        except Exception:
            return False
        return not parent

    def at_first_cell(self, action) -> None:
        """Call ``action()`` once, at the first cell the person runs.

        A kernel loading the extension from its profile has no cell yet: output
        would go nowhere a person looks, and the front end may not have told the
        kernel its notebook yet (VS Code sets ``__vsc_ipynb_file__`` after start).
        """
        self.cancel_first_cell()
        self._pending_first_cell = action
        self.shell.events.register("pre_run_cell", self._first_cell_hook)

    def cancel_first_cell(self) -> None:
        if self._pending_first_cell is not None:
            self._pending_first_cell = None
            try:
                self.shell.events.unregister("pre_run_cell", self._first_cell_hook)
            except ValueError:
                pass

    def _first_cell_hook(self, info=None) -> None:
        if info is not None and (getattr(info, "silent", False) or not getattr(info, "store_history", True)):
            return  # a front end's own silent request: nobody reads its output
        action = self._pending_first_cell
        self.cancel_first_cell()
        if action is not None:
            action()

    # ----------------------------------------------------------------- exit
    def at_exit(self) -> None:
        """Clean shutdown (interpreter exit, kernel shutdown): complete our held session.

        Not in a process forked from the kernel (``os.fork()`` then a normal exit runs
        inherited atexit handlers): the kernel is still alive and its session is its own.
        """
        if self.closed or os.getpid() != self.pid:
            return
        self.closed = True
        if self.shell is not None:
            self.unhook()
        session = self.session
        try:
            if session is not None and session.saved and session.held:
                session.complete()
        except (SnapshotError, OSError) as exc:
            print(f"opendev: cannot mark session {session.session_id} completed: {exc}", file=sys.stderr)
        finally:
            if self.store is not None:
                self.store.close()

    def close(self) -> None:
        """Unhook and release everything without completing (the session reads interrupted)."""
        self.closed = True
        if self._exit_registered:
            atexit.unregister(self.at_exit)
            self._exit_registered = False
        if self.shell is not None:
            self.unhook()
            self.disable_autosave()
        if self.store is not None:
            self.store.close()
        self.store = None
        self.session = None
