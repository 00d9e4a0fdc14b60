"""The persistent index is a hint, never an authority (issue 9, finding 7).

Every index here carries a valid checksum: only its structure or its
content is wrong. A fresh store starting from it must list exactly what a
store without an index lists, never crash, and write a sound index again.
The property test fuzzes the columns (hypothesis, derandomized) through
``list``; the one thing it allows to differ is a session whose row holds
the file's exact current ``lstat`` key (inode, size, mtime, ctime: only the
kernel sets a ctime) with other fields, which only a process of this user
can write, as it could rewrite the snapshot itself.
"""

from __future__ import annotations

import marshal
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opendev_snapshot.core import SnapshotStore, new_record
from opendev_snapshot.core import cache as cache_module
from opendev_snapshot.core import index as index_module
from opendev_snapshot.core.codec import decode
from opendev_snapshot.core.entries import stat_key
from opendev_snapshot.core.index import INDEX_NAME, MAGIC, load_index
from opendev_snapshot.core.store import now_ms

HOUR = 3_600_000
SNAP = "_session_snapshot.json"
PROJECTS = ("/p/one", "/p/two", "/p/three")


def build(directory) -> None:
    with SnapshotStore(directory) as s:
        for i in range(12):
            record = new_record(f"s{i:02d}", PROJECTS[i % 3])
            record["snapshot_timestamp_ms"] = now_ms() - HOUR - i * 1000
            record["completed"] = i % 4 == 0
            s.save(record)
        s.list(include_completed=True)
        s.flush_index()


def write_raw(directory, value) -> None:
    payload = marshal.dumps(value, 4)
    path = directory / INDEX_NAME
    path.write_bytes(MAGIC + index_module._head(payload) + payload)  # a valid checksum
    os.chmod(path, 0o600)


QUERIES = (
    {"include_completed": True},
    {},
    {"project_dir": "/p/two", "include_completed": True},
    {"status": "interrupted"},
    {"limit": 3},
)


def listing(directory, *, use_index=True, queries=QUERIES, raw=None) -> list:
    """What fresh stores list for each query (each starting from ``raw`` as its index, if given)."""
    out = []
    for query in queries:
        if raw is not None:
            write_raw(directory, raw)
        s = SnapshotStore(directory, use_index=use_index)
        result = s.list(**query)
        out.append([(r["session_id"], r["status"], r["message_count"]) for r in result.sessions])
        out.append(sorted((k.file, k.reason) for k in result.skipped))
    return out


@pytest.fixture
def indexed(snapshot_dir, monkeypatch):
    monkeypatch.setattr(cache_module, "RACY_NS", 0)  # every file old enough for the index to vouch for it
    build(snapshot_dir)
    rows = load_index(str(snapshot_dir))
    assert rows is not None and len(rows[0]) == 12
    return snapshot_dir, rows


def replace(column: tuple, i: int, value) -> tuple:
    return column[:i] + (value,) + column[i + 1 :]


def meta_with(meta: tuple, field: int, value) -> tuple:
    return replace(meta, field, value)


