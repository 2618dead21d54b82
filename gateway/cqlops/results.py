"""CQL values as ``Parameters.parameter`` entries (the CQL IG's evaluation-result shape).

Each result is one entry named after the expression: a FHIR resource as ``resource``, a FHIR element or a
System value as the matching ``value[x]``, a tuple as ``part``s, a list as repeated entries of that name. A
null result is an entry without a value carrying the data-absent-reason extension (``unknown``); an empty
list is one entry carrying the ``cqf-isEmptyList`` extension, so the name is never silently missing."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ..cql import datetime as cqldt
from ..cql import quantity as cqlq
from ..cql.fhirmodel import Node
from ..cql.interval import Interval
from ..cql.values import Code, Concept

DATA_ABSENT = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
EMPTY_LIST = "http://hl7.org/fhir/StructureDefinition/cqf-isEmptyList"
CQL_TYPE = "http://hl7.org/fhir/StructureDefinition/cqf-cqlType"
UCUM = "http://unitsofmeasure.org"
MAX_DEPTH = 32  # nested tuples and lists deeper than this are answered as their CQL text


def result_parameters(name: str, value: Any) -> list[dict[str, Any]]:
    """The entries one expression result becomes (several for a list, one otherwise)."""
    if isinstance(value, list):
        if not value:
            return [{"name": name, "extension": [{"url": EMPTY_LIST, "valueBoolean": True}]}]
        return [_entry(name, v, 0) for v in value]
    return [_entry(name, value, 0)]


def _entry(name: str, value: Any, depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name}
    if value is None:
        out["extension"] = [{"url": DATA_ABSENT, "valueCode": "unknown"}]
        return out
    if depth > MAX_DEPTH:
        out["valueString"] = str(value)[:10000]
        return out
    if isinstance(value, Node):
        return {**out, **_node(value)}
    if isinstance(value, dict):  # a CQL tuple
        parts: list[dict[str, Any]] = []
        for k, v in value.items():
            items = v if isinstance(v, list) else [v]
            if not items:
                parts.append({"name": str(k), "extension": [{"url": EMPTY_LIST, "valueBoolean": True}]})
            parts.extend(_entry(str(k), item, depth + 1) for item in items)
        out["part"] = parts
        if not parts:
            out["extension"] = [{"url": CQL_TYPE, "valueString": "System.Tuple"}]
        return out
    if isinstance(value, list):  # a list inside a list: its items as parts named "element"
        out["part"] = [_entry("element", v, depth + 1) for v in value]
        return out
    key, val = _system_value(value)
    if key is None:
        out["valueString"] = str(value)
        out["extension"] = [{"url": CQL_TYPE, "valueString": type(value).__name__}]
    else:
        out[key] = val
    return out


def _node(node: Node) -> dict[str, Any]:
    """A FHIR element: a resource, a complex datatype or a primitive, under its own type's name."""
    value = node.value
    if isinstance(value, dict) and isinstance(value.get("resourceType"), str):
        return {"resource": value}
    tname = node.type.rsplit(".", 1)[-1] or "String"
    return {"value" + tname[0].upper() + tname[1:]: value}


def _number(d: Decimal) -> int | float:
    return int(d) if d == d.to_integral_value() and abs(d) < 2 ** 53 else float(d)


def _quantity(q: cqlq.Quantity) -> dict[str, Any]:
    out: dict[str, Any] = {"value": _number(q.value), "unit": q.unit}
    if q.unit and q.unit[0] != "{" and q.unit.isascii():
        out.update({"system": UCUM, "code": q.unit})
    return out


def _coding(c: Code) -> dict[str, Any]:
    return {k: v for k, v in (("system", c.system), ("version", c.version), ("code", c.code),
                              ("display", c.display)) if v is not None}


def _system_value(value: Any) -> tuple[str | None, Any]:
    """The value[x] key and JSON of a System value; (None, None) for what FHIR has no type for."""
    if isinstance(value, bool):
        return "valueBoolean", value
    if isinstance(value, int):
        return ("valueInteger", value) if -2 ** 31 <= value < 2 ** 31 else ("valueDecimal", value)
    if isinstance(value, Decimal):
        return "valueDecimal", _number(value)
    if isinstance(value, str):
        return "valueString", value
    if isinstance(value, cqldt.Date):
        return "valueDate", cqldt.to_string(value)
    if isinstance(value, cqldt.DateTime):
        return "valueDateTime", cqldt.to_string(value)
    if isinstance(value, cqldt.Time):
        return "valueTime", cqldt.to_string(value)
    if isinstance(value, cqlq.Quantity):
        return "valueQuantity", _quantity(value)
    if isinstance(value, cqlq.Ratio):
        return "valueRatio", {"numerator": _quantity(value.numerator), "denominator": _quantity(value.denominator)}
    if isinstance(value, Code):
        return "valueCoding", _coding(value)
    if isinstance(value, Concept):
        out: dict[str, Any] = {"coding": [_coding(c) for c in value.codes]}
        if value.display:
            out["text"] = value.display
        return "valueCodeableConcept", out
    if isinstance(value, Interval):
        return _interval(value)
    return None, None


def _interval(iv: Interval) -> tuple[str | None, Any]:
    """Date and DateTime intervals as a Period, Quantity intervals as a Range (closed boundaries only)."""
    lo, hi = iv.low, iv.high
    points = [p for p in (lo, hi) if p is not None]
    if points and all(isinstance(p, (cqldt.Date, cqldt.DateTime)) for p in points):
        period = {k: cqldt.to_string(p) for k, p in (("start", lo), ("end", hi)) if p is not None}
        if iv.low_closed and iv.high_closed:
            return "valuePeriod", period
    if points and all(isinstance(p, cqlq.Quantity) for p in points) and iv.low_closed and iv.high_closed:
        return "valueRange", {k: _quantity(p) for k, p in (("low", lo), ("high", hi)) if p is not None}
    return None, None
