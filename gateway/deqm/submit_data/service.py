"""$submit-data (DEQM Producer -> Consumer): Data Exchange MeasureReports plus their data of interest, checked
and stored in one transaction with a Provenance naming who sent what.

Update types: ``incremental`` adds and updates (resources keep their ids); ``snapshot`` replaces that
reporter's earlier submission for the same measure, subject and period — the earlier data-collection report
and the resources it listed that the new submission does not send again are deleted (the Patient is kept)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from ...fhir.dates import now_instant
from ...fhir.deqm_rules import check_measure_report, update_type
from ...fhir.errors import BadRequest, FhirError, Issue, NotFound, Unprocessable
from ...resources.transaction import BundleProcessor
from ..measure_select import search_all

DATA_COLLECTION = "data-collection"


@dataclass
class Submission:
    report: dict[str, Any]
    resources: list[dict[str, Any]] = field(default_factory=list)  # each {"resource", "fullUrl"?}


def submissions_from_bundle(bundle: Any, where: str) -> list[Submission]:
    """DEQM form: a Bundle holding one or more data-collection MeasureReports and the data they carry."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise BadRequest(f"{where}: the bundle parameter holds a Bundle")
    reports, data = [], []
    for e in bundle.get("entry") or []:
        r = e.get("resource") if isinstance(e, dict) else None
        if not isinstance(r, dict):
            raise BadRequest(f"{where}: every entry holds a resource")
        if r.get("resourceType") == "MeasureReport":
            reports.append(r)
        else:
            data.append({"resource": r, "fullUrl": e.get("fullUrl")})
    if not reports:
        raise BadRequest(f"{where}: a submitted Bundle holds at least one data-collection MeasureReport")
    return [Submission(r, data) for r in reports]


