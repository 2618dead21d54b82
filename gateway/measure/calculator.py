"""Population membership, measure observations and individual MeasureReports for one subject.

Rules follow the Quality Measure IG (proportion, ratio, continuous-variable, cohort): each population is a set
of members — the subject for patient-based groups, the resources returned for resource-based (episode)
groups — and the sets cascade: DEN ⊆ IP; DENEX ⊆ DEN; NUM ⊆ DEN − DENEX (proportion) or ⊆ IP (ratio);
NUMEX ⊆ NUM; DENEXCEP ⊆ DEN − DENEX − NUM; MSRPOPL ⊆ IP; MSRPOPLEX ⊆ MSRPOPL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..cql.engine import Context, Engine
from ..cql.fhirmodel import Node
from ..cql.library import ElmLibrary
from .model import Group, MeasureDef


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

    def count(self, code: str) -> int:
        return len(self.members.get(code, []))


@dataclass
class SubjectResult:
    subject: str
    groups: list[GroupResult]
    supplemental: dict[str, Any] = field(default_factory=dict)
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


def evaluate_group(group: Group, engine: Engine, library: ElmLibrary, ctx: Context, subject: str) -> GroupResult:
    comp = engine.compiler(library)
    res = GroupResult(group)
    raw: dict[str, list[str]] = {}
    for p in group.populations:
        if p.code == "measure-observation" or not p.expression:
            continue
        value = comp.definition(p.expression)(ctx)
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
    _observe(group, comp, ctx, res, m)
    _stratify(group, comp, ctx, res, subject)
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


def _stratify(group: Group, comp: Any, ctx: Context, res: GroupResult, subject: str) -> None:
    """Per stratifier, the stratum of each member: patient-based groups evaluate the criteria once for the
    subject; episode-based groups call it as a function of each member when the library defines one."""
    for si, strat in enumerate(group.stratifiers):
        exprs = [strat.expression] if strat.expression else [e for _, e in strat.components if e]
        if not exprs:
            continue
        if group.patient_based:
            values = [comp.definition(e)(ctx) for e in exprs]
            key = "|".join(stratum_value(v) for v in values)
            res.strata.append((si, {subject: key}))
            continue
        keys: dict[str, str] = {}
        for member, node in res.resources.items():
            parts = []
            for e in exprs:
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


def _observe(group: Group, comp: Any, ctx: Context, res: GroupResult, m: dict[str, list[str]]) -> None:
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


def evaluate_subject(measure: MeasureDef, engine: Engine, library: ElmLibrary, ctx: Context,
                     subject: str) -> SubjectResult:
    groups = [evaluate_group(g, engine, library, ctx, subject) for g in measure.groups]
    out = SubjectResult(subject, groups)
    comp = engine.compiler(library)
    for _sid, expr in measure.supplemental:
        try:
            out.supplemental[expr] = comp.definition(expr)(ctx)
        except Exception as exc:  # noqa: BLE001 - a supplemental element must not sink the populations
            ctx.messages.append(f"warning: supplemental data element {expr}: {exc}")
    return out
