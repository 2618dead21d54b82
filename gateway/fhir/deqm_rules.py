"""The DEQM STU5 profile rules the gateway enforces, as plain checks returning Issues that name the rule:
MeasureReport flavours (individual, subject-list, summary, data-exchange) and the gaps-in-care Bundle,
Composition and DetectedIssue."""

from __future__ import annotations

from typing import Any

from .dates import is_valid
from .errors import Issue

SD = "http://hl7.org/fhir/us/davinci-deqm/StructureDefinition/"
PROFILES = {"individual": SD + "indv-measurereport-deqm", "subject-list": SD + "subjectlist-measurereport-deqm",
            "summary": SD + "summary-measurereport-deqm", "data-collection": SD + "datax-measurereport-deqm"}
SCORING_EXT = SD + "extension-measureScoring"
GROUP_IMPROVEMENT_EXT = SD + "extension-groupImprovementNotation"
UPDATE_TYPE_EXT = SD + "extension-submitDataUpdateType"
UPDATE_TYPES = ("incremental", "snapshot")
GAP_STATUS_EXT = SD + "extension-gapStatus"
GAP_STATUSES = ("open-gap", "closed-gap", "prospective-gap", "not-applicable")
MR_STATUSES = ("complete", "pending", "error")
# the profiles whose rules are enforced on write, by resource type (declared as supportedProfile)
ENFORCED = {"MeasureReport": list(PROFILES.values()), "Bundle": [SD + "gaps-bundle-deqm"],
            "DetectedIssue": [SD + "gaps-detectedissue-deqm"], "Composition": [SD + "gaps-composition-deqm"]}


def _issue(rule: str, text: str, path: str) -> Issue:
    return Issue("error", "invariant", f"{rule}: {text}", [path])


def _ext(node: dict[str, Any], url: str) -> list[dict[str, Any]]:
    return [e for e in node.get("extension") or [] if e.get("url") == url]


def _codes(cc: Any) -> list[str]:
    return [c.get("code") for c in (cc or {}).get("coding") or [] if c.get("code")] if isinstance(cc, dict) else []


def _ext_code(ext: dict[str, Any]) -> str | None:
    if "valueCode" in ext:
        return ext["valueCode"]
    codes = _codes(ext.get("valueCodeableConcept"))
    return codes[0] if codes else None


def _claims(resource: dict[str, Any], url: str) -> bool:
    return any(isinstance(p, str) and p.split("|")[0] == url for p in (resource.get("meta") or {}).get("profile") or [])


def flavour(mr: dict[str, Any], by_type: bool = True) -> str | None:
    """The DEQM flavour a MeasureReport claims: by meta.profile, else (``by_type``) by its type."""
    for kind, url in PROFILES.items():
        if _claims(mr, url):
            return kind
    return mr.get("type") if by_type and mr.get("type") in PROFILES else None


def update_type(mr: dict[str, Any]) -> str | None:
    exts = _ext(mr, UPDATE_TYPE_EXT)
    return _ext_code(exts[0]) if exts else None


def check_profiles(resource: dict[str, Any]) -> list[Issue]:
    """The DEQM rules for what a resource claims in meta.profile (run on every write and by $validate)."""
    rtype = resource.get("resourceType")
    if rtype == "MeasureReport" and flavour(resource, by_type=False):
        return check_measure_report(resource)
    if rtype == "Bundle" and _claims(resource, SD + "gaps-bundle-deqm"):
        return check_gaps_bundle(resource)
    if rtype == "DetectedIssue" and _claims(resource, SD + "gaps-detectedissue-deqm"):
        return [i for i in _check_issue({}, resource, "DetectedIssue") if "in the Bundle" not in i.diagnostics]
    if rtype == "Composition" and _claims(resource, SD + "gaps-composition-deqm"):
        return [i for i in _check_composition({}, resource) if "in the Bundle" not in i.diagnostics]
    return []


