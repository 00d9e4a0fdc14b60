"""The on-disk format: byte-identical to the seed, strict like serde."""

from __future__ import annotations

import json
import math
import os
import struct
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opendev_snapshot.core import SnapshotStore
from opendev_snapshot.core.codec import decode, encode, format_f64
from opendev_snapshot.core.errors import InvalidSnapshot
from opendev_snapshot.core.records import append_tool_result

from helpers import FIXTURES

WRITE = sorted(p.name[: -len(".input.json")] for p in (FIXTURES / "write").glob("*.input.json"))
LEGACY = sorted(p.name[: -len(".expected.json")] for p in (FIXTURES / "write-legacy").glob("*.expected.json"))
REFUSED = sorted(p.name[: -len(".input.json")] for p in (FIXTURES / "refused").glob("*.input.json"))


def test_fixtures_are_present():
    assert len(WRITE) >= 30 and LEGACY and len(REFUSED) >= 9, f"golden fixtures missing under {FIXTURES}"


def build_like_the_seed(spec: dict) -> dict:
    """Replay what the reference did for a fixture input (see fixtures/README)."""
    record = {
        "session_id": spec["session_id"],
        "message_count": spec.get("message_count", 0),
        "last_tool_results": [],
        "snapshot_timestamp_ms": 0,
        "completed": spec.get("completed", False),
        "project_dir": spec["project_dir"],
        "cost_usd": spec.get("cost_usd", 0.0),
    }
    limit = spec.get("max_entries")
    for entry in spec.get("tool_results", []):
        append_tool_result(record, dict(entry), limit if limit is not None else 2**64)
    record["snapshot_timestamp_ms"] = spec["snapshot_timestamp_ms"]
    return record


def load_input(kind: str, name: str) -> dict:
    return json.loads((FIXTURES / kind / f"{name}.input.json").read_text("utf-8"))[0]


@pytest.mark.parametrize("name", WRITE)
def test_golden_write_is_byte_identical(name, tmp_path):
    record = build_like_the_seed(load_input("write", name))
    expected = (FIXTURES / "write" / f"{name}.expected.json").read_bytes()
    assert encode(record) == expected
    store = SnapshotStore(tmp_path / "d")
    result = store.save(record)
    assert Path(result["path"]).read_bytes() == expected
    assert Path(result["path"]).name == f"{record['session_id']}_session_snapshot.json"


@pytest.mark.parametrize("name", WRITE)
def test_golden_expected_reads_back(name):
    expected = (FIXTURES / "write" / f"{name}.expected.json").read_bytes()
    record = build_like_the_seed(load_input("write", name))
    decoded = decode(expected)
    assert decoded == {**record, "cost_usd": float(record["cost_usd"])}
    assert math.copysign(1, decoded["cost_usd"]) == math.copysign(1, float(record["cost_usd"]))
    assert encode(decoded) == expected


@pytest.mark.parametrize("name", LEGACY)
def test_legacy_layout_reads(name):
    legacy = (FIXTURES / "write-legacy" / f"{name}.expected.json").read_bytes()
    modern = (FIXTURES / "write" / f"{name}.expected.json").read_bytes()
    assert legacy != modern
    assert decode(legacy) == decode(modern)


@pytest.mark.parametrize("name", REFUSED)
def test_refused_inputs_write_nothing(name, tmp_path):
    spec = load_input("refused", name)
    if isinstance(spec.get("cost_usd"), str):  # NaN / Infinity spelled as text in the fixture
        spec["cost_usd"] = float(spec["cost_usd"])
    record = build_like_the_seed(spec)
    root = tmp_path / "root"
    inner = root / "snapshots"
    inner.mkdir(parents=True)
    (inner / "subdir").mkdir()
    with pytest.raises(InvalidSnapshot) as info:
        SnapshotStore(inner).save(record)
    assert info.value.field in ("session_id", "cost_usd")
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written == []
    if spec["session_id"].startswith("/"):
        assert not os.path.exists(spec["session_id"] + "_session_snapshot.json")


def test_refused_fixture_costs_are_non_finite():
    for name in ("cost_nan", "cost_inf"):
        raw = (FIXTURES / "refused" / f"{name}.input.json").read_text()
        value = json.loads(raw)[0]["cost_usd"]
        assert not math.isfinite(float(value))


