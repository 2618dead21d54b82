"""The shape of a Parameters resource, checked before any operation reads it.

Operations take their POST inputs as a Parameters resource. Hostile or careless clients send ``parameter``
as an object, entries that are strings or numbers, names that are not strings, ``part`` or ``resource`` of
the wrong JSON type. ``parameter_list`` refuses all of these with one clear 400 so no operation has to
guard each access (an unguarded ``p.get`` on a string is a 500)."""

from __future__ import annotations

from typing import Any

from .errors import BadRequest


def parameter_list(body: Any, what: str) -> list[dict[str, Any]]:
    """The ``parameter`` entries of ``body``, a Parameters resource, every one (and every ``part``) an object
    with a string name, a ``resource`` that is an object and a ``part`` that is an array; BadRequest naming
    ``what`` (the operation) and the first offending entry otherwise."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise BadRequest(f"{what} takes a Parameters resource")
    params = body.get("parameter", [])
    if not isinstance(params, list):
        raise BadRequest(f"{what}: Parameters.parameter must be an array of parameters")
    for i, p in enumerate(params):
        _check(p, f"{what}: Parameters.parameter[{i}]")
    return params


def _check(p: Any, where: str) -> None:
    # recursion over ``part`` is bounded by the nesting limit the JSON parser enforces (fhir/jsonio.py)
    if not isinstance(p, dict):
        raise BadRequest(f"{where} must be an object with a name and a value, resource or part")
    name = p.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest(f"{where} needs a name (a non-empty string)")
    if "resource" in p and not isinstance(p["resource"], dict):
        raise BadRequest(f"{where} ({name}): resource must be a FHIR resource (a JSON object)")
    for key, value in p.items():
        if key.startswith("value") and isinstance(value, list):
            raise BadRequest(f"{where} ({name}): {key} holds one value, not an array")
    if "part" in p:
        part = p["part"]
        if not isinstance(part, list):
            raise BadRequest(f"{where} ({name}): part must be an array of parameters")
        for j, q in enumerate(part):
            _check(q, f"{where}.part[{j}]")
