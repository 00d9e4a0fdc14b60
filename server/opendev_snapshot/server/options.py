"""``initializationOptions``: parsed once, in ``initialize``, into a defaulted model.

Pydantic-free on purpose: this runs on the start-up path. A wrong value is
reported (the caller shows it with ``window/showMessage``) and the default
is used; unknown keys are ignored; ``null`` means "not set".
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

U64_MAX = 2**64 - 1


@dataclass(frozen=True)
class InitOptions:
    snapshot_dir: str | None = None
    prompt: bool = True
    max_prompts: int = 3
    stale_after_ms: int = 120_000
    max_tool_results: int = 10
    preview_chars: int = 500
    redact_secrets: bool = True
    trash_retention_ms: int = 604_800_000
    token: str | None = field(default=None, repr=False)  # TCP only; never shown in a repr or a log


DEFAULTS = InitOptions()

# wire name -> (attribute, kind)
_SPEC = {
    "snapshotDir": ("snapshot_dir", "path"),
    "prompt": ("prompt", "bool"),
    "maxPrompts": ("max_prompts", "count"),
    "staleAfterMs": ("stale_after_ms", "count"),
    "maxToolResults": ("max_tool_results", "count"),
    "previewChars": ("preview_chars", "count"),
    "redactSecrets": ("redact_secrets", "bool"),
    "trashRetentionMs": ("trash_retention_ms", "count"),
    "token": ("token", "text"),
}
_SNAKE = {attr: wire for wire, (attr, _kind) in _SPEC.items()}
_EXPECTED = {
    "path": "a string (a directory path or file:// URI)",
    "bool": "true or false",
    "count": "a non-negative integer",
    "text": "a string",
}


def _short(value: object) -> str:
    import json

    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check(kind: str, value: object) -> bool:
    if kind == "path":
        return isinstance(value, str) and "\0" not in value
    if kind == "bool":
        return type(value) is bool
    if kind == "text":
        return isinstance(value, str)
    return type(value) is int and 0 <= value <= U64_MAX


def parse_init_options(raw: object) -> tuple[InitOptions, list[str]]:
    """Return the options and one human sentence per problem found."""
    if raw is None:
        return DEFAULTS, []
    if not isinstance(raw, dict):
        return DEFAULTS, [
            f"initializationOptions must be an object, got {_short(raw)}; using the defaults."
        ]
    values: dict = {}
    problems: list[str] = []
    seen: set = set()
    for key, value in raw.items():
        wire = key if key in _SPEC else _SNAKE.get(key)
        if wire is None or wire in seen:
            continue  # unknown keys are not ours to judge
        seen.add(wire)
        attr, kind = _SPEC[wire]
        if value is None:
            continue
        if not _check(kind, value):
            default = getattr(DEFAULTS, attr)
            shown = "unset" if default is None else _short(default)
            if kind == "text":
                value = "..."  # never echo a secret
            problems.append(
                f"initializationOptions.{wire} must be {_EXPECTED[kind]}, got {_short(value)}; "
                f"using the default ({shown})."
            )
            continue
        if kind == "path" and value == "":
            continue
        values[attr] = value
    return InitOptions(**values), problems


def option_names() -> list[str]:
    return [_SNAKE[f.name] for f in fields(InitOptions)]
