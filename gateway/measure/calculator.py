"""Population membership, measure observations and individual MeasureReports for one subject.

Rules follow the Quality Measure IG (proportion, ratio, continuous-variable, cohort): each population is a set
of members — the subject for patient-based groups, the resources returned for resource-based (episode)
groups — and the sets cascade: DEN ⊆ IP; DENEX ⊆ DEN; NUM ⊆ DEN − DENEX (proportion) or ⊆ IP (ratio);
NUMEX ⊆ NUM; DENEXCEP ⊆ DEN − DENEX − NUM; MSRPOPL ⊆ IP; MSRPOPLEX ⊆ MSRPOPL.

Criteria are CQL definitions of the measure's library, or FHIRPath expressions (``text/fhirpath``, see
``fhirpath_criteria``); a measure whose criteria are all FHIRPath is evaluated with ``library=None``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..cql.engine import Context, Engine
from ..cql.fhirmodel import Node
from ..cql.library import ElmLibrary
from ..cql.values import CqlError
from . import fhirpath_criteria as fhirpath
from .model import Group, MeasureDef
from .supplemental import SdeValue, sde_values


def member_key(value: Any) -> str:
    if isinstance(value, Node):
        v = value.value
        if isinstance(v, dict):
            return f"{v.get('resourceType', value.type)}/{v.get('id')}"
    return repr(value)


@dataclass
class GroupResult:
    group: Group
    members: dict[str, list[str]] = field(default_factory=dict)  # population code -> member keys
    observations: list[tuple[str, str, Any]] = field(default_factory=list)  # (observed population, key, value)
    resources: dict[str, Any] = field(default_factory=dict)  # key -> Node
    strata: list[tuple[int, dict[str, str]]] = field(default_factory=list)  # (stratifier, member -> stratum)
    used: dict[str, list[str]] = field(default_factory=dict)  # population code -> resources that fed its criteria

    def count(self, code: str) -> int:
        return len(self.members.get(code, []))


@dataclass
class SubjectResult:
    subject: str
    groups: list[GroupResult]
    supplemental: dict[str, list[SdeValue]] = field(default_factory=dict)  # SDE id (or expression) -> values
    messages: list[str] = field(default_factory=list)  # "severity: text" from CQL Message and failed SDEs
    evaluated: list[str] = field(default_factory=list)


def _as_members(value: Any, patient_based: bool, subject: str, into: dict[str, Any]) -> list[str]:
    if patient_based:
        return [subject] if value is True else []
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    keys = []
    for it in items:
        if it is None:
            continue
        k = member_key(it)
        if k not in into:
            into[k] = it
            keys.append(k)
        elif k not in keys:
            keys.append(k)
    return keys


def _minus(a: list[str], *others: list[str]) -> list[str]:
    drop = set().union(*[set(o) for o in others]) if others else set()
    return [x for x in a if x not in drop]


def _within(a: list[str], b: list[str]) -> list[str]:
    keep = set(b)
    return [x for x in a if x in keep]


class _NoLibrary:
    """Stands in for the library compiler of a measure without a library: any CQL criterion is an error."""

    def __init__(self, measure: MeasureDef | None) -> None:
        self.measure = measure

    def _fail(self, name: str) -> Any:
        res = self.measure.resource if self.measure is not None else {}
        raise CqlError(f"Measure {res.get('url') or res.get('id') or ''}: criteria {name!r} is not FHIRPath "
                       "(text/fhirpath) and the measure has no library to evaluate it")

    def definition(self, name: str) -> Any:
        return self._fail(name)

    def function(self, fdef: dict[str, Any]) -> Any:
        return self._fail(fdef.get("name", ""))

    @property
    def library(self) -> Any:
        return self._fail("(library functions)")


def _compiler(engine: Engine, library: ElmLibrary | None, measure: MeasureDef | None) -> Any:
    return engine.compiler(library) if library is not None else _NoLibrary(measure)


def evaluate_group(group: Group, engine: Engine, library: ElmLibrary | None, ctx: Context, subject: str,
                   measure: MeasureDef | None = None) -> GroupResult:
    comp = _compiler(engine, library, measure)
    res = GroupResult(group)
    raw: dict[str, list[str]] = {}
    for p in group.populations:
        if p.code == "measure-observation" or not p.expression:
            continue
        if fhirpath.is_fhirpath(p.raw.get("criteria")):
            value = fhirpath.population_value(measure, group, p, ctx)
        else:
            value = comp.definition(p.expression)(ctx)
            if ctx.evaluated is not None and library is not None:
                res.used[p.code] = list(ctx.used_by.get((library.key, p.expression), ()))
        raw[p.code] = _as_members(value, group.patient_based, subject, res.resources)
    ip = raw.get("initial-population", [])
    m: dict[str, list[str]] = {"initial-population": ip}
    scoring = group.scoring
    if scoring in ("proportion", "ratio"):
        den = _within(raw.get("denominator", []), ip)
        denex = _within(raw.get("denominator-exclusion", []), den)
        if scoring == "proportion":
            num = _within(raw.get("numerator", []), _minus(den, denex))
        else:
            num = _within(raw.get("numerator", []), ip)
        numex = _within(raw.get("numerator-exclusion", []), num)
        denexcep = _within(raw.get("denominator-exception", []), _minus(den, denex, num)) \
            if scoring == "proportion" else []
        m.update({"denominator": den, "denominator-exclusion": denex, "numerator": num,
                  "numerator-exclusion": numex, "denominator-exception": denexcep})
    elif scoring == "continuous-variable":
        mp = _within(raw.get("measure-population", []), ip)
        mpex = _within(raw.get("measure-population-exclusion", []), mp)
        m.update({"measure-population": mp, "measure-population-exclusion": mpex})
    res.members = {code: keys for code, keys in m.items() if any(p.code == code for p in group.populations)}
    _observe(group, comp, ctx, res, m, measure)
    _stratify(group, comp, ctx, res, subject, measure)
    return res


def stratum_value(value: Any) -> str:
    """A stratum's key: booleans, codes and plain values as text (a report carries it as CodeableConcept.text)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    code = getattr(value, "code", None)
    if isinstance(code, str):
        return code
    codes = getattr(value, "codes", None)
    if codes:
        return codes[0].code
    return "null" if value is None else str(value)


