"""DEQM Measure/$care-gaps (STU5), GET and POST, type and instance level: Parameters with one gaps-in-care
Bundle per patient that has a gap of a requested status."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from ...api.deps import Settings
from ...api.http import check_accept, fhir_response, prefer, pretty
from ...api.op_params import OpParams, read_params
from ...fhir.errors import BadRequest, FhirError
from ..async_jobs import NDJSON, AsyncJobs
from ..measure_select import MeasureChoice
from .service import CareGapsRequest, CareGapsService

KNOWN = {"periodStart", "periodEnd", "topic", "subject", "subjectGroup", "parameters", "practitioner", "organization",
         "organizationResource", "status", "measureId", "measureIdentifier", "measureUrl", "measureResource",
         "measure", "manifest", "isDocument"}


def parse_request(p: OpParams) -> CareGapsRequest:
    unknown = sorted((set(p.values) | set(p.resources)) - KNOWN)
    if unknown:
        raise BadRequest(f"$care-gaps does not take {', '.join(unknown)}")
    if p.resources.get("parameters"):
        raise BadRequest("$care-gaps: the 'parameters' input (CQL parameter overrides) is not supported")
    return CareGapsRequest(
        period_start=p.one("periodStart"), period_end=p.one("periodEnd"), statuses=p.many("status"),
        measures=MeasureChoice(ids=p.many("measureId"), urls=p.many("measureUrl"),
                               identifiers=p.many("measureIdentifier"), refs=p.many("measure"),
                               inline=p.resources.get("measureResource") or [], manifest=p.one("manifest"),
                               topics=p.many("topic")),
        subject=p.one("subject"), subject_group=p.resource("subjectGroup"), practitioner=p.one("practitioner"),
        organization=p.one("organization"), organization_resource=p.resource("organizationResource"),
        is_document=p.boolean("isDocument", True))


async def _run(request: Request, settings: Any, measure_id: str | None) -> Response:
    check_accept(request)
    req = parse_request(await read_params(request, settings, "care-gaps"))
    service = CareGapsService(request.app.state.measures)
    if "respond-async" in prefer(request):
        return await run_in_threadpool(_start_async, request, service, req, measure_id)
    result = await run_in_threadpool(service.run, req, measure_id)
    return fhir_response(result, is_pretty=pretty(request))


def _start_async(request: Request, service: CareGapsService, req: Any, measure_id: str | None) -> Response:
    """Bulk Data style: check the request now, run it on a background thread, answer 202 with the status URL."""
    req.check()
    service.svc.period(req.period_start, req.period_end)
    if measure_id:
        service.svc.find_measure(measure_id, None)
    jobs = AsyncJobs(request.app.state.rest)

    def work() -> list[dict[str, Any]]:
        return [p["resource"] for p in service.run(req, measure_id)["parameter"]]

    job_id = jobs.start("care-gaps", str(request.url), work)
    status_url = f"{request.app.state.rest.base_url}/Measure/$care-gaps-status/{job_id}"
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "information", "code": "informational",
                                                             "diagnostics": f"Accepted; poll {status_url}"}]}
    return fhir_response(outcome, status=202, headers={"Content-Location": status_url})


async def care_gaps_type(request: Request, settings: Settings) -> Response:
    return await _run(request, settings, None)


def care_gaps_status(job_id: str, request: Request) -> Response:
    jobs = AsyncJobs(request.app.state.rest)
    task = jobs.task(job_id)
    base = request.app.state.rest.base_url
    if task["status"] == "in-progress":
        return Response(status_code=202, headers={"X-Progress": "in progress", "Retry-After": "2"})
    if task["status"] == "failed":
        reason = (task.get("statusReason") or {}).get("text", "failed")
        raise FhirError(f"$care-gaps job {job_id} failed: {reason}", status=500, code="exception")
    count = next((o.get("valueInteger") for o in task.get("output") or [] if "valueInteger" in o), None)
    manifest = {"transactionTime": task.get("lastModified") or task["meta"]["lastUpdated"],
                "request": task["input"][0]["valueString"], "requiresAccessToken": False,
                "output": [{"type": "Bundle", "url": f"{base}/Measure/$care-gaps-status/{job_id}/output",
                            **({"count": count} if count is not None else {})}],
                "error": []}
    return Response(orjson.dumps(manifest), status_code=200, media_type="application/json")


def care_gaps_output(job_id: str, request: Request) -> Response:
    return Response(AsyncJobs(request.app.state.rest).output(job_id), media_type=NDJSON)


def care_gaps_delete(job_id: str, request: Request) -> Response:
    AsyncJobs(request.app.state.rest).delete(job_id)
    return Response(status_code=202)


async def care_gaps_instance(measure_id: str, request: Request, settings: Settings) -> Response:
    return await _run(request, settings, measure_id)
