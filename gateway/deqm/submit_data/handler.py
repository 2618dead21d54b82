"""Measure/$submit-data and Measure/[id]/$submit-data (DEQM STU5 `bundle` form and the FHIR R4
`measureReport` + `resource` form; `$deqm-submit-data` is accepted as an alias of the DEQM form)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from ...api.deps import Settings
from ...api.http import check_accept, fhir_response, pretty, read_json_body
from ...api.op_params import from_parameters
from ...fhir.errors import BadRequest
from .service import (
    Submission,
    SubmitDataService,
    parse_provenance_header,
    submissions_from_bundle,
)


def submissions(body: Any) -> list[Submission]:
    p = from_parameters(body, "submit-data")
    unknown = sorted((set(p.values) | set(p.resources)) - {"bundle", "measureReport", "resource"})
    if unknown:
        raise BadRequest(f"$submit-data does not take {', '.join(unknown)}")
    out: list[Submission] = []
    for i, b in enumerate(p.resources.get("bundle") or []):
        out.extend(submissions_from_bundle(b, f"bundle[{i}]"))
    reports = p.resources.get("measureReport") or []
    if len(reports) > 1:
        raise BadRequest("The FHIR R4 form takes one measureReport; send several as DEQM bundle parameters")
    if reports:
        if reports[0].get("resourceType") != "MeasureReport":
            raise BadRequest("measureReport holds a MeasureReport")
        out.append(Submission(reports[0], [{"resource": r} for r in p.resources.get("resource") or []]))
    elif p.resources.get("resource"):
        raise BadRequest("resource parameters come with a measureReport")
    return out


async def _run(request: Request, settings: Any, measure_id: str | None) -> Response:
    check_accept(request)
    body = await read_json_body(request, settings.max_body_bytes)
    subs = submissions(body)
    header = parse_provenance_header(request.headers.get("x-provenance"))
    service = SubmitDataService(request.app.state.rest, request.app.state.measures,
                                settings.enforce_referential_integrity)
    outcome = await run_in_threadpool(service.submit, subs, measure_id, header)
    return fhir_response(outcome, is_pretty=pretty(request))


async def submit_type(request: Request, settings: Settings) -> Response:
    return await _run(request, settings, None)


async def submit_instance(measure_id: str, request: Request, settings: Settings) -> Response:
    return await _run(request, settings, measure_id)
