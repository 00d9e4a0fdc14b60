"""Recovering a dead kernel's cells: IPython's history database (written by
IPython's own HistoryManager), the fallback to previews, and the three
renderings (next input, runnable .py, cells to re-run)."""

from __future__ import annotations

import sqlite3
import threading

import pytest

pytest.importorskip("IPython")

from IPython.core.inputtransformer2 import TransformerManager  # noqa: E402
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402
from IPython.core.history import HistoryManager  # noqa: E402
from traitlets.config import Config  # noqa: E402

from opendev_snapshot.ipython import history  # noqa: E402
from opendev_snapshot.ipython.session import cell_entry  # noqa: E402

LONG = "data = [\n" + "".join(f"    {n},  # value number {n}\n" for n in range(60)) + "]\ntotal = sum(data)"
CELLS = [
    "%load_ext opendev_snapshot",
    "%opendev autosave on",
    "import math\nx = 20",
    LONG,
    "%time y = x * 2",
    "!echo shell",
    "%%time\nz = y + 1",
]
TRANSFORM = TransformerManager().transform_cell


@pytest.fixture(scope="module")
def shell():
    cfg = Config()
    cfg.HistoryManager.hist_file = ":memory:"  # the shell's own history: never the user's database
    return InteractiveShell.instance(config=cfg)


def write_history(shell, path, cells, *, start=1) -> int:
    """Write ``cells`` as one history session with IPython's own HistoryManager; returns its number."""
    manager = HistoryManager(shell=shell, hist_file=str(path))
    try:
        for n, source in enumerate(cells, start=start):
            manager.store_inputs(n, TRANSFORM(source), source)
        manager.writeout_cache()
        return manager.session_number
    finally:
        manager.end_session()
        manager.close()


def snapshot(cells, *, first_recorded=3, preview_chars=200, session_id="dead", outcomes=None):
    """A record as autosave writes it: one preview per cell from ``first_recorded`` on."""
    results = []
    for n, source in enumerate(cells, start=1):
        if n < first_recorded:
            continue
        outcome, ok = (outcomes or {}).get(n, ("ok", True))
        results.append(cell_entry(n, source, outcome, ok, preview_chars))
    return {
        "session_id": session_id,
        "message_count": len(cells),
        "last_tool_results": results,
        "snapshot_timestamp_ms": 1,
        "completed": False,
        "project_dir": "/p",
        "cost_usd": 0.0,
    }


# ------------------------------------------------------------------ reading
def test_every_cell_in_order_from_the_history_database(shell, tmp_path):
    db = tmp_path / "history.sqlite"
    write_history(shell, db, ["a = 1"])  # another kernel's session before ours
    number = write_history(shell, db, CELLS)
    write_history(shell, db, ["b = 2"])  # and one after
    lock = {"kind": "ipython", "notebook": "/w/analysis.ipynb", "historySession": number, "historyDb": str(db)}
    rec = history.recover(snapshot(CELLS), lock, default_db=None)
    assert rec.from_history and rec.notes == []
    assert [c.number for c in rec.cells] == list(range(1, len(CELLS) + 1))
    assert [c.source for c in rec.cells] == CELLS  # the long one whole, magics as typed
    assert all(c.complete for c in rec.cells)
    assert rec.cells[2].outcome == "ok" and rec.cells[0].outcome is None  # before autosave: no outcome
    assert rec.notebook == "/w/analysis.ipynb"


def test_default_database_when_the_lock_names_none(shell, tmp_path):
    db = tmp_path / "history.sqlite"
    number = write_history(shell, db, CELLS[:3])
    rec = history.recover(snapshot(CELLS[:3]), {"historySession": number}, default_db=str(db))
    assert rec.from_history and [c.source for c in rec.cells] == CELLS[:3]


def test_the_database_is_opened_read_only(shell, tmp_path):
    db = tmp_path / "history.sqlite"
    number = write_history(shell, db, CELLS[:3])
    db.chmod(0o444)
    before = db.read_bytes()
    assert [line for line, _ in history.read_history(str(db), number)] == [1, 2, 3]
    assert db.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.sqlite"]  # no journal left behind


# ---------------------------------------------------------------- fallbacks
def _fallback(rec, reason):
    assert not rec.from_history
    assert any(reason in note for note in rec.notes), rec.notes
    return rec


