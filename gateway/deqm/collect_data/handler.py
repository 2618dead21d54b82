"""DEQM Measure/$collect-data and Measure/[id]/$collect-data, GET and POST: Parameters with one collection
Bundle (Data Exchange MeasureReport + data) per measure and patient; lastReceivedOn for incremental pulls."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from ...api.deps import Settings
from ...api.http import check_accept, fhir_response, pretty
from ...api.op_params import OpParams, read_params
from ...fhir.errors import BadRequest
from ..measure_select import MeasureChoice
from .service import CollectDataRequest, CollectDataService

KNOWN = {"periodStart", "periodEnd", "measureId", "measureIdentifier", "measureUrl", "measureResource", "measure",
         "subject", "subjectGroup", "practitioner", "lastReceivedOn", "organization", "organizationResource",
         "validateResources"}


def parse_request(p: OpParams) -> CollectDataRequest:
    unknown = sorted((set(p.values) | set(p.resources)) - KNOWN)
    if unknown:
        raise BadRequest(f"$collect-data does not take {', '.join(unknown)}")
    p.boolean("validateResources", False)  # accepted; stored resources were validated on write
    return CollectDataRequest(
        period_start=p.one("periodStart"), period_end=p.one("periodEnd"),
        measures=MeasureChoice(ids=p.many("measureId"), urls=p.many("measureUrl"),
                               identifiers=p.many("measureIdentifier"), refs=p.many("measure"),
                               inline=p.resources.get("measureResource") or []),
        subject=p.one("subject"), subject_group=p.resource("subjectGroup"), practitioner=p.one("practitioner"),
        organization=p.one("organization"), organization_resource=p.resource("organizationResource"),
        last_received_on=p.one("lastReceivedOn"))


async def _run(request: Request, settings: Any, measure_id: str | None) -> Response:
    check_accept(request)
    req = parse_request(await read_params(request, settings, "collect-data"))
    result = await run_in_threadpool(CollectDataService(request.app.state.measures).run, req, measure_id)
    return fhir_response(result, is_pretty=pretty(request))


async def collect_type(request: Request, settings: Settings) -> Response:
    return await _run(request, settings, None)


async def collect_instance(measure_id: str, request: Request, settings: Settings) -> Response:
    return await _run(request, settings, measure_id)
