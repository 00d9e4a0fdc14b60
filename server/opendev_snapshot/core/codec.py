"""Byte-exact encoding and strict decoding of the seed's snapshot files.

``encode`` writes what ``serde_json::to_string_pretty`` writes for the
seed's ``AppStateSnapshot``: two-space indent, fields in struct order, raw
UTF-8, control characters escaped, no trailing newline, and ``f64`` in
serde_json's layout (shortest round-trip digits; plain decimal for
1e-5 <= |x| < 1e16, otherwise ``d.ddde+N`` / ``d.ddde-N``).

``decode`` accepts every file the seed writes (also the older ``1e16``
exponent layout, unknown extra fields and integer costs) and refuses what
serde would refuse: wrong types, out-of-range integers, ``NaN`` tokens,
duplicate fields, a BOM, invalid UTF-8.
"""

from __future__ import annotations

import json
import json.encoder
import math

from .errors import InvalidSnapshot
from .validation import MAX_ENCODED_BYTES, check_record

# A JSON string with raw UTF-8, as serde writes it: what
# ``json.JSONEncoder(ensure_ascii=False).encode`` returns for a str, without
# that method's Python frame (33 strings a save; see validation._plain_tool_result).
_dump_str = json.encoder.encode_basestring


def format_f64(value: float) -> str:
    """Format a finite float exactly as serde_json 1.0.149 does."""
    if value == 0.0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    text = repr(value)
    sign = ""
    if text[0] == "-":
        sign, text = "-", text[1:]
    mantissa, _, exp_text = text.partition("e")
    exp = int(exp_text) if exp_text else 0
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    # value = 0.<digits> * 10**point
    point = len(whole) + exp if whole != "0" else exp - (len(frac) - len(frac.lstrip("0")))
    digits = digits.rstrip("0") or "0"
    sci = point - 1
    if -5 <= sci < 16:
        if point <= 0:
            body = "0." + "0" * (-point) + digits
        elif point >= len(digits):
            body = digits + "0" * (point - len(digits)) + ".0"
        else:
            body = digits[:point] + "." + digits[point:]
    else:
        body = digits[0] + ("." + digits[1:] if len(digits) > 1 else "") + "e" + ("+" if sci > 0 else "-") + str(abs(sci))
    return sign + body


def encode_record(record: dict) -> bytes:
    """Encode an already validated snake_case record to the seed's bytes."""
    parts = [
        '{\n  "session_id": ', _dump_str(record["session_id"]),
        ',\n  "message_count": ', str(record["message_count"]),
    ]
    results = record["last_tool_results"]
    if results:
        parts.append(',\n  "last_tool_results": [')
        sep = "\n"
        for item in results:
            parts += [
                sep, '    {\n      "tool_name": ', _dump_str(item["tool_name"]),
                ',\n      "call_id": ', _dump_str(item["call_id"]),
                ',\n      "output_preview": ', _dump_str(item["output_preview"]),
                ',\n      "success": ', "true" if item["success"] else "false",
                "\n    }",
            ]
            sep = ",\n"
        parts.append("\n  ]")
    else:
        parts.append(',\n  "last_tool_results": []')
    parts += [
        ',\n  "snapshot_timestamp_ms": ', str(record["snapshot_timestamp_ms"]),
        ',\n  "completed": ', "true" if record["completed"] else "false",
        ',\n  "project_dir": ', _dump_str(record["project_dir"]),
        ',\n  "cost_usd": ', format_f64(record["cost_usd"]),
        "\n}",
    ]
    return "".join(parts).encode("utf-8")


def encode(record: dict) -> bytes:
    """Validate a snake_case record strictly and encode it; refuse > 1 MiB."""
    clean = check_record(record)
    data = encode_record(clean)
    if len(data) > MAX_ENCODED_BYTES:
        raise InvalidSnapshot(
            "last_tool_results" if clean["last_tool_results"] else "project_dir",
            f"snapshot encodes to {len(data)} bytes, over the 1 MiB limit",
        )
    return data


def _no_constants(token: str) -> float:
    raise ValueError(f"{token} is not valid JSON")


def _pairs(pairs: list) -> dict:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate field `{key}`")
            seen.add(key)
    return result


_decoder = json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=_no_constants)


def decode(data: bytes) -> dict:
    """Strictly decode a snapshot file's bytes into a snake_case record."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidSnapshot("", f"not valid UTF-8 at byte {exc.start}") from None
    if text.startswith("\ufeff"):
        raise InvalidSnapshot("", "starts with a byte order mark")
    if not text.strip():
        raise InvalidSnapshot("", "empty file")
    try:
        value = _decoder.decode(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidSnapshot("", f"not valid JSON: {exc}") from None
    return check_record(value, strict_id=False)
