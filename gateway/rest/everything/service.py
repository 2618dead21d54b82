"""The use case of Patient/$everything: which resources one patient's (or every visible patient's) record
holds, in a stable order, one page at a time.

What a patient's record is (docs/operations.md, "Patient/$everything"):

- the Patient itself (search mode ``match``);
- every resource of the R4 Patient compartment (CompartmentDefinition ``patient``, the same definition the
  compartment search and the gate use), in the order the store wrote them (mode ``match``); Groups only when
  ``_type`` names Group (an attribution list names every other member too, and can be very large);
- the Practitioner, PractitionerRole, Organization, Location and Medication resources those resources
  reference (mode ``include``).

Every read goes through the gated store under the caller's grant, so a patient/ token sees its own record
only, a filtered scope (``?category=laboratory``) filters inside the record as it filters a search, and an
ATR Group a caller may not see is left out. On top of the gate: a type is returned only when the grant may
read *and* search it (``rs``, as SMART's practice for operations that enumerate data); types without that are
left out, not refused, and an OperationOutcome entry in the Bundle names them. A caller acting for an
organization or practitioner (an attribution-restricted fhirUser) reaches only the patients attributed to it:
active members of the ATR Groups it manages or receives, and members whose attributed provider it is.

Paging is keyset paging with the signed cursors of ``search/cursor.py``. A position is (patient ordinal,
phase, referenced resource key, store surrogate key): the patient ordinal is the Patient row's surrogate key
at type level (0 at instance level), the phase is 0 for the Patient, 1 for compartment resources (by their
surrogate key) and 2 for referenced resources (by ``Type/id``). Surrogate keys never change on update and
new rows get larger ones, so following ``next`` links while others write never repeats or skips a resource
that existed throughout.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from ...auth.context import Grant, constrain_search, current_grant
from ...auth.gate import attribution_confined
from ...auth.groups import attributed_in, restricted
from ...fhir.dates import MAX, MIN, DateParseError, parse_range
from ...fhir.errors import BadRequest, Issue, NotFound
from ...fhir.resource_types import RESOURCE_TYPES
from ...resources.rest import RestService
from ...search.cursor import CursorCodec, PageCursor
from ...search.index import date_values, reference_values
from ...search.params import patient_compartment, registry

# resource types outside the compartment returned when a record resource references them
REFERENCED: tuple[str, ...] = ("Practitioner", "PractitionerRole", "Organization", "Location", "Medication")
# compartment types left out unless _type names them (an attribution list names every other member)
ONLY_WHEN_ASKED: frozenset[str] = frozenset({"Group"})

# the search parameters that carry a resource's care date (the clinical date of R4's patient-everything
# start/end: "care dates, not record currency dates"); a type not listed here has none, and start/end do
# not filter it. Parameters missing from the registry are dropped when first used (tests check there are none)
CARE_DATES: dict[str, tuple[str, ...]] = {
    "Account": ("period",), "AdverseEvent": ("date",), "AllergyIntolerance": ("date",),
    "Appointment": ("date",), "Basic": ("created",), "CarePlan": ("date",), "CareTeam": ("date",),
    "ChargeItem": ("occurrence",), "Claim": ("created",), "ClaimResponse": ("created",),
    "ClinicalImpression": ("date",), "Communication": ("sent",), "CommunicationRequest": ("authored",),
    "Composition": ("date",), "Condition": ("onset-date", "recorded-date"), "Consent": ("date",),
    "CoverageEligibilityRequest": ("created",), "CoverageEligibilityResponse": ("created",),
    "DetectedIssue": ("identified",), "DeviceRequest": ("authored-on", "event-date"),
    "DiagnosticReport": ("date",), "DocumentManifest": ("created",), "DocumentReference": ("date", "period"),
    "Encounter": ("date",), "EpisodeOfCare": ("date",), "ExplanationOfBenefit": ("created",),
    "FamilyMemberHistory": ("date",), "Flag": ("date",), "Goal": ("start-date",), "ImagingStudy": ("started",),
    "Immunization": ("date",), "ImmunizationEvaluation": ("date",), "ImmunizationRecommendation": ("date",),
    "Invoice": ("date",), "List": ("date",), "MeasureReport": ("period",), "Media": ("created",),
    "MedicationAdministration": ("effective-time",), "MedicationDispense": ("whenhandedover",),
    "MedicationRequest": ("authoredon",), "MedicationStatement": ("effective",), "NutritionOrder": ("datetime",),
    "Procedure": ("date",), "Provenance": ("recorded",), "QuestionnaireResponse": ("authored",),
    "RiskAssessment": ("date",), "Observation": ("date",), "ServiceRequest": ("authored",),
    "Specimen": ("collected",), "SupplyRequest": ("date",), "VisionPrescription": ("datewritten",),
}

_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
KNOWN_PARAMS = frozenset({"start", "end", "_since", "_type", "_count", "_cursor"})


def returned_types() -> frozenset[str]:
    """Every resource type $everything can return: Patient, the compartment types and the referenced ones."""
    return frozenset({"Patient", *patient_compartment(), *REFERENCED})


@dataclass(frozen=True)
class EverythingRequest:
    """The checked parameters of one call. ``start``/``end``/``since`` are normalised UTC range bounds
    (comparable as text, as the date index stores them); ``types`` None means every returned type."""

    start: str | None = None
    end: str | None = None
    since: str | None = None
    types: frozenset[str] | None = None
    count: int = 20
    cursor_token: str | None = None
    echo: tuple[tuple[str, str], ...] = ()  # the parameters as sent (minus paging), for the page links

    def scope(self, level: str, pid: str | None) -> str:
        """What a cursor is relative to: the level, the patient and every filter (a cursor of another
        selection is refused)."""
        return CursorCodec.scope("everything", level, pid, self.start, self.end, self.since,
                                 sorted(self.types) if self.types is not None else None)


def _one(values: dict[str, list[str]], name: str) -> str | None:
    vals = values.get(name) or []
    if len(vals) > 1:
        raise BadRequest(f"$everything takes {name} at most once")
    return vals[0] if vals else None


def _date(name: str, value: str | None, high: bool) -> str | None:
    if value is None:
        return None
    try:
        lo, hi = parse_range(value)
    except DateParseError:
        raise BadRequest(f"$everything: {name} must be a FHIR date or dateTime (e.g. 2024-01-31), got "
                         f"{value[:40]!r}") from None
    return hi if high else lo


def parse_request(values: dict[str, list[str]], default_count: int, max_count: int) -> EverythingRequest:
    """The checked request, or BadRequest (400) naming what is wrong: an unknown parameter, a bad date or
    instant, start after end, an unknown type or one $everything never returns, a bad _count."""
    unknown = sorted(set(values) - KNOWN_PARAMS)
    if unknown:
        raise BadRequest(f"$everything does not take {', '.join(unknown)} (it takes start, end, _since, _type "
                         "and _count)")
    start = _date("start", _one(values, "start"), False)
    end = _date("end", _one(values, "end"), True)
    if start is not None and end is not None and start > end:
        raise BadRequest("$everything: start lies after end")
    raw_since = _one(values, "_since")
    if raw_since is not None and not _INSTANT.match(raw_since):
        raise BadRequest(f"$everything: _since must be an instant with a time and zone (e.g. "
                         f"2024-01-31T00:00:00Z), got {raw_since[:40]!r}")
    since = _date("_since", raw_since, False)
    types: set[str] | None = None
    for value in values.get("_type") or []:
        for t in (v.strip() for v in value.split(",")):
            if not t:
                raise BadRequest("$everything: _type holds an empty type name")
            if t not in RESOURCE_TYPES:
                raise BadRequest(f"$everything: _type names {t[:60]!r}, which is not a FHIR R4 resource type")
            if t not in returned_types():
                raise BadRequest(f"$everything: _type names {t}, which a patient's record never holds (the "
                                 "Patient, its compartment types and " + ", ".join(REFERENCED) + ")")
            types = (types or set()) | {t}
    raw_count = _one(values, "_count")
    count = default_count
    if raw_count is not None:
        if not raw_count.isdigit() or int(raw_count) < 1:
            raise BadRequest(f"$everything: _count must be a positive integer, got {raw_count[:20]!r}")
        count = min(int(raw_count), max_count)
    echo = tuple((k, v) for k in ("start", "end", "_since", "_type") for v in values.get(k) or [])
    return EverythingRequest(start, end, since, frozenset(types) if types is not None else None, count,
                             _one(values, "_cursor"), echo)


@dataclass(order=True, frozen=True)
class _Key:
    """A place in the order of the selection (compared field by field; see the module docstring)."""
    patient: int
    phase: int
    ref: str
    pk: int


@dataclass
class Item:
    """One resource of a record, with its place in the order and its search mode."""
    key: _Key
    rtype: str
    rid: str
    content: bytes
    mode: str


@dataclass
class Page:
    """One page: its items, the position of its last item and whether more may follow."""
    items: list[Item] = field(default_factory=list)
    last: _Key | None = None
    more: bool = False
    left_out: list[str] = field(default_factory=list)  # types the grant may not read and search
    total: int | None = None  # the selection's matches (patients and compartment resources), not includes


def _readable(grant: Grant, rtype: str) -> bool:
    """Whether the grant may both read and search ``rtype`` (what enumerating a record takes)."""
    if grant.system:
        return True
    scopes = grant.scopes.resource
    return any(s.covers(rtype, "r") for s in scopes) and any(s.covers(rtype, "s") for s in scopes)


class EverythingService:
    """Patient/$everything on a RestService's (gated) store; see the module docstring for the rules."""

    def __init__(self, rest: RestService) -> None:
        self.rest = rest
        self.store = rest.store

    # -- the selection ---------------------------------------------------------------------------------
    def _wanted(self, req: EverythingRequest, grant: Grant) -> tuple[set[str], list[str]]:
        """The types to return, and those the request would return but the grant may not read and search."""
        asked = set(req.types) if req.types is not None else set(returned_types()) - ONLY_WHEN_ASKED
        kept = {t for t in asked if _readable(grant, t)}
        return kept, sorted(asked - kept)

    def _attributed(self, grant: Grant) -> set[str] | None:
        """For an attribution-restricted caller, the ids of the patients attributed to it; None for every
        other caller. Under ``system/`` scopes these are the store gate's (auth/groups.py ``attributed_in``:
        members in force, within their period, of the ATR Groups it manages or is the intended recipient of,
        and members whose attributed provider it is), which confine its every read anyway. A signed-in
        clinician (``user/`` scopes, not narrowed by the gate) keeps the rule $everything always had: the
        same Groups' members not ``inactive``, whatever their period."""
        if grant.system or not restricted(grant.fhir_user):
            return None
        if attribution_confined(grant, "Patient"):
            gate = getattr(self.store, "gate", None)  # the gated store's Gate (none: nobody, fail closed)
            return set(gate.attributed(grant)) if gate is not None else set()
        me = str(grant.fhir_user)
        gate = getattr(self.store, "gate", None)
        identifiers = gate.identifiers(grant) if gate is not None else frozenset()
        groups = (orjson.loads(s.body) for s in self.store.iter_current("Group"))  # those the gate lets it see
        return set(attributed_in(groups, me, identifiers, periods=False))

    def _in_range(self, req: EverythingRequest, rtype: str, res: dict[str, Any]) -> bool:
        if req.since is not None:
            updated = str((res.get("meta") or {}).get("lastUpdated") or "")
            try:
                if not updated or parse_range(updated)[0] < req.since:
                    return False
            except DateParseError:
                return False
        if (req.start is None and req.end is None) or rtype not in CARE_DATES:
            return True
        lo_bound, hi_bound = req.start or MIN, req.end or MAX
        reg = registry()
        for code in CARE_DATES[rtype]:
            sp = reg.get(rtype, code)
            if sp is None or sp.extract is None:
                continue
            for v in sp.extract(res):
                for lo, hi in date_values(v):
                    if hi >= lo_bound and lo <= hi_bound:
                        return True
        return False  # a resource of a dated type without a care date in the range

    def _record(self, req: EverythingRequest, ordinal: int, patient: tuple[str, str, bytes] | None, pid: str,
                wanted: set[str], only: set[str] | None) -> list[Item]:
        """Every item of one patient's record the grant may see, in order (for an attribution-restricted
        caller, other Patients linking to this one only when they are attributed to it too)."""
        items: list[Item] = []
        sources: list[dict[str, Any]] = []
        if patient is not None:
            res = orjson.loads(patient[2])
            sources.append(res)
            if "Patient" in wanted and self._in_range(req, "Patient", res):
                items.append(Item(_Key(ordinal, 0, "", 0), "Patient", pid, patient[2], "match"))
        comp = {t: p for t, p in patient_compartment().items() if t in wanted}
        for rtype, pk, content in self.store.compartment_contents([pid], comp).get(pid, []):
            res = orjson.loads(content)
            if rtype == "Patient" and (res.get("id") == pid or (only is not None and res.get("id") not in only)):
                continue
            sources.append(res)
            if self._in_range(req, rtype, res):
                items.append(Item(_Key(ordinal, 1, "", pk), rtype, str(res.get("id")), content, "match"))
        refs: dict[str, set[str]] = {}
        targets = set(REFERENCED) & wanted
        kept_ids = {(i.rtype, i.rid) for i in items}
        for res in sources:
            if (str(res.get("resourceType")), str(res.get("id"))) not in kept_ids:
                continue  # referenced from what is returned only
            for rtype, rid in _references(res, self.rest.base_url):
                if rtype in targets:
                    refs.setdefault(rtype, set()).add(rid)
        for rtype, ids in sorted(refs.items()):
            for rid, stored in self.store.read_many(rtype, sorted(ids)).items():
                if self._in_range(req, rtype, orjson.loads(stored.body)):
                    items.append(Item(_Key(ordinal, 2, f"{rtype}/{rid}", 0), rtype, rid, stored.body, "include"))
        items.sort(key=lambda i: i.key)
        return items

    # -- the patients ----------------------------------------------------------------------------------
    def _patients_from(self, first: int, only: set[str] | None) -> Iterator[tuple[int, tuple[str, str, bytes] | None]]:
        """Patients with a surrogate key of ``first`` or more, in key order, one search at a time on the
        store's own keyset paging: (key, (type, id, JSON)) or (key, None) for one the grant may not see."""
        if only is not None and not only:
            return
        parser = self.rest.parser()
        params = [("_count", "1")]
        if only is not None:
            params.append(("_id", ",".join(sorted(only))))
        after = first - 1
        while True:
            q = parser.parse("Patient", params)
            constrain_search(q, parser)
            q.total = "none"
            q.cursor = PageCursor(True, (), after) if after >= 0 else None
            result = self.store.search(q)
            if result.first_position is None:
                return
            after = result.first_position[1]
            m = result.matches[0] if result.matches else None
            yield after, (("Patient", m.id, m.body) if m is not None and not m.deleted else None)
            if not result.more_after:
                return

    # -- pages -----------------------------------------------------------------------------------------
    def instance(self, pid: str, req: EverythingRequest) -> Page:
        """One page of Patient/[pid]/$everything; NotFound (404) when the patient does not exist, the grant
        may not see it or (attribution-restricted callers) it is not attributed to the caller."""
        grant = current_grant()
        only = self._attributed(grant)
        stored = self.rest.read("Patient", pid)  # 404/410 when absent, deleted or hidden by the gate
        if only is not None and pid not in only:
            raise NotFound(f"Patient/{pid} is not known")
        cursor = self._cursor(req, "instance", pid)
        wanted, left_out = self._wanted(req, grant)
        page = Page(left_out=left_out)
        items = self._record(req, 0, ("Patient", pid, stored.body), pid, wanted, only)
        page.total = sum(1 for i in items if i.mode == "match")
        self._fill(page, items, cursor, req.count)
        return page

    def type_level(self, req: EverythingRequest) -> Page:
        """One page of Patient/$everything: every patient the grant may see (its own under patient/ scopes,
        its attributed ones for attribution-restricted callers), each followed by its record."""
        grant = current_grant()
        only = self._attributed(grant)
        cursor = self._cursor(req, "type", None)
        wanted, left_out = self._wanted(req, grant)
        page = Page(left_out=left_out)
        first = int(cursor.keys[0]) if cursor is not None else 0
        for ordinal, patient in self._patients_from(first, only):
            if page.more or len(page.items) >= req.count:
                page.more = True  # another patient follows a full page
                break
            if patient is None:
                continue
            items = self._record(req, ordinal, patient, patient[1], wanted, only)
            self._fill(page, items, cursor, req.count)
        page.total = self._count_matches(req, wanted, only)
        return page

    def _count_matches(self, req: EverythingRequest, wanted: set[str], only: set[str] | None) -> int:
        """How many patients and compartment resources the whole type-level selection holds (Bundle.total):
        the visible patients in pages of the largest search page, their compartments in one gated query per
        batch of patients, with the same filters as the pages."""
        if only is not None and not only:
            return 0
        parser = self.rest.parser()
        params = [("_count", str(self.rest.max_count))]
        if only is not None:
            params.append(("_id", ",".join(sorted(only))))
        comp = {t: p for t, p in patient_compartment().items() if t in wanted}
        total, after = 0, -1
        while True:
            q = parser.parse("Patient", params)
            constrain_search(q, parser)
            q.total = "none"
            q.cursor = PageCursor(True, (), after) if after >= 0 else None
            result = self.store.search(q)
            pids = [m.id for m in result.matches]
            if "Patient" in wanted:
                total += sum(1 for m in result.matches if self._in_range(req, "Patient", orjson.loads(m.body)))
            for pid, rows in (self.store.compartment_contents(pids, comp).items() if pids and comp else ()):
                for rtype, _, content in rows:
                    res = orjson.loads(content)
                    if rtype == "Patient" and (res.get("id") == pid or (only is not None and res.get("id") not in only)):
                        continue
                    total += self._in_range(req, rtype, res)
            if not result.more_after or result.last_position is None:
                return total
            after = result.last_position[1]

    def _cursor(self, req: EverythingRequest, level: str, pid: str | None) -> PageCursor | None:
        if req.cursor_token is None:
            return None
        cursor = self.rest.cursors.decode(req.cursor_token, req.scope(level, pid), 3)
        if not cursor.forward or cursor.pk is None or not all(isinstance(k, int) for k in cursor.keys[:2]) \
                or not isinstance(cursor.keys[2], str):
            raise BadRequest("The paging cursor is not valid for $everything; start again from the first page")
        return cursor

    @staticmethod
    def _fill(page: Page, items: list[Item], cursor: PageCursor | None, count: int) -> None:
        """Append to ``page`` the items after ``cursor``'s position, up to ``count`` in all."""
        mark = _Key(int(cursor.keys[0]), int(cursor.keys[1]), str(cursor.keys[2]), int(cursor.pk or 0)) \
            if cursor is not None else None
        for item in items:
            if mark is not None and item.key <= mark:
                continue
            if len(page.items) >= count:
                page.more = True
                return
            page.items.append(item)
            page.last = item.key


def position(key: _Key) -> PageCursor:
    """The forward cursor after ``key`` (the next page's start)."""
    return PageCursor(True, (key.patient, key.phase, key.ref), key.pk)


def left_out_issue(types: list[str]) -> Issue:
    """The Bundle's note on types left out because the grant may not read and search them."""
    return Issue("information", "suppressed", "Resources of types the granted scopes do not allow reading and "
                 "searching (rs) are left out of $everything: " + ", ".join(types))


def _references(res: Any, base: str) -> Iterator[tuple[str, str]]:
    """Every literal reference to a resource on this server (relative ``Type/id``, or absolute under
    ``base``) anywhere in a resource; contained resources are inside it already and are not followed."""
    stack = [res]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("reference")
            if isinstance(ref, str) and ("://" not in ref or ref.startswith(base + "/")):
                for rtype, rid, _ in reference_values(node):
                    if rtype and rid:
                        yield rtype, rid
            stack.extend(v for k, v in node.items() if k != "contained" and isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, (dict, list)))