def check_measure_report(mr: dict[str, Any], by_type: bool = True) -> list[Issue]:
    """Base R4 cardinalities plus the DEQM profile rules for the flavour the report claims."""
    out: list[Issue] = []
    kind = flavour(mr, by_type)
    for el in ("status", "type", "measure", "period"):
        if not mr.get(el):
            out.append(_issue("MeasureReport." + el, f"{el} is required (1..1)", f"MeasureReport.{el}"))
    if mr.get("status") and mr["status"] not in MR_STATUSES:
        out.append(_issue("MeasureReport.status", f"status {mr['status']!r} is not one of "
                          + ", ".join(MR_STATUSES), "MeasureReport.status"))
    period = mr.get("period") or {}
    if mr.get("period") is not None:
        for end in ("start", "end"):
            v = period.get(end)
            if not v:
                out.append(_issue("deqm-1", f"period.{end} is required", f"MeasureReport.period.{end}"))
            elif not is_valid(v) or len(v) < 10:
                out.append(_issue("deqm-1", f"period.{end} must be a date of at least day precision, got {v!r}",
                                  f"MeasureReport.period.{end}"))
    if mr.get("type") == "data-collection" and mr.get("group"):
        out.append(_issue("mrp-1", "a data-collection report has no group", "MeasureReport.group"))
    if kind is None:
        return out
    if mr.get("type") != kind:
        out.append(_issue("MeasureReport.type", f"type is fixed to {kind!r} in {PROFILES[kind]}",
                          "MeasureReport.type"))
    measure = mr.get("measure") or ""
    if kind != "data-collection" and measure and "|" not in measure:
        out.append(_issue("deqm-0", "measure must be a versioned canonical (url|version)", "MeasureReport.measure"))
    for el in ("date", "reporter"):
        if not mr.get(el):
            out.append(_issue(f"MeasureReport.{el}", f"{el} is required (1..1) in {PROFILES[kind]}",
                              f"MeasureReport.{el}"))
    subject = (mr.get("subject") or {}).get("reference", "")
    if kind in ("individual", "data-collection") and not mr.get("subject"):
        out.append(_issue("MeasureReport.subject", f"subject is required (1..1) in {PROFILES[kind]}",
                          "MeasureReport.subject"))
    if kind == "individual" and subject.startswith("Group/"):
        out.append(_issue("MeasureReport.subject", "an individual report's subject is not a Group",
                          "MeasureReport.subject"))
    if kind == "subject-list" and mr.get("subject") and not subject.startswith("Group/"):
        out.append(_issue("MeasureReport.subject", "a subject-list report's subject is a Group",
                          "MeasureReport.subject"))
    if kind == "summary" and mr.get("subject"):
        out.append(_issue("MeasureReport.subject", "a summary report has no subject (0..0)", "MeasureReport.subject"))
    if kind == "data-collection":
        exts = _ext(mr, UPDATE_TYPE_EXT)
        if len(exts) != 1:
            out.append(_issue("extension-submitDataUpdateType", "a data-exchange report carries exactly one "
                              "submitDataUpdateType extension", "MeasureReport.extension"))
        elif _ext_code(exts[0]) not in UPDATE_TYPES:
            out.append(_issue("extension-submitDataUpdateType", f"update type {_ext_code(exts[0])!r} is not one of "
                              + ", ".join(UPDATE_TYPES), "MeasureReport.extension"))
        return out
    out.extend(_check_groups(mr, kind))
    return out


