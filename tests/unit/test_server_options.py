"""initializationOptions parser: a defaulted model, one sentence per problem."""

from __future__ import annotations

import pytest

from opendev_snapshot.server.options import DEFAULTS, InitOptions, option_names, parse_init_options


def test_defaults_match_the_contract():
    assert DEFAULTS == InitOptions(
        snapshot_dir=None, prompt=True, max_prompts=3, stale_after_ms=120_000, max_tool_results=10, preview_chars=500,
        redact_secrets=True, trash_retention_ms=604_800_000, token=None,
    )
    assert option_names() == [
        "snapshotDir", "prompt", "maxPrompts", "staleAfterMs", "maxToolResults", "previewChars",
        "redactSecrets", "trashRetentionMs", "token",
    ]


@pytest.mark.parametrize(
    "raw, expected",
    [
        (None, DEFAULTS),
        ({}, DEFAULTS),
        ({"prompt": False}, InitOptions(prompt=False)),
        ({"maxPrompts": 0, "staleAfterMs": 5000}, InitOptions(max_prompts=0, stale_after_ms=5000)),
        ({"snapshotDir": "/tmp/x", "previewChars": 10}, InitOptions(snapshot_dir="/tmp/x", preview_chars=10)),
        ({"max_tool_results": 4}, InitOptions(max_tool_results=4)),  # snake_case accepted
        ({"snapshotDir": ""}, DEFAULTS),  # empty: not set
        ({"prompt": None, "maxPrompts": None}, DEFAULTS),  # null: not set
        ({"somethingElse": {"deep": 1}}, DEFAULTS),  # not ours
    ],
    ids=["none", "empty", "prompt-false", "counts", "dir-preview", "snake", "empty-dir", "nulls", "unknown"],
)
def test_valid_values(raw, expected):
    options, problems = parse_init_options(raw)
    assert problems == []
    assert options == expected


@pytest.mark.parametrize(
    "raw, name",
    [
        ({"prompt": "false"}, "prompt"),
        ({"prompt": 0}, "prompt"),
        ({"maxPrompts": True}, "maxPrompts"),
        ({"maxPrompts": -1}, "maxPrompts"),
        ({"maxPrompts": 2.0}, "maxPrompts"),
        ({"staleAfterMs": "120000"}, "staleAfterMs"),
        ({"staleAfterMs": 2**64}, "staleAfterMs"),
        ({"maxToolResults": [10]}, "maxToolResults"),
        ({"previewChars": {"n": 1}}, "previewChars"),
        ({"snapshotDir": 7}, "snapshotDir"),
        ({"snapshotDir": "a\0b"}, "snapshotDir"),
        ({"redactSecrets": "no"}, "redactSecrets"),
        ({"trashRetentionMs": -5}, "trashRetentionMs"),
        ({"token": 5}, "token"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_wrong_value_is_reported_and_defaulted(raw, name):
    options, problems = parse_init_options(raw)
    assert options == DEFAULTS
    [problem] = problems
    assert f"initializationOptions.{name}" in problem and "default" in problem


def test_one_bad_value_keeps_the_good_ones():
    options, problems = parse_init_options({"prompt": False, "maxPrompts": "3", "previewChars": 20})
    assert options == InitOptions(prompt=False, preview_chars=20)
    assert len(problems) == 1


@pytest.mark.parametrize("raw", [[1], "x", 3, True], ids=["list", "str", "int", "bool"])
def test_not_an_object(raw):
    options, problems = parse_init_options(raw)
    assert options == DEFAULTS
    assert problems and "must be an object" in problems[0]


def test_parser_does_not_import_pydantic():
    import subprocess
    import sys

    code = "import sys; import opendev_snapshot.server.options as o; o.parse_init_options({'prompt': 1}); print('pydantic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_token_is_never_echoed_or_shown_in_a_repr():
    options, problems = parse_init_options({"token": "s3cr3t-token"})
    assert options.token == "s3cr3t-token" and problems == []
    assert "s3cr3t" not in repr(options)
    options, problems = parse_init_options({"token": ["s3cr3t-token"]})
    assert options.token is None and "s3cr3t" not in problems[0] and "initializationOptions.token" in problems[0]


def test_options_agree_with_the_schema_model():
    """``server.models.InitializationOptions`` (the editors' JSON Schema) names the same options."""
    from opendev_snapshot.server.models import InitializationOptions

    wire = [f.alias for f in InitializationOptions.model_fields.values()]
    assert wire == option_names()
    assert InitializationOptions().model_dump() == {
        name: getattr(DEFAULTS, name) for name in InitializationOptions.model_fields
    }
