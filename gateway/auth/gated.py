"""The store as the services see it: every read and write passes the Gate (auth/gate.py) under the grant of
the caller being served (``context.current``), and nothing passes without one.

``GatedStore`` wraps a ResourceStore and ``GatedSession`` its unit of work. The store package knows nothing
of authorization; this wrapper lives above it and is installed by the application factory, so RestService,
the Bundle processor, conditional writes, PATCH, $submit-data, the ATR operations and the measure engine all
reach data through it without a check of their own. What the gate does not let a grant see behaves as not
there (a read finds nothing, a search lacks it, a history leaves it out, with totals counted after the
filter); a refused write raises ``policy.Denied`` (403) inside the unit of work, which then rolls back.

Methods that return no stored data (``ping``, ``close``, ``analyze``, the engine and URL) pass through.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson

from ..search.cursor import PageCursor
from ..search.query import QueryParser, SearchQuery
from ..store.base import HistoryEntry, IndexScope, SearchResult, StoredResource
from . import policy
from .context import Grant, current_grant
from .gate import Gate, attribution_confined, own_members
from .grant_record import stamp_owner
from .groups import (
    ATTRIBUTION_TYPES,
    Identifiers,
    attributed_patients,
    caller_identifiers,
    groups_changed,
    restricted,
)
from .search_scope import narrow_attribution

HISTORY_PAGE = 500  # rows read at a time when a history must be filtered before it is counted and paged


class GatedSession:
    """One unit of work of the wrapped store, gated."""

    def __init__(self, inner: Any, gate: Gate) -> None:
        self.inner = inner
        self.gate = gate
        # a Group or Consent was written: cached attributed-patient sets are checked after commit
        self.wrote_group = False

    def __getattr__(self, name: str) -> Any:  # flush and other housekeeping of the wrapped session
        return getattr(self.inner, name)

    # -- reads -------------------------------------------------------------------------------------------
    def read(self, resource_type: str, id: str) -> StoredResource | None:
        """The current version, or None when it does not exist or the grant may not see it."""
        grant = current_grant()
        s = self.inner.read(resource_type, id)
        return s if s is None else self.gate.visible(grant, s, self._prior(s))

    def vread(self, resource_type: str, id: str, version: int) -> StoredResource | None:
        """One version, or None when it does not exist or the grant may not see it."""
        grant = current_grant()
        s = self.inner.vread(resource_type, id, version)
        return s if s is None else self.gate.visible(grant, s, self._prior(s))

    def exists(self, resource_type: str, id: str) -> bool:
        """True when a current, undeleted version exists that the grant may see, or may update (a write-only
        grant learns of what it may overwrite anyway)."""
        grant = current_grant()
        if self.gate.open_reads(grant):
            return bool(self.inner.exists(resource_type, id))
        s = self.inner.read(resource_type, id)
        if s is None or s.deleted or s.content is None:
            return False
        if self.gate.visible(grant, s) is not None:
            return True
        before = dict(orjson.loads(s.content))
        try:
            self.gate.check_write(grant, resource_type, before, before)
        except policy.Denied:
            return False
        return True

    def search(self, query: SearchQuery) -> SearchResult:
        """The search, narrowed to what the grant may see, with matches and included resources the grant may
        not see left out."""
        grant = current_grant()
        return _filter_result(self.gate, grant, self.inner.search(_narrowed(self.gate, grant, query)))

    def _prior(self, s: StoredResource) -> Any:
        return lambda: self.inner.vread(s.resource_type, s.id, s.version - 1) if s.version > 1 else None

    # -- writes ------------------------------------------------------------------------------------------
    def _before(self, resource_type: str, id: str) -> dict[str, Any] | None:
        s = self.inner.read(resource_type, id)
        if s is None or s.deleted or s.content is None:
            return None
        return dict(orjson.loads(s.content))

    def write(self, resource: dict[str, Any], method: str, expected_version: int | None = None,
              known_new: bool = False) -> StoredResource:
        """Store a new version after the gate has allowed the change from the stored version to it."""
        grant = current_grant()
        if not grant.system:
            rtype, rid = str(resource.get("resourceType")), str(resource.get("id"))
            before = None if known_new else self._before(rtype, rid)
            self.gate.check_write(grant, rtype, before, resource)
        if resource.get("resourceType") == "Subscription":  # its notifications go out under this grant
            stamp_owner(resource, grant)
        if resource.get("resourceType") in ATTRIBUTION_TYPES:
            self.wrote_group = True
        return self.inner.write(resource, method, expected_version=expected_version,
                                known_new=known_new)

    def write_encoded(self, items: list[Any], method: str = "PUT") -> list[str]:
        """Bulk writes (ingest): each resource's change passes the gate; the SYSTEM grant is not looked at."""
        grant = current_grant()
        if not grant.system:
            plain = {t for t in {e.rtype for e in items} if self.gate.plain_upsert(grant, t)}
            for e in items:
                if e.rtype in plain:
                    continue  # c and u on the type, no compartment or Group rule: no need to read anything
                doc = dict(orjson.loads(e.parts[0] + b"1" + e.parts[1] + b"1" + e.parts[2]))
                self.gate.check_write(grant, e.rtype, self._before(e.rtype, e.rid), doc)
        if any(e.rtype in ATTRIBUTION_TYPES for e in items):
            self.wrote_group = True
        return list(self.inner.write_encoded(items, method))

    def delete(self, resource_type: str, id: str) -> StoredResource | None:
        """Delete after the gate has allowed removing the stored version."""
        grant = current_grant()
        if not grant.system:
            before = self._before(resource_type, id)
            if before is None:
                return None
            self.gate.check_write(grant, resource_type, before, None)
        if resource_type in ATTRIBUTION_TYPES:
            self.wrote_group = True
        return self.inner.delete(resource_type, id)


