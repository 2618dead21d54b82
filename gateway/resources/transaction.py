"""Batch and transaction Bundles (FHIR R4 http.html#transaction).

A transaction is one database unit of work: entries run in the order the spec fixes (DELETE, POST, PUT/PATCH,
GET), ``urn:uuid:`` and other fullUrl references are rewritten to the ids the server assigns, conditional
entries (ifNoneExist, conditional update/delete, conditional references) are resolved inside the same unit,
and any failing entry rolls the whole bundle back. A batch runs each entry on its own.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..fhir.dates import now_instant
from ..fhir.errors import BadRequest, FhirError, Gone, Issue, NotFound, operation_outcome
from ..fhir.resource_types import RESOURCE_TYPES
from ..fhir.rest_url import parse_request
from ..store.base import Session, StoredResource
from .bundles import searchset
from .rest import RestService, WriteOutcome, claim_conditionals, conditional_key, parse_query_string

ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
# the interactions an entry may ask for (R4 http.html#transaction); the HTTP method of each is fixed by the
# entry URL's route, so "POST Measure/$data-requirements" is an operation, never a create
EXECUTED = {"create", "update", "conditional-update", "delete", "conditional-delete", "patch", "read", "vread",
            "search-type"}
BODIES = ("create", "update", "conditional-update")  # entries whose resource is written
WRITES = {"create", "update", "conditional-update", "delete", "conditional-delete", "patch"}


@dataclass
class EntryResult:
    status: str
    stored: StoredResource | None = None
    resource: Any = None
    outcome: dict[str, Any] | None = None
    warnings: list[Issue] = field(default_factory=list)


@dataclass
class ParsedEntry:
    index: int
    method: str
    interaction: str  # what the entry URL's route means (fhir/rest_url.py), the one the middleware authorized
    rtype: str
    id: str | None
    vid: str | None
    query: str | None
    resource: Any
    full_url: str | None
    if_none_exist: str | None
    if_match: str | None
    warnings: list[Issue] = field(default_factory=list)


def _walk_refs(node: Any, fn: Any) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "reference" and isinstance(v, str):
                new = fn(v)
                if new is not None:
                    node[k] = new
            else:
                _walk_refs(v, fn)
    elif isinstance(node, list):
        for item in node:
            _walk_refs(item, fn)


class BundleProcessor:
    def __init__(self, rest: RestService, enforce_references: bool = True,
                 validation_level: str | None = None) -> None:
        self.rest = rest
        self.enforce_references = enforce_references
        self.validation_level = validation_level

    # -- parsing -----------------------------------------------------------------------------------------
    def _parse(self, i: int, entry: Any) -> ParsedEntry:
        if not isinstance(entry, dict) or not isinstance(entry.get("request"), dict):
            raise BadRequest(f"Bundle.entry[{i}] has no request", issues=[
                Issue("error", "required", f"Bundle.entry[{i}].request is required", [f"Bundle.entry[{i}]"])])
        req = entry["request"]
        method = str(req.get("method", "")).upper()
        url = req.get("url")
        try:
            route = parse_request(method, url, self.rest.base_url)
        except FhirError as exc:
            raise _located(exc, i, f"{method} {url}") from None
        if route.interaction not in EXECUTED or (route.interaction == "search-type" and route.method == "POST"):
            what = f"operation ${route.operation}" if route.operation else f"the {route.interaction} interaction"
            raise _located(BadRequest(
                f"{what} cannot be an entry of a batch or transaction; send it as its own request",
                code="not-supported"), i, f"{method} {url}")
        assert route.rtype is not None
        return ParsedEntry(i, route.method, route.interaction, route.rtype, route.rid, route.vid,
                           route.query or None, entry.get("resource"), entry.get("fullUrl"),
                           req.get("ifNoneExist"), req.get("ifMatch"))

    # -- entry point -------------------------------------------------------------------------------------
    def process(self, bundle: Any, return_pref: str = "minimal") -> dict[str, Any]:
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise BadRequest("POST to the base expects a Bundle of type batch or transaction")
        btype = bundle.get("type")
        if btype not in ("batch", "transaction"):
            raise BadRequest(f"Bundle.type must be batch or transaction to be processed, got {btype!r}")
        entries = bundle.get("entry") or []
        if not isinstance(entries, list):
            raise BadRequest("Bundle.entry must be an array")
        results = self.transaction(entries) if btype == "transaction" else self.batch(entries)
        return self._response(f"{btype}-response", results, return_pref)

    def _response(self, btype: str, results: list[EntryResult], return_pref: str) -> dict[str, Any]:
        out = []
        base = self.rest.base_url
        for r in results:
            resp: dict[str, Any] = {"status": r.status}
            e: dict[str, Any] = {}
            if r.stored is not None:
                s = r.stored
                e["fullUrl"] = f"{base}/{s.resource_type}/{s.id}"
                resp["location"] = f"{s.resource_type}/{s.id}/_history/{s.version}"
                resp["etag"] = s.etag
                resp["lastModified"] = s.last_updated
                if return_pref == "representation" and s.content is not None:
                    e["resource"] = orjson.Fragment(s.content)
            if r.resource is not None:
                e["resource"] = r.resource
            if r.outcome is not None:
                resp["outcome"] = r.outcome
            elif r.warnings:
                resp["outcome"] = operation_outcome(r.warnings)
            e["response"] = resp
            out.append(e)
        return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "meta": {"lastUpdated": now_instant()},
                "type": btype, "entry": out}

    # -- transaction -------------------------------------------------------------------------------------
    def transaction(self, raw_entries: list[Any]) -> list[EntryResult]:
        entries = [self._parse(i, e) for i, e in enumerate(raw_entries)]
        seen_urls: set[str] = set()
        for e in entries:
            if e.full_url:
                if e.full_url in seen_urls:
                    raise BadRequest(f"Bundle.entry[{e.index}]: duplicate fullUrl {e.full_url}")
                seen_urls.add(e.full_url)
        # validate every resource before taking the write lock
        for e in entries:
            if e.interaction in BODIES:
                e.resource = self._copy(e)
                e.warnings = self._validate(e)
        results: list[EntryResult | None] = [None] * len(entries)
        with self.rest.store.session() as tx:
            # claim every conditional entry's criteria up front, in one order (resources/rest.py)
            claim_conditionals(tx, self._conditional_keys(entries))
            idmap: dict[str, str] = {}
            targets: set[str] = set()
            skip: set[int] = set()
            # assign ids and resolve conditional entries first, so references can be rewritten
            for e in entries:
                try:
                    self._plan(tx, e, idmap, targets, skip, results)
                except FhirError as exc:
                    raise self._at(exc, e) from None
            self._identities(tx, entries, skip)
            for e in entries:
                if e.interaction in BODIES and e.index not in skip:
                    try:
                        self._rewrite(tx, e, idmap, targets)
                    except FhirError as exc:
                        raise self._at(exc, e) from None
            for e in sorted(entries, key=lambda x: ORDER[x.method]):
                if e.index in skip:
                    continue
                try:
                    results[e.index] = self._execute(tx, e)
                except FhirError as exc:
                    raise self._at(exc, e) from None
        return [r for r in results if r is not None]

    @staticmethod
    def _conditional_keys(entries: list[ParsedEntry]) -> set[str]:
        """The claim keys of the bundle's conditional creates, updates and deletes."""
        keys: set[str] = set()
        for e in entries:
            criteria = e.if_none_exist if e.interaction == "create" else (
                e.query if e.interaction in ("conditional-update", "conditional-delete")
                or (e.interaction == "update" and e.id is None) else None)
            params = parse_query_string(criteria.lstrip("?")) if criteria else []
            if params:
                keys.add(conditional_key(e.rtype, params))
        return keys

    def _copy(self, e: ParsedEntry) -> Any:
        if not isinstance(e.resource, dict):
            raise BadRequest(f"Bundle.entry[{e.index}]: {e.method} needs a resource")
        return orjson.loads(orjson.dumps(e.resource))

    def _validate(self, e: ParsedEntry) -> list[Issue]:
        try:
            return self.rest.validate(e.resource, e.rtype, self.validation_level)
        except FhirError as exc:
            raise self._at(exc, e) from None

    def _at(self, exc: FhirError, e: ParsedEntry) -> FhirError:
        where = f"Bundle.entry[{e.index}]"
        for issue in exc.issues:
            issue.expression = [where, *issue.expression]
            if not issue.diagnostics.startswith(where):
                issue.diagnostics = f"{where} ({e.method} {e.rtype}{'/' + e.id if e.id else ''}): {issue.diagnostics}"
        exc.diagnostics = exc.issues[0].diagnostics
        return exc

    def _plan(self, tx: Session, e: ParsedEntry, idmap: dict[str, str], targets: set[str], skip: set[int],
              results: list[EntryResult | None]) -> None:
        if e.interaction == "create":
            if e.if_none_exist:
                found = self.rest._conditional_matches(tx, e.rtype, e.if_none_exist)
                if len(found) > 1:
                    from ..fhir.errors import PreconditionFailed

                    raise PreconditionFailed(f"ifNoneExist '{e.if_none_exist}' matches more than one resource")
                if found:
                    skip.add(e.index)
                    results[e.index] = EntryResult("200 OK", found[0])
                    if e.full_url:
                        idmap[e.full_url] = f"{e.rtype}/{found[0].id}"
                    return
            e.id = str(uuid.uuid4())
            e.resource["id"] = e.id
            if e.full_url:
                idmap[e.full_url] = f"{e.rtype}/{e.id}"
            targets.add(f"{e.rtype}/{e.id}")
        elif e.interaction in ("update", "conditional-update"):
            if e.id is None:
                found = self.rest._conditional_matches(tx, e.rtype, e.query or "")
                if len(found) > 1:
                    from ..fhir.errors import PreconditionFailed

                    raise PreconditionFailed(f"Conditional update '{e.query}' matches more than one resource")
                e.id = found[0].id if found else (e.resource.get("id") or str(uuid.uuid4()))
                e.resource["id"] = e.id
                e.query = None
            if e.full_url:
                idmap[e.full_url] = f"{e.rtype}/{e.id}"
            targets.add(f"{e.rtype}/{e.id}")

    def _rewrite(self, tx: Session, e: ParsedEntry, idmap: dict[str, str], targets: set[str]) -> None:
        base = self.rest.base_url + "/"
        problems: list[str] = []

        def fix(ref: str) -> str | None:
            if ref in idmap:
                return idmap[ref]
            if ref.startswith("#"):
                return None
            if ref.startswith("urn:uuid:") or ref.startswith("urn:oid:"):
                problems.append(f"reference {ref} does not resolve to any entry in the transaction")
                return None
            local = ref[len(base):] if ref.startswith(base) else ref
            if "?" in local:  # conditional reference
                rtype, _, crit = local.partition("?")
                if rtype in RESOURCE_TYPES:
                    found = self.rest._conditional_matches(tx, rtype, crit, claim=False)
                    if len(found) != 1:
                        problems.append(f"conditional reference {ref} matches {len(found)} resources, not one")
                        return None
                    return f"{rtype}/{found[0].id}"
                return None
            segs = local.split("/_history/")[0].split("/")
            if self.enforce_references and len(segs) == 2 and segs[0] in RESOURCE_TYPES and "://" not in ref:
                key = f"{segs[0]}/{segs[1]}"
                if key not in targets and not tx.exists(segs[0], segs[1]):
                    problems.append(f"reference {ref} points to a resource that does not exist")
            return local if local != ref else None

        _walk_refs(e.resource, fix)
        if problems:
            raise BadRequest("; ".join(problems), code="not-found" if "exist" in problems[0] else "invalid")

    def _execute(self, tx: Session, e: ParsedEntry) -> EntryResult:
        rest = self.rest
        if e.interaction == "delete":
            assert e.id is not None
            rest.delete(e.rtype, e.id, tx, e.if_match)
            return EntryResult("204 No Content")
        if e.interaction == "conditional-delete":
            rest.conditional_delete(e.rtype, e.query or "", tx)
            return EntryResult("204 No Content")
        if e.interaction == "create":
            out = rest.create(e.rtype, e.resource, None, tx, new_id=e.id, prevalidated=e.warnings, fresh_id=True)
            return self._write_result(out)
        if e.interaction in ("update", "conditional-update"):
            assert e.id is not None
            out = rest.update(e.rtype, e.id, e.resource, e.if_match, tx, prevalidated=e.warnings)
            return self._write_result(out)
        if e.interaction == "patch":
            from ..fhir.errors import NotSupported

            raise NotSupported("PATCH entries are not supported in bundles")
        return self._get(tx, e)

    def _identities(self, tx: Any, entries: list[ParsedEntry], skip: set[int]) -> None:
        """R4 http.html#transaction: a resource appears in a transaction once. Writes are keyed by the
        resource they change (conditional ones as resolved by ``_plan``, conditional deletes by their match);
        a second entry for the same resource fails the transaction before anything is written."""
        seen: dict[str, int] = {}
        for e in entries:
            if e.interaction not in WRITES or e.index in skip:  # skipped: an ifNoneExist match, nothing written
                continue
            keys: list[str] = []
            if e.id is not None:
                keys.append(f"{e.rtype}/{e.id}")
            elif e.interaction == "conditional-delete" and e.query:
                keys += [f"{e.rtype}/{m.id}" for m in self.rest._conditional_matches(tx, e.rtype, e.query)]
            for key in keys:
                if key in seen:
                    raise self._at(BadRequest(
                        f"{key} is also the target of Bundle.entry[{seen[key]}]; a resource may appear only once "
                        "in a transaction"), e)
                seen[key] = e.index

    def _write_result(self, out: WriteOutcome) -> EntryResult:
        return EntryResult("201 Created" if out.status == 201 else "200 OK", out.stored, warnings=out.warnings)

    def _get(self, tx: Session | None, e: ParsedEntry) -> EntryResult:
        reader: Any = tx if tx is not None else self.rest.store
        if e.interaction == "read":
            assert e.id is not None
            s = reader.read(e.rtype, e.id)
            if s is None:
                raise NotFound(f"{e.rtype}/{e.id} is not known")
            if s.deleted:
                raise Gone(f"{e.rtype}/{e.id} was deleted (version {s.version})")
            return EntryResult("200 OK", resource=orjson.Fragment(s.body))
        if e.interaction == "vread":
            assert e.id is not None and e.vid is not None
            v = int(e.vid) if e.vid.isdigit() and len(e.vid) < 19 else None
            s = reader.vread(e.rtype, e.id, v) if v is not None else None
            if s is None:
                raise NotFound(f"Version {e.vid} of {e.rtype}/{e.id} is not known")
            if s.deleted:
                raise Gone(f"Version {e.vid} of {e.rtype}/{e.id} is a deletion")
            return EntryResult("200 OK", resource=orjson.Fragment(s.body))
        params = parse_query_string(e.query or "")
        q, result = self.rest.search(e.rtype, params, tx=tx)
        return EntryResult("200 OK", resource=searchset(self.rest.base_url, e.rtype, params, q, result,
                                                                self.rest.cursors))

    # -- batch -------------------------------------------------------------------------------------------
    def batch(self, raw_entries: list[Any]) -> list[EntryResult]:
        results: list[EntryResult] = []
        for i, raw in enumerate(raw_entries):
            try:
                e = self._parse(i, raw)
                if e.interaction in BODIES:
                    e.resource = self._copy(e)
                    e.warnings = self._validate(e)
                if e.interaction in ("read", "vread", "search-type"):
                    results.append(self._get(None, e))
                    continue
                with self.rest.store.session() as tx:
                    idmap: dict[str, str] = {}
                    targets: set[str] = set()
                    skip: set[int] = set()
                    slot: list[EntryResult | None] = [None] * (i + 1)
                    self._plan(tx, e, idmap, targets, skip, slot)
                    if i in skip:
                        results.append(slot[i])  # type: ignore[arg-type]  # _plan filled the slot it skips
                        continue
                    if e.interaction in BODIES:
                        self._rewrite(tx, e, idmap, targets)
                    results.append(self._execute(tx, e))
            except FhirError as exc:
                results.append(EntryResult(f"{exc.status} {_reason(exc.status)}", outcome=exc.outcome()))
        return results


def _located(exc: FhirError, index: int, request: str) -> FhirError:
    """``exc`` with every issue naming the entry (``Bundle.entry[i]``) and its request line."""
    where = f"Bundle.entry[{index}]"
    for issue in exc.issues:
        issue.expression = [where, *issue.expression]
        issue.diagnostics = f"{where} ({request}): {issue.diagnostics}"
    exc.diagnostics = exc.issues[0].diagnostics
    return exc


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
