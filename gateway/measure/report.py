"""MeasureReports from evaluation results, following the DEQM profiles: individual (one subject),
subject-list (counts plus, per population, the List of individual reports) and summary (population)."""

from __future__ import annotations

import uuid
from collections import Counter
from decimal import Decimal
from typing import Any

from ..fhir.dates import now_instant
from .aggregate import MAX_MESSAGES, GroupTally, ReportTally
from .calculator import SubjectResult
from .model import Group, MeasureDef
from .supplemental import CRITERIA_REF, report_parts

DEQM = "http://hl7.org/fhir/us/davinci-deqm/StructureDefinition/"
PROFILE = {"individual": DEQM + "indv-measurereport-deqm", "subject-list": DEQM + "subjectlist-measurereport-deqm",
           "summary": DEQM + "summary-measurereport-deqm"}
POP_SYSTEM = "http://terminology.hl7.org/CodeSystem/measure-population"
SCORING_SYSTEM = "http://terminology.hl7.org/CodeSystem/measure-scoring"
IMPROVEMENT_SYSTEM = "http://terminology.hl7.org/CodeSystem/measure-improvement-notation"


def measure_canonical(measure: MeasureDef) -> str:
    res = measure.resource
    url = res.get("url") or f"Measure/{res.get('id')}"
    return f"{url}|{res['version']}" if res.get("version") else url


SCORED = ("proportion", "ratio", "continuous-variable")


def _improvement(code: str) -> dict[str, Any]:
    return {"coding": [{"system": IMPROVEMENT_SYSTEM, "code": code}]}


def _root(measure: MeasureDef, report_type: str, period: tuple[str, str], reporter: str | None) -> dict[str, Any]:
    """The parts every report shares. DEQM: measureScoring on the report when all groups share one scoring
    (else on every group, never both: deqm-3); improvementNotation on the report for scored measures (deqm-2),
    from the Measure or, when its groups agree, from them; reporter 1..1."""
    scorings = {g.scoring for g in measure.groups} or {"proportion"}
    mr: dict[str, Any] = {
        "resourceType": "MeasureReport",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [PROFILE[report_type]]},
    }
    if len(scorings) == 1:
        mr["extension"] = [_scoring_ext(next(iter(scorings)))]
    mr.update({"status": "complete", "type": report_type, "measure": measure_canonical(measure),
               "date": now_instant(), "period": {"start": period[0], "end": period[1]}})
    mr["reporter"] = {"reference": reporter} if reporter else {"display": DEFAULT_REPORTER}
    notation = measure.resource.get("improvementNotation")
    if notation:
        mr["improvementNotation"] = notation
    else:
        found = {g.improvement for g in measure.groups if g.scoring in SCORED}
        if len(found) == 1 and None not in found:
            mr["improvementNotation"] = _improvement(next(iter(found)))  # type: ignore[arg-type]
    return mr


DEFAULT_REPORTER = "FHIR VBC Gateway (set GATEWAY_REPORTER to the reporting Organization)"


def _scoring_ext(code: str) -> dict[str, Any]:
    return {"url": DEQM + "extension-measureScoring",
            "valueCodeableConcept": {"coding": [{"system": SCORING_SYSTEM, "code": code}]}}


def _score(group: Group, counts: dict[str, int], observations: list[Decimal]) -> Decimal | None:
    s = group.scoring
    if s == "proportion":
        den = counts.get("denominator", 0) - counts.get("denominator-exclusion", 0) \
            - counts.get("denominator-exception", 0)
        num = counts.get("numerator", 0) - counts.get("numerator-exclusion", 0)
        return None if den <= 0 else (Decimal(num) / Decimal(den)).quantize(Decimal("0.00000001")).normalize()
    if s == "ratio":
        den = counts.get("denominator", 0) - counts.get("denominator-exclusion", 0)
        num = counts.get("numerator", 0) - counts.get("numerator-exclusion", 0)
        return None if den <= 0 else (Decimal(num) / Decimal(den)).quantize(Decimal("0.00000001")).normalize()
    if s == "continuous-variable":
        values = observations  # Decimals of the non-null observed values (GroupTally.observations)
        if not values:
            return None
        method = next((p.aggregate for p in group.populations if p.code == "measure-observation"), None) or "Sum"
        return _aggregate(method, values)
    return None


