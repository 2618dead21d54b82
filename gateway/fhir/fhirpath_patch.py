"""FHIRPath Patch (FHIR R4 fhirpatch.html) turned into JSON Patch on the current resource, for the subset the
DEQM care-gap remark PATCH needs: operation types ``add``, ``insert``, ``replace`` and ``delete``; paths made
of element names, ``[n]`` indexes and ``where(name='value')`` filters; values given as ``value[x]`` or as
``part`` trees (complex types such as Extension)."""

from __future__ import annotations

import re
from typing import Any

from .errors import BadRequest, Unprocessable
from .parameters import parameter_list
from .paths import split_top_level

REPEATING = {"extension", "modifierExtension", "coding", "identifier", "part", "parameter", "group", "population",
             "stratifier", "stratum", "component", "evaluatedResource", "contained"}
_SEG = re.compile(r"(\w+)(?:\[(\d+)\])?|where\((\w+)\s*=\s*'([^']*)'\)")


def _value(param: dict[str, Any]) -> tuple[str | None, Any]:
    """(value[x] key, value) of a parameter or part, or (None, object) built from its parts."""
    for k, v in param.items():
        if k.startswith("value"):
            return k, v
    if param.get("part"):
        return None, _from_parts(param["part"])
    raise BadRequest(f"PATCH: parameter {param.get('name')!r} has no value")


def _from_parts(parts: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in parts:
        name = p.get("name")
        if not name:
            raise BadRequest("PATCH: a value part has no name")
        key, val = _value(p)
        if name == "value" and key is not None:
            out[key] = val
            continue
        if name in REPEATING:
            out.setdefault(name, []).append(val)
        else:
            out[name] = val
    return out


def _locate(resource: dict[str, Any], path: str) -> list[tuple[str, Any]]:
    """JSON Pointers and nodes the FHIRPath ``path`` selects."""
    segs = split_top_level(path.strip())
    if not segs or segs[0] != resource.get("resourceType"):
        raise Unprocessable(f"PATCH path {path!r} must start with {resource.get('resourceType')}")
    nodes: list[tuple[str, Any]] = [("", resource)]
    for seg in segs[1:]:
        m = _SEG.fullmatch(seg)
        if not m:
            raise Unprocessable(f"PATCH path {path!r}: {seg!r} is not supported (names, [n] and where(a='b'))")
        name, index, wkey, wval = m.groups()
        nxt: list[tuple[str, Any]] = []
        for ptr, node in nodes:
            if wkey is not None:
                if isinstance(node, dict) and str(node.get(wkey)) == wval:
                    nxt.append((ptr, node))
                continue
            children = node.get(name) if isinstance(node, dict) else None
            if children is None:
                continue
            if isinstance(children, list):
                items = list(enumerate(children))
                if index is not None:
                    items = [(i, c) for i, c in items if i == int(index)]
                nxt.extend((f"{ptr}/{name}/{i}", c) for i, c in items)
            elif index in (None, "0"):
                nxt.append((f"{ptr}/{name}", children))
        nodes = nxt
    return nodes


def to_json_patch(resource: dict[str, Any], params: Any) -> list[dict[str, Any]]:
    ops: list[dict[str, Any]] = []
    for op in parameter_list(params, "A FHIRPath Patch body"):
        if op.get("name") != "operation":
            raise BadRequest(f"FHIRPath Patch: unexpected parameter {op.get('name')!r}")
        parts = {p.get("name"): p for p in op.get("part") or []}
        kind = (parts.get("type") or {}).get("valueCode")
        path = (parts.get("path") or {}).get("valueString")
        if kind not in ("add", "insert", "replace", "delete") or not path:
            raise BadRequest(f"FHIRPath Patch: operation type {kind!r} with path {path!r} is not supported")
        targets = _locate(resource, path)
        if not targets:
            raise Unprocessable(f"FHIRPath Patch: path {path!r} selects nothing")
        if kind == "delete":
            ops.extend({"op": "remove", "path": ptr} for ptr, _ in reversed(targets))
            continue
        key, value = _value(parts.get("value") or {})
        if kind == "replace":
            ops.extend({"op": "replace", "path": ptr, "value": value} for ptr, _ in targets)
            continue
        name = (parts.get("name") or {}).get("valueString")
        if kind == "add" and not name:
            raise BadRequest("FHIRPath Patch: add needs a name")
        for ptr, node in targets:
            if kind == "insert":
                index = (parts.get("index") or {}).get("valueInteger", 0)
                ops.append({"op": "add", "path": f"{ptr}/{index}", "value": value})
                continue
            assert name is not None
            if name in REPEATING or isinstance(node.get(name), list):
                if isinstance(node.get(name), list):
                    ops.append({"op": "add", "path": f"{ptr}/{name}/-", "value": value})
                else:
                    ops.append({"op": "add", "path": f"{ptr}/{name}", "value": [value]})
            else:
                if name in node:
                    raise Unprocessable(f"FHIRPath Patch: {path}.{name} already has a value (use replace)")
                ops.append({"op": "add", "path": f"{ptr}/{name}", "value": value})
    return ops
