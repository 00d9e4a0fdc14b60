#!/usr/bin/env python3
"""Write a JSON Schema for every wire object from the server's pydantic models.

    python client-config/schema/generate.py          # (re)write the *.schema.json files here
    python client-config/schema/generate.py --check  # exit 1 if they differ from the models

One file per entry of ``opendev_snapshot.server.models.WIRE_MODELS``, named
``<Model>.schema.json``: JSON Schema draft 2020-12, camelCase property names
(the wire aliases; the server also accepts the snake_case disk names), in
pydantic's validation mode (what the server accepts; results carry every
property). ``tests/e2e/test_editor_schema.py`` fails when these files and
the models drift.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schemas() -> dict:
    """File name -> file content, for every wire model."""
    from opendev_snapshot.server.models import WIRE_MODELS

    out = {}
    for name, model in sorted(WIRE_MODELS.items()):
        schema = model.model_json_schema(by_alias=True, mode="validation")
        body = {"$schema": DIALECT, "$id": f"{name}.schema.json", **schema}
        out[f"{name}.schema.json"] = json.dumps(body, indent=2, ensure_ascii=False) + "\n"
    return out


def drift(directory: Path = HERE) -> list:
    """Human sentences naming each file that differs from the models."""
    want = schemas()
    have = {p.name for p in directory.glob("*.schema.json")}
    problems = [f"{n} is missing" for n in sorted(set(want) - have)]
    problems += [f"{n} matches no wire model" for n in sorted(have - set(want))]
    problems += [
        f"{n} differs from the model" for n in sorted(set(want) & have) if (directory / n).read_text() != want[n]
    ]
    return problems


def main(argv: list) -> int:
    if "--check" in argv:
        problems = drift()
        for p in problems:
            print(f"client-config/schema: {p}", file=sys.stderr)
        if problems:
            print("run: python client-config/schema/generate.py", file=sys.stderr)
        return 1 if problems else 0
    for stale in HERE.glob("*.schema.json"):
        stale.unlink()
    for name, text in schemas().items():
        (HERE / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
