"""client-config/schema: the checked-in JSON Schemas are exactly what the models generate."""

from __future__ import annotations

import importlib.util
import json

import pytest
from editors.support import CLIENT_CONFIG, make_scenario

SCHEMA_DIR = CLIENT_CONFIG / "schema"


@pytest.fixture(scope="module")
def generate():
    spec = importlib.util.spec_from_file_location("schema_generate", SCHEMA_DIR / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_checked_in_schemas_match_the_models(generate):
    problems = generate.drift(SCHEMA_DIR)
    assert problems == [], "run `python client-config/schema/generate.py`: " + "; ".join(problems)


def test_every_wire_model_has_a_schema_with_camel_case_names(generate):
    from opendev_snapshot.server.models import WIRE_MODELS

    assert sorted(generate.schemas()) == sorted(f"{n}.schema.json" for n in WIRE_MODELS)
    listing = json.loads((SCHEMA_DIR / "Listing.schema.json").read_text())
    assert listing["$schema"].endswith("2020-12/schema")
    assert list(listing["properties"]) == [
        "sessionId", "messageCount", "lastToolResults", "snapshotTimestampMs",
        "completed", "projectDir", "costUsd", "status", "path", "kind", "notebook",
    ]  # fmt: skip


@pytest.mark.parametrize("change", ["edit", "delete", "extra"])
def test_drift_is_detected(generate, tmp_path, change):
    for name, text in generate.schemas().items():
        (tmp_path / name).write_text(text)
    assert generate.drift(tmp_path) == []
    target = tmp_path / "Listing.schema.json"
    if change == "edit":
        target.write_text(target.read_text().replace('"sessionId"', '"session_id"'))
    elif change == "delete":
        target.unlink()
    else:
        (tmp_path / "Gone.schema.json").write_text("{}")
    assert generate.drift(tmp_path) != []


def test_a_real_listing_fits_the_schema(tmp_path):
    """Property names and required fields of the Listing the store produces."""
    from opendev_snapshot.core import SnapshotStore
    from opendev_snapshot.server.wire import listing_to_wire

    s = make_scenario(tmp_path)
    schema = json.loads((SCHEMA_DIR / "Listing.schema.json").read_text())
    with SnapshotStore(s.snapshot_dir, use_index=False) as store:
        listings = store.list().sessions
    assert listings
    kinds = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "array": list}
    for listing in listings:
        wire = listing_to_wire(listing)
        assert set(wire) == set(schema["properties"])
        assert set(schema["required"]) <= set(wire)
        for key, prop in schema["properties"].items():
            if "type" in prop:
                assert isinstance(wire[key], kinds[prop["type"]]), (key, wire[key])
            if "enum" in prop:
                assert wire[key] in prop["enum"]
