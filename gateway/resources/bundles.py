"""Build searchset and history Bundles; stored JSON is embedded as-is (orjson.Fragment) when not subsetted."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson

from ..fhir.dates import now_instant
from ..fhir.elements import apply_elements, apply_summary
from ..fhir.errors import operation_outcome
from ..search.cursor import CursorCodec, PageCursor, search_scope
from ..search.query import SearchQuery
from ..store.base import HistoryEntry, Position, SearchResult, StoredResource


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


PAGING = ("_offset", "_count", "_cursor")


def _page_link(base: str, path: str, params: list[tuple[str, str]], count: int,
               position: tuple[str, str] | None = None) -> str:
    """The request's URL with its paging parameters replaced: ``_count`` and a ``_cursor`` (or, for the self
    link of a page a client asked for by ``_offset``, that offset)."""
    kept = [(k, v) for k, v in params if k not in PAGING]
    kept.append(("_count", str(count)))
    if position is not None:
        kept.append(position)
    return f"{base}/{path}?{urlencode(kept)}"


def page_links(base: str, path: str, params: list[tuple[str, str]], count: int, cursors: CursorCodec, scope: str,
               page: PageSpan, paged: bool = True) -> list[dict[str, str]]:
    """Bundle.link for one page: ``self`` (as asked), ``first``, ``previous``/``next`` as cursors before the
    page's first and after its last row when rows lie there, and ``last`` (a cursor from the end). Every
    link the server makes pages by cursor, so following them never skips or repeats a row that existed
    throughout, whatever was written meanwhile. ``paged`` False (``_summary=count``) gives ``self`` alone."""
    here: tuple[str, str] | None = None
    if page.token is not None:
        here = ("_cursor", page.token)
    elif page.offset:
        here = ("_offset", str(page.offset))
    links = [{"relation": "self", "url": _page_link(base, path, params, count, here)}]
    if count <= 0 or not paged:
        return links
    links.append({"relation": "first", "url": _page_link(base, path, params, count)})
    if page.more_before and page.first is not None:
        token = cursors.encode(PageCursor(False, page.first[0], page.first[1]), scope)
        links.append({"relation": "previous", "url": _page_link(base, path, params, count, ("_cursor", token))})
    if page.more_after and page.last is not None:
        token = cursors.encode(PageCursor(True, page.last[0], page.last[1]), scope)
        links.append({"relation": "next", "url": _page_link(base, path, params, count, ("_cursor", token))})
    # always given, even for an empty page: whether a row lay here must not show when the gate dropped it
    token = cursors.encode(PageCursor(False), scope)
    links.append({"relation": "last", "url": _page_link(base, path, params, count, ("_cursor", token))})
    return links


@dataclass(frozen=True)
class PageSpan:
    """Where a page lies: the cursor token or offset it was asked with, the positions of its first and last
    rows, and whether rows lie before and after it."""

    token: str | None
    offset: int
    first: Position | None
    last: Position | None
    more_before: bool
    more_after: bool


def searchset(base: str, path: str, params: list[tuple[str, str]], q: SearchQuery, result: SearchResult,
              cursors: CursorCodec) -> dict:
    """A searchset Bundle for one page of a search, with cursor paging links (``page_links``)."""
    bundle: dict[str, Any] = {"resourceType": "Bundle", "id": str(uuid.uuid4()),
                              "meta": {"lastUpdated": now_instant()}, "type": "searchset"}
    if result.total is not None:
        bundle["total"] = result.total
    span = PageSpan(q.cursor_token, q.offset, result.first_position, result.last_position, result.more_before,
                    result.more_after)
    bundle["link"] = page_links(base, path, params, q.count, cursors, search_scope(q.resource_type, q.sort), span,
                                paged=q.summary != "count")
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
            count: int, cursors: CursorCodec, scope: str, span: PageSpan) -> dict:
    """A history Bundle for one page of versions, with cursor paging links (``page_links``)."""
    links = page_links(base, path, params, count, cursors, scope, span)
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