class GatedStore:
    """A ResourceStore whose reads and writes pass the Gate under the current grant.

    ``opt_out`` is the configured Provider Access opt-out list (``GATEWAY_PROVIDER_ACCESS_OPT_OUT``, the
    ``provider_access_opt_out`` setting): the gate leaves those members out of what a provider reaches through
    a Provider Access Group (auth/groups.py). It is a required keyword argument, so that no construction of
    the gate (the server, the CLI, job and measure workers, ingest partitions) can leave it out unnoticed; a
    worker process gets it with its task and builds its own gate with it."""

    def __init__(self, inner: Any, base_url: str, *, opt_out: str) -> None:
        self.inner = inner
        self.base_url = base_url
        self.opt_out = opt_out
        self.gate = Gate(self._identifiers, self._matches, self.attributed_patients)

    def __getattr__(self, name: str) -> Any:  # engine, url, dialect, ping, close, analyze ...
        return getattr(self.inner, name)

    def _identifiers(self, grant: Grant) -> Identifiers:
        return caller_identifiers(grant, self.inner)

    def attributed_patients(self, grant: Grant) -> frozenset[str]:
        """The ids of the patients attributed to an ATR caller (auth/groups.py), from the Groups as stored, less
        the members of its Provider Access Groups who opted out; cached with the grant and computed again when
        the Groups or Consents change."""
        return attributed_patients(grant, self.inner, self._identifiers(grant), self.opt_out)

    def _matches(self, rtype: str, rid: str, filters: list[tuple[str, str]]) -> bool:
        parser = QueryParser(self.base_url, False, 1, 1)
        q = parser.parse(rtype, [("_id", rid), *filters])
        q.count, q.total = 1, "none"
        return bool(self.inner.search(q).matches)

    @contextmanager
    def session(self) -> Iterator[GatedSession]:
        """A gated unit of work; a refused write raises inside it, so nothing of the unit is kept."""
        current_grant()
        with self.inner.session() as s:
            gated = GatedSession(s, self.gate)
            yield gated
        if gated.wrote_group:  # committed: the attributed patients of every caller may have changed (Group, Consent)
            groups_changed()

    def _visible(self, grant: Grant, s: StoredResource | None) -> StoredResource | None:
        if s is None:
            return None
        prior = (lambda: self.inner.vread(s.resource_type, s.id, s.version - 1)) if s.version > 1 else None
        return self.gate.visible(grant, s, prior)

    def read(self, resource_type: str, id: str) -> StoredResource | None:
        """The current version, or None when it does not exist or the grant may not see it."""
        grant = current_grant()
        return self._visible(grant, self.inner.read(resource_type, id))

    def vread(self, resource_type: str, id: str, version: int) -> StoredResource | None:
        """One version, or None when it does not exist or the grant may not see it."""
        grant = current_grant()
        return self._visible(grant, self.inner.vread(resource_type, id, version))

    def search(self, query: SearchQuery) -> SearchResult:
        """The search, narrowed to what the grant may see, with matches and included resources the grant may
        not see left out."""
        grant = current_grant()
        return _filter_result(self.gate, grant, self.inner.search(_narrowed(self.gate, grant, query)))

    def history(self, resource_type: str | None, id: str | None, since: str | None, count: int,
                offset: int, at: str | None = None, cursor: PageCursor | None = None
                ) -> tuple[list[HistoryEntry], int]:
        """History entries the grant may see, newest first, and their number (not the server-wide total);
        with ``cursor``, the ``count`` visible entries nearest beyond its position (keyset paging)."""
        grant = current_grant()
        if self.gate.open_reads(grant):
            return self.inner.history(resource_type, id, since, count, offset, at, cursor=cursor)
        kept: list[HistoryEntry] = []
        start = 0
        while True:
            page, total = self.inner.history(resource_type, id, since, HISTORY_PAGE, start, at)
            for entry in page:
                seen = self._visible(grant, entry.stored)
                if seen is not None:
                    kept.append(entry if seen is entry.stored else HistoryEntry(seen, entry.method, entry.pk))
            start += len(page)
            if not page or start >= total:
                break
        if cursor is None:
            return kept[offset:offset + count], len(kept)
        return _beyond_cursor(kept, cursor, count), len(kept)

    def iter_current(self, resource_type: str | None = None, batch: int = 500) -> Iterator[StoredResource]:
        """Current resources the grant may see."""
        grant = current_grant()
        for s in self.inner.iter_current(resource_type, batch):
            seen = self.gate.visible(grant, s)
            if seen is not None:
                yield seen

    def read_many(self, resource_type: str, ids: list[str]) -> dict[str, StoredResource]:
        """Current versions of several resources, without those the grant may not see."""
        grant = current_grant()
        found = self.inner.read_many(resource_type, ids)
        if self.gate.open_reads(grant):
            return dict(found)
        out = {}
        for rid, s in found.items():
            seen = self.gate.visible(grant, s)
            if seen is not None:
                out[rid] = seen
        return out

    def compartment_contents(self, patient_ids: list[str], types: dict[str, tuple[str, ...]],
                             scopes: dict[str, IndexScope] | None = None
                             ) -> dict[str, list[tuple[str, int, bytes]]]:
        """The wrapped store's compartment contents (narrowed by ``scopes``), without resources the grant may
        not see."""
        grant = current_grant()
        rows = self.inner.compartment_contents(patient_ids, types, scopes)
        if self.gate.open_reads(grant):
            return dict(rows)
        out: dict[str, list[tuple[str, int, bytes]]] = {}
        for pid, items in rows.items():
            kept = []
            for rtype, pk, content in items:
                doc = orjson.loads(content)
                if isinstance(doc, dict) and self.gate.may_see(grant, doc):
                    if rtype == "Group" and grant.patient and policy.confined(grant.scopes, "Group"):
                        content = orjson.dumps(own_members(doc, grant.patient))
                    kept.append((rtype, pk, content))
            out[pid] = kept
        return out

    def count(self, resource_type: str | None = None) -> int:
        """How many current resources the grant may see."""
        grant = current_grant()
        if self.gate.open_reads(grant):
            return int(self.inner.count(resource_type))
        return sum(1 for _ in self.iter_current(resource_type))


