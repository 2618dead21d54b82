"""Instance-level interactions: read, vread, update, delete, instance history."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from ..api import paths  # noqa: F401 - registers the FHIR path convertors
from ..api.deps import Rest, Settings
from ..api.http import (
    check_accept,
    fhir_response,
    not_modified,
    pretty,
    read_json_body,
    version_headers,
    write_response,
    x_provenance,
)
from ..fhir.errors import info_outcome
from ..resources import bundles
from ..resources.rest import resource_json
from ..search.query import MAX_OFFSET

router = APIRouter()


def _history_params(request: Request, settings: Settings) -> tuple[str | None, int, int]:
    from ..fhir.dates import DateParseError, parse_range
    from ..fhir.errors import BadRequest

    since = request.query_params.get("_since")
    since_key = None
    if since:
        try:
            since_key = parse_range(since)[0][:23] + "Z"
        except DateParseError:
            raise BadRequest(f"Invalid _since value {since!r}") from None
    try:
        count = min(int(request.query_params.get("_count", settings.default_page_size)), settings.max_page_size)
        offset = int(request.query_params.get("_offset", 0))
    except ValueError:
        raise BadRequest("_count and _offset must be integers") from None
    if offset > MAX_OFFSET:
        raise BadRequest(f"_offset must be at most {MAX_OFFSET}")
    return since_key, max(count, 0), max(offset, 0)


def history_response(request: Request, rest: Rest, settings: Settings, rtype: str | None,
                     rid: str | None) -> Response:
    check_accept(request)
    since, count, offset = _history_params(request, settings)
    if rtype and rid:
        if rest.store.read(rtype, rid) is None:
            from ..fhir.errors import NotFound

            raise NotFound(f"{rtype}/{rid} is not known")
    elif rtype:
        from ..resources.rest import check_type

        check_type(rtype)
    from ..resources.paging import history_page
    from ..search.cursor import history_scope

    entries, total, span = history_page(rest.store, rest.cursors, rtype, rid, since, count, offset,
                                        request.query_params.get("_cursor"))
    path = "/".join(p for p in (rtype, rid, "_history") if p)
    body = bundles.history(rest.base_url, path, list(request.query_params.multi_items()), entries, total,
                           count, rest.cursors, history_scope(rtype, rid), span)
    return fhir_response(body, is_pretty=pretty(request))


@router.get("/{rtype:fhirtype}/{rid:fhirid}/_history", tags=["history"], summary="Instance history")
def instance_history(rtype: str, rid: str, request: Request, rest: Rest, settings: Settings) -> Response:
    return history_response(request, rest, settings, rtype, rid)


# read and vread are one indexed lookup: they run on the event loop, since handing them to a worker thread
# and back costs more than the lookup (measured: about 2.5x the read throughput on two cores)
@router.get("/{rtype:fhirtype}/{rid:fhirid}/_history/{vid:fhirid}", tags=["read"], summary="vread")
async def vread(rtype: str, rid: str, vid: str, request: Request, rest: Rest) -> Response:
    check_accept(request)
    s = rest.vread(rtype, rid, vid)
    return fhir_response(s.content, headers=version_headers(rest.base_url, s), is_pretty=pretty(request))


@router.get("/{rtype:fhirtype}/{rid:fhirid}", tags=["read"], summary="read")
async def read(rtype: str, rid: str, request: Request, rest: Rest) -> Response:
    check_accept(request)
    s = rest.read(rtype, rid)
    headers = version_headers(rest.base_url, s)
    if not_modified(request, s):
        return Response(status_code=304, headers=headers)
    summary = request.query_params.get("_summary")
    elements = request.query_params.get("_elements")
    if summary or elements:
        from ..fhir.elements import apply_elements, apply_summary

        body = resource_json(s)
        if summary and summary != "false":
            body = apply_summary(body, summary)
        if elements:
            body = apply_elements(body, [e.strip() for e in elements.split(",") if e.strip()])
        return fhir_response(body, headers=headers, is_pretty=pretty(request))
    return fhir_response(s.content, headers=headers, is_pretty=pretty(request))


@router.put("/{rtype:fhirtype}/{rid:fhirid}", tags=["write"], summary="update (create-on-update allowed)")
async def update(rtype: str, rid: str, request: Request, rest: Rest, settings: Settings) -> Response:
    check_accept(request)
    body = await read_json_body(request, settings.max_body_bytes)
    out = await run_in_threadpool(rest.update, rtype, rid, body, request.headers.get("if-match"),
                                  provenance=x_provenance(request))
    return write_response(request, rest.base_url, out.stored, out.status, out.warnings)


@router.patch("/{rtype:fhirtype}/{rid:fhirid}", tags=["write"],
              summary="patch (JSON Patch, application/json-patch+json; FHIRPath Patch, application/fhir+json)")
async def patch(rtype: str, rid: str, request: Request, rest: Rest, settings: Settings) -> Response:
    check_accept(request)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in ("application/fhir+json", "application/json"):
        params = await read_json_body(request, settings.max_body_bytes)
        if not isinstance(params, dict) or params.get("resourceType") != "Parameters":
            from ..fhir.errors import UnsupportedMediaType

            raise UnsupportedMediaType(f"PATCH with {ctype} takes a FHIRPath Patch Parameters resource; send JSON "
                                       "Patch as application/json-patch+json")
        out = await run_in_threadpool(rest.fhirpath_patch, rtype, rid, params, request.headers.get("if-match"))
        return write_response(request, rest.base_url, out.stored, out.status, out.warnings)
    if ctype != "application/json-patch+json":
        from ..fhir.errors import UnsupportedMediaType

        raise UnsupportedMediaType(f"PATCH takes application/json-patch+json, not {ctype or 'no content type'}")
    ops = await read_json_body(request, settings.max_body_bytes)
    out = await run_in_threadpool(rest.patch, rtype, rid, ops, request.headers.get("if-match"))
    return write_response(request, rest.base_url, out.stored, out.status, out.warnings)


@router.delete("/{rtype:fhirtype}/{rid:fhirid}", tags=["write"], summary="delete (soft, kept in history)")
def delete(rtype: str, rid: str, request: Request, rest: Rest) -> Response:
    check_accept(request)
    s = rest.delete(rtype, rid, if_match=request.headers.get("if-match"))
    if s is None:
        return fhir_response(info_outcome(f"{rtype}/{rid} did not exist or was already deleted"), 200)
    return fhir_response(info_outcome(f"{rtype}/{rid} deleted (version {s.version})"), 200,
                         {"ETag": s.etag})
