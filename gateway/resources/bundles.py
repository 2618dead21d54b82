"""Build searchset and history Bundles; stored JSON is embedded as-is (orjson.Fragment) when not subsetted."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

import orjson

from ..fhir.dates import now_instant
from ..fhir.elements import apply_elements, apply_summary
from ..fhir.errors import operation_outcome
from ..search.query import SearchQuery
from ..store.base import HistoryEntry, SearchResult, StoredResource


def _resource(stored: StoredResource, q: SearchQuery | None) -> Any:
    if q is not None and (q.elements or q.summary in ("true", "text", "data")):
        r = orjson.loads(stored.content or b"{}")
        if q.summary:
            r = apply_summary(r, q.summary)
        if q.elements:
            r = apply_elements(r, q.elements)
        return r
    assert stored.content is not None, "only current versions reach a Bundle entry's resource"
    return orjson.Fragment(stored.content)


def _page_link(base: str, path: str, params: list[tuple[str, str]], offset: int, count: int) -> str:
    kept = [(k, v) for k, v in params if k not in ("_offset", "_count")]
    kept += [("_count", str(count)), ("_offset", str(offset))]
    return f"{base}/{path}?{urlencode(kept)}"


def searchset(base: str, path: str, params: list[tuple[str, str]], q: SearchQuery, result: SearchResult) -> dict:
    bundle: dict[str, Any] = {"resourceType": "Bundle", "id": str(uuid.uuid4()),
                              "meta": {"lastUpdated": now_instant()}, "type": "searchset"}
    if result.total is not None:
        bundle["total"] = result.total
    links = [{"relation": "self", "url": _page_link(base, path, params, q.offset, q.count)}]
    if q.summary != "count" and q.count > 0:
        links.append({"relation": "first", "url": _page_link(base, path, params, 0, q.count)})
        if q.offset > 0:
            links.append({"relation": "previous",
                          "url": _page_link(base, path, params, max(0, q.offset - q.count), q.count)})
        more = (result.total is not None and q.offset + len(result.matches) < result.total) or (
            result.total is None and len(result.matches) == q.count)
        if more:
            links.append({"relation": "next", "url": _page_link(base, path, params, q.offset + q.count, q.count)})
        if result.total is not None and result.total > 0:
            last = ((result.total - 1) // q.count) * q.count
            links.append({"relation": "last", "url": _page_link(base, path, params, last, q.count)})
    bundle["link"] = links
    entries = [{"fullUrl": f"{base}/{m.resource_type}/{m.id}", "resource": _resource(m, q),
                "search": {"mode": "match"}} for m in result.matches]
    entries += [{"fullUrl": f"{base}/{m.resource_type}/{m.id}", "resource": _resource(m, q),
                 "search": {"mode": "include"}} for m in result.included]
    if q.warnings:
        entries.append({"resource": operation_outcome(q.warnings), "search": {"mode": "outcome"}})
    if entries:
        bundle["entry"] = entries
    return bundle


def history(base: str, path: str, params: list[tuple[str, str]], entries: list[HistoryEntry], total: int,
            count: int, offset: int) -> dict:
    links = [{"relation": "self", "url": _page_link(base, path, params, offset, count)}]
    if offset + len(entries) < total:
        links.append({"relation": "next", "url": _page_link(base, path, params, offset + count, count)})
    if offset > 0:
        links.append({"relation": "previous", "url": _page_link(base, path, params, max(0, offset - count), count)})
    out = []
    for h in entries:
        s = h.stored
        e: dict[str, Any] = {"fullUrl": f"{base}/{s.resource_type}/{s.id}"}
        if s.content is not None:
            e["resource"] = orjson.Fragment(s.content)
        method = {"POST": "POST", "PUT": "PUT", "DELETE": "DELETE", "PATCH": "PATCH"}.get(h.method, "PUT")
        url = s.resource_type if method == "POST" else f"{s.resource_type}/{s.id}"
        e["request"] = {"method": method, "url": url}
        status = {"POST": "201 Created", "DELETE": "204 No Content"}.get(method, "200 OK")
        if method == "PUT" and s.version == 1:
            status = "201 Created"
        e["response"] = {"status": status, "etag": s.etag, "lastModified": s.last_updated}
        out.append(e)
    b: dict[str, Any] = {"resourceType": "Bundle", "id": str(uuid.uuid4()), "meta": {"lastUpdated": now_instant()},
                         "type": "history", "total": total, "link": links}
    if out:
        b["entry"] = out
    return b
