"""FHIR resources -> rows of the internal relational schema, driven by ``mappings/internal.outbound.yaml`` (pure:
the rows are plain dicts; gateway/store/sql/internal.py writes them)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..fhir.paths import split_top_level
from .spec import MAPPINGS_DIR, SpecError

STEP = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*|\d+)(?:\[(.+)\])?$")


def get_path(node: Any, path: str) -> Any:
    """``a.b[0].c``, ``identifier[system=URI].value``, ``x[k.0.code=v]``; None when absent."""
    for step in split_top_level(path.strip(), "[", "]"):
        if node is None:
            return None
        m = STEP.match(step)
        if not m:
            raise SpecError(f"bad path step {step!r} in {path!r}")
        name, sel = m.groups()
        if name.isdigit():
            node = node[int(name)] if isinstance(node, list) and int(name) < len(node) else None
            continue
        if isinstance(node, list):
            node = node[0] if node else None
        node = node.get(name) if isinstance(node, dict) else None
        if sel is None or node is None:
            continue
        items = node if isinstance(node, list) else [node]
        if sel.isdigit():
            node = items[int(sel)] if int(sel) < len(items) else None
        else:
            key, _, want = sel.partition("=")
            node = next((it for it in items if str(get_path(it, key)) == want), None)
    if isinstance(node, list):
        node = node[0] if node else None
    return node


@dataclass
class TableRule:
    table: str
    types: list[str]
    columns: dict[str, str]
    each: str | None = None
    children: list[TableRule] = field(default_factory=list)


@dataclass
class OutboundSpec:
    version: str
    rules: list[TableRule]

    @property
    def resource_types(self) -> list[str]:
        seen: list[str] = []
        for r in self.rules:
            seen += [t for t in r.types if t not in seen]
        return seen


def _rule(raw: dict[str, Any]) -> TableRule:
    return TableRule(raw["table"], list(raw.get("from") or []), dict(raw["columns"]), raw.get("each"),
                     [_rule(c) for c in raw.get("children") or []])


def load_outbound(path: Path | None = None) -> OutboundSpec:
    path = path or MAPPINGS_DIR / "internal.outbound.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    return OutboundSpec(str(raw["version"]), [_rule(t) for t in raw["tables"]])


def scalar(value: Any) -> str | int | float | bool | None:
    """What a column can hold of an element a path reached. R4 allows shapes a path written for the common case
    does not expect: a HumanName with only ``text`` (or only ``given``), several names, a Coding or Identifier
    where a string was meant. Names become their text or their parts joined; an element with a ``value`` (an
    Identifier, a Quantity) or a ``code`` becomes that; a ``display`` or ``text`` is used last; any other
    structure is no value (None), so the next ``??`` alternative is tried."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, list):
        return next((v for v in map(scalar, value) if v not in (None, "")), None)
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("text"), str) and value["text"].strip():
        return value["text"].strip()
    if any(k in value for k in ("family", "given", "prefix", "suffix")):  # a HumanName without text
        parts = [*(value.get("prefix") or []), *(value.get("given") or []), value.get("family"),
                 *(value.get("suffix") or [])]
        return " ".join(str(p) for p in parts if isinstance(p, str) and p) or None
    for key in ("value", "code", "display", "reference"):
        if isinstance(value.get(key), (str, int, float, bool)):
            return value[key]  # type: ignore[no-any-return]
    return None


def _value(expr: str, node: Any, parent: Any) -> Any:
    body, _, filt = expr.partition("|")
    value = None
    for alt in body.split("??"):
        alt = alt.strip()
        if alt.startswith("'") and alt.endswith("'"):
            value = alt[1:-1]
        elif alt.startswith("parent."):
            value = scalar(get_path(parent, alt[len("parent."):]))
        else:
            value = scalar(get_path(node, alt))
        if value not in (None, ""):
            break
    filt = filt.strip()
    if value is None or not filt:
        return value
    if filt == "ref":
        return str(value).rsplit("/", 1)[-1]
    if filt == "date":
        return str(value)[:10]
    raise SpecError(f"unknown outbound filter {filt!r}")


def rows_for(spec: OutboundSpec, resource: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Table name -> rows one resource becomes. Every column value is a scalar (``scalar``); ``SpecError`` for
    a path or filter the mapping file gets wrong."""
    out: dict[str, list[dict[str, Any]]] = {}
    for rule in spec.rules:
        if resource.get("resourceType") not in rule.types:
            continue
        out.setdefault(rule.table, []).append({c: _value(e, resource, resource) for c, e in rule.columns.items()})
        for child in rule.children:
            items = resource.get(child.each or "") or []
            if not isinstance(items, list):
                items = [items]
            items = [it for it in items if isinstance(it, dict)]
            out.setdefault(child.table, []).extend(
                {c: _value(e, it, resource) for c, e in child.columns.items()} for it in items)
    return out
