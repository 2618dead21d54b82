"""Patient/[id]/$everything and Patient/$everything, GET and POST: a searchset Bundle of the patient's record,
paged with signed ``_cursor`` links (service.py holds the rules)."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from ...api.deps import Settings
from ...api.http import check_accept, fhir_response, pretty
from ...api.op_params import CONTROL, OpParams, read_params
from ...fhir.dates import now_instant
from ...fhir.errors import BadRequest, operation_outcome
from ...resources.rest import RestService
from .service import EverythingRequest, EverythingService, Page, left_out_issue, parse_request, position


def _no_body(request: Request) -> bool:
    """True when the request announces an empty body (Content-Length 0, or neither a length nor chunks)."""
    length = request.headers.get("content-length")
    return length == "0" or (length is None and "transfer-encoding" not in request.headers)


async def _request(request: Request, settings: Any, rest: RestService) -> EverythingRequest:
    check_accept(request)
    if request.method == "POST" and _no_body(request):  # a POST without parameters (test kits send one)
        params = OpParams(values={k: [v for kk, v in request.query_params.multi_items() if kk == k]
                                  for k in request.query_params if k not in CONTROL})
    else:
        params = await read_params(request, settings, "everything")
    if params.resources:
        raise BadRequest(f"$everything takes no resource parameters ({', '.join(sorted(params.resources))})")
    return parse_request(params.values, rest.default_count, rest.max_count)


def bundle(rest: RestService, path: str, req: EverythingRequest, page: Page, scope: str) -> dict[str, Any]:
    """The searchset Bundle of one page: ``self`` (as asked), ``first`` and, when more may follow, ``next``
    with a cursor after the page's last entry; an OperationOutcome entry names the types left out."""
    base = rest.base_url

    def link(cursor: str | None) -> str:
        pairs = [*req.echo, ("_count", str(req.count))] + ([("_cursor", cursor)] if cursor else [])
        return f"{base}/{path}?{urlencode(pairs)}"

    links = [{"relation": "self", "url": link(req.cursor_token)}, {"relation": "first", "url": link(None)}]
    if page.more and page.last is not None:
        links.append({"relation": "next", "url": link(rest.cursors.encode(position(page.last), scope))})
    entries: list[dict[str, Any]] = []
    seen: set[str] = set()
    for item in page.items:
        url = f"{base}/{item.rtype}/{item.rid}"
        if url in seen:  # a resource two patients' records share (type level), once per page
            continue
        seen.add(url)
        entries.append({"fullUrl": url, "resource": orjson.Fragment(item.content), "search": {"mode": item.mode}})
    if page.left_out:
        entries.append({"resource": operation_outcome([left_out_issue(page.left_out)]),
                        "search": {"mode": "outcome"}})
    out: dict[str, Any] = {"resourceType": "Bundle", "id": str(uuid.uuid4()), "meta": {"lastUpdated": now_instant()},
                           "type": "searchset"}
    if page.total is not None:
        out["total"] = page.total
    out["link"] = links
    if entries:
        out["entry"] = entries
    return out


async def everything_instance(pid: str, request: Request, settings: Settings) -> Response:
    """Patient/[id]/$everything: the patient, its compartment and the resources they reference."""
    rest: RestService = request.app.state.rest
    req = await _request(request, settings, rest)

    def run() -> dict[str, Any]:
        page = EverythingService(rest).instance(pid, req)
        return bundle(rest, f"Patient/{pid}/$everything", req, page, req.scope("instance", pid))

    return fhir_response(await run_in_threadpool(run), is_pretty=pretty(request))


async def everything_type(request: Request, settings: Settings) -> Response:
    """Patient/$everything: every patient the caller may see, each followed by its record."""
    rest: RestService = request.app.state.rest
    req = await _request(request, settings, rest)

    def run() -> dict[str, Any]:
        page = EverythingService(rest).type_level(req)
        return bundle(rest, "Patient/$everything", req, page, req.scope("type", None))

    return fhir_response(await run_in_threadpool(run), is_pretty=pretty(request))