def _check_groups(mr: dict[str, Any], kind: str) -> list[Issue]:
    out: list[Issue] = []
    groups = mr.get("group") or []
    if kind in ("subject-list", "summary") and not groups:
        out.append(_issue("MeasureReport.group", f"group is required (1..*) in {PROFILES[kind]}",
                          "MeasureReport.group"))
    root_scoring = _ext(mr, SCORING_EXT)
    group_scoring = [_ext(g, SCORING_EXT) for g in groups]
    if root_scoring and any(group_scoring):
        out.append(_issue("deqm-3", "measureScoring goes on the report or on every group, not both",
                          "MeasureReport.extension"))
    if not root_scoring and (not groups or not all(group_scoring)):
        out.append(_issue("deqm-3", "measureScoring extension is required on the report or on every group",
                          "MeasureReport.extension"))
    scored = ("proportion", "ratio", "continuous-variable")
    if root_scoring and _ext_code(root_scoring[0]) in scored and not mr.get("improvementNotation"):
        out.append(_issue("deqm-2", "a proportion, ratio or continuous-variable report states improvementNotation",
                          "MeasureReport.improvementNotation"))
    for gi, g in enumerate(groups):
        path = f"MeasureReport.group[{gi}]"
        if group_scoring[gi] and _ext_code(group_scoring[gi][0]) in scored and not _ext(g, GROUP_IMPROVEMENT_EXT):
            out.append(_issue("deqm-4", "a scored group states groupImprovementNotation", path + ".extension"))
        scoring = _ext_code((root_scoring or group_scoring[gi] or [{}])[0])
        if not g.get("population") and scoring != "composite":
            out.append(_issue("deqm-5", "a group has at least one population", path + ".population"))
        for pi, p in enumerate(g.get("population") or []):
            ppath = f"{path}.population[{pi}]"
            if not _codes(p.get("code")):
                out.append(_issue("MeasureReport.group.population.code", "population code is required (1..1)",
                                  ppath + ".code"))
            quantity = _ext(p, "http://hl7.org/fhir/StructureDefinition/measurereport-countQuantity")
            if "count" in p and quantity:
                out.append(_issue("deqm-8", "count or countQuantity, not both", ppath))
            if kind == "subject-list" and not p.get("subjectResults"):
                out.append(_issue("MeasureReport.group.population.subjectResults",
                                  "a subject-list report points each population to its subject List", ppath))
            if kind != "subject-list" and p.get("subjectResults"):
                out.append(_issue("MeasureReport.group.population.subjectResults",
                                  f"subjectResults is not allowed (0..0) in {PROFILES[kind]}", ppath))
        score = (g.get("measureScore") or {}).get("value")
        if scoring == "proportion" and score is not None and not 0 <= score <= 1:
            out.append(_issue("deqm-6", f"a proportion score lies in [0, 1], got {score}", path + ".measureScore"))
    if kind in ("subject-list", "summary") and mr.get("evaluatedResource"):
        out.append(_issue("MeasureReport.evaluatedResource", f"evaluatedResource is not allowed (0..0) in "
                          f"{PROFILES[kind]}", "MeasureReport.evaluatedResource"))
    return out


def _resolve(bundle: dict[str, Any], ref: str) -> dict[str, Any] | None:
    for e in bundle.get("entry") or []:
        url = e.get("fullUrl") or ""
        if url == ref or (ref and "/" in ref and url.endswith("/" + ref)):
            return e.get("resource")
    return None


def check_gaps_bundle(bundle: dict[str, Any]) -> list[Issue]:
    """gaps-bundle-deqm with its Composition, DetectedIssues and individual MeasureReports."""
    out: list[Issue] = []
    ident = bundle.get("identifier") or {}
    if not (ident.get("system") and ident.get("value")):
        out.append(_issue("Bundle.identifier", "identifier with system and value is required", "Bundle.identifier"))
    if not bundle.get("timestamp"):
        out.append(_issue("Bundle.timestamp", "timestamp is required", "Bundle.timestamp"))
    entries = bundle.get("entry") or []
    if not entries:
        out.append(_issue("Bundle.entry", "entry is required (1..*)", "Bundle.entry"))
        return out
    comps = [e["resource"] for e in entries if (e.get("resource") or {}).get("resourceType") == "Composition"]
    if bundle.get("type") == "document":
        if not comps or entries[0]["resource"].get("resourceType") != "Composition":
            out.append(_issue("gic-1", "a document gaps Bundle starts with its Composition", "Bundle.entry[0]"))
    elif bundle.get("type") == "collection":
        if comps:
            out.append(_issue("gic-2", "a collection gaps Bundle holds no Composition", "Bundle.entry"))
    else:
        out.append(_issue("Bundle.type", "type is document or collection", "Bundle.type"))
    for c in comps:
        out.extend(_check_composition(bundle, c))
    for i, e in enumerate(entries):
        r = e.get("resource") or {}
        if r.get("resourceType") == "DetectedIssue":
            out.extend(_check_issue(bundle, r, f"Bundle.entry[{i}].resource"))
    return out