def _beyond_cursor(entries: list[HistoryEntry], cursor: PageCursor, count: int) -> list[HistoryEntry]:
    """The ``count`` entries of a newest-first history nearest beyond a cursor's position (older for a
    forward cursor, newer for a backward one), the same rows the store's keyset query selects."""
    if cursor.pk is None:  # the oldest page
        return entries[-count:] if count else []
    mark = (cursor.keys[0], cursor.pk)
    if cursor.forward:
        return [e for e in entries if (e.stored.last_updated, e.pk) < mark][:count]
    newer = [e for e in entries if (e.stored.last_updated, e.pk) > mark]
    return newer[-count:] if count else []


def _narrowed(gate: Gate, grant: Grant, query: SearchQuery) -> SearchQuery:
    """``query`` narrowed in SQL to the attributed patients' compartments for an attribution-restricted caller
    (auth/gate.py ``attribution_confined``): the searched type and every type its chains, ``_has`` and
    includes reach. Other grants' searches are narrowed by ``context.constrain_search`` as the services
    parse them; the gate's per-resource decision (``_filter_result``) stays behind both."""
    if grant.system or not restricted(grant.fhir_user):
        return query
    return narrow_attribution(query, lambda t: attribution_confined(grant, t), lambda: gate.attributed(grant))


def _filter_result(gate: Gate, grant: Grant, result: SearchResult) -> SearchResult:
    if gate.open_reads(grant):
        return result
    matches = [v for v in (gate.visible(grant, m) for m in result.matches) if v is not None]
    included = [v for v in (gate.visible(grant, m) for m in result.included) if v is not None]
    if result.total is not None and len(matches) < len(result.matches):
        result.total -= len(result.matches) - len(matches)
    result.matches, result.included = matches, included
    return result