def mutations(names, keys, metas, groups) -> dict:
    ghost = "ghost" + SNAP
    first_incomplete = next(i for i, m in enumerate(metas) if not m[1])
    bumped = (keys[first_incomplete][0] + 1,) + keys[first_incomplete][1:]
    return {
        "not-a-tuple": [names, keys, metas, groups],
        "three-columns": (names, keys, metas),
        "nothing": None,
        "a-dict": {"names": names},
        "names-not-strings": (tuple(range(len(names))), keys, metas, groups),
        "names-unhashable": (tuple([n] for n in names), keys, metas, groups),
        "names-duplicated": (replace(names, 1, names[0]), keys, metas, groups),
        "keys-one-short": (names, keys[:-1], metas, groups),
        "key-of-strings": (names, replace(keys, 0, tuple(map(str, keys[0]))), metas, groups),
        "key-a-list": (names, replace(keys, 0, list(keys[0])), metas, groups),
        "key-three-ints": (names, replace(keys, 0, keys[0][:3]), metas, groups),
        "meta-completed-an-int": (names, keys, replace(metas, 0, meta_with(metas[0], 1, 1)), groups),
        "meta-timestamp-negative": (names, keys, replace(metas, 0, meta_with(metas[0], 3, -5)), groups),
        "meta-timestamp-past-u64": (names, keys, replace(metas, 0, meta_with(metas[0], 3, 1 << 64)), groups),
        "meta-timestamp-a-string": (names, keys, replace(metas, 0, meta_with(metas[0], 3, "1")), groups),
        "meta-three-fields": (names, keys, replace(metas, 0, metas[0][:3]), groups),
        "meta-of-another-session": (names, keys, replace(metas, 0, metas[1]), groups),
        "group-past-the-end": (names, keys, metas, replace(groups, 0, (groups[0][0], 0, 999))),
        "group-overlapping": (names, keys, metas, replace(groups, 1, (groups[1][0], 0, groups[1][2]))),
        "group-of-another-project": (names, keys, metas, replace(groups, 0, ("/p/elsewhere",) + groups[0][1:])),
        "group-missing": (names, keys, metas, groups[:-1]),
        "group-split-in-two": (names, keys, metas, (
            (groups[0][0], groups[0][1], groups[0][1] + 1), (groups[0][0], groups[0][1] + 1, groups[0][2])) + groups[1:]),
        "groups-as-lists": (names, keys, metas, tuple(list(g) for g in groups)),
        "a-name-not-in-the-directory": (
            names + (ghost,), keys + ((1, 2, 3, 4),), metas + (("ghost", False, "/p/ghost", 1),),
            groups + (("/p/ghost", len(names), len(names) + 1),)),
        "forged-completed-with-a-wrong-key": (
            names, replace(keys, first_incomplete, bumped),
            replace(metas, first_incomplete, meta_with(metas[first_incomplete], 1, True)), groups),
        "deep-nesting": (names, keys, metas, ((((((((((),),),),),),),),),)),
    }


CASES = sorted(mutations(("a",) * 2, ((1, 2, 3, 4),) * 2, (("a", False, "/p", 1),) * 2, (("/p", 0, 1), ("/q", 1, 2))))


@pytest.mark.parametrize("case", CASES)
def test_an_index_with_a_valid_checksum_and_a_bad_structure_is_ignored_and_rebuilt(indexed, case):
    directory, rows = indexed
    expected = listing(directory, use_index=False)
    assert listing(directory, raw=mutations(*rows)[case]) == expected
    rebuilt = load_index(str(directory))
    assert rebuilt is not None, "a sound index was written again"
    assert sorted(rebuilt[0]) == sorted(rows[0])
    assert listing(directory) == expected


# ----------------------------------------------------------------- fuzz
values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2, max_value=1 << 65) | st.text(max_size=12)
    | st.binary(max_size=4) | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=4) | st.lists(inner, max_size=4).map(tuple),
    max_leaves=8,
)


@st.composite
def edits(draw, rows):
    """A few random edits of the columns: any element or field becomes anything."""
    columns = [list(c) for c in rows]
    for _ in range(draw(st.integers(1, 4))):
        c = draw(st.integers(0, 3))
        column = columns[c]
        action = draw(st.sampled_from(["set", "field", "drop", "dup", "swap"]))
        if not column:
            column.append(draw(values))
            continue
        i = draw(st.integers(0, len(column) - 1))
        if action == "set":
            column[i] = draw(values)
        elif action == "field" and isinstance(column[i], tuple) and column[i]:
            j = draw(st.integers(0, len(column[i]) - 1))
            other = draw(st.one_of(values, st.sampled_from([x for row in rows[c] for x in (row if isinstance(row, tuple) else (row,))])))
            column[i] = column[i][:j] + (other,) + column[i][j + 1 :]
        elif action == "drop":
            del column[i]
        elif action == "dup":
            column.insert(i, column[i])
        else:
            k = draw(st.integers(0, len(column) - 1))
            column[i], column[k] = column[k], column[i]
    return tuple(tuple(c) for c in columns)