# ---------------------------------------------------------------- strictness
GOOD = {
    "session_id": "s",
    "message_count": 1,
    "last_tool_results": [{"tool_name": "t", "call_id": "c", "output_preview": "p", "success": True}],
    "snapshot_timestamp_ms": 5,
    "completed": False,
    "project_dir": "/p",
    "cost_usd": 0.5,
}


def _with(**changes) -> bytes:
    value = dict(GOOD)
    value.update(changes)
    return json.dumps(value).encode()


BAD_FILES = {
    "int_as_string": _with(message_count="3"),
    "int_as_bool": _with(message_count=True),
    "int_as_float": _with(message_count=1.0),
    "negative_count": _with(message_count=-1),
    "count_over_u64": _with(message_count=2**64),
    "ts_as_float": _with(snapshot_timestamp_ms=1.5),
    "completed_as_int": _with(completed=0),
    "cost_null": _with(cost_usd=None),
    "cost_string": _with(cost_usd="1.0"),
    "cost_huge_literal": _with(cost_usd=0.0).replace(b'"cost_usd": 0.0', b'"cost_usd": 1e400'),
    "cost_nan_token": _with(cost_usd=0.0).replace(b'"cost_usd": 0.0', b'"cost_usd": NaN'),
    "tool_success_string": _with(last_tool_results=[{"tool_name": "t", "call_id": "c", "output_preview": "p", "success": "yes"}]),
    "tool_missing_field": _with(last_tool_results=[{"tool_name": "t", "call_id": "c", "success": True}]),
    "results_not_list": _with(last_tool_results={}),
    "missing_field": json.dumps({k: v for k, v in GOOD.items() if k != "project_dir"}).encode(),
    "duplicate_field": b'{"session_id":"a","session_id":"b","message_count":0,"last_tool_results":[],'
    b'"snapshot_timestamp_ms":0,"completed":false,"project_dir":"/","cost_usd":0.0}',
    "bom": b"\xef\xbb\xbf" + _with(),
    "invalid_utf8": _with(project_dir="X").replace(b'"X"', b'"\xff\xfe"'),
    "lone_surrogate_escape": _with(project_dir="X").replace(b'"X"', b'"\\ud800"'),
    "empty": b"",
    "truncated": _with()[:40],
    "array_top": b"[]",
    "trailing_garbage": _with() + b"x",
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_decode_refuses_what_serde_refuses(name):
    with pytest.raises(InvalidSnapshot):
        decode(BAD_FILES[name])


@pytest.mark.parametrize(
    "name,data",
    [
        ("extra_field", _with(extra={"x": 1})),
        ("integer_cost", _with(cost_usd=5)),
        ("trailing_whitespace", _with() + b"\n\n "),
        ("any_session_id_string", _with(session_id="has space")),
    ],
)
def test_decode_accepts_what_serde_accepts(name, data):
    record = decode(data)
    assert type(record["cost_usd"]) is float
    assert set(record) == set(GOOD)


@pytest.mark.parametrize(
    "field,value",
    [
        ("session_id", ""),
        ("session_id", ".hidden"),
        ("session_id", "a/b"),
        ("session_id", "x" * 129),
        ("session_id", "é"),
        ("message_count", -1),
        ("message_count", True),
        ("message_count", 2**64),
        ("snapshot_timestamp_ms", "1"),
        ("completed", 1),
        ("cost_usd", float("inf")),
        ("cost_usd", 10**400),
        ("project_dir", None),
        ("project_dir", "\ud800"),
    ],
)
def test_encode_refuses_and_names_the_field(field, value):
    with pytest.raises(InvalidSnapshot) as info:
        encode({**GOOD, field: value})
    assert info.value.field == field


def test_encode_refuses_over_one_mebibyte():
    big = {**GOOD, "last_tool_results": [{"tool_name": "t", "call_id": "c", "output_preview": "x" * (1 << 20), "success": True}]}
    with pytest.raises(InvalidSnapshot) as info:
        encode(big)
    assert "1 MiB" in str(info.value)


def test_session_id_boundaries_accepted():
    for sid in ("a", "x" * 128, "A-z_0.9", "-lead", "_lead", "a..b"):
        assert decode(encode({**GOOD, "session_id": sid}))["session_id"] == sid


# ------------------------------------------------------------------ properties
def float_oracle(x: float) -> str:
    """The README's float rules, written independently with Decimal."""
    if x == 0:
        return "-0.0" if math.copysign(1, x) < 0 else "0.0"
    d = Decimal(repr(x))  # repr = shortest round-trip digits
    sign, digits, _ = d.as_tuple()
    adjusted = d.adjusted()
    text_digits = "".join(map(str, digits)).rstrip("0") or "0"
    if -5 <= adjusted < 16:
        text = format(abs(d), "f")
        if "." not in text:
            text += ".0"
        if "." in text:
            text = text.rstrip("0")
            if text.endswith("."):
                text += "0"
    else:
        mantissa = text_digits[0] + ("." + text_digits[1:] if len(text_digits) > 1 else "")
        text = f"{mantissa}e{'+' if adjusted > 0 else '-'}{abs(adjusted)}"
    return ("-" if sign else "") + text


finite = st.floats(allow_nan=False, allow_infinity=False)


@given(finite)
@settings(max_examples=3000)
def test_float_layout_matches_oracle(x):
    assert format_f64(x) == float_oracle(x)
    assert float(format_f64(x)) == x


@pytest.mark.parametrize(
    "bits",
    [0x0000000000000001, 0x000FFFFFFFFFFFFF, 0x0010000000000000, 0x7FEFFFFFFFFFFFFF, 0x3EE4F8B588E368F1],
)
def test_float_layout_extremes(bits):
    x = struct.unpack("<d", struct.pack("<Q", bits))[0]
    assert format_f64(x) == float_oracle(x)
    assert float(format_f64(x)) == x


text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=40)
session_ids = st.from_regex(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,127}", fullmatch=True)
tool = st.fixed_dictionaries(
    {"tool_name": text, "call_id": text, "output_preview": text, "success": st.booleans()}
)
records = st.fixed_dictionaries(
    {
        "session_id": session_ids,
        "message_count": st.integers(0, 2**64 - 1),
        "last_tool_results": st.lists(tool, max_size=4),
        "snapshot_timestamp_ms": st.integers(0, 2**64 - 1),
        "completed": st.booleans(),
        "project_dir": text,
        "cost_usd": finite,
    }
)


