"""Reading a FHIR Measure: groups, populations, stratifiers, scoring and population basis."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .fhirpath_criteria import fhirpath_only

CQFM = "http://hl7.org/fhir/us/cqfmeasures/StructureDefinition/"
POPULATION_CODES = ("initial-population", "denominator", "denominator-exclusion", "denominator-exception",
                    "numerator", "numerator-exclusion", "measure-population", "measure-population-exclusion",
                    "measure-observation")


def _ext(node: dict[str, Any], name: str) -> Any:
    for e in node.get("extension") or []:
        if e.get("url") == CQFM + name:
            for k, v in e.items():
                if k.startswith("value"):
                    return v
    return None


def _code(cc: Any) -> str | None:
    if isinstance(cc, dict):
        for c in cc.get("coding") or []:
            if c.get("code"):
                return c["code"]
    return None


@dataclass
class Population:
    code: str
    expression: str | None
    id: str | None
    raw: dict[str, Any]
    aggregate: str | None = None  # measure-observation: aggregateMethod
    criteria_reference: str | None = None  # measure-observation: the population id it observes


@dataclass
class Stratifier:
    id: str | None
    expression: str | None
    components: list[tuple[str | None, str]]
    raw: dict[str, Any]


@dataclass
class Group:
    index: int
    id: str | None
    scoring: str
    basis: str  # "boolean" or a resource type name
    improvement: str | None
    populations: list[Population]
    stratifiers: list[Stratifier]
    raw: dict[str, Any]

    @property
    def patient_based(self) -> bool:
        return self.basis == "boolean"

    def population(self, code: str) -> Population | None:
        return next((p for p in self.populations if p.code == code), None)


@dataclass
class MeasureDef:
    resource: dict[str, Any]
    library_url: str  # "" for a measure whose criteria are all FHIRPath and that names no library
    groups: list[Group] = field(default_factory=list)
    supplemental: list[tuple[str | None, str]] = field(default_factory=list)  # (id, expression)

    @classmethod
    def from_resource(cls, measure: dict[str, Any]) -> MeasureDef:
        libs = measure.get("library") or []
        if not libs and not fhirpath_only(measure):  # FHIRPath criteria (text/fhirpath) need no library
            raise ValueError(f"Measure {measure.get('url') or measure.get('id')} names no library")
        default_scoring = _code(measure.get("scoring")) or "proportion"
        default_basis = _ext(measure, "cqfm-populationBasis") or "boolean"
        improvement = _code(measure.get("improvementNotation"))
        out = cls(measure, libs[0] if libs else "")
        for i, g in enumerate(measure.get("group") or []):
            pops = []
            for p in g.get("population") or []:
                code = _code(p.get("code"))
                if code is None:
                    continue
                agg = None
                ref = None
                for e in p.get("extension") or []:
                    if e.get("url", "").endswith("cqfm-aggregateMethod"):
                        agg = e.get("valueCode") or _code(e.get("valueCodeableConcept")) or e.get("valueString")
                    if e.get("url", "").endswith("cqfm-criteriaReference"):
                        ref = e.get("valueString")
                pops.append(Population(code, (p.get("criteria") or {}).get("expression"), p.get("id"), p, agg, ref))
            strats = [Stratifier(s.get("id"), (s.get("criteria") or {}).get("expression"),
                                 [(c.get("id"), (c.get("criteria") or {}).get("expression")) for c in s.get("component") or []],
                                 s) for s in g.get("stratifier") or []]
            scoring = _code(_ext(g, "cqfm-scoring")) or default_scoring
            basis = _ext(g, "cqfm-populationBasis") or default_basis
            out.groups.append(Group(i, g.get("id"), scoring, basis,
                                    _code(_ext(g, "cqfm-improvementNotation")) or improvement, pops, strats, g))
        for sde in measure.get("supplementalData") or []:
            expr = (sde.get("criteria") or {}).get("expression")
            if expr:
                out.supplemental.append((sde.get("id"), expr))
        return out
