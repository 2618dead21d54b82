"""Type-level interactions: search (GET and POST _search), create, conditional update/delete, type history,
and Patient compartment search."""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from ..api import paths  # noqa: F401 - registers the FHIR path convertors
from ..api.deps import Rest, Settings
from ..api.http import (
    check_accept,
    fhir_response,
    prefer,
    pretty,
    read_json_body,
    write_response,
    x_provenance,
)
from ..auth.context import constrain_search
from ..fhir.errors import BadRequest, info_outcome
from ..resources import bundles
from ..resources.rest import check_type
from ..search.params import patient_compartment
from .instance import history_response

router = APIRouter()
compartment_router = APIRouter()  # registered after the instance routes


def _search(request: Request, rest: Rest, rtype: str, params: list[tuple[str, str]], path: str) -> Response:
    strict = prefer(request).get("handling") == "strict"
    q, result = rest.search(rtype, params, strict=strict)
    body = bundles.searchset(rest.base_url, path, params, q, result, rest.cursors)
    return fhir_response(body, is_pretty=pretty(request))


@router.get("/{rtype:fhirtype}/_history", tags=["history"], summary="Type history")
def type_history(rtype: str, request: Request, rest: Rest, settings: Settings) -> Response:
    return history_response(request, rest, settings, rtype, None)


@router.get("/{rtype:fhirtype}", tags=["search"], summary="search")
def search_get(rtype: str, request: Request, rest: Rest) -> Response:
    check_accept(request)
    return _search(request, rest, rtype, list(request.query_params.multi_items()), rtype)


@router.post("/{rtype:fhirtype}/_search", tags=["search"], summary="search via POST (form-encoded)")
async def search_post(rtype: str, request: Request, rest: Rest) -> Response:
    check_accept(request)
    ctype = request.headers.get("content-type", "").split(";")[0].strip()
    body = await request.body()
    if body and ctype != "application/x-www-form-urlencoded":
        from ..fhir.errors import UnsupportedMediaType

        raise UnsupportedMediaType("POST _search takes application/x-www-form-urlencoded parameters")
    params = list(request.query_params.multi_items()) + parse_qsl(body.decode(), keep_blank_values=True)
    return await run_in_threadpool(_search, request, rest, rtype, params, rtype)


FORMAT_PARAMS = {"_format", "_pretty", "_summary", "_elements"}


def create_condition(request: Request) -> str | None:
    """The criteria of a conditional create: the If-None-Exist header, or search parameters given in the
    create's query string (``POST Patient?identifier=…``, as fhirpy's get_or_create sends them). R4 defines
    only the header; a query string on a create has no other meaning, and ignoring it would create
    duplicates, so it is taken as the same condition. Both at once must agree."""
    header = request.headers.get("if-none-exist")
    criteria = [(k, v) for k, v in request.query_params.multi_items() if k not in FORMAT_PARAMS]
    if not criteria:
        return header
    from urllib.parse import parse_qsl, urlencode

    from ..fhir.errors import BadRequest

    if header is not None and sorted(parse_qsl(header.lstrip("?"), keep_blank_values=True)) != sorted(criteria):
        raise BadRequest("A create names search criteria both in If-None-Exist and in its query string, and they "
                         "differ; give them once")
    return urlencode(criteria)


@router.post("/{rtype:fhirtype}", tags=["write"], summary="create (conditional with If-None-Exist or query criteria)")
async def create(rtype: str, request: Request, rest: Rest, settings: Settings) -> Response:
    check_accept(request)
    check_type(rtype)
    body = await read_json_body(request, settings.max_body_bytes)
    out = await run_in_threadpool(rest.create, rtype, body, create_condition(request),
                                  provenance=x_provenance(request))
    return write_response(request, rest.base_url, out.stored, out.status, out.warnings)


@router.put("/{rtype:fhirtype}", tags=["write"], summary="conditional update")
async def conditional_update(rtype: str, request: Request, rest: Rest, settings: Settings) -> Response:
    check_accept(request)
    check_type(rtype)
    criteria = request.url.query
    if not criteria:
        raise BadRequest("PUT on a type needs search criteria (conditional update) or an id in the URL")
    body = await read_json_body(request, settings.max_body_bytes)
    out = await run_in_threadpool(rest.conditional_update, rtype, criteria, body, request.headers.get("if-match"),
                                  provenance=x_provenance(request))
    return write_response(request, rest.base_url, out.stored, out.status, out.warnings)


@router.delete("/{rtype:fhirtype}", tags=["write"], summary="conditional delete")
def conditional_delete(rtype: str, request: Request, rest: Rest) -> Response:
    check_accept(request)
    criteria = request.url.query
    if not criteria:
        raise BadRequest("DELETE on a type needs search criteria (conditional delete)")
    n = rest.conditional_delete(rtype, criteria)
    return fhir_response(info_outcome(f"{n} {rtype} resource(s) deleted"), 200)


@compartment_router.get("/Patient/{pid:fhirid}/{rtype:fhirtype}", tags=["search"], summary="Patient compartment search")
def compartment_search(pid: str, rtype: str, request: Request, rest: Rest) -> Response:
    check_accept(request)
    check_type(rtype)
    comp = patient_compartment()
    if rtype == "Patient":
        params = [("_id", pid)]
    elif rtype in comp:
        params = []
    else:
        raise BadRequest(f"{rtype} is not in the Patient compartment")
    params += list(request.query_params.multi_items())
    parser = rest.parser(prefer(request).get("handling") == "strict")
    q = parser.parse(rtype, params)
    constrain_search(q, parser)
    if rtype != "Patient":
        from ..search.query import Criterion, RefValue

        q.criteria.append(Criterion("_compartment", "_compartment", None, None,
                                    [RefValue("Patient", pid, None)], has_param=",".join(comp[rtype])))
    result = rest.store.search(q)
    body = bundles.searchset(rest.base_url, f"Patient/{pid}/{rtype}", params, q, result, rest.cursors)
    return fhir_response(body, is_pretty=pretty(request))
