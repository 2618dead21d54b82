"""Measure/$evaluate-measure (FHIR R4 measure-evaluate-measure, DEQM reportType values), GET and POST,
type and instance level."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from ...api.deps import Settings
from ...api.http import check_accept, fhir_response, pretty, read_json_body
from ...fhir.parameters import parameter_list

PARAMS = ("periodStart", "periodEnd", "measure", "reportType", "subject", "practitioner", "lastReceivedOn",
          "reporter")


def _from_parameters(body: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in parameter_list(body, "POST $evaluate-measure"):
        name = p.get("name")
        value = next((v for k, v in p.items() if k.startswith("value")), None)
        if name in PARAMS and value is not None:
            out[name] = value if isinstance(value, str) else str(value)
    return out


async def _params(request: Request, settings: Any) -> dict[str, str]:
    params = {k: v for k, v in request.query_params.items() if k in PARAMS}
    if request.method == "POST":
        params.update(_from_parameters(await read_json_body(request, settings.max_body_bytes)))
    return params


async def _run(request: Request, settings: Any, measure_id: str | None) -> Response:
    check_accept(request)
    params = await _params(request, settings)
    svc = request.app.state.measures

    def work() -> dict[str, Any]:
        measure = svc.find_measure(measure_id, params.get("measure"))
        return svc.evaluate(measure, params.get("periodStart"), params.get("periodEnd"), params.get("reportType"),
                            params.get("subject"), params.get("reporter"), practitioner=params.get("practitioner"),
                            last_received_on=params.get("lastReceivedOn"))

    report = await run_in_threadpool(work)
    return fhir_response(report, is_pretty=pretty(request))


async def evaluate_type(request: Request, settings: Settings) -> Response:
    return await _run(request, settings, None)


async def evaluate_instance(measure_id: str, request: Request, settings: Settings) -> Response:
    return await _run(request, settings, measure_id)
