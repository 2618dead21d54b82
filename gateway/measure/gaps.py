"""Gaps in care (Da Vinci DEQM STU5): gap status per measure group from an individual MeasureReport, and the
gaps-in-care Bundle (Composition, DetectedIssue, MeasureReport, patient data) for one patient.

Pure functions over JSON: the MeasureReports come from the same evaluation as $evaluate-measure.

Gap status rule (per measure group, from the group's population counts in the individual report):

* effective denominator = denominator - denominator-exclusion - denominator-exception (proportion) or
  denominator - denominator-exclusion (ratio); effective numerator = numerator - numerator-exclusion;
* no initial population or an empty effective denominator: ``not-applicable`` (never a gap);
* cohort and continuous-variable groups have no gap notion: ``not-applicable``;
* improvement notation ``increase`` (positive measure): effective numerator covers the effective denominator
  => ``closed-gap``, else a gap; ``decrease`` (inverse measure): any effective numerator member => a gap,
  else ``closed-gap``; a group without improvement notation is read as ``increase``;
* a gap is ``prospective-gap`` when the gaps-through period has not ended at calculation time (periodEnd is
  today or later: the patient can still act before the period closes), else ``open-gap``.
"""

from __future__ import annotations

import uuid
from typing import Any

from ..fhir.deqm_rules import GAP_STATUS_EXT, GAP_STATUSES

DEQM = "http://hl7.org/fhir/us/davinci-deqm/"
GAP_STATUS_SYSTEM = DEQM + "CodeSystem/gaps-status"
__all__ = ["GAP_STATUSES", "detected_issue", "gap_status_of", "gaps_bundle", "group_gap_status",
           "guidance_response"]
CRITERIA_REF = "http://hl7.org/fhir/StructureDefinition/cqf-criteriaReference"
PROFILE_BUNDLE = DEQM + "StructureDefinition/gaps-bundle-deqm"
PROFILE_COMPOSITION = DEQM + "StructureDefinition/gaps-composition-deqm"
PROFILE_ISSUE = DEQM + "StructureDefinition/gaps-detectedissue-deqm"
LOINC_GAPS = {"system": "http://loinc.org", "code": "96315-7", "display": "Gaps in care report"}
CAREGAP = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "CAREGAP", "display": "Caregap"}


def _counts(group: dict[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in group.get("population") or []:
        code = next((c.get("code") for c in (p.get("code") or {}).get("coding") or []), None)
        if code:
            out[code] = out.get(code, 0) + int(p.get("count") or 0)
    return out


def group_gap_status(report_group: dict[str, Any], scoring: str, improvement: str | None,
                     period_open: bool) -> str:
    """The gap status of one MeasureReport group (see the module docstring for the rule)."""
    if scoring not in ("proportion", "ratio"):
        return "not-applicable"
    c = _counts(report_group)
    den = c.get("denominator", 0) - c.get("denominator-exclusion", 0)
    if scoring == "proportion":
        den -= c.get("denominator-exception", 0)
    num = c.get("numerator", 0) - c.get("numerator-exclusion", 0)
    if c.get("initial-population", 0) <= 0 or den <= 0:
        return "not-applicable"
    gap = num > 0 if improvement == "decrease" else num < den
    if not gap:
        return "closed-gap"
    return "prospective-gap" if period_open else "open-gap"


def detected_issue(patient_ref: str, report_ref: str, status: str, group_id: str | None,
                   identified: str, guidance_ref: str | None = None) -> dict[str, Any]:
    detail: dict[str, Any] = {"reference": report_ref}
    if group_id:
        detail["extension"] = [{"url": CRITERIA_REF, "valueString": group_id}]
    evidence = [{"detail": [detail]}]
    if guidance_ref:
        evidence.append({"detail": [{"reference": guidance_ref}]})
    return {
        "resourceType": "DetectedIssue",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [PROFILE_ISSUE]},
        "modifierExtension": [{"url": GAP_STATUS_EXT, "valueCodeableConcept": {
            "coding": [{"system": GAP_STATUS_SYSTEM, "code": status}]}}],
        "status": "final",
        "code": {"coding": [dict(CAREGAP)]},
        "patient": {"reference": patient_ref},
        "identifiedDateTime": identified,
        "evidence": evidence,
    }


PROFILE_GUIDANCE = DEQM + "StructureDefinition/gaps-guidanceresponse-detailedcaregap"
REASON_SYSTEM = DEQM + "CodeSystem/care-gap-reason"


def guidance_response(patient_ref: str, measure_canonical: str, inverse: bool,
                      requirements: list[dict[str, Any]], when: str) -> dict[str, Any]:
    """Detailed care gap: why the gap is open (positive measure: the numerator's data is missing; inverse
    measure: data placing the patient in the numerator is present) and the data the numerator reads."""
    code, display = ("Present", "Data Element Present") if inverse else ("Missing", "Missing Data Element")
    out: dict[str, Any] = {
        "resourceType": "GuidanceResponse",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [PROFILE_GUIDANCE]},
        "moduleCanonical": measure_canonical,
        "status": "success",
        "subject": {"reference": patient_ref},
        "occurrenceDateTime": when,
        "reasonCode": [{"coding": [{"system": REASON_SYSTEM, "code": code, "display": display}]}],
    }
    if requirements:
        out["dataRequirement"] = requirements
    return out


