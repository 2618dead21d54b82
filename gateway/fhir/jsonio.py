"""Fast JSON encode/decode (orjson) with FHIR-friendly errors."""

from __future__ import annotations

from typing import Any

import orjson

from .errors import BadRequest


def loads(data: bytes | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"Malformed JSON: {exc}") from None


def dumps(obj: Any, pretty: bool = False) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_INDENT_2 if pretty else 0)
