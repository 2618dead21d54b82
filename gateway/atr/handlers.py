"""Da Vinci ATR attribution list operations on Group instances: $member-add, $member-remove,
$confirm-attribution-list and $attribution-status (all POST with a Parameters body)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from ..api.deps import Rest, Settings
from ..api.http import check_accept, fhir_response, pretty, read_json_body
from ..fhir.errors import info_outcome
from .attribution import (
    ADD_INPUTS,
    REMOVE_INPUTS,
    STATUS_INPUTS,
    AttributionService,
    Change,
    operation_inputs,
)


async def _inputs(request: Request, settings: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
    check_accept(request)
    has_body = request.headers.get("content-length") not in (None, "0") or "chunked" in request.headers.get(
        "transfer-encoding", "")
    body = await read_json_body(request, settings.max_body_bytes) if has_body else None
    return operation_inputs(body, allowed)


def _changed(request: Request, base: str, change: Change, status: int = 200) -> Response:
    headers = {}
    if change.group is not None:
        v = change.group["meta"]["versionId"]
        headers = {"Content-Location": f"{base}/Group/{change.group['id']}/_history/{v}", "ETag": f'W/"{v}"'}
    return fhir_response(info_outcome(change.message), status, headers, pretty(request))


async def member_add(group_id: str, request: Request, rest: Rest, settings: Settings) -> Response:
    inputs = await _inputs(request, settings, ADD_INPUTS)
    change = await run_in_threadpool(AttributionService(rest).member_add, group_id, inputs)
    return _changed(request, rest.base_url, change)


async def member_remove(group_id: str, request: Request, rest: Rest, settings: Settings) -> Response:
    inputs = await _inputs(request, settings, REMOVE_INPUTS)
    change = await run_in_threadpool(AttributionService(rest).member_remove, group_id, inputs)
    return _changed(request, rest.base_url, change)


async def confirm_list(group_id: str, request: Request, rest: Rest, settings: Settings) -> Response:
    await _inputs(request, settings, ())
    change = await run_in_threadpool(AttributionService(rest).confirm, group_id)
    return _changed(request, rest.base_url, change, settings.atr_confirm_status)


async def attribution_status(group_id: str, request: Request, rest: Rest, settings: Settings) -> Response:
    inputs = await _inputs(request, settings, STATUS_INPUTS)
    bundle = await run_in_threadpool(AttributionService(rest).status, group_id, inputs)
    return fhir_response(bundle, is_pretty=pretty(request))
