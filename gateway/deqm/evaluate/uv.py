"""The Universal-realm inputs of DEQM ``Measure/$evaluate``: the subject as ``subjectGroup`` (a Group given inline
or by reference), CQL parameter values given as a ``parameters`` Parameters resource, and ``productLine``.

Kept apart from the handler so the request parsing stays readable and the conversions can be tested alone."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from ...cql.datetime import from_fhir, parse_datetime
from ...cql.interval import Interval
from ...cql.quantity import Quantity
from ...cql.values import Code, CqlError
from ...fhir.errors import BadRequest
from ..measure_select import group_members

# MeasureReport extension carrying the request's productLine (the HAPI/CQF Clinical Reasoning extra; neither
# R4 core nor DEQM defines it, see docs/operations.md)
PRODUCT_LINE_EXT = "http://hl7.org/fhir/us/cqframework/cqfmeasures/StructureDefinition/cqfm-productLine"
RESERVED = ("Measurement Period",)  # given by periodStart/periodEnd, never by ``parameters``


def inline_group_members(group: Any) -> list[str]:
    """The Patient ids of an inline ``subjectGroup`` (active members only, as for a stored Group). A resource
    that is not a Group, or a Group naming no Patient, is refused: evaluating nobody would silently report
    zero counts."""
    if not isinstance(group, dict) or group.get("resourceType") != "Group":
        raise BadRequest("subjectGroup must be a Group resource (or a Group/[id] reference)")
    members = group_members(group)
    if not members:
        raise BadRequest("subjectGroup names no active Patient member (member.entity Patient/[id])")
    return members


def _period(p: dict[str, Any], name: str) -> Interval:
    lo, hi = p.get("start"), p.get("end")
    try:
        start = parse_datetime(lo) if isinstance(lo, str) else None
        end = parse_datetime(hi) if isinstance(hi, str) else None
        return Interval(start, end, True, True)
    except (CqlError, ValueError) as exc:
        raise BadRequest(f"parameters: {name}: invalid Period: {exc}") from None


def _value(p: dict[str, Any]) -> Any:
    """One Parameters entry's value[x] as the CQL value of that FHIR type."""
    name = p.get("name")
    found = [(k, v) for k, v in p.items() if k.startswith("value")]
    if len(found) != 1:
        raise BadRequest(f"parameters: {name} needs exactly one value[x]")
    key, v = found[0]
    try:
        if key == "valueBoolean" and isinstance(v, bool):
            return v
        if key in ("valueInteger", "valuePositiveInt", "valueUnsignedInt") and isinstance(v, int) \
                and not isinstance(v, bool):
            return v
        if key == "valueDecimal" and isinstance(v, (int, float)) and not isinstance(v, bool):
            return Decimal(str(v))
        if key in ("valueString", "valueCode", "valueId", "valueUri", "valueUrl", "valueCanonical") \
                and isinstance(v, str):
            return v
        if key in ("valueDate", "valueDateTime", "valueInstant", "valueTime") and isinstance(v, str):
            return parse_datetime(v) if key in ("valueDateTime", "valueInstant") and "T" in v else from_fhir(v)
        if key == "valuePeriod" and isinstance(v, dict):
            return _period(v, str(name))
        if key == "valueQuantity" and isinstance(v, dict) and isinstance(v.get("value"), (int, float)):
            return Quantity(Decimal(str(v["value"])), v.get("code") or v.get("unit") or "1")
        if key == "valueCoding" and isinstance(v, dict) and isinstance(v.get("code"), str):
            return Code(v["code"], v.get("system"), v.get("version"), v.get("display"))
    except (CqlError, ValueError, InvalidOperation) as exc:
        raise BadRequest(f"parameters: {name}: {exc}") from None
    raise BadRequest(f"parameters: {name}: {key} is not a value this server passes to CQL (boolean, integer, "
                     "decimal, string, code, date, dateTime, time, Period, Quantity, Coding)")


def cql_parameters(resource: Any, reserved: tuple[str, ...] = RESERVED) -> dict[str, Any]:
    """The ``parameters`` input (a Parameters resource) as CQL parameter values by name, for the measure's
    libraries (``Library.Name`` or ``Name``). Malformed input is a 400, never a silent default. ``reserved``
    names are refused (a measure's period comes from periodStart and periodEnd; CPG ``Library/$evaluate``
    reserves none)."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "Parameters":
        raise BadRequest("parameters must be a Parameters resource")
    entries = resource.get("parameter")
    if entries is None:
        return {}
    if not isinstance(entries, list):
        raise BadRequest("parameters: Parameters.parameter must be a list")
    out: dict[str, Any] = {}
    for p in entries:
        if not isinstance(p, dict) or not isinstance(p.get("name"), str) or not p["name"]:
            raise BadRequest("parameters: every entry needs a name")
        name = p["name"]
        if name.split(".")[-1] in reserved:
            raise BadRequest(f"parameters: {name} is set by periodStart and periodEnd")
        if name in out:
            raise BadRequest(f"parameters: {name} is given twice")
        out[name] = _value(p)
    return out


def with_product_line(report: dict[str, Any], product_line: str | None) -> dict[str, Any]:
    """The report marked with the request's productLine (e.g. Medicare), as an extension."""
    if product_line:
        report.setdefault("extension", []).append({"url": PRODUCT_LINE_EXT, "valueString": product_line})
    return report
