"""$collect-data (DEQM Consumer pulls from Producer): per measure and patient, a Data Exchange MeasureReport
and the patient data the measure selects. The data are what the measure's retrieves return for the patient
in the same evaluation $evaluate-measure runs (its evaluatedResource), plus the Patient; with
``lastReceivedOn`` only what changed after that instant is sent (an incremental update)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from ...fhir.dates import DateParseError, now_instant, parse_range
from ...fhir.deqm_rules import UPDATE_TYPE_EXT
from ...fhir.errors import BadRequest
from ..measure_select import MeasureChoice, ReporterMixin, search_all, select_measures, select_patients

DATAX_PROFILE = "http://hl7.org/fhir/us/davinci-deqm/StructureDefinition/datax-measurereport-deqm"


@dataclass
class CollectDataRequest(ReporterMixin):
    period_start: str | None
    period_end: str | None
    measures: MeasureChoice = field(default_factory=MeasureChoice)
    subject: str | None = None
    subject_group: dict[str, Any] | None = None
    practitioner: str | None = None
    organization: str | None = None
    organization_resource: dict[str, Any] | None = None
    last_received_on: str | None = None


class CollectDataService:
    def __init__(self, measures: Any) -> None:
        self.svc = measures
        self.store = measures.store
        self.base_url = measures.base_url

    def run(self, req: CollectDataRequest, measure_id: str | None = None) -> dict[str, Any]:
        self.svc.period(req.period_start, req.period_end)
        if req.organization and req.organization_resource:
            raise BadRequest("Give organization or organizationResource, not both")
        if req.organization_resource is not None and not req.organization_resource.get("id"):
            raise BadRequest("organizationResource needs an id")
        r4_form = not req.reporter
        if req.reporter and not req.reporter.startswith("Organization/"):
            raise BadRequest("organization must be a reference Organization/[id]: it is the reporter of the Data "
                             "Exchange MeasureReports")
        since = None
        if req.last_received_on:
            try:
                since = parse_range(req.last_received_on)[0]
            except DateParseError as exc:
                raise BadRequest(f"lastReceivedOn: {exc}") from None
        measures = select_measures(self.svc, req.measures, measure_id)
        if req.subject or req.subject_group is not None or req.practitioner:
            patients = select_patients(self.svc, req.subject, req.subject_group, req.practitioner, None)
        else:
            patients = [p["id"] for p in search_all(self.store, self.base_url, "Patient", [])]
        out: list[dict[str, Any]] = []
        for m in measures:
            self.svc.prepare(m)
        for m in measures:
            for pid in patients:
                bundle = self.patient_bundle(m, pid, req, since)
                if bundle is None:
                    continue
                if r4_form:  # R4 Measure-collect-data: measureReport and resource output parameters
                    entries = bundle["entry"]
                    out.append({"name": "measureReport", "resource": entries[0]["resource"]})
                    out.extend({"name": "resource", "resource": e["resource"]} for e in entries[1:])
                else:
                    out.append({"name": "return", "resource": bundle})
        if r4_form:
            out.append({"name": "outcome", "resource": form_outcome()})
        return {"resourceType": "Parameters", "parameter": out}

    def patient_bundle(self, measure: dict[str, Any], pid: str, req: CollectDataRequest,
                       since: str | None) -> dict[str, Any] | None:
        patient_ref = f"Patient/{pid}"
        report = self.svc.evaluate(measure, req.period_start, req.period_end, "subject", patient_ref,
                                  reporter=req.reporter)
        refs = [patient_ref] + [r["reference"] for r in report.get("evaluatedResource") or []
                                if r.get("reference") and r["reference"] != patient_ref]
        entries = []
        for ref in dict.fromkeys(refs):
            rtype, _, rid = ref.partition("/")
            s = self.store.read(rtype, rid)
            if s is None or s.deleted:
                continue
            if since is not None and parse_range(s.last_updated)[0] <= since:
                continue
            entries.append({"fullUrl": f"{self.base_url}/{ref}", "resource": orjson.Fragment(s.content), "ref": ref})
        if since is not None and not entries:
            return None  # nothing new for this patient
        mr: dict[str, Any] = {
            "resourceType": "MeasureReport",
            "id": str(uuid.uuid4()),
            "meta": {"profile": [DATAX_PROFILE]},
            "extension": [{"url": UPDATE_TYPE_EXT, "valueCode": "incremental" if since else "snapshot"}],
            "status": "complete",
            "type": "data-collection",
            "measure": report["measure"],
            "subject": {"reference": patient_ref},
            "date": now_instant(),
            "period": report["period"],
            "evaluatedResource": [{"reference": e["ref"]} for e in entries],
        }
        if req.reporter:
            mr["reporter"] = {"reference": req.reporter}
        else:  # the DEQM Data Exchange profile requires a reporter: without one the report is plain R4
            del mr["meta"]
        extra = []
        if req.organization_resource is not None:
            extra.append({"fullUrl": f"{self.base_url}/{req.reporter}", "resource": req.organization_resource})
        return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "collection", "timestamp": now_instant(),
                "entry": [{"fullUrl": f"urn:uuid:{mr['id']}", "resource": mr},
                          *[{k: v for k, v in e.items() if k != "ref"} for e in entries], *extra]}


def form_outcome() -> dict[str, Any]:
    """An information OperationOutcome saying that the base R4 form of $collect-data was assumed (no
    organization: measureReport and resource parameters, not DEQM's Bundles), so that a caller that meant
    DEQM's form sees why the shape differs and what to send."""
    text = ("No organization or organizationResource was given: answered in the base FHIR R4 form "
            "(Measure-collect-data: measureReport and resource parameters; the reports have no reporter and do "
            "not claim the DEQM Data Exchange profile). Give organization=Organization/[id] for DEQM's form.")
    return {"resourceType": "OperationOutcome",
            "issue": [{"severity": "information", "code": "informational", "diagnostics": text}]}