def forged(directory, value) -> set:
    """Sessions whose row vouches for the file's current key with other fields."""
    rows = index_module._valid(value)
    if rows is None:
        return set()
    out = set()
    for name, key, meta in zip(rows[0], rows[1], rows[2]):
        path = directory / name
        try:
            if stat_key(os.lstat(path)) != key:
                continue
            record = decode(path.read_bytes())
        except OSError:
            continue
        truth = (record["session_id"], record["completed"], record["project_dir"], record["snapshot_timestamp_ms"])
        if tuple(meta) != truth:
            out.add(record["session_id"])
    return out


def without(result: list, sids: set) -> list:
    return [[row for row in part if not (isinstance(row, tuple) and row[0] in sids)] for part in result]


def regroup(entries: list) -> tuple:
    """Columns and project groups exactly as the index writer lays them out."""
    entries = sorted(entries, key=lambda e: (e[2][2], e[0]))
    names, keys, metas, groups = [], [], [], []
    start = 0
    for i, (name, key, meta) in enumerate(entries):
        names.append(name)
        keys.append(key)
        metas.append(meta)
        if i + 1 == len(entries) or entries[i + 1][2][2] != meta[2]:
            groups.append((meta[2], start, i + 1))
            start = i + 1
    return tuple(names), tuple(keys), tuple(metas), tuple(groups)


@st.composite
def sound_edits(draw, rows):
    """Edits that keep the structure valid: rows dropped, added for files that
    do not exist, keys and fields changed (so they pass every structural check)."""
    entries = [list(e) for e in zip(*rows[:3])]
    sids = st.text("abcxyz019._-", min_size=1, max_size=8).filter(lambda t: not t.startswith("."))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["drop", "phantom", "key", "completed", "stamp", "project", "swap-keys"]))
        if action == "phantom" or not entries:
            sid = draw(sids)
            key = tuple(draw(st.integers(0, 1 << 40)) for _ in range(4))
            meta = (sid, draw(st.booleans()), draw(st.sampled_from(PROJECTS + ("/p/ghost",))), draw(st.integers(0, 1 << 45)))
            entries.append([sid + SNAP, key, meta])
            continue
        i = draw(st.integers(0, len(entries) - 1))
        name, key, meta = entries[i]
        if action == "drop":
            del entries[i]
        elif action == "key":
            j = draw(st.integers(0, 3))
            entries[i][1] = key[:j] + (key[j] + draw(st.integers(1, 10)),) + key[j + 1 :]
        elif action == "completed":
            entries[i][2] = meta_with(meta, 1, not meta[1])
        elif action == "stamp":
            entries[i][2] = meta_with(meta, 3, draw(st.integers(0, 1 << 45)))
        elif action == "project":
            entries[i][2] = meta_with(meta, 2, draw(st.sampled_from(PROJECTS + ("/p/ghost",))))
        else:
            k = draw(st.integers(0, len(entries) - 1))
            entries[i][1], entries[k][1] = entries[k][1], key
    unique = {e[0]: e for e in entries}
    return regroup(list(unique.values()))


@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_index_never_crashes_a_listing_nor_hides_a_session(indexed, data):
    directory, rows = indexed
    value = data.draw(st.one_of(sound_edits(rows), edits(rows), values, values.map(lambda v: (v, v, v, v))))
    liars = forged(directory, value)
    queries = [q for q in QUERIES if not liars or "limit" not in q]  # a forged stamp may reorder a limited listing
    got = listing(directory, queries=queries, raw=value)
    assert without(got, liars) == without(listing(directory, use_index=False, queries=queries), liars)
    write_raw(directory, rows)  # back to the sound index for the next example