@given(records)
@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip_is_exact(record):
    data = encode(record)
    back = decode(data)
    assert back == record
    assert math.copysign(1, back["cost_usd"]) == math.copysign(1, record["cost_usd"])
    assert encode(back) == data
    # Independent check of the layout: the standard library parses it to the same value.
    assert json.loads(data) == record
    assert not data.endswith(b"\n")


# ------------------------------------------- the plain tool result fast path
_TOOL = {"tool_name": "bash", "call_id": "c1", "output_preview": "ok", "success": True}


class _Str(str):
    pass


class _Dict(dict):
    pass


@pytest.mark.parametrize(
    "item, field",
    [
        ({**_TOOL, "success": 1}, "last_tool_results[1].success"),
        ({**_TOOL, "tool_name": _Str("bash")}, "last_tool_results[1].tool_name"),
        ({**_TOOL, "call_id": None}, "last_tool_results[1].call_id"),
        ({**_TOOL, "output_preview": "caf\udce9"}, "last_tool_results[1].output_preview"),
        ({k: v for k, v in _TOOL.items() if k != "success"}, "last_tool_results[1].success"),
        (["bash", "c1", "ok", True], "last_tool_results[1]"),
    ],
    ids=["int-success", "str-subclass", "null-call-id", "lone-surrogate", "missing", "array"],
)
def test_tool_results_refused_by_name_whatever_path(item, field, tmp_path):
    record = {"session_id": "s", "message_count": 0, "last_tool_results": [dict(_TOOL), item],
              "snapshot_timestamp_ms": 1, "completed": False, "project_dir": "/p", "cost_usd": 0.0}
    with pytest.raises(InvalidSnapshot) as info:
        encode(record)
    assert info.value.field == field


@pytest.mark.parametrize(
    "item",
    [_Dict(_TOOL), {**_TOOL, "output_preview": "café ✓ \u2028 \x00 \"q\" \\"}, {**_TOOL, "extra": 1}],
    ids=["dict-subclass", "non-ascii-and-escapes", "extra-key-dropped"],
)
def test_tool_results_accepted_whatever_path(item):
    record = {"session_id": "s", "message_count": 0, "last_tool_results": [item],
              "snapshot_timestamp_ms": 1, "completed": False, "project_dir": "/p", "cost_usd": 0.0}
    data = encode(record)
    assert json.loads(data)["last_tool_results"] == [{k: item[k] for k in _TOOL}]
    assert decode(data)["last_tool_results"] == [{k: item[k] for k in _TOOL}]
