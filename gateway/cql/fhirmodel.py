"""The FHIR R4 data model as the ELM interpreter sees it.

FHIR data stays JSON; navigation wraps each element in a ``Node`` that remembers its FHIR type, so that ELM
``Property``, ``Is``/``As`` on choice elements (``Observation.effective`` → dateTime or Period) and the
``.value`` of primitives (``Patient.birthDate.value`` → a CQL Date) behave as the FHIR model info says.
Element types come from the element table generated from the ``fhir.resources`` R4B models
(``gateway.fhir.element_table``, read once per type and cached); this module is the engine's only link to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

from ..fhir.element_table import type_entry
from .datetime import parse_date, parse_datetime, parse_time

PRIMITIVES = {
    "boolean", "integer", "string", "decimal", "uri", "url", "canonical", "base64Binary", "instant", "date",
    "dateTime", "time", "code", "oid", "id", "markdown", "unsignedInt", "positiveInt", "uuid", "xhtml",
    "integer64",
}
# FHIR type -> its base type, for Is/As (a value of a subtype is also of the base type)
BASE_TYPE = {
    "code": "string", "id": "string", "markdown": "string", "url": "uri", "canonical": "uri", "oid": "uri",
    "uuid": "uri", "unsignedInt": "integer", "positiveInt": "integer", "Age": "Quantity", "Count": "Quantity",
    "Distance": "Quantity", "Duration": "Quantity", "MoneyQuantity": "Quantity", "SimpleQuantity": "Quantity",
}

@dataclass(frozen=True)
class Field:
    json_name: str
    type: str  # FHIR type name: a primitive, a datatype, a resource, or a backbone class name
    is_list: bool
    choice: str | None  # base name for a choice element (valueQuantity -> value)


@dataclass(frozen=True)
class TypeInfo:
    name: str
    fields: dict[str, Field]  # by JSON name
    choices: dict[str, tuple[Field, ...]]  # base name -> its typed alternatives


class Node:
    """A FHIR element: its JSON value (dict, str, number, bool) and FHIR type; ``ext`` holds the ``_name``
    sibling of a primitive (id and extensions).

    Immutable by convention (nothing assigns to a Node after creating it); a plain slotted class rather than
    a frozen dataclass because navigation creates one per element visited and a frozen dataclass's
    constructor costs three times as much. Equality and hashing are a frozen dataclass's: by (value, type,
    ext), and unhashable when the value is a dict or list."""

    __slots__ = ("value", "type", "ext")

    def __init__(self, value: Any, type: str, ext: Any = None) -> None:  # noqa: A002 - the FHIR type's name
        self.value = value
        self.type = type
        self.ext = ext

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not Node:
            return NotImplemented
        o: Node = other  # type: ignore[assignment]
        return (self.value, self.type, self.ext) == (o.value, o.type, o.ext)

    def __hash__(self) -> int:
        return hash((self.value, self.type, self.ext))

    def __repr__(self) -> str:
        return f"Node(value={self.value!r}, type={self.type!r}, ext={self.ext!r})"


@lru_cache(maxsize=1024)
def type_info(type_name: str) -> TypeInfo | None:
    """The elements of FHIR type ``type_name`` by JSON name and its choice groups, or None for a name that is
    not a type of the R4B models (primitives, code types, unknown names); read from the generated element
    table (gateway.fhir.element_table) rather than the models, which cost a fresh process about 0.3 s."""
    entry = type_entry(type_name)
    if entry is None:
        return None
    fields: dict[str, Field] = {}
    choices: dict[str, list[Field]] = {}
    for e in entry.elements:
        fld = Field(e.json_name, e.type, e.is_list, e.choice)
        fields[e.json_name] = fld
        if e.choice:
            choices.setdefault(e.choice, []).append(fld)
    return TypeInfo(type_name, fields, {k: tuple(v) for k, v in choices.items()})


@lru_cache(maxsize=8192)
def is_subtype(type_name: str, of: str) -> bool:
    t: str | None = type_name
    while t is not None:
        if t == of:
            return True
        t = BASE_TYPE.get(t)
    if of in ("Resource", "DomainResource"):
        from ..fhir.resource_types import RESOURCE_TYPES

        return type_name in RESOURCE_TYPES
    return False


def wrap_resource(resource: dict[str, Any]) -> Node:
    return Node(resource, resource.get("resourceType", "Resource"))


def children(node: Node, name: str) -> list[Node]:
    """Navigate ``name`` from ``node``: the element (or each element of a list) as Nodes with their types."""
    obj = node.value
    if not isinstance(obj, dict):
        if name in ("id", "extension") and isinstance(node.ext, dict):
            return _wrap(node.ext.get(name), "string" if name == "id" else "Extension", None)
        return []
    info = type_info(node.type)
    if info is not None:
        fld = info.fields.get(name)
        if fld is not None:
            return _wrap(obj.get(name), fld.type, obj.get("_" + name))
        alts = info.choices.get(name)
        if alts:
            for alt in alts:
                if alt.json_name in obj or "_" + alt.json_name in obj:
                    return _wrap(obj.get(alt.json_name), alt.type, obj.get("_" + alt.json_name))
            return []
    # contained resources and unknown shapes: fall back to the JSON, typing dicts by resourceType
    val = obj.get(name)
    if val is None:
        return []
    vals = val if isinstance(val, list) else [val]
    return [Node(v, v.get("resourceType", "Element") if isinstance(v, dict) else "string") for v in vals]


_UNRESOLVED = object()
_RESOLVED: dict[tuple[str, str], Any] = {}  # (type, name) -> Field, tuple of choice Fields, or None


def _resolve(type_name: str, name: str) -> Any:
    key = (type_name, name)
    r = _RESOLVED.get(key, _UNRESOLVED)
    if r is _UNRESOLVED:
        info = type_info(type_name)
        r = None if info is None else (info.fields.get(name) or info.choices.get(name) or False)
        _RESOLVED[key] = r
    return r


def step(node: Node, name: str) -> Any:
    """One navigation step from a complex element: the child Node, the list of child Nodes for a repeating
    element, or None (``children`` plus the cardinality of ``name``, resolved once per type and name)."""
    obj = node.value
    r = _RESOLVED.get((node.type, name), _UNRESOLVED)
    if r is _UNRESOLVED:
        r = _resolve(node.type, name)
    if r.__class__ is Field:
        val = obj.get(name)
        ext = obj.get("_" + name)
        if val is None and ext is None:
            return [] if r.is_list else None
        if r.is_list or r.type == "Resource" or isinstance(val, list) or isinstance(ext, list):
            kids = _wrap(val, r.type, ext)
            return kids if r.is_list else (kids[0] if kids else None)
        return Node(val, r.type, ext)  # a single element: what _wrap gives, without the list around it
    if r:  # a choice element: the alternative present in the JSON
        for alt in r:
            if alt.json_name in obj or "_" + alt.json_name in obj:
                kids = _wrap(obj.get(alt.json_name), alt.type, obj.get("_" + alt.json_name))
                return kids if alt.is_list else (kids[0] if kids else None)
        return [] if r[0].is_list else None
    kids = children(node, name)  # contained resources and unknown shapes: the JSON decides
    is_list = isinstance(obj.get(name), list) if r is None else False
    return kids if is_list else (kids[0] if kids else None)


def _wrap(val: Any, tname: str, ext: Any) -> list[Node]:
    if val is None and ext is None:
        return []
    if tname == "Resource" and isinstance(val, (dict, list)):
        vals = val if isinstance(val, list) else [val]
        return [Node(v, v.get("resourceType", "Resource")) for v in vals]
    if isinstance(val, list) or isinstance(ext, list):
        vs = val if isinstance(val, list) else [None] * len(ext)
        es = ext if isinstance(ext, list) else [None] * len(vs)
        return [Node(v, tname, e) for v, e in zip(vs, es, strict=False) if v is not None or e is not None]
    return [Node(val, tname, ext)]


# Date and DateTime values are immutable and depend only on their text: a patient's data repeats the same
# timestamps (an encounter's period, the observations made in it) and the engine reads each one many times
@lru_cache(maxsize=16384)
def _date_of(text: str) -> Any:
    return parse_date(text)


@lru_cache(maxsize=16384)
def _datetime_of(text: str) -> Any:
    return parse_datetime(text)


def primitive_value(node: Node) -> Any:
    """The System value of a FHIR primitive (``.value`` in FHIRHelpers): CQL Date, DateTime, Time, Decimal,
    Integer, Boolean or String."""
    v = node.value
    if v is None:
        return None
    t = node.type
    if t == "date":
        return _date_of(v) if v.__class__ is str else parse_date(v)
    if t in ("dateTime", "instant"):
        return _datetime_of(v) if v.__class__ is str else parse_datetime(v)
    if t == "time":
        return parse_time(v)
    if t == "decimal":
        return v if isinstance(v, Decimal) else Decimal(str(v))
    if t in ("integer", "unsignedInt", "positiveInt", "integer64"):
        return int(v)
    if t == "boolean":
        return bool(v)
    return v