class SubmitDataService:
    def __init__(self, rest: Any, measures: Any, enforce_references: bool = True) -> None:
        self.rest = rest
        self.svc = measures
        self.enforce_references = enforce_references

    def check(self, sub: Submission, measure_id: str | None) -> dict[str, Any]:
        """The submission's Measure, after the report passed the Data Exchange profile."""
        mr = sub.report
        if mr.get("type") != DATA_COLLECTION:
            raise BadRequest(f"MeasureReport.type must be {DATA_COLLECTION} in a submission, got {mr.get('type')!r}",
                             issues=[Issue("error", "invariant", "MeasureReport.type: fixed to data-collection in "
                                           "datax-measurereport-deqm", ["MeasureReport.type"])])
        kind = update_type(mr)
        if kind is not None and kind not in ("incremental", "snapshot"):
            raise FhirError(f"submitDataUpdateType {kind!r} is not supported: this server accepts incremental and "
                            "snapshot", status=400, code="business-rule")
        issues = check_measure_report(mr)
        if issues:
            raise BadRequest(f"Invalid Data Exchange MeasureReport: {issues[0].diagnostics}"
                             + (f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""), issues=issues)
        try:
            measure = self.svc.find_measure(None, mr["measure"])
        except NotFound:
            raise Unprocessable(f"MeasureReport.measure {mr['measure']} is not a Measure known to this server") \
                from None
        if measure_id and measure.get("id") != measure_id:
            raise BadRequest(f"MeasureReport.measure {mr['measure']} is not Measure/{measure_id}")
        return measure

    def submit(self, subs: list[Submission], measure_id: str | None, provenance: dict[str, Any] | None
               ) -> dict[str, Any]:
        if not subs:
            raise BadRequest("$submit-data needs a bundle (DEQM) or a measureReport (FHIR R4) parameter")
        if measure_id:
            self.svc.find_measure(measure_id, None)  # 404 for an unknown instance
        for sub in subs:
            self.check(sub, measure_id)
        entries: list[dict[str, Any]] = []
        written: list[str] = []  # references (or urn:uuid fullUrls) of what is written
        seen: set[str] = set()
        deletes: list[str] = []
        for sub in subs:
            refs = []
            for item in sub.resources:
                r = dict(item["resource"])
                key = f"{r.get('resourceType')}/{r.get('id')}" if r.get("id") else None
                if key and key in seen:
                    refs.append(key)
                    continue
                entry, ref = self._entry(r, item.get("fullUrl"))
                entries.append(entry)
                refs.append(ref)
                written.append(ref)
                if key:
                    seen.add(key)
            mr = dict(sub.report)
            listed = [e.get("reference") for e in mr.get("evaluatedResource") or []]
            evaluated = list(mr.get("evaluatedResource") or []) + \
                [{"reference": ref} for ref in refs if ref not in listed]
            if evaluated:  # R4 JSON has no empty arrays
                mr["evaluatedResource"] = evaluated
            entry, ref = self._entry(mr, None)
            entries.append(entry)
            written.append(ref)
            if (update_type(mr) or "snapshot") == "snapshot":
                deletes.extend(self._replaced(mr, {r for r in refs}))
        deletes = [d for d in dict.fromkeys(deletes) if d not in seen]
        entries = [{"request": {"method": "DELETE", "url": d}} for d in deletes] + entries
        entries.append({"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": self._provenance(subs, written, provenance),
                        "request": {"method": "POST", "url": "Provenance"}})
        proc = BundleProcessor(self.rest, self.enforce_references)
        results = proc.transaction(entries)
        stored = [f"{r.stored.resource_type}/{r.stored.id}" for r in results
                  if r.stored is not None and not r.stored.deleted]
        text = (f"Stored {len(stored) - 1} resources from {len(subs)} data-collection report(s)"
                + (f"; the snapshot replaced {len(deletes)} earlier resource(s)" if deletes else ""))
        return {"resourceType": "OperationOutcome",
                "issue": [{"severity": "information", "code": "informational", "diagnostics": text}]}

    def _entry(self, r: dict[str, Any], full_url: str | None) -> tuple[dict[str, Any], str]:
        rtype = r.get("resourceType")
        if not isinstance(rtype, str):
            raise BadRequest("A submitted resource has no resourceType")
        if r.get("id"):
            ref = f"{rtype}/{r['id']}"
            return {"fullUrl": full_url or f"{self.rest.base_url}/{ref}", "resource": r,
                    "request": {"method": "PUT", "url": ref}}, ref
        url = full_url if full_url and full_url.startswith("urn:uuid:") else f"urn:uuid:{uuid.uuid4()}"
        return {"fullUrl": url, "resource": r, "request": {"method": "POST", "url": rtype}}, url

    def _replaced(self, mr: dict[str, Any], keep: set[str]) -> list[str]:
        """What a snapshot replaces: earlier data-collection reports of the same reporter, measure, subject and
        period, and the resources they listed (not the Patient, not what is sent again)."""
        subject = mr["subject"]["reference"]
        reporter = mr["reporter"]["reference"]
        out = []
        for old in search_all(self.rest.store, self.rest.base_url, "MeasureReport", [("subject", subject)]):
            same = (old.get("type") == DATA_COLLECTION and old.get("measure") == mr["measure"]
                    and (old.get("reporter") or {}).get("reference") == reporter and old.get("period") == mr["period"])
            if not same or old.get("id") == mr.get("id"):
                continue
            out.append(f"MeasureReport/{old['id']}")
            for ev in old.get("evaluatedResource") or []:
                ref = ev.get("reference") or ""
                if ref and ref not in keep and ref != subject and not ref.startswith("Patient/") and "/" in ref:
                    out.append(ref)
        return out

    def _provenance(self, subs: list[Submission], targets: list[str],
                    header: dict[str, Any] | None) -> dict[str, Any]:
        reporters = sorted({s.report["reporter"]["reference"] for s in subs})
        prov = dict(header) if header else {}
        prov.pop("id", None)
        prov["resourceType"] = "Provenance"
        prov["target"] = [{"reference": t} for t in targets]
        prov["recorded"] = now_instant()
        if header:
            agents = [a for a in header.get("agent") or [] if isinstance(a, dict)]
            named = {ref for a in agents for ref in ((a.get("who") or {}).get("reference"),
                                                     (a.get("onBehalfOf") or {}).get("reference")) if ref}
            orgs = {r for r in named if r.startswith("Organization/")}
            if orgs and not orgs & set(reporters):
                raise BadRequest(f"X-Provenance names {', '.join(sorted(orgs))} but the reports' reporter is "
                                 f"{', '.join(reporters)}")
            if not agents:
                prov["agent"] = [{"who": {"reference": r}} for r in reporters]
        else:
            prov["agent"] = [{"type": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author"}]},
                "who": {"reference": r}} for r in reporters]
        prov.setdefault("activity", {"text": "DEQM $submit-data"})
        return prov


def parse_provenance_header(value: str | None) -> dict[str, Any] | None:
    from ...resources.provenance_header import parse

    return parse(value or None)
