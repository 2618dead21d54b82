"""Request parsing and response rendering shared by every route: content negotiation, Prefer, bodies."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from ..fhir.dates import instant_to_http
from ..fhir.errors import NotAcceptable, PayloadTooLarge, UnsupportedMediaType, info_outcome
from ..fhir.jsonio import MAX_DEPTH, loads
from ..fhir.xml import available as xml_available
from ..store.base import StoredResource

FHIR_JSON = "application/fhir+json; charset=utf-8"
JSON_TYPES = ("application/fhir+json", "application/json", "text/json", "application/json-patch+json")
XML_SERVED = ("xml", "text/xml", "application/xml", "application/fhir+xml")
XML_FORMATS = ("xml", "text/xml", "application/xml", "application/fhir+xml", "html", "text/html")


def check_accept(request: Request) -> None:
    fmt = request.query_params.get("_format")
    if fmt is not None:
        f = fmt.split(";")[0].strip().lower().replace(" ", "+")  # an unencoded '+' arrives as a space
        if f in XML_SERVED and xml_available():
            return  # the XML middleware (api/xmlformat.py) renders the answer
        if f in XML_FORMATS or f.endswith("xml"):
            raise NotAcceptable(f"_format={fmt} is not supported: this server speaks FHIR JSON and XML")
        if f not in ("json", "application/json", "application/fhir+json", "text/json"):
            raise NotAcceptable(f"Unknown _format {fmt!r}")
        return
    accept = request.headers.get("accept", "")
    if not accept:
        return
    types = [a.split(";")[0].strip().lower() for a in accept.split(",")]
    if any(t in ("*/*", "application/*") or "json" in t for t in types):
        return
    if xml_available() and any(t in XML_SERVED for t in types):
        return
    raise NotAcceptable(f"Cannot produce any of '{accept}': this server speaks application/fhir+json and application/fhir+xml")


def pretty(request: Request) -> bool:
    return request.query_params.get("_pretty") == "true"


def prefer(request: Request) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in request.headers.get("prefer", "").split(","):
        for item in part.split(";"):
            k, _, v = item.strip().partition("=")
            if k:
                out[k.strip().lower()] = v.strip().strip('"')
    return out


async def read_json_body(request: Request, max_bytes: int) -> Any:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and ctype not in JSON_TYPES:
        raise UnsupportedMediaType(f"Content-Type {ctype!r} is not supported; send application/fhir+json")
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise PayloadTooLarge(f"Request body of {length} bytes exceeds the limit of {max_bytes} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"Request body exceeds the limit of {max_bytes} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        from ..fhir.errors import BadRequest

        raise BadRequest("The request body is empty; a FHIR JSON resource is required")
    return loads(body, getattr(request.app.state.settings, "max_json_depth", MAX_DEPTH))


def fhir_response(body: Any, status: int = 200, headers: dict[str, str] | None = None,
                  is_pretty: bool = False) -> Response:
    if isinstance(body, bytes) and not is_pretty:
        content = body
    else:
        if isinstance(body, bytes):
            body = orjson.loads(body)
        content = orjson.dumps(body, option=orjson.OPT_INDENT_2 if is_pretty else 0)
    return Response(content, status_code=status, headers=headers, media_type=FHIR_JSON)


def version_headers(base: str, s: StoredResource) -> dict[str, str]:
    return {"ETag": s.etag, "Last-Modified": instant_to_http(s.last_updated),
            "Content-Location": f"{base}/{s.resource_type}/{s.id}/_history/{s.version}"}


def _etag_version(tag: str) -> str:
    tag = tag.strip()
    if tag.startswith(("W/", "w/")):
        tag = tag[2:]
    return tag.strip().strip('"')


def not_modified(request: Request, s: StoredResource) -> bool:
    """Conditional read (R4 http.html#cread): True when the client's copy is current.

    ``If-None-Match`` lists entity tags compared weakly (RFC 9110 §13.1.2: ``"1"``, ``W/"1"`` and ``*`` all
    match version 1); when it is present ``If-Modified-Since`` is ignored, otherwise the resource is unchanged
    if it was last updated at or before that HTTP date (one-second precision)."""
    inm = request.headers.get("if-none-match")
    if inm is not None:
        version = str(s.version)
        return any(t.strip() == "*" or _etag_version(t) == version for t in inm.split(","))
    ims = request.headers.get("if-modified-since")
    if ims:
        from email.utils import parsedate_to_datetime

        try:
            since = parsedate_to_datetime(ims)
            updated = parsedate_to_datetime(instant_to_http(s.last_updated))
        except (TypeError, ValueError, IndexError, OverflowError):
            return False  # an unparseable date is ignored, as RFC 9110 asks
        if since.tzinfo is None:
            return False
        return int(updated.timestamp()) <= int(since.timestamp())
    return False


def write_response(request: Request, base: str, s: StoredResource, status: int,
                   warnings: list[Any] | None = None) -> Response:
    headers = version_headers(base, s)
    headers["Location"] = headers.pop("Content-Location")
    ret = prefer(request).get("return", "representation")
    if ret == "minimal":
        return Response(status_code=status, headers=headers)
    if ret == "OperationOutcome":
        from ..fhir.errors import operation_outcome

        msg = f"{s.resource_type}/{s.id} stored as version {s.version}"
        oo = info_outcome(msg) if not warnings else operation_outcome(warnings)
        return fhir_response(oo, status, headers, pretty(request))
    return fhir_response(s.content, status, headers, pretty(request))


def x_provenance(request: Request) -> dict[str, Any] | None:
    """The Provenance of an X-Provenance header (create and update), or None; 400 when malformed."""
    from ..resources.provenance_header import HEADER, parse

    return parse(request.headers.get(HEADER))
