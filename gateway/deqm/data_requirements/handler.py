"""Measure/[id]/$data-requirements (FHIR R4 Measure-data-requirements), GET and POST: the module-definition
Library of the data the measure reads, derived from its ELM."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from ...api.deps import Settings
from ...api.http import check_accept, fhir_response, pretty
from ...api.op_params import read_params
from ...fhir.errors import BadRequest
from ...measure.data_requirements import data_requirements


async def _run(request: Request, settings: Any, measure_id: str | None) -> Response:
    check_accept(request)
    p = await read_params(request, settings, "data-requirements")
    unknown = sorted((set(p.values) | set(p.resources)) - {"periodStart", "periodEnd", "measure"})
    if unknown:
        raise BadRequest(f"$data-requirements does not take {', '.join(unknown)}")
    start, end = p.one("periodStart"), p.one("periodEnd")
    svc = request.app.state.measures

    def work() -> dict[str, Any]:
        period = svc.period(start, end)[0] if (start or end) else None
        measure = svc.find_measure(measure_id, p.one("measure"))
        prepared = svc.prepare(measure)
        return data_requirements(prepared.measure, prepared.engine.manager, prepared.library, period)

    return fhir_response(await run_in_threadpool(work), is_pretty=pretty(request))


async def data_requirements_type(request: Request, settings: Settings) -> Response:
    return await _run(request, settings, None)


async def data_requirements_instance(measure_id: str, request: Request, settings: Settings) -> Response:
    return await _run(request, settings, measure_id)
