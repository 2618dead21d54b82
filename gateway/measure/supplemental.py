"""Supplemental data elements (SDE) in MeasureReports, as the Quality Measure IG and DEQM describe them.

An SDE's value for one subject is reduced to a small, picklable list of ``SdeValue``: codes (sex, race,
ethnicity, payer: a Code, a Concept, a tuple with ``codes``/``code``, or lists of these), resources, or
plain values as text. Reports then carry, per SDE, the R5-backport ``supplementalData`` extension on the
MeasureReport root whose Reference carries ``cqf-criteriaReference`` (the Measure's SDE id):

- a code or text value points to a contained Observation with ``cqf-measureInfo``, ``code`` = the value and
  ``valueInteger`` = the number of subjects with that value (1 in an individual report);
- a resource value (individual reports only) points to the resource itself.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ..cql.fhirmodel import Node
from ..cql.values import Code, Concept

SUPPLEMENTAL_EXT = "http://hl7.org/fhir/5.0/StructureDefinition/extension-MeasureReport.supplementalData"
CRITERIA_REF = "http://hl7.org/fhir/StructureDefinition/cqf-criteriaReference"
MEASURE_INFO = "http://hl7.org/fhir/StructureDefinition/cqf-measureInfo"


@dataclass(frozen=True)
class SdeValue:
    kind: str  # "code" | "resource" | "text"
    key: str  # system|code, Type/id, or the text itself
    system: str | None = None
    code: str | None = None
    display: str | None = None


def _code(system: str | None, code: str | None, display: str | None) -> SdeValue | None:
    if not code:
        return None
    return SdeValue("code", f"{system or ''}|{code}", system, code, display)


def _from_json(v: dict[str, Any]) -> list[SdeValue | None]:
    """FHIR JSON (what FHIRPath criteria return): a resource, a Coding or a CodeableConcept."""
    if v.get("resourceType") and v.get("id"):
        return [SdeValue("resource", f"{v['resourceType']}/{v['id']}")]
    if "coding" in v:
        return [_code(c.get("system"), c.get("code"), c.get("display")) for c in v.get("coding") or []]
    if "code" in v and isinstance(v.get("code"), str):
        return [_code(v.get("system"), v["code"], v.get("display"))]
    return [SdeValue("text", str(v))]


def sde_values(value: Any) -> list[SdeValue]:
    """The distinct values of one subject's SDE result, in order."""
    out: list[SdeValue | None] = []
    stack = [value]
    while stack:
        v = stack.pop(0)
        if v is None:
            continue
        if isinstance(v, list | tuple):
            stack[:0] = list(v)
        elif isinstance(v, Code):
            out.append(_code(v.system, v.code, v.display))
        elif isinstance(v, Concept):
            out.extend(_code(c.system, c.code, c.display) for c in v.codes)
        elif isinstance(v, Node):
            res = v.value
            if isinstance(res, dict) and res.get("resourceType") and res.get("id"):
                out.append(SdeValue("resource", f"{res['resourceType']}/{res['id']}"))
            elif isinstance(res, dict):
                out.extend(_from_json(res))
            else:
                out.append(SdeValue("text", str(res)))
        elif isinstance(v, dict):  # a CQL tuple (race/ethnicity: codes + display; payer: code + period)
            if "codes" in v or "code" in v:
                stack[:0] = [v.get("codes"), v.get("code")]
            elif v.get("resourceType"):
                out.extend(_from_json(v))
            else:
                out.append(SdeValue("text", str(v)))
        elif isinstance(v, bool):
            out.append(SdeValue("text", "true" if v else "false"))
        else:
            out.append(SdeValue("text", str(v)))
    seen: dict[str, SdeValue] = {}
    for sv in out:
        if sv is not None and sv.key not in seen:
            seen[sv.key] = sv
    return list(seen.values())


def _obs_id(sde_id: str, n: int) -> str:
    return re.sub(r"[^A-Za-z0-9\-.]", "-", f"{sde_id}-{n}")[:64]


def report_parts(measure_canonical: str, sdes: list[tuple[str | None, str]], tallies: dict[str, Any],
                 individual: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(root extensions, contained Observations, evaluatedResource entries) for the report's SDEs.
    ``tallies``: per SDE id (or expression when the SDE has no id) an ``aggregate.SdeTally`` — the subjects
    per value and the values in the order first seen."""
    extensions: list[dict[str, Any]] = []
    contained: list[dict[str, Any]] = []
    evaluated: list[dict[str, Any]] = []
    for sde_id, expr in sdes:
        ref_id = sde_id or expr
        tally = tallies.get(ref_id)
        counts: Counter[str] = tally.counts if tally is not None else Counter()
        values: dict[str, SdeValue] = tally.values if tally is not None else {}
        criteria = {"url": CRITERIA_REF, "valueString": ref_id}
        for n, (key, v) in enumerate(values.items(), start=1):
            if v.kind == "resource":
                if individual:
                    extensions.append({"url": SUPPLEMENTAL_EXT,
                                       "valueReference": {"extension": [criteria], "reference": v.key}})
                continue
            oid = _obs_id(ref_id, n)
            code: dict[str, Any]
            if v.kind == "code":
                coding = {k: val for k, val in (("system", v.system), ("code", v.code), ("display", v.display))
                          if val}
                code = {"coding": [coding]}
            else:
                code = {"text": v.key}
            contained.append({
                "resourceType": "Observation", "id": oid,
                "extension": [{"url": MEASURE_INFO, "extension": [
                    {"url": "measure", "valueCanonical": measure_canonical},
                    {"url": "populationId", "valueString": ref_id}]}],
                "status": "final", "code": code, "valueInteger": counts[key]})
            ref = {"extension": [criteria], "reference": f"#{oid}"}
            extensions.append({"url": SUPPLEMENTAL_EXT, "valueReference": ref})
            if individual:
                evaluated.append(dict(ref))
    return extensions, contained, evaluated
