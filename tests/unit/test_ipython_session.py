"""The IPython-free half of the extension: session ids, cell entries, KernelSession."""

from __future__ import annotations

import types

import pytest

from opendev_snapshot.core import SessionNotFound, SnapshotStore
from opendev_snapshot.core.validation import check_session_id
from opendev_snapshot.ipython import session as sess


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("abc-DEF_1.2", "abc-DEF_1.2"),
        ("a/b\\c d", "a_b_c_d"),
        ("..hidden", "hidden"),
        ("x" * 300, "x" * 128),
        ("...", "ipython"),
        ("é", "_"),
    ],
    ids=["valid", "separators", "leading-dots", "too-long", "only-dots", "non-ascii"],
)
def test_sanitize_session_id(raw, expected):
    got = sess.sanitize_session_id(raw)
    assert got == expected
    assert check_session_id(got) == got


def test_kernel_session_id_from_ipykernel_session():
    shell = types.SimpleNamespace(kernel=types.SimpleNamespace(session=types.SimpleNamespace(session="d3fc11bf-4d53/49")))
    assert sess.kernel_session_id(shell) == "ipykernel-d3fc11bf-4d53_49"


def test_kernel_session_id_without_kernel_is_stable_for_the_process():
    first = sess.kernel_session_id(types.SimpleNamespace())
    assert first == sess.kernel_session_id(object())
    assert first.startswith("ipython-")
    assert check_session_id(first) == first


class _Result:
    def __init__(self, result=None, before=None, during=None):
        self.result = result
        self.error_before_exec = before
        self.error_in_exec = during


class _BadRepr:
    def __repr__(self):
        raise RuntimeError("boom")


@pytest.mark.parametrize(
    ("result", "text", "success"),
    [
        (_Result(), "ok", True),
        (_Result(result=[1, 2]), "out: [1, 2]", True),
        (_Result(during=ZeroDivisionError("division by zero")), "error: ZeroDivisionError: division by zero", False),
        (_Result(before=SyntaxError("invalid syntax")), "error: SyntaxError: invalid syntax", False),
        (_Result(during=KeyError()), "error: KeyError", False),
        (_Result(result=_BadRepr()), "out: <unrepresentable _BadRepr: RuntimeError>", True),
    ],
    ids=["no-value", "value", "error-in-exec", "error-before-exec", "bare-error", "broken-repr"],
)
def test_describe_outcome(result, text, success):
    assert sess.describe_outcome(result) == (text, success)


def test_describe_outcome_cuts_long_reprs():
    text, ok = sess.describe_outcome(_Result(result="x" * 10_000), limit=50)
    assert ok and len(text) <= len("out: ") + 50 and text.endswith("\u2026")


def test_cell_entry_fields_and_preview_budget():
    entry = sess.cell_entry(7, "print('hi')\n\n", "ok", True, 500)
    assert entry == {"tool_name": "cell", "call_id": "In[7]", "output_preview": "print('hi')\n-> ok", "success": True}
    long = sess.cell_entry(3, "y = 1\n" * 200, "error: ValueError: bad", False, 100)
    assert len(long["output_preview"]) <= 100
    assert long["output_preview"].startswith("y = 1\n")
    assert "-> error: ValueError: bad" in long["output_preview"]  # source cut to half keeps the outcome
    assert long["success"] is False


def test_kernel_session_records_cells_bounded_and_durably(tmp_path):
    store = SnapshotStore(tmp_path / "snap")
    ks = sess.KernelSession(store, "k1", str(tmp_path))
    for n in range(1, 6):
        ks.record_cell(n, f"x = {n}", "ok", n != 3, max_entries=3)
    other = SnapshotStore(tmp_path / "snap")  # a fresh reader sees what is on disk
    record = other.load("k1")
    assert record["message_count"] == 5
    assert [t["call_id"] for t in record["last_tool_results"]] == ["In[3]", "In[4]", "In[5]"]
    assert [t["success"] for t in record["last_tool_results"]] == [False, True, True]
    assert other.status_of(record) == "running"  # the lock is held by ks's store
    store.release("k1")
    assert other.status_of(other.load("k1")) == "interrupted"


def test_kernel_session_complete(tmp_path):
    store = SnapshotStore(tmp_path / "snap")
    ks = sess.KernelSession(store, "k2", str(tmp_path))
    with pytest.raises(SessionNotFound):
        ks.complete()
    ks.save(4)
    ks.complete()
    assert store.load("k2")["completed"] is True
    assert not store.lock_path("k2").exists()
    ks.save(5)  # saving again revives it
    assert store.load("k2")["completed"] is False
    assert ks.held


def test_every_write_brings_the_lock_text_up_to_date_and_a_broken_holder_never_costs_a_save(tmp_path):
    now = {"kind": "ipython", "notebook": "/p/a.ipynb", "historySession": 1}
    store = SnapshotStore(tmp_path, holder_info=dict(now))
    calls = []

    def holder():
        calls.append(1)
        if now is None:
            raise RuntimeError("front end gone")
        return dict(now)

    ks = sess.KernelSession(store, "k1", "/proj", holder=holder)
    try:
        ks.record_cell(1, "a = 1", "ok", True)
        assert store.lock_info("k1")["notebook"] == "/p/a.ipynb"
        now["notebook"] = "/p/b.ipynb"
        ks.record_cell(2, "b = 2", "ok", True)
        assert store.lock_info("k1")["notebook"] == "/p/b.ipynb" and ks.held
        now["historySession"] = 2
        ks.save(2)
        assert store.lock_info("k1")["historySession"] == 2
        now = None
        ks.record_cell(3, "c = 3", "ok", True)  # saved all the same, the text as it was
        assert store.load("k1")["message_count"] == 3 and store.lock_info("k1")["notebook"] == "/p/b.ipynb"
        assert len(calls) == 4
    finally:
        store.close()
