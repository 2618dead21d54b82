"""The terminology use cases: ValueSet $expand and $validate-code, CodeSystem $lookup and $subsumes.

Everything is read through the services' store (the gated store), so an operation sees only the ValueSets
and CodeSystems the caller's grant may read. The expansion logic is the kernel ``fhir/terminology.py``.
Expansions are cached keyed by (the caller's grant, the value set's canonical|version, the parameters that
change the content) and a stamp of the ValueSet and CodeSystem history: any create, update or delete of
either type changes the stamp, so a cached expansion is never served after the content it came from
changed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson

from ..auth.context import current_grant
from ..fhir.errors import BadRequest, NotFound
from ..fhir.terminology import CodeSystemView, Concept, code_system, expand, lookup, split_canonical
from ..resources.rest import RestService
from ..search.query import QueryParser

CACHE_SIZE = 256
MAX_COUNT = 1000


@dataclass(frozen=True)
class Coding:
    """A code with its system (from code+system or a Coding parameter)."""
    system: str | None
    code: str
    display: str | None = None
    version: str | None = None


class ExpansionCache:
    """A small LRU of computed expansions, shared by the requests of one app."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self._data: OrderedDict[tuple[Any, ...], list[Concept]] = OrderedDict()
        self._lock = threading.Lock()
        self.size = size
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[Any, ...]) -> list[Concept] | None:
        """The cached expansion for ``key``, or None."""
        with self._lock:
            found = self._data.get(key)
            if found is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return found

    def put(self, key: tuple[Any, ...], value: list[Concept]) -> None:
        """Remember ``value`` for ``key``, dropping the least recently used entry when full."""
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)


CACHE = ExpansionCache()


