"""DEQM Measure/$evaluate (STU5): several measures at once, GET or POST, type and instance level. Returns
Parameters with one `return` Bundle per measure (and per patient for reportType=subject): the MeasureReport
followed by the data of interest (the resources its evaluation read)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from ...api.deps import Settings
from ...api.http import check_accept, fhir_response, pretty, read_json_body
from ...fhir.dates import now_instant
from ...fhir.errors import BadRequest
from ...fhir.parameters import parameter_list

if TYPE_CHECKING:
    from ...store.base import ResourceStore

SINGLE = ("periodStart", "periodEnd", "reportType", "subject", "practitioner", "lastReceivedOn", "reporter")
MULTI = ("measureId", "measureUrl", "measureIdentifier", "measure")


async def _params(request: Request, settings: Any) -> tuple[dict[str, str], dict[str, list[str]], list[dict]]:
    single = {k: v for k, v in request.query_params.items() if k in SINGLE}
    multi: dict[str, list[str]] = {k: request.query_params.getlist(k) for k in MULTI}
    resources: list[dict[str, Any]] = []
    if request.method == "POST":
        body = await read_json_body(request, settings.max_body_bytes)
        for p in parameter_list(body, "POST $evaluate"):
            name = p.get("name")
            value = next((v for k, v in p.items() if k.startswith("value")), None)
            if name == "measureResource" and isinstance(p.get("resource"), dict):
                resources.append(p["resource"])
            elif name == "subjectGroup" and isinstance(p.get("resource"), dict):
                raise BadRequest("subjectGroup as an inline Group is not supported; store the Group and use "
                                 "subject=Group/[id]")
            elif name in SINGLE and value is not None:
                single[name] = str(value)
            elif name in MULTI and value is not None:
                multi[name].append(str(value))
    return single, multi, resources


def _bundle(report: dict[str, Any], store: ResourceStore, base: str) -> dict[str, Any]:
    entries = [{"fullUrl": f"urn:uuid:{report['id']}", "resource": report}]
    for ref in [r.get("reference", "") for r in report.get("evaluatedResource", [])]:
        if ref.startswith("#"):  # contained in the report (supplemental data Observations)
            continue
        rtype, _, rid = ref.partition("/")
        s = store.read(rtype, rid)
        if s is not None and not s.deleted:
            entries.append({"fullUrl": f"{base}/{ref}", "resource": orjson.Fragment(s.body)})
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "collection", "timestamp": now_instant(),
            "entry": entries}


async def _run(request: Request, settings: Any, measure_id: str | None) -> Response:
    check_accept(request)
    single, multi, inline = await _params(request, settings)
    svc = request.app.state.measures
    store = request.app.state.rest.store  # gated: the report's evaluated resources as the caller may see them

    def work() -> dict[str, Any]:
        measures: list[dict[str, Any]] = list(inline)
        for mid in ([measure_id] if measure_id else []) + multi["measureId"]:
            measures.append(svc.find_measure(mid, None))
        for ref in multi["measureUrl"] + multi["measure"]:
            measures.append(svc.find_measure(None, ref))
        for ident in multi["measureIdentifier"]:
            measures.extend(svc.find_by_identifier(ident))
        if not measures:
            raise BadRequest("Name at least one measure: measureId, measureUrl, measureIdentifier or measure")
        report_type = single.get("reportType")
        subject = single.get("subject")
        extra = {"practitioner": single.get("practitioner"), "last_received_on": single.get("lastReceivedOn")}
        out = []
        for m in measures:
            if report_type == "subject" and subject and subject.startswith("Group/"):
                members = svc.subjects(subject)
                if extra["practitioner"]:
                    members = svc.patients_of(extra["practitioner"], members, subject)
                for pid in members:  # one individual report per member
                    rep = svc.evaluate(m, single.get("periodStart"), single.get("periodEnd"), "subject",
                                       f"Patient/{pid}", single.get("reporter"), **extra)
                    out.append({"name": "return", "resource": _bundle(rep, store, svc.base_url)})
                continue
            rep = svc.evaluate(m, single.get("periodStart"), single.get("periodEnd"), report_type, subject,
                               single.get("reporter"), **extra)
            out.append({"name": "return", "resource": _bundle(rep, store, svc.base_url)})
        return {"resourceType": "Parameters", "parameter": out}

    result = await run_in_threadpool(work)
    return fhir_response(result, is_pretty=pretty(request))


async def evaluate_type(request: Request, settings: Settings) -> Response:
    return await _run(request, settings, None)


async def evaluate_instance(measure_id: str, request: Request, settings: Settings) -> Response:
    return await _run(request, settings, measure_id)