def test_missing_database_falls_back_to_previews(tmp_path):
    cells = ["x = 1", LONG, "y = 2"]
    lock = {"historySession": 3, "historyDb": str(tmp_path / "gone.sqlite")}
    rec = _fallback(history.recover(snapshot(cells, first_recorded=1), lock, default_db=None), "does not exist")
    assert not (tmp_path / "gone.sqlite").exists()  # never created
    assert [c.number for c in rec.cells] == [1, 2, 3]
    assert [c.complete for c in rec.cells] == [True, False, True]  # the long one was cut
    assert rec.cells[1].source.endswith("\u2026") and len(rec.cells[1].source) < len(LONG)
    assert any("cut or redacted" in n and "In[2]" in n for n in rec.notes)


def test_locked_database_falls_back_and_says_so(shell, tmp_path):
    db = tmp_path / "history.sqlite"
    number = write_history(shell, db, CELLS[:3])
    writer = sqlite3.connect(str(db))
    writer.execute("BEGIN EXCLUSIVE")
    try:
        rec = history.recover(snapshot(CELLS[:3]), {"historySession": number, "historyDb": str(db)},
                              default_db=None, timeout=0.2)
    finally:
        writer.rollback()
        writer.close()
    _fallback(rec, "is locked by another process")
    assert [c.number for c in rec.cells] == [3]
    assert any("cells before In[3] were not recorded" in n for n in rec.notes)


def test_not_a_database_falls_back(tmp_path):
    db = tmp_path / "history.sqlite"
    db.write_text("this is not sqlite")
    rec = history.recover(snapshot(["x = 1"], first_recorded=1), {"historySession": 1, "historyDb": str(db)},
                          default_db=None)
    _fallback(rec, "history database")
    assert [c.source for c in rec.cells] == ["x = 1"]


@pytest.mark.parametrize(
    ("lock", "reason"),
    [
        (None, "does not name an IPython history session"),
        ({"kind": "ipython", "historySession": None}, "does not name an IPython history session"),
        ({"historySession": 4, "historyDb": ":memory:"}, "in memory only"),
    ],
    ids=["no-lock-file", "no-session", "in-memory"],
)
def test_no_usable_history_session(lock, reason):
    _fallback(history.recover(snapshot(["x = 1"], first_recorded=1), lock, default_db="/nonexistent"), reason)


def test_a_replaced_database_is_not_trusted(shell, tmp_path):
    db = tmp_path / "history.sqlite"
    number = write_history(shell, db, ["something = 'else'", "entirely = 1", "different = 2"])
    rec = history.recover(snapshot(CELLS[:3]), {"historySession": number, "historyDb": str(db)}, default_db=None)
    _fallback(rec, "does not match the snapshot (In[3] differs)")


def test_cells_the_database_missed_come_from_previews(shell, tmp_path):
    db = tmp_path / "history.sqlite"
    number = write_history(shell, db, CELLS[:4])  # In[5] was recorded but not yet written when it died
    cells = CELLS[:4] + ["w = 5"]
    rec = history.recover(snapshot(cells), {"historySession": number, "historyDb": str(db)}, default_db=None)
    assert rec.from_history
    assert [c.source for c in rec.cells] == cells
    assert any("In[5]" in n and "previews" in n for n in rec.notes)


def test_the_cell_that_was_running_is_flagged(shell, tmp_path):
    db = tmp_path / "history.sqlite"
    cells = ["x = 1", "y = 2", "huge = bytearray(10**12)"]
    number = write_history(shell, db, cells)
    record = snapshot(cells[:2], first_recorded=1)  # autosave recorded In[1], In[2]; In[3] never finished
    rec = history.recover(record, {"historySession": number, "historyDb": str(db)}, default_db=None)
    assert [c.unfinished for c in rec.cells] == [False, False, True]
    run, skipped, stop = history.cells_to_run(rec)
    assert [c.number for c in run] == [1, 2] and stop.number == 3 and skipped == []
    assert "# In[3] (no outcome recorded: it may have been running when the kernel died)" in history.as_next_input(rec)


def test_redacted_previews_count_as_incomplete():
    head, outcome, complete = history.split_preview("token = '[REDACTED:github]'\n-> ok")
    assert (head, outcome, complete) == ("token = '[REDACTED:github]'", "ok", False)
    assert history.split_preview("-> out: 3") == ("", "out: 3", True)
    assert history.split_preview("a very long preview cut before its out") == (
        "a very long preview cut before its out", None, False)