def _check_composition(bundle: dict[str, Any], comp: dict[str, Any]) -> list[Issue]:
    out: list[Issue] = []
    if "96315-7" not in _codes(comp.get("type")):
        out.append(_issue("Composition.type", "type is LOINC 96315-7 (Gaps in care report)", "Composition.type"))
    subject = (comp.get("subject") or {}).get("reference")
    if not subject:
        out.append(_issue("Composition.subject", "subject is required (1..1)", "Composition.subject"))
    for el in ("status", "date", "title"):
        if not comp.get(el):
            out.append(_issue(f"Composition.{el}", f"{el} is required", f"Composition.{el}"))
    if not comp.get("author"):
        out.append(_issue("Composition.author", "author is required (1..*)", "Composition.author"))
    if not comp.get("section"):
        out.append(_issue("Composition.section", "section is required (1..*)", "Composition.section"))
    for si, s in enumerate(comp.get("section") or []):
        path = f"Composition.section[{si}]"
        focus = _resolve(bundle, (s.get("focus") or {}).get("reference", ""))
        if focus is None or focus.get("resourceType") != "MeasureReport":
            out.append(_issue("Composition.section.focus", "focus references an individual MeasureReport in the "
                              "Bundle", path + ".focus"))
        elif (focus.get("subject") or {}).get("reference") != subject:
            out.append(_issue("Composition.section.focus", "the MeasureReport's subject is the Composition's",
                              path + ".focus"))
        if not s.get("entry"):
            out.append(_issue("Composition.section.entry", "entry is required (1..*)", path + ".entry"))
        for ei, ref in enumerate(s.get("entry") or []):
            issue = _resolve(bundle, ref.get("reference", ""))
            if issue is None or issue.get("resourceType") != "DetectedIssue":
                out.append(_issue("Composition.section.entry", "entry references a DetectedIssue in the Bundle",
                                  f"{path}.entry[{ei}]"))
    return out


def _check_issue(bundle: dict[str, Any], issue: dict[str, Any], path: str) -> list[Issue]:
    out: list[Issue] = []
    exts = [e for e in issue.get("modifierExtension") or [] if e.get("url") == GAP_STATUS_EXT]
    if len(exts) != 1:
        out.append(_issue("extension-gapStatus", "exactly one gapStatus modifierExtension", path))
    elif _ext_code(exts[0]) not in GAP_STATUSES:
        out.append(_issue("extension-gapStatus", f"gap status {_ext_code(exts[0])!r} is not one of "
                          + ", ".join(GAP_STATUSES), path))
    if "CAREGAP" not in _codes(issue.get("code")):
        out.append(_issue("DetectedIssue.code", "code is v3-ActCode CAREGAP", path + ".code"))
    if not issue.get("status"):
        out.append(_issue("DetectedIssue.status", "status is required", path + ".status"))
    if not (issue.get("patient") or {}).get("reference"):
        out.append(_issue("DetectedIssue.patient", "patient is required (1..1)", path + ".patient"))
    evidence = issue.get("evidence") or []
    if not evidence:
        out.append(_issue("DetectedIssue.evidence", "evidence is required (1..*)", path + ".evidence"))
    for ev in evidence:
        details = ev.get("detail") or []
        if len(details) != 1:
            out.append(_issue("DetectedIssue.evidence.detail", "one detail per evidence (1..1)", path + ".evidence"))
            continue
        target = _resolve(bundle, details[0].get("reference", ""))
        if target is None or target.get("resourceType") not in ("MeasureReport", "GuidanceResponse"):
            out.append(_issue("DetectedIssue.evidence.detail", "detail references a MeasureReport or "
                              "GuidanceResponse in the Bundle", path + ".evidence.detail"))
    return out
