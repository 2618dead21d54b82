"""Bulk Data export over HTTP: kick-off ([base]/$export, Patient/$export, Group/[id]/$export and the ATR
Group/[id]/$davinci-data-export), status polling, cancel and NDJSON file download."""

from __future__ import annotations

import orjson
from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response

from ..api.deps import Rest, Settings
from ..api.http import check_accept, fhir_response, prefer, read_json_body
from ..api.identity import request_client_id, request_subject
from ..fhir.errors import Issue, info_outcome, operation_outcome
from .request import params_from_parameters
from .service import BulkService, manifest, progress_text

NDJSON = "application/fhir+ndjson"


def _bulk(request: Request) -> BulkService:
    return request.app.state.bulk


async def _kickoff(request: Request, settings: Settings, rest: Rest, level: str, group_id: str | None = None,
                   atr: bool = False) -> Response:
    check_accept(request)
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in ("_format", "_pretty")]
    if request.method == "POST":
        params += params_from_parameters(await read_json_body(request, settings.max_body_bytes))
    lenient = prefer(request).get("handling") == "lenient"
    bulk = _bulk(request)

    def start() -> str:
        if group_id is not None:
            rest.read("Group", group_id)  # 404 / 410 for an unknown or deleted group
        req = bulk.parse(level, params, group_id, lenient, request.method, atr)
        url = str(request.url) if request.method == "GET" else str(request.url).split("?")[0]
        return bulk.kickoff(req, request_client_id(request), url, request_subject(request))

    job_id = await run_in_threadpool(start)
    body = info_outcome(f"Export job {job_id} accepted; poll the Content-Location URL for its status")
    return fhir_response(body, 202, {"Content-Location": bulk.status_url(job_id)})


async def export_system(request: Request, settings: Settings, rest: Rest) -> Response:
    return await _kickoff(request, settings, rest, "system")


async def export_patients(request: Request, settings: Settings, rest: Rest) -> Response:
    return await _kickoff(request, settings, rest, "patient")


async def export_group(group_id: str, request: Request, settings: Settings, rest: Rest) -> Response:
    return await _kickoff(request, settings, rest, "group", group_id)


async def davinci_data_export(group_id: str, request: Request, settings: Settings, rest: Rest) -> Response:
    return await _kickoff(request, settings, rest, "group", group_id, atr=True)


def export_status(job_id: str, request: Request) -> Response:
    bulk = _bulk(request)
    job = bulk.poll(job_id, request_client_id(request), request_subject(request))
    if job.status in ("queued", "running"):
        return Response(status_code=202, headers={"X-Progress": progress_text(job),
                                                  "Retry-After": bulk.retry_after()})
    if job.status == "failed":
        oo = operation_outcome([Issue("error", "exception", job.message or "The export failed")])
        return fhir_response(oo, 500, bulk.expires_header(job))
    body = orjson.dumps(manifest(job, bulk.base_url, bulk.requires_token))
    return Response(body, 200, bulk.expires_header(job), media_type="application/json")


def export_cancel(job_id: str, request: Request) -> Response:
    bulk = _bulk(request)
    bulk.cancel(job_id, request_client_id(request), request_subject(request))
    return fhir_response(info_outcome(f"Export job {job_id} cancelled"), 202)


def export_file(job_id: str, name: str, request: Request) -> Response:
    bulk = _bulk(request)
    path = bulk.file_path(job_id, name, request_client_id(request), request_subject(request))
    return FileResponse(path, media_type=NDJSON, headers=bulk.expires_header(bulk.jobs.get(job_id)))  # type: ignore[arg-type]  # file_path found the job