# ---------------------------------------------------------------- rendering
@pytest.fixture
def full(shell, tmp_path):
    db = tmp_path / "history.sqlite"
    number = write_history(shell, db, CELLS)
    return history.recover(snapshot(CELLS), {"historySession": number, "historyDb": str(db),
                                             "notebook": "/w/analysis.ipynb"}, default_db=None)


def test_next_input_has_markers_and_sources(full):
    text = history.as_next_input(full, TRANSFORM)
    assert text.startswith("# Recovered by opendev-snapshot: 7 cells of analysis.ipynb's dead kernel, In[1]\u2013In[7].\n"
                           "# Session dead, from IPython's history (session ")
    for n in range(1, 8):
        assert f"\n# In[{n}]" in text
    assert LONG in text and "%time y = x * 2" in text and "!echo shell" in text
    assert "# In[1] (opendev's own command, not re-run)\n# %load_ext opendev_snapshot" in text
    assert "# In[2] (opendev's own command, not re-run)\n# %opendev autosave on" in text
    # a cell magic must open its cell: in the combined cell it is written as IPython runs it
    assert "get_ipython().run_cell_magic('time', '', 'z = y + 1\\n')" in text
    positions = [text.index(f"# In[{n}]") for n in range(1, 8)]
    assert positions == sorted(positions)
    compile(TRANSFORM(text), "next-input", "exec")  # the combined cell is valid IPython


def test_script_is_runnable_python(full):
    text = history.as_script(full, TRANSFORM)
    compile(text, "out.py", "exec")
    assert "get_ipython().run_line_magic('time', 'y = x * 2')" in text
    assert "get_ipython().system('echo shell')" in text
    assert "was: %time y = x * 2" in text
    assert "run this file with `ipython FILE.py`" in text
    assert LONG in text


def test_script_comments_out_cells_that_do_not_compile(shell, tmp_path):
    db = tmp_path / "history.sqlite"
    cells = ["x = 1", "def broken(:\n    pass", "y = x + 1"]
    number = write_history(shell, db, cells)
    rec = history.recover(snapshot(cells, first_recorded=1, outcomes={2: ("error: SyntaxError: invalid syntax", False)}),
                          {"historySession": number, "historyDb": str(db)}, default_db=None)
    text = history.as_script(rec, TRANSFORM)
    compile(text, "out.py", "exec")
    assert "# In[2] (does not compile, kept as a comment: SyntaxError" in text
    assert "# def broken(:" in text and "\ny = x + 1\n" in text
    assert "get_ipython" not in text  # plain Python: no IPython note


def test_cells_to_run_skips_own_commands_and_stops_at_cut_previews(tmp_path):
    cells = ["%load_ext opendev_snapshot", "x = 1", LONG, "y = 2"]
    rec = history.recover(snapshot(cells, first_recorded=1), {"historySession": 1, "historyDb": str(tmp_path / "x")},
                          default_db=None)
    run, skipped, stop = history.cells_to_run(rec)
    assert [c.number for c in run] == [2]
    assert skipped == ["In[1] (opendev's own command)"]
    assert stop.number == 3 and not stop.complete


@pytest.mark.parametrize(
    ("source", "own"),
    [
        ("%opendev recover abc --run", True),
        ("%load_ext opendev_snapshot\n%opendev autosave on\n", True),
        ("  %reload_ext opendev_snapshot", True),
        ("%opendev list\nx = 1", False),
        ("opendev = 1", False),
        ("%load_ext autoreload", False),
    ],
    ids=["recover", "load-and-autosave", "reload", "mixed", "variable", "other-extension"],
)
def test_own_commands(source, own):
    assert history.Cell(1, source).own_command is own


def test_a_writer_in_another_thread_does_not_block_reading_for_long(shell, tmp_path):
    """The next kernel writes to the same database (a cell every few ms) while it is read."""
    db = tmp_path / "history.sqlite"
    number = write_history(shell, db, CELLS[:3])
    stop = threading.Event()

    def writer():
        conn = sqlite3.connect(str(db))
        while not stop.is_set():
            with conn:
                conn.execute("INSERT OR REPLACE INTO history VALUES (999, 1, 'x', 'x')")
            stop.wait(0.005)
        conn.close()

    t = threading.Thread(target=writer)
    t.start()
    try:
        rows = history.read_history(str(db), number)
    finally:
        stop.set()
        t.join()
    assert [src for _, src in rows] == CELLS[:3]
