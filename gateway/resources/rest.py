"""FHIR RESTful interactions over a ResourceStore (FHIR R4 http.html), free of HTTP framework code."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..auth.context import constrain_search
from ..config import public_base
from ..fhir.errors import (
    BadRequest,
    FhirError,
    Gone,
    InvalidResource,
    Issue,
    NotFound,
    PreconditionFailed,
)
from ..fhir.resource_types import RESOURCE_TYPES
from ..fhir.validation import validate_resource
from ..net.egress import EgressPolicy
from ..search.cursor import CursorCodec, search_scope
from ..search.query import QueryParser, SearchQuery
from ..store.base import ResourceStore, SearchResult, Session, StoredResource


@dataclass
class WriteOutcome:
    stored: StoredResource
    status: int  # 200 or 201
    warnings: list[Issue] = field(default_factory=list)
    matched: bool = False  # a conditional create that found an existing resource (nothing written)


def check_type(resource_type: str) -> None:
    if resource_type not in RESOURCE_TYPES:
        raise NotFound(f"Unknown resource type '{resource_type}'", code="not-supported")


def parse_if_match(value: str | None) -> int | None:
    if value is None:
        return None
    v = value.strip()
    if v.startswith("W/"):
        v = v[2:]
    v = v.strip('"')
    try:
        return int(v)
    except ValueError:
        raise BadRequest(f"Invalid If-Match header {value!r}: expected W/\"<versionId>\"") from None


def parse_query_string(qs: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(qs, keep_blank_values=True)


def conditional_key(resource_type: str, params: list[tuple[str, str]]) -> str:
    """The claim key of a conditional write: the type and its criteria with the parameters in a canonical
    order (decoded, sorted), so ``a=1&b=2`` and ``b=2&a=1`` claim the same key."""
    from urllib.parse import urlencode

    return f"conditional:{resource_type}?{urlencode(sorted(params))}"


def claim_conditionals(tx: Session, keys: set[str]) -> None:
    """Claim several conditional keys in one fixed (sorted) order, so two units of work that need the same
    keys cannot each hold one and wait for the other."""
    for key in sorted(keys):
        tx.claim(key)


MAX_VERSION = 2**63 - 1  # the largest version number a BIGINT column holds


class RestService:
    def __init__(self, store: ResourceStore, base_url: str, validation_level: str = "strict", default_count: int = 20,
                 max_count: int = 1000) -> None:
        self.store = store
        self.configured_base = base_url.rstrip("/")
        # signs the paging cursors of search and history links (search/cursor.py); create_app sets the
        # configured key
        self.cursors = CursorCodec()
        self.validation_level = validation_level
        self.default_count = default_count
        self.max_count = max_count
        # what a Subscription's rest-hook endpoint must pass (net/egress.py); the default refuses http and
        # every non-public address
        self.subscription_endpoints: EgressPolicy = EgressPolicy()
        # bounds on one search (parameters, OR-ed values, chain levels): Settings.search_max_*
        self.search_bounds: dict[str, int] = {}

    @property
    def base_url(self) -> str:
        """The FHIR base of absolute URLs in what this service answers: the current request's base when the
        server derives it from requests (api/baseurl.py), else the configured one."""
        return public_base(self.configured_base)

    # -- helpers -----------------------------------------------------------------------------------------
    def parser(self, strict: bool = False) -> QueryParser:
        return QueryParser(self.base_url, strict, self.default_count, self.max_count, **self.search_bounds)

    def validate(self, resource: Any, resource_type: str | None, level: str | None = None) -> list[Issue]:
        if not isinstance(resource, dict):
            raise InvalidResource("The request body must be a JSON object holding a FHIR resource")
        if resource_type is not None and resource.get("resourceType") != resource_type:
            raise InvalidResource(
                f"resourceType '{resource.get('resourceType')}' does not match the URL type '{resource_type}'")
        level = level or self.validation_level
        result = validate_resource(resource, level)
        if result.ok and resource.get("resourceType") == "Group":  # ATR attribution list profile rules
            from ..fhir.atr_rules import group_issues

            errors, warnings = group_issues(resource)
            result.warnings.extend(warnings)
            if level == "lenient":
                for e in errors:
                    e.severity = "warning"
                result.warnings.extend(errors)
            else:
                result.errors.extend(errors)
        if result.ok and resource.get("resourceType") == "Subscription":  # the one topic offered (ATR)
            from ..auth.subscription_access import subscription_issues

            for issue in subscription_issues(resource, self.subscription_endpoints, self, level):
                (result.warnings if issue.severity == "warning" else result.errors).append(issue)
        if not result.ok:
            raise InvalidResource(f"Invalid {resource.get('resourceType')}: {result.errors[0].diagnostics}"
                                  + (f" (and {len(result.errors) - 1} more)" if len(result.errors) > 1 else ""),
                                  issues=result.errors)
        return result.warnings

    def _translate_cql(self, resource: dict[str, Any], warnings: list[Issue], tx: Session | None
                       ) -> tuple[dict[str, Any], list[Issue]]:
        """A Library stored with ``text/cql`` and no ELM gets its translation as an ``application/elm+json``
        content entry (the CQL stays as it was sent); the translator's diagnostics become issues of the
        write's OperationOutcome. Included libraries are the stored Libraries of that name (and version)."""
        if resource.get("resourceType") != "Library":
            return resource, warnings
        from ..cql.compiler.resources import ELM_TYPE, content_type, cql_text, translate_resources

        if cql_text(resource) is None or any(content_type(a) == ELM_TYPE for a in resource.get("content") or []):
            return resource, warnings
        translated, report = translate_resources([resource, *self._included_libraries(resource, tx)])
        issues = list(warnings)
        for e in report[0].errors if report else []:
            issues.append(Issue("warning", "processing", f"CQL {e.line}:{e.col}: {e.message}"
                                + (f" (in {e.statement})" if e.statement else ""), ["Library.content"]))
        if report and not report[0].errors:
            issues.append(Issue("information", "informational",
                                "The CQL was translated to ELM, stored as an application/elm+json content entry",
                                ["Library.content"]))
        return translated[0], issues

    def _included_libraries(self, resource: dict[str, Any], tx: Session | None,
                            seen: set[str] | None = None) -> list[dict[str, Any]]:
        """The stored Libraries the CQL includes, by name, and theirs in turn (for translating it)."""
        from ..cql.compiler.resources import included_names

        seen = seen if seen is not None else {str(resource.get("name"))}
        out: list[dict[str, Any]] = []
        for lib_name, _version in included_names(resource):
            if lib_name in seen:
                continue
            seen.add(lib_name)
            try:  # under the caller's grant: a Library it may not read is not there for the translation
                _, result = self.search("Library", [("name:exact", lib_name)], tx=tx)
            except FhirError:
                continue
            for m in result.matches:
                lib = orjson.loads(m.body)
                out.append(lib)
                out.extend(self._included_libraries(lib, tx, seen))
        return out


    def _conditional_matches(self, tx: Session, resource_type: str, criteria: str,
                             claim: bool = True) -> list[StoredResource]:
        """The (at most two) current resources ``criteria`` match, searched inside ``tx``. With ``claim``
        the unit of work first claims the (type, criteria) pair (``Session.claim``), so conditional creates,
        updates and deletes with the same criteria run one after the other across threads and server
        processes: each searches after the previous one has committed, and none acts on a stale answer."""
        params = parse_query_string(criteria.lstrip("?"))
        if not params:
            raise BadRequest("Conditional request without search criteria")
        if claim and tx is not None:
            tx.claim(conditional_key(resource_type, params))
        parser = self.parser(strict=True)
        q = parser.parse(resource_type, params)
        constrain_search(q, parser)
        q.count, q.total = 2, "none"
        return (tx.search(q) if tx is not None else self.store.search(q)).matches

    # -- interactions ------------------------------------------------------------------------------------
    def read(self, resource_type: str, id: str) -> StoredResource:
        check_type(resource_type)
        s = self.store.read(resource_type, id)
        if s is None:
            raise NotFound(f"{resource_type}/{id} is not known")
        if s.deleted:
            raise Gone(f"{resource_type}/{id} was deleted (version {s.version})",
                       headers={"ETag": s.etag})
        return s

    def vread(self, resource_type: str, id: str, version: str) -> StoredResource:
        check_type(resource_type)
        try:
            v = int(version)
        except ValueError:
            raise NotFound(f"Version {version!r} of {resource_type}/{id} is not known") from None
        if not 1 <= v <= MAX_VERSION:  # beyond what the database's version column holds: never stored
            raise NotFound(f"Version {version} of {resource_type}/{id} is not known")
        s = self.store.vread(resource_type, id, v)
        if s is None:
            if self.store.read(resource_type, id) is None:
                raise NotFound(f"{resource_type}/{id} is not known")
            raise NotFound(f"Version {v} of {resource_type}/{id} is not known")
        if s.deleted:
            raise Gone(f"Version {v} of {resource_type}/{id} is a deletion")
        return s

    def create(self, resource_type: str, resource: Any, if_none_exist: str | None = None, tx: Session | None = None,
               new_id: str | None = None, prevalidated: list[Issue] | None = None,
               fresh_id: bool = False, provenance: dict[str, Any] | None = None) -> WriteOutcome:
        """Create; ``new_id`` is a server-chosen id, and ``fresh_id`` says it is a newly generated UUID.
        ``provenance`` (an X-Provenance header's resource) is stored in the same transaction."""
        check_type(resource_type)
        warnings = self.validate(resource, resource_type) if prevalidated is None else prevalidated
        resource, warnings = self._translate_cql(resource, warnings, tx)
        self._check_provenance(provenance, resource_type, None)
        if tx is None:
            with self.store.session() as s:
                out = self._create(resource_type, resource, if_none_exist, s, new_id, warnings, fresh_id)
                return self._with_provenance(s, provenance, out)
        return self._with_provenance(tx, provenance,
                                     self._create(resource_type, resource, if_none_exist, tx, new_id, warnings,
                                                  fresh_id))

    def _check_provenance(self, provenance: dict[str, Any] | None, rtype: str, rid: str | None) -> None:
        if provenance is not None:
            from .provenance_header import check_targets

            self.validate(check_targets(provenance, rtype, rid), "Provenance")

    @staticmethod
    def _with_provenance(tx: Session, provenance: dict[str, Any] | None, out: WriteOutcome) -> WriteOutcome:
        """Store the X-Provenance Provenance for a version just written (none when If-None-Exist found one)."""
        if provenance is not None  and not out.matched:
            from .provenance_header import store_with

            store_with(tx, provenance, out.stored)
        return out

    def _create(self, resource_type: str, resource: dict[str, Any], if_none_exist: str | None, tx: Session,
                new_id: str | None, warnings: list[Issue], fresh_id: bool = False) -> WriteOutcome:
        if if_none_exist:
            found = self._conditional_matches(tx, resource_type, if_none_exist)
            if len(found) > 1:
                raise PreconditionFailed(f"If-None-Exist criteria '{if_none_exist}' match more than one resource")
            if found:
                return WriteOutcome(found[0], 200, warnings, matched=True)
        body = {**resource, "id": new_id or str(uuid.uuid4())}
        return WriteOutcome(tx.write(body, "POST", known_new=new_id is None or fresh_id), 201, warnings)

    def update(self, resource_type: str, id: str, resource: Any, if_match: str | None = None,
               tx: Session | None = None, prevalidated: list[Issue] | None = None,
               provenance: dict[str, Any] | None = None) -> WriteOutcome:
        check_type(resource_type)
        warnings = self.validate(resource, resource_type) if prevalidated is None else prevalidated
        resource, warnings = self._translate_cql(resource, warnings, tx)
        if resource.get("id") is None:
            raise InvalidResource("An update must carry the resource id in the body (FHIR R4 http.html#update)")
        if resource.get("id") != id:
            raise InvalidResource(f"The body id '{resource.get('id')}' does not match the URL id '{id}'")
        expected = parse_if_match(if_match)
        self._check_provenance(provenance, resource_type, id)
        if tx is None:
            with self.store.session() as s:
                return self._with_provenance(s, provenance, self._update(resource_type, id, resource, expected, s,
                                                                         warnings))
        return self._with_provenance(tx, provenance, self._update(resource_type, id, resource, expected, tx, warnings))

    def _update(self, resource_type: str, id: str, resource: dict[str, Any], expected: int | None, tx: Session,
                warnings: list[Issue]) -> WriteOutcome:
        existed = tx.exists(resource_type, id)
        stored = tx.write(resource, "PUT", expected_version=expected)
        return WriteOutcome(stored, 200 if existed else 201, warnings)

    def conditional_update(self, resource_type: str, criteria: str, resource: Any, if_match: str | None = None,
                           tx: Session | None = None, prevalidated: list[Issue] | None = None,
                           provenance: dict[str, Any] | None = None) -> WriteOutcome:
        check_type(resource_type)
        warnings = self.validate(resource, resource_type) if prevalidated is None else prevalidated
        resource, warnings = self._translate_cql(resource, warnings, tx)
        self._check_provenance(provenance, resource_type, None)
        if tx is None:
            with self.store.session() as s:
                return self._with_provenance(s, provenance, self._conditional_update(
                    resource_type, criteria, resource, if_match, s, warnings))
        return self._with_provenance(tx, provenance, self._conditional_update(resource_type, criteria, resource,
                                                                              if_match, tx, warnings))

    def _conditional_update(self, resource_type: str, criteria: str, resource: dict[str, Any],
                            if_match: str | None, tx: Session, warnings: list[Issue]) -> WriteOutcome:
        expected = parse_if_match(if_match)
        found = self._conditional_matches(tx, resource_type, criteria)
        if len(found) > 1:
            raise PreconditionFailed(f"Conditional update criteria '{criteria}' match more than one resource")
        if not found:
            rid = resource.get("id") or str(uuid.uuid4())
            if resource.get("id") and tx.exists(resource_type, rid):
                raise BadRequest(f"Conditional update: no match for '{criteria}', but {resource_type}/{rid} exists")
            return self._update(resource_type, rid, {**resource, "id": rid}, expected, tx, warnings)
        target = found[0].id
        if resource.get("id") and resource["id"] != target:
            raise BadRequest(f"Conditional update matched {resource_type}/{target} but the body has id "
                             f"'{resource['id']}'")
        return self._update(resource_type, target, {**resource, "id": target}, expected, tx, warnings)

    def patch(self, resource_type: str, id: str, operations: Any, if_match: str | None = None) -> WriteOutcome:
        """JSON Patch (RFC 6902) on the current version; the result is validated like an update."""
        import jsonpatch

        check_type(resource_type)
        if not isinstance(operations, list):
            raise BadRequest("A JSON Patch body is an array of operations")
        expected = parse_if_match(if_match)
        with self.store.session() as tx:
            current = tx.read(resource_type, id)
            if current is None:
                raise NotFound(f"{resource_type}/{id} is not known")
            if current.deleted:
                raise Gone(f"{resource_type}/{id} was deleted")
            if expected is not None and expected != current.version:
                raise PreconditionFailed(f"Version conflict on {resource_type}/{id}: If-Match expects version "
                                         f"{expected}, current is {current.version}")
            try:
                patched = jsonpatch.apply_patch(resource_json(current), operations)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, KeyError) as exc:
                from ..fhir.errors import Unprocessable

                raise Unprocessable(f"JSON Patch could not be applied: {exc}") from None
            if not isinstance(patched, dict) or patched.get("resourceType") != resource_type or \
                    patched.get("id") != id:
                from ..fhir.errors import Unprocessable

                raise Unprocessable(f"A patch must leave a {resource_type} resource (a JSON object) with id {id}; "
                                    "it may not replace the document or change resourceType or id")
            warnings = self.validate(patched, resource_type)
            stored = tx.write(patched, "PATCH", expected_version=current.version)
            return WriteOutcome(stored, 200, warnings)

    def fhirpath_patch(self, resource_type: str, id: str, params: Any, if_match: str | None = None) -> WriteOutcome:
        """FHIRPath Patch (a Parameters body), applied as JSON Patch on the version it was computed from."""
        from ..fhir.fhirpath_patch import to_json_patch

        current = self.read(resource_type, id)
        ops = to_json_patch(resource_json(current), params)
        return self.patch(resource_type, id, ops, if_match or current.etag)

    def delete(self, resource_type: str, id: str, tx: Session | None = None, if_match: str | None = None) -> StoredResource | None:
        check_type(resource_type)
        if tx is None:
            with self.store.session() as s:
                return self.delete(resource_type, id, s, if_match)
        expected = parse_if_match(if_match)
        if expected is not None:
            cur = tx.read(resource_type, id)
            if cur is None or cur.deleted or cur.version != expected:
                raise PreconditionFailed(f"Version conflict on {resource_type}/{id}")
        return tx.delete(resource_type, id)

    def conditional_delete(self, resource_type: str, criteria: str, tx: Session | None = None) -> int:
        check_type(resource_type)
        if tx is None:
            with self.store.session() as s:
                return self.conditional_delete(resource_type, criteria, s)
        found = self._conditional_matches(tx, resource_type, criteria)
        if len(found) > 1:
            raise PreconditionFailed(f"Conditional delete criteria '{criteria}' match more than one resource")
        for f in found:
            tx.delete(resource_type, f.id)
        return len(found)

    def search(self, resource_type: str, params: list[tuple[str, str]], strict: bool = False,
               tx: Session | None = None) -> tuple[SearchQuery, SearchResult]:
        check_type(resource_type)
        parser = self.parser(strict)
        q = parser.parse(resource_type, params)
        constrain_search(q, parser)
        if q.cursor_token is not None:  # 400 unless this server made it for this type and sort
            q.cursor = self.cursors.decode(q.cursor_token, search_scope(q.resource_type, q.sort), len(q.sort))
        result = tx.search(q) if tx is not None else self.store.search(q)
        return q, result


def resource_json(stored: StoredResource) -> dict[str, Any]:
    if stored.content is None:
        raise FhirError("Resource has no content", status=500, code="exception")
    return orjson.loads(stored.content)