def _stratify(group: Group, comp: Any, ctx: Context, res: GroupResult, subject: str,
              measure: MeasureDef | None = None) -> None:
    """Per stratifier, the stratum of each member: patient-based groups evaluate the criteria once for the
    subject; episode-based groups call it as a function of each member when the library defines one (a
    FHIRPath criterion is evaluated with the member as its context)."""
    for si, strat in enumerate(group.stratifiers):
        exprs = [strat.expression] if strat.expression else [e for _, e in strat.components if e]
        if not exprs:
            continue
        crits = [strat.raw.get("criteria")] if strat.expression else \
            [c.get("criteria") for c in strat.raw.get("component") or [] if (c.get("criteria") or {}).get("expression")]
        is_fp = {e: fhirpath.is_fhirpath(c) for e, c in zip(exprs, crits, strict=False)}
        if group.patient_based:
            key = "|".join(fhirpath.stratum_text(measure, group, si, e, ctx) if is_fp.get(e)
                           else stratum_value(comp.definition(e)(ctx)) for e in exprs)
            res.strata.append((si, {subject: key}))
            continue
        keys: dict[str, str] = {}
        for member, node in res.resources.items():
            parts = []
            for e in exprs:
                if is_fp.get(e):
                    parts.append(fhirpath.stratum_text(measure, group, si, e, ctx, getattr(node, "value", node)))
                    continue
                fdefs = [f for f in comp.library.functions.get(e, []) if len(f.get("operand", [])) == 1]
                if fdefs:
                    body = comp.function(fdefs[0])
                    saved = ctx.scope
                    ctx.scope = {fdefs[0]["operand"][0]["name"]: node}
                    try:
                        parts.append(stratum_value(body(ctx)))
                    finally:
                        ctx.scope = saved
                else:
                    value = comp.definition(e)(ctx)
                    parts.append(stratum_value(value if not isinstance(value, list) else node in value))
            keys[member] = "|".join(parts)
        res.strata.append((si, keys))


def _observe(group: Group, comp: Any, ctx: Context, res: GroupResult, m: dict[str, list[str]],
             measure: MeasureDef | None = None) -> None:
    observations = [p for p in group.populations if p.code == "measure-observation" and p.expression]
    if not observations:
        return
    by_id = {p.id: p.code for p in group.populations}
    for obs in observations:
        target = by_id.get(obs.criteria_reference) if obs.criteria_reference else None
        if target is None:
            target = "measure-population" if group.scoring == "continuous-variable" else None
        if target is None:
            continue
        if group.scoring == "continuous-variable":
            keys = _minus(m.get("measure-population", []), m.get("measure-population-exclusion", []))
        elif target == "denominator":
            keys = _minus(m.get("denominator", []), m.get("denominator-exclusion", []))
        elif target == "numerator":
            keys = _minus(m.get("numerator", []), m.get("numerator-exclusion", []))
        else:
            keys = m.get(target, [])
        if fhirpath.is_fhirpath(obs.raw.get("criteria")):
            for k in keys:
                member = res.resources.get(k)
                value = fhirpath.observation_value(measure, group, obs, ctx,
                                                   None if group.patient_based else getattr(member, "value", member))
                res.observations.append((target, k, value))
            continue
        fdefs = comp.library.functions.get(obs.expression) or []
        fdef = next((f for f in fdefs if len(f.get("operand", [])) == (0 if group.patient_based else 1)), None)
        if fdef is None:
            continue
        body = comp.function(fdef)
        params = [o["name"] for o in fdef.get("operand", [])]
        for k in keys:
            saved = ctx.scope
            ctx.scope = dict(zip(params, [res.resources.get(k)] if params else [], strict=False))
            try:
                value = body(ctx)
            finally:
                ctx.scope = saved
            res.observations.append((target, k, value))


def evaluate_subject(measure: MeasureDef, engine: Engine, library: ElmLibrary | None, ctx: Context,
                     subject: str) -> SubjectResult:
    groups = [evaluate_group(g, engine, library, ctx, subject, measure) for g in measure.groups]
    out = SubjectResult(subject, groups)
    comp = _compiler(engine, library, measure)
    fp_sde = {(sde.get("criteria") or {}).get("expression") for sde in measure.resource.get("supplementalData") or []
              if fhirpath.is_fhirpath(sde.get("criteria"))}
    for sid, expr in measure.supplemental:
        try:
            if expr in fp_sde:
                value = fhirpath.supplemental_value(measure, sid, expr, ctx)
            else:
                value = comp.definition(expr)(ctx)
        except Exception as exc:  # noqa: BLE001 - a supplemental element must not sink the populations
            ctx.messages.append(f"warning: supplemental data element {sid or expr}: {exc}")
            continue
        out.supplemental[sid or expr] = sde_values(value)
    out.messages = list(dict.fromkeys(ctx.messages))
    return out
