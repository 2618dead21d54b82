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
from ...api.identity import request_client_id, request_subject
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
    p = await read_params(request, settings, "care-gaps")
    req = parse_request(p)
    service = CareGapsService(request.app.state.measures)
    if "respond-async" in prefer(request):
        return await run_in_threadpool(_start_async, request, service, req, measure_id, p)
    result = await run_in_threadpool(service.run, req, measure_id)
    return fhir_response(result, is_pretty=pretty(request))


def _start_async(request: Request, service: CareGapsService, req: Any, measure_id: str | None,
                 p: OpParams) -> Response:
    """Bulk Data style: check the request now, queue it on the job core (any instance runs it), answer 202
    with the status URL."""
    req.check()
    service.svc.period(req.period_start, req.period_end)
    if measure_id:
        service.svc.find_measure(measure_id, None)
    inputs = {"values": p.values, "resources": p.resources, "measure_id": measure_id}
    job_id = _jobs(request).start("care-gaps", str(request.url), inputs, request_client_id(request),
                                  request_subject(request))
    status_url = f"{request.app.state.rest.base_url}/Measure/$care-gaps-status/{job_id}"
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "information", "code": "informational",
                                                             "diagnostics": f"Accepted; poll {status_url}"}]}
    return fhir_response(outcome, status=202, headers={"Content-Location": status_url})


def care_gaps_work(measures: Any) -> Any:
    """The job work of an asynchronous $care-gaps (registered with the job core by the app assembly): the
    stored inputs read again, evaluated as a synchronous call would, one gaps Bundle per patient."""

    def work(inputs: dict[str, Any]) -> list[dict[str, Any]]:
        req = parse_request(OpParams(values=inputs.get("values") or {}, resources=inputs.get("resources") or {}))
        return [p["resource"] for p in CareGapsService(measures).run(req, inputs.get("measure_id"))["parameter"]]

    return work


def _jobs(request: Request) -> AsyncJobs:
    jobs: AsyncJobs = request.app.state.async_jobs
    return jobs


async def care_gaps_type(request: Request, settings: Settings) -> Response:
    return await _run(request, settings, None)


def care_gaps_status(job_id: str, request: Request) -> Response:
    jobs = _jobs(request)
    job = jobs.owned("care-gaps", job_id, request_client_id(request), request_subject(request))
    base = request.app.state.rest.base_url
    if job.status in ("queued", "running"):
        return Response(status_code=202, headers={"X-Progress": "in progress" if job.status == "running"
                                                  else "queued", "Retry-After": "2"})
    if job.status == "failed":
        raise FhirError(f"$care-gaps job {job_id} failed: {job.message or 'failed'}", status=500, code="exception")
    count = job.progress.get("count")
    manifest = {"transactionTime": job.transaction_time, "request": job.request_url,
                "requiresAccessToken": jobs.requires_token,
                "output": [{"type": "Bundle", "url": f"{base}/Measure/$care-gaps-status/{job_id}/output",
                            **({"count": count} if count is not None else {})}],
                "error": []}
    return Response(orjson.dumps(manifest), status_code=200, media_type="application/json")


def care_gaps_output(job_id: str, request: Request) -> Response:
    data = _jobs(request).output("care-gaps", job_id, request_client_id(request), request_subject(request))
    return Response(data, media_type=NDJSON)


def care_gaps_delete(job_id: str, request: Request) -> Response:
    _jobs(request).delete("care-gaps", job_id, request_client_id(request), request_subject(request))
    return Response(status_code=202)


async def care_gaps_instance(measure_id: str, request: Request, settings: Settings) -> Response:
    return await _run(request, settings, measure_id)