def _aggregate(method: str, values: list[Decimal]) -> Decimal:
    m = method.lower()
    if m == "sum":
        return sum(values, Decimal(0))
    if m in ("average", "avg", "mean"):
        return (sum(values, Decimal(0)) / len(values)).quantize(Decimal("0.00000001")).normalize()
    if m == "median":
        s = sorted(values)
        mid = len(s) // 2
        return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2
    if m == "minimum":
        return min(values)
    if m == "maximum":
        return max(values)
    if m == "count":
        return Decimal(len(values))
    return sum(values, Decimal(0))


def _strata_json(group: Group, strata: list[dict[str, Counter[str]]]) -> list[dict[str, Any]]:
    """MeasureReport.group.stratifier: per stratifier, one stratum per value with its population counts."""
    out = []
    for si, strat in enumerate(group.stratifiers):
        per_value = strata[si]
        entry: dict[str, Any] = {}
        if strat.id:
            entry["id"] = strat.id
        if strat.raw.get("code"):
            entry["code"] = [strat.raw["code"]]
        entry["stratum"] = [{
            "value": {"text": value},
            "population": [{"code": {"coding": [{"system": POP_SYSTEM, "code": p.code}]}, "count": counts.get(p.code, 0)}
                           for p in group.populations if p.code != "measure-observation"],
        } for value, counts in sorted(per_value.items())]
        out.append(entry)
    return out


def _group_json(group: Group, tally: GroupTally, subject_lists: dict[str, str] | None = None,
                scoring_per_group: bool = False) -> dict[str, Any]:
    counts = tally.counts
    out: dict[str, Any] = {}
    if group.id:
        out["id"] = group.id
    if group.raw.get("code"):
        out["code"] = group.raw["code"]
    out["extension"] = [{"url": DEQM + "extension-calculatedDate", "valueDateTime": now_instant()}]
    if scoring_per_group:
        out["extension"].append(_scoring_ext(group.scoring))
    if group.improvement and group.scoring in SCORED:
        out["extension"].append({"url": DEQM + "extension-groupImprovementNotation",
                                 "valueCodeableConcept": _improvement(group.improvement)})
    pops = []
    for p in group.populations:
        if p.code == "measure-observation":
            continue
        entry: dict[str, Any] = {"code": {"coding": [{"system": POP_SYSTEM, "code": p.code}]},
                                 "count": counts.get(p.code, 0)}
        if p.id:
            entry["id"] = p.id
        if p.raw.get("description"):
            entry["extension"] = [{"url": "http://hl7.org/fhir/StructureDefinition/measurereport-populationDescription",
                                   "valueString": p.raw["description"]}]
        if subject_lists and p.code in subject_lists:
            entry["subjectResults"] = {"reference": subject_lists[p.code]}
        pops.append(entry)
    out["population"] = pops
    score = _score(group, counts, tally.observations())
    if score is not None:
        out["measureScore"] = {"value": float(score) if score != score.to_integral() else int(score)}
    if tally.seen and group.stratifiers:
        out["stratifier"] = _strata_json(group, tally.strata)
    return out


