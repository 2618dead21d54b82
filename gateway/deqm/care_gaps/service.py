"""$care-gaps (DEQM STU5): for each patient, each measure is evaluated through MeasureService (the same
individual report $evaluate-measure returns), each measure group gets a gap status, and the patient's
results become one gaps-in-care Bundle."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from ...fhir.dates import now_instant, parse_range
from ...fhir.errors import BadRequest
from ...measure.data_requirements import requirements_of
from ...measure.gaps import GAP_STATUSES, detected_issue, gaps_bundle, group_gap_status, guidance_response
from ..measure_select import MeasureChoice, ReporterMixin, select_measures, select_patients


def utc_now() -> datetime:
    """The calculation time (a function so that tests can fix it)."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class CareGapsRequest(ReporterMixin):
    period_start: str | None
    period_end: str | None
    statuses: list[str]
    measures: MeasureChoice = field(default_factory=MeasureChoice)
    subject: str | None = None
    subject_group: dict[str, Any] | None = None
    practitioner: str | None = None
    organization: str | None = None
    organization_resource: dict[str, Any] | None = None
    is_document: bool = True

    def check(self) -> None:
        if not self.statuses:
            raise BadRequest("status is required (repeat it for several): " + ", ".join(GAP_STATUSES))
        bad = [s for s in self.statuses if s not in GAP_STATUSES]
        if bad:
            raise BadRequest(f"status {', '.join(bad)} is not in the DEQM gaps-status code system "
                             f"({', '.join(GAP_STATUSES)})")
        if self.organization and self.organization_resource:
            raise BadRequest("Give organization or organizationResource, not both")
        if self.subject and self.organization:
            # DEQM $care-gaps: subject names the patients, organization (with practitioner) selects them; the
            # two conflict (an organizationResource only authors the report, so it goes with any subject)
            raise BadRequest("Give subject or organization, not both")
        if not (self.subject or self.subject_group or self.practitioner or self.organization
                or self.organization_resource):
            raise BadRequest("$care-gaps needs subject (Patient/[id] or Group/[id]), subjectGroup, organization "
                             "or practitioner")
        if self.subject and not self.subject.startswith(("Patient/", "Group/")):
            raise BadRequest(f"subject must be Patient/[id] or Group/[id], got {self.subject!r}")


class CareGapsService:
    def __init__(self, measures: Any) -> None:
        self.svc = measures  # MeasureService
        self.store = measures.store
        self.base_url = measures.base_url
        self._requirements: dict[tuple[str, int], list[dict[str, Any]]] = {}

    def run(self, req: CareGapsRequest, measure_id: str | None = None) -> dict[str, Any]:
        req.check()
        if req.organization_resource is not None and not req.organization_resource.get("id"):
            raise BadRequest("organizationResource needs an id")
        self.svc.period(req.period_start, req.period_end)  # checks both dates
        measures = select_measures(self.svc, req.measures, measure_id)
        patients = select_patients(self.svc, req.subject, req.subject_group, req.practitioner,
                                   req.organization or req.reporter)
        for m in measures:
            self.svc.prepare(m)  # a measure that cannot run fails the request before any patient is read
        today = utc_now().strftime("%Y-%m-%dT%H:%M:%S.%f")
        period_open = parse_range(str(req.period_end))[1] >= today  # the gaps-through period has not ended
        out = []
        for pid in patients:
            bundle = self.patient_bundle(pid, measures, req, period_open)
            if bundle is not None:
                out.append({"name": "return", "resource": bundle})
        return {"resourceType": "Parameters", "parameter": out}

    def patient_bundle(self, pid: str, measures: list[dict[str, Any]], req: CareGapsRequest,
                       period_open: bool) -> dict[str, Any] | None:
        patient_ref = f"Patient/{pid}"
        now = now_instant()
        sections = []
        guidance: list[dict[str, Any]] = []
        evaluated: list[str] = []
        for m in measures:
            prepared = self.svc.prepare(m)
            report = self.svc.evaluate(m, req.period_start, req.period_end, "subject", patient_ref, reporter=req.reporter)
            issues = []
            for gi, group in enumerate(report.get("group") or []):
                gdef = prepared.measure.groups[gi]
                status = group_gap_status(group, gdef.scoring, gdef.improvement, period_open)
                if status not in req.statuses:
                    continue
                guide = None
                if status in ("open-gap", "prospective-gap"):
                    guide = guidance_response(patient_ref, report["measure"], gdef.improvement == "decrease",
                                              self._numerator_requirements(prepared, gi), now)
                    guidance.append(guide)
                issues.append(detected_issue(patient_ref, f"urn:uuid:{report['id']}", status,
                                             group.get("id") if len(report["group"]) > 1 else None, now,
                                             f"urn:uuid:{guide['id']}" if guide else None))
            if not issues:
                continue
            title = m.get("title") or m.get("name") or m.get("url") or f"Measure/{m.get('id')}"
            sections.append((title, report, issues))
            evaluated.extend(r["reference"] for r in report.get("evaluatedResource") or [] if r.get("reference"))
        if not sections:
            return None
        data = self._data([patient_ref, *evaluated, *([req.reporter] if req.reporter else [])], req)
        author = {"reference": req.reporter} if req.reporter else \
            {"reference": req.practitioner} if req.practitioner else {"display": "FHIR VBC gateway"}
        return gaps_bundle(patient_ref, sections, data, timestamp=now, author=author,
                           custodian={"reference": req.reporter} if req.reporter else None,
                           is_document=req.is_document, guidance=guidance)

    def _numerator_requirements(self, prepared: Any, group_index: int) -> list[dict[str, Any]]:
        """The data the group's numerator reads (from the ELM; none for FHIRPath measures), once per measure."""
        key = (prepared.version_key, group_index)
        if key not in self._requirements:
            num = prepared.measure.groups[group_index].population("numerator")
            reqs: list[dict[str, Any]] = []
            if prepared.library is not None and num is not None and num.expression:
                reqs = requirements_of(prepared.engine.manager, prepared.library, [num.expression])
            self._requirements[key] = reqs
        return self._requirements[key]

    def _data(self, refs: list[str], req: CareGapsRequest) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        seen: set[str] = set()
        for ref in refs:
            if ref in seen or "/" not in ref:
                continue
            seen.add(ref)
            if req.organization_resource is not None and ref == req.reporter:
                out.append((f"{self.base_url}/{ref}", req.organization_resource))
                continue
            rtype, _, rid = ref.partition("/")
            s = self.store.read(rtype, rid)
            if s is not None and not s.deleted:
                out.append((f"{self.base_url}/{ref}", orjson.Fragment(s.content)))
        return out
