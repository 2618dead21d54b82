"""DEQM Measure/$care-gaps (STU5), GET and POST, type and instance level: Parameters with one gaps-in-care
Bundle per patient that has a gap of a requested status."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from ...fhir.errors import BadRequest
from ...services.care_gaps import CareGapsRequest, CareGapsService
from ...services.measure_select import MeasureChoice
from ..deps import Settings
from ..http import check_accept, fhir_response, pretty
from .op_params import OpParams, read_params

router = APIRouter()
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
    result = await run_in_threadpool(service.run, req, measure_id)
    return fhir_response(result, is_pretty=pretty(request))


@router.get("/Measure/$care-gaps", tags=["measure"], summary="DEQM gaps in care (type level)")
@router.post("/Measure/$care-gaps", include_in_schema=False)
async def care_gaps_type(request: Request, settings: Settings) -> Response:
    return await _run(request, settings, None)


@router.get("/Measure/{measure_id}/$care-gaps", tags=["measure"], summary="DEQM gaps in care for one measure")
@router.post("/Measure/{measure_id}/$care-gaps", include_in_schema=False)
async def care_gaps_instance(measure_id: str, request: Request, settings: Settings) -> Response:
    return await _run(request, settings, measure_id)