def gap_status_of(issue: dict[str, Any]) -> str | None:
    for ext in issue.get("modifierExtension") or []:
        if ext.get("url") == GAP_STATUS_EXT:
            return next((c.get("code") for c in ext["valueCodeableConcept"].get("coding") or []), None)
    return None


def gaps_bundle(patient_ref: str, sections: list[tuple[str, dict[str, Any], list[dict[str, Any]]]],
                data: list[tuple[str, Any]], *, timestamp: str, author: dict[str, Any],
                custodian: dict[str, Any] | None, is_document: bool,
                guidance: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One patient's gaps Bundle. ``sections``: (title, individual MeasureReport, DetectedIssues) per measure;
    ``data``: (fullUrl, resource) of the patient data the reports reference. Generated resources are
    addressed by ``urn:uuid:`` (they are not stored); stored ones keep their server URL."""
    entries: list[dict[str, Any]] = []
    reports, issues = [], []
    comp_sections = []
    for title, report, section_issues in sections:
        reports.append({"fullUrl": f"urn:uuid:{report['id']}", "resource": report})
        issues.extend({"fullUrl": f"urn:uuid:{i['id']}", "resource": i} for i in section_issues)
        comp_sections.append({"title": title, "focus": {"reference": f"urn:uuid:{report['id']}"},
                              "entry": [{"reference": f"urn:uuid:{i['id']}"} for i in section_issues]})
    if is_document:
        composition: dict[str, Any] = {
            "resourceType": "Composition",
            "id": str(uuid.uuid4()),
            "meta": {"profile": [PROFILE_COMPOSITION]},
            "status": "final",
            "type": {"coding": [dict(LOINC_GAPS)]},
            "subject": {"reference": patient_ref},
            "date": timestamp,
            "author": [author],
            "title": f"Care Gap Report for {patient_ref}",
            "section": comp_sections,
        }
        if custodian:
            composition["custodian"] = custodian
        entries.append({"fullUrl": f"urn:uuid:{composition['id']}", "resource": composition})
    entries.extend(reports)
    entries.extend(issues)
    entries.extend({"fullUrl": f"urn:uuid:{g['id']}", "resource": g} for g in guidance or [])
    entries.extend({"fullUrl": url, "resource": res} for url, res in data)
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [PROFILE_BUNDLE]},
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
        "type": "document" if is_document else "collection",
        "timestamp": timestamp,
        "entry": entries,
    }
