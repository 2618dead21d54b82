"""Fast JSON encode/decode (orjson) with FHIR-friendly errors.

``loads`` is the one entry point for JSON that arrives from outside (request bodies, bundle entries read by
the auth middleware): besides the syntax it bounds the nesting depth, so no later recursive walk (validation,
indexing, FHIRPath, encoding) can exhaust the stack, and it refuses NUL characters, which PostgreSQL cannot
store in text and which would silently truncate values elsewhere. Both are refused as 400 Bad Request."""

from __future__ import annotations

from typing import Any

import orjson

from .errors import BadRequest

MAX_DEPTH = 64  # JSON nesting levels (objects and arrays); real resources stay far below (settings.max_json_depth)


def loads(data: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``data``; BadRequest when it is not JSON, nests deeper than ``max_depth`` or holds a NUL."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"Malformed JSON: {exc}") from None
    raw = data.encode() if isinstance(data, str) else data
    # cheap byte-level tests first: most documents have too few brackets to nest that deep, and no NUL escape
    deep = raw.count(b"[") + raw.count(b"{") > max_depth
    nul = b"\\u0000" in raw
    if deep or nul:
        check_tree(doc, max_depth, nul)
    return doc


def check_tree(doc: Any, max_depth: int = MAX_DEPTH, nul: bool = True) -> None:
    """BadRequest when ``doc`` nests deeper than ``max_depth`` or (``nul``) has a NUL in a key or string.
    Iterative, so the check itself cannot overflow the stack."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            if depth > max_depth:
                raise BadRequest(f"The JSON document nests deeper than {max_depth} levels")
            for k, v in node.items():
                if nul and "\x00" in k:
                    raise BadRequest("A JSON key holds a NUL character (\\u0000), which FHIR does not allow")
                if isinstance(v, (dict, list)):
                    stack.append((v, depth + 1))
                elif nul and isinstance(v, str) and "\x00" in v:
                    raise BadRequest(f"The value of {k!r} holds a NUL character (\\u0000), which FHIR does not "
                                     "allow")
        elif isinstance(node, list):
            if depth > max_depth:
                raise BadRequest(f"The JSON document nests deeper than {max_depth} levels")
            for v in node:
                if isinstance(v, (dict, list)):
                    stack.append((v, depth + 1))
                elif nul and isinstance(v, str) and "\x00" in v:
                    raise BadRequest("A string holds a NUL character (\\u0000), which FHIR does not allow")
        elif nul and isinstance(node, str) and "\x00" in node:
            raise BadRequest("The JSON string holds a NUL character (\\u0000), which FHIR does not allow")


def dumps(obj: Any, pretty: bool = False) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_INDENT_2 if pretty else 0)