def individual_report(measure: MeasureDef, result: SubjectResult, period: tuple[str, str],
                      evaluated: list[str] | None = None, reporter: str | None = None) -> dict[str, Any]:
    mr = _root(measure, "individual", period, reporter)
    mr["subject"] = {"reference": result.subject}
    per_group = "extension" not in mr
    tally = ReportTally(measure)
    tally.add(result)
    mr["group"] = [_group_json(gr.group, t, None, per_group) for gr, t in zip(result.groups, tally.groups, strict=True)]
    _add_supplemental(mr, measure, tally, individual=True)
    _add_messages(mr, tally)
    entries = _evaluated_entries(result, evaluated or [])
    if entries:
        mr["evaluatedResource"] = entries + mr.get("evaluatedResource", [])
    return mr


def _evaluated_entries(result: SubjectResult, evaluated: list[str]) -> list[dict[str, Any]]:
    """evaluatedResource: every resource the evaluation read, each with one cqf-criteriaReference per
    population whose criteria it fed (the population's id in the Measure, else its code)."""
    fed: dict[str, list[str]] = {}
    for gr in result.groups:
        for p in gr.group.populations:
            for ref in gr.used.get(p.code, ()):
                names = fed.setdefault(ref, [])
                name = p.id or p.code
                if name not in names:
                    names.append(name)
    out = []
    for ref in evaluated:
        entry: dict[str, Any] = {"reference": ref}
        if fed.get(ref):
            entry["extension"] = [{"url": CRITERIA_REF, "valueString": n} for n in fed[ref]]
        out.append(entry)
    return out


MESSAGES_EXT = "http://hl7.org/fhir/StructureDefinition/cqf-messages"


def _add_messages(mr: dict[str, Any], tally: ReportTally) -> None:
    """Evaluation messages (CQL Message errors and warnings, supplemental data that could not be computed) as
    a contained OperationOutcome named by the cqf-messages extension; a population report counts subjects."""
    seen = tally.messages
    if not seen:
        return
    issues = []
    for text, n in list(seen.items())[:MAX_MESSAGES]:
        sev, _, rest = text.partition(": ")
        severity = sev if sev in ("fatal", "error", "warning", "information") else "information"
        if sev not in ("fatal", "error", "warning", "information"):
            rest = text
        diag = rest if tally.subjects == 1 else f"{rest} ({n} of {tally.subjects} subjects)"
        issues.append({"severity": severity, "code": "processing", "diagnostics": diag})
    mr["contained"] = mr.get("contained", []) + [{"resourceType": "OperationOutcome", "id": "messages",
                                                  "issue": issues}]
    mr["extension"] = mr.get("extension", []) + [{"url": MESSAGES_EXT, "valueReference": {"reference": "#messages"}}]


def _add_supplemental(mr: dict[str, Any], measure: MeasureDef, tally: ReportTally, individual: bool) -> None:
    if not measure.supplemental:
        return
    extensions, contained, evaluated = report_parts(measure_canonical(measure), measure.supplemental,
                                                    tally.sdes, individual)
    if extensions:
        mr["extension"] = mr.get("extension", []) + extensions
    if contained:
        mr["contained"] = mr.get("contained", []) + contained
    if evaluated:
        mr["evaluatedResource"] = mr.get("evaluatedResource", []) + evaluated


def summary_report(measure: MeasureDef, results: ReportTally | list[SubjectResult], period: tuple[str, str],
                   report_type: str = "summary", subject: str | None = None,
                   subject_lists: list[dict[str, str]] | None = None, reporter: str | None = None) -> dict[str, Any]:
    """A population report from the tally of a run (``ReportTally``), or from per-subject results (folded
    into a tally here)."""
    if isinstance(results, ReportTally):
        tally = results
    else:
        tally = ReportTally(measure)
        for r in results:
            tally.add(r)
    mr = _root(measure, report_type, period, reporter)
    per_group = "extension" not in mr
    mr["group"] = [_group_json(g, tally.groups[i], subject_lists[i] if subject_lists else None, per_group)
                   for i, g in enumerate(measure.groups)]
    if subject and report_type == "subject-list":
        mr["subject"] = {"reference": subject}
    _add_supplemental(mr, measure, tally, individual=False)
    _add_messages(mr, tally)
    return mr