class TerminologyService:
    """The four terminology operations over the store the REST service reads through."""

    def __init__(self, rest: RestService, cache: ExpansionCache = CACHE) -> None:
        self.rest = rest
        self.store = rest.store
        self.cache = cache

    # -- reading -------------------------------------------------------------------------------------------
    def _search(self, rtype: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        q = QueryParser(self.rest.base_url, strict=True, max_count=1000).parse(rtype, params)
        q.count, q.total = 1000, "none"
        return [orjson.loads(m.body) for m in self.store.search(q).matches]

    def resolve(self, rtype: str, url: str, version: str | None) -> dict[str, Any] | None:
        """The stored ``rtype`` with canonical ``url`` (at ``version`` when given; else the last one)."""
        found = self._search(rtype, [("url", url)])
        if version is not None:
            found = [r for r in found if r.get("version") == version]
        return found[-1] if found else None

    def read(self, rtype: str, rid: str) -> dict[str, Any]:
        """The stored ``rtype/rid``; NotFound when absent, deleted or outside the grant."""
        s = self.store.read(rtype, rid)
        if s is None or s.deleted:
            raise NotFound(f"{rtype}/{rid} is not known")
        return orjson.loads(s.body)

    def stamp(self) -> tuple[Any, ...]:
        """A value that changes whenever a ValueSet or CodeSystem is written or deleted."""
        out: list[Any] = []
        for rtype in ("ValueSet", "CodeSystem"):
            entries, total = self.store.history(rtype, None, None, 1, 0)
            out.append((total, entries[0].pk if entries else 0,
                        entries[0].stored.last_updated if entries else ""))
        return tuple(out)

    def value_set(self, rid: str | None, url: str | None, inline: dict[str, Any] | None,
                  version: str | None) -> tuple[dict[str, Any], bool]:
        """The value set an operation names: by instance id, canonical (``url`` with ``valueSetVersion``
        or ``|version``) or inline resource; and whether it is the stored one (only those are cached: an
        inline value set may claim any id, url and version)."""
        given = [x for x in (rid, url, inline) if x]
        if len(given) != 1:
            raise BadRequest("Name exactly one value set: ValueSet/[id]/$op, the url parameter or an inline "
                             "valueSet")
        if rid:
            return self.read("ValueSet", rid), True
        if inline:
            if inline.get("resourceType") != "ValueSet":
                raise BadRequest("The valueSet parameter must be a ValueSet resource")
            return inline, False
        assert url is not None
        base, ver = split_canonical(url)
        vs = self.resolve("ValueSet", base, version or ver)
        if vs is None:
            v = version or ver
            raise NotFound(f"ValueSet {base}{'|' + v if v else ''} is not known")
        return vs, True

    def members(self, vs: dict[str, Any], active_only: bool, stored: bool) -> list[Concept]:
        """The value set's members, from the cache (for a ``stored`` value set) when the content it came
        from has not changed."""
        key = None
        if stored:
            g = current_grant()
            key = (id(self.store), g.client_id, str(g.scopes), g.patient, g.subject, self.stamp(),
                   vs.get("url"), vs.get("version"), vs.get("id"), (vs.get("meta") or {}).get("versionId"),
                   active_only)
            hit = self.cache.get(key)
            if hit is not None:
                return hit
        concepts = expand(vs, self.resolve, active_only).concepts
        if key is not None:
            self.cache.put(key, concepts)
        return concepts

    # -- operations ----------------------------------------------------------------------------------------
    def expand(self, vs: dict[str, Any], stored: bool, text: str | None, offset: int, count: int | None,
               active_only: bool) -> dict[str, Any]:
        """The R4 ``$expand`` answer: the value set with ``expansion`` (total, offset, parameters, the page of
        ``contains`` matching ``text``)."""
        members = self.members(vs, active_only, stored)
        if text:
            needle = text.lower()
            members = [c for c in members if needle in c.code.lower() or needle in (c.display or "").lower()]
        page = members[offset: offset + count if count is not None else None]
        params: list[dict[str, Any]] = [{"name": "offset", "valueInteger": offset}]
        if count is not None:
            params.append({"name": "count", "valueInteger": count})
        if text:
            params.append({"name": "filter", "valueString": text})
        if active_only:
            params.append({"name": "activeOnly", "valueBoolean": True})
        out = {k: v for k, v in vs.items() if k not in ("expansion", "meta", "text")}
        out["resourceType"] = "ValueSet"
        out["expansion"] = {
            "identifier": f"urn:uuid:{_uuid()}",
            "timestamp": _now(),
            "total": len(members), "offset": offset, "parameter": params,
            "contains": [c.contains() for c in page],
        }
        if not page:
            del out["expansion"]["contains"]
        return out

    def validate_code(self, vs: dict[str, Any], stored: bool, codings: list[Coding], display: str | None,
                      active_only: bool = False) -> dict[str, Any]:
        """The R4 ValueSet ``$validate-code`` answer: result, message, display."""
        members = {(c.system, c.code): c for c in self.members(vs, active_only, stored)}
        name = vs.get("url") or vs.get("id") or "the value set"
        for coding in codings:
            hit = members.get((coding.system, coding.code))
            if hit is None and coding.system is None:
                hit = next((c for c in members.values() if c.code == coding.code), None)
            if hit is None:
                continue
            params: list[dict[str, Any]] = [{"name": "result", "valueBoolean": True}]
            if display is not None and hit.display and display != hit.display:
                params = [{"name": "result", "valueBoolean": False},
                          {"name": "message", "valueString": f"The display {display!r} is not {hit.display!r}, "
                                                             f"the display of {coding.system}#{coding.code}"}]
            if hit.display:
                params.append({"name": "display", "valueString": hit.display})
            return {"resourceType": "Parameters", "parameter": params}
        what = ", ".join(f"{c.system or '(no system)'}#{c.code}" for c in codings)
        return {"resourceType": "Parameters", "parameter": [
            {"name": "result", "valueBoolean": False},
            {"name": "message", "valueString": f"{what} is not in value set {name}"}]}

    def code_system(self, rid: str | None, system: str | None, version: str | None) -> CodeSystemView:
        """The CodeSystem an operation names (instance id, or system [+ version]); NotFound otherwise."""
        if rid:
            return CodeSystemView.of(self.read("CodeSystem", rid))
        if not system:
            raise BadRequest("Name the code system: the system parameter (or a coding with a system)")
        view = code_system(self.resolve, system, version)
        if view is None:
            raise NotFound(f"CodeSystem {system}{'|' + version if version else ''} is not known")
        return view

    def lookup(self, coding: Coding, properties: list[str]) -> dict[str, Any]:
        """The R4 ``$lookup`` answer for ``coding``."""
        return lookup(self.code_system(None, coding.system, coding.version), coding.code, properties)

    def subsumes(self, rid: str | None, a: Coding, b: Coding, system: str | None,
                 version: str | None) -> dict[str, Any]:
        """The R4 ``$subsumes`` answer: outcome of codeA against codeB in one code system."""
        systems = {s for s in (system, a.system, b.system) if s}
        if len(systems) > 1:
            raise BadRequest(f"codingA and codingB must be in the same code system, got {sorted(systems)}")
        view = self.code_system(rid, next(iter(systems), None), version)
        if rid and systems and view.url not in systems:
            raise BadRequest(f"CodeSystem/{rid} is {view.url}, not {sorted(systems)[0]}")
        return {"resourceType": "Parameters",
                "parameter": [{"name": "outcome", "valueCode": view.subsumes(a.code, b.code)}]}


def _uuid() -> str:
    import uuid

    return str(uuid.uuid4())


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
