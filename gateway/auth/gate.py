"""The one authorization point for stored data: given the current grant, may it see this stored resource,
and may it make this change (``before`` -> ``after``)?

Every read and write that services make on a caller's behalf goes through ``GatedStore`` (auth/gated.py),
which asks this gate; the HTTP middleware's route check and the response Confiner stay as defence in depth.
The rules (docs/security.md, "The store gate"):

- no grant set: refused (``context.NoGrant``); the ``SYSTEM`` grant passes everything without reading data;
- read: the type must be covered by an r or s scope; under patient/ scopes a compartment type must lie in the
  launch patient's compartment; a v2 scope filter (``?category=laboratory``) must match; an attribution-
  restricted caller (fhirUser an Organization, Practitioner or PractitionerRole) sees only its own ATR
  Groups, and where ``system/`` scopes give it a type of the Patient compartment (Patient included) only
  the resources in the compartment of a patient attributed to it (``attribution_confined``); a patient/
  grant sees a Group reduced to the launch patient's own member entries;
- write: c (create), u (update) or d (delete) on the type; where only patient/ scopes give that letter the
  resource must lie in the launch patient's compartment before and after the change, and types outside the
  compartment (Measure, Library, Organization, ...) and Groups are not writable at all; where the
  attribution confinement holds, a stored version may be changed or deleted only when it is in an attributed
  patient's compartment, and so must the new version be.

Grants that read every type without filters (``system/*.rs``, ``user/*.rs`` ...) take a fast path on reads:
no JSON is parsed for them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import orjson

from ..search.index import token_values
from ..search.params import registry
from ..store.base import StoredResource
from . import policy
from .compartment import compartment_patients, compartment_types, in_compartment
from .context import Grant
from .groups import Identifiers, group_visible, restricted

# a Group shown to a patient/ grant lacks the other members: said with the v3 "subsetted" tag
SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED",
             "display": "subsetted"}
WRITE_LETTER = {"create": "c", "update": "u", "delete": "d"}

Searcher = Callable[[str, str, list[tuple[str, str]]], bool]  # (type, id, filters) -> the current version matches
Attributed = Callable[[Grant], frozenset[str]]  # the ids of the patients attributed to an ATR caller


def attribution_confined(grant: Grant, rtype: str, letters: str = "rs") -> bool:
    """True when ``grant`` may reach ``rtype`` only in its attributed patients' compartments: an attribution-
    restricted caller (fhirUser Organization, Practitioner or PractitionerRole) given the type by ``system/``
    scopes and no ``user/`` scope (a signed-in clinician's ``user/`` access is not narrowed), for the Patient
    type and the other types of the Patient compartment but Group (Groups have their own rule)."""
    if grant.system or rtype == "Group" or not restricted(grant.fhir_user):
        return False
    memo = grant.scopes.memo
    key = ("attribution", rtype, letters)
    hit = memo.get(key)
    if hit is None:
        levels = {s.level for s in grant.scopes.resource if any(s.covers(rtype, c) for c in letters)}
        hit = memo[key] = ("system" in levels and "user" not in levels
                           and (rtype == "Patient" or rtype in compartment_types()))
    return bool(hit)


def attributed_to(res: dict[str, Any], patients: frozenset[str]) -> bool:
    """True when ``res`` (a Patient, or a resource of the Patient compartment) is in the compartment of one of
    ``patients``; a resource in no patient's compartment is in none of theirs."""
    if res.get("resourceType") == "Patient":
        return res.get("id") in patients
    return not compartment_patients(res).isdisjoint(patients)


class Gate:
    """Authorization decisions over stored data. ``identifiers`` gives an ATR caller's own identifiers
    (read once per grant from the store); ``searcher`` answers a scope filter that is not a plain token
    search by running the search on the store."""

    def __init__(self, identifiers: Callable[[Grant], Identifiers], searcher: Searcher,
                 attributed: Attributed | None = None) -> None:
        self.identifiers = identifiers
        self.searcher = searcher
        self.attributed: Attributed = attributed or (lambda grant: frozenset())

    # -- reads -------------------------------------------------------------------------------------------
    @staticmethod
    def open_reads(grant: Grant) -> bool:
        """True when the grant may see every stored resource as it is (the fast path: nothing to parse)."""
        if grant.system:
            return True
        memo = grant.scopes.memo
        hit = memo.get(("gate-open",))
        if hit is None:
            hit = memo[("gate-open",)] = not restricted(grant.fhir_user) and any(
                s.rtype == "*" and {"r", "s"} <= s.perms and not s.query and s.level != "patient"
                for s in grant.scopes.resource)
        return bool(hit)

    def needs_content(self, grant: Grant, rtype: str) -> bool:
        """Whether a read decision on ``rtype`` under ``grant`` looks at the resource itself; when it does not,
        a streaming reader (bulk export) need not load a large resource to have it decided."""
        return not self.open_reads(grant) and self._needs_content(grant, rtype)

    def _needs_content(self, grant: Grant, rtype: str) -> bool:
        """Whether deciding on a resource of ``rtype`` needs its content (memoised per grant and type)."""
        memo = grant.scopes.memo
        key = ("gate-content", rtype)
        hit = memo.get(key)
        if hit is None:
            scopes = grant.scopes
            hit = memo[key] = (
                (rtype == "Group" and restricted(grant.fhir_user))
                or attribution_confined(grant, rtype)
                or (policy.confined(scopes, rtype) and (rtype == "Patient" or rtype in compartment_types()))
                or bool(policy.scope_filters(scopes, rtype, "r") or policy.scope_filters(scopes, rtype, "s")))
        return bool(hit)

    def visible(self, grant: Grant, stored: StoredResource,
                prior: Callable[[], StoredResource | None] | None = None) -> StoredResource | None:
        """``stored`` as the grant may see it (a Group may come back reduced), or None when it may not see it.
        A deletion has no content: it is visible when the version before it was (``prior`` reads that)."""
        if self.open_reads(grant):
            return stored
        rtype = stored.resource_type
        if not policy.readable(grant.scopes, rtype):
            return None
        if not self._needs_content(grant, rtype):
            return stored
        if stored.content is None:
            before = prior() if prior is not None else None
            return stored if before is not None and self.visible(grant, before) is not None else None
        res = orjson.loads(stored.content)
        if not isinstance(res, dict) or not self.may_see(grant, res):
            return None
        if rtype == "Group" and policy.confined(grant.scopes, "Group") and grant.patient:
            return replace(stored, content=orjson.dumps(own_members(res, grant.patient)))
        return stored

    def may_see(self, grant: Grant, res: dict[str, Any]) -> bool:
        """The read rules on a parsed resource (type coverage, compartment, scope filters, ATR Groups)."""
        if grant.system:
            return True
        rtype = str(res.get("resourceType"))
        scopes = grant.scopes
        if not policy.readable(scopes, rtype):
            return False
        if rtype == "Group" and restricted(grant.fhir_user) and not group_visible(
                res, str(grant.fhir_user), self.identifiers(grant)):
            return False
        if policy.confined(scopes, rtype) and (rtype == "Patient" or rtype in compartment_types()) and (
                not grant.patient or not in_compartment(res, grant.patient)):
            return False
        if attribution_confined(grant, rtype) and not attributed_to(res, self.attributed(grant)):
            return False
        filters = policy.scope_filters(scopes, rtype, "r") or policy.scope_filters(scopes, rtype, "s")
        return not filters or self._matches(rtype, res, filters)

    def _matches(self, rtype: str, res: dict[str, Any], filters: list[tuple[str, str]]) -> bool:
        """Whether ``res`` matches every scope filter: token parameters on the content itself (so a history
        version is judged as it was), any other kind by a search on the store (the current version)."""
        reg = registry()
        rest: list[tuple[str, str]] = []
        for name, value in filters:
            sp = reg.get(rtype, name)
            if sp is not None and sp.type == "token" and sp.extract is not None:
                found = [tv for v in sp.extract(res) for tv in token_values(v)]
                if not any(_token_match(found, alt) for alt in value.split(",")):
                    return False
            else:
                rest.append((name, value))
        return not rest or self.searcher(rtype, str(res.get("id")), rest)

    # -- writes ------------------------------------------------------------------------------------------
    @staticmethod
    def plain_upsert(grant: Grant, rtype: str) -> bool:
        """True when the grant may create and update ``rtype`` whatever the content (bulk writes then need no
        read of the stored versions): c and u without patient/ confinement, and no ATR Group rule."""
        scopes = grant.scopes
        return (all(any(s.covers(rtype, c) for s in scopes.resource) for c in "cu")
                and not policy.confined(scopes, rtype, "c") and not policy.confined(scopes, rtype, "u")
                and not (rtype == "Group" and restricted(grant.fhir_user))
                and not attribution_confined(grant, rtype, "cu"))

    def check_write(self, grant: Grant, rtype: str, before: dict[str, Any] | None,
                    after: dict[str, Any] | None) -> None:
        """Raise policy.Denied unless the grant may change ``before`` (None: nothing stored) into ``after``
        (None: a delete)."""
        if grant.system:
            return
        action = "delete" if after is None else ("update" if before is not None else "create")
        letter = WRITE_LETTER[action]
        scopes = grant.scopes
        if not any(s.covers(rtype, letter) for s in scopes.resource):
            raise policy.Denied(f"The granted scopes do not allow {action} of {rtype} (it needs '{letter}')")
        if rtype == "Group" and restricted(grant.fhir_user) and before is not None and not group_visible(
                before, str(grant.fhir_user), self.identifiers(grant)):
            raise policy.Denied(f"Group/{before.get('id')} is not one of this caller's attribution lists")
        if before is not None and attribution_confined(grant, rtype, letter):
            patients = self.attributed(grant)
            for doc, when in ((before, "stored"), (after, "written")):
                if doc is not None and not attributed_to(doc, patients):
                    raise policy.Denied(f"This caller may change {rtype} only in the records of the patients "
                                        f"attributed to it (the {when} {rtype} belongs to none of them)")
        if not policy.confined(scopes, rtype, letter):
            return
        if rtype == "Group":
            raise policy.Denied("patient/ scopes do not allow writing Groups (they list other patients)")
        if rtype != "Patient" and rtype not in compartment_types():
            raise policy.Denied(f"patient/ scopes do not allow writing {rtype}: it lies outside every "
                                "patient's compartment")
        pid = grant.patient
        if not pid:
            raise policy.Denied("patient/ scopes need a launch patient, and this token has none")
        for doc, when in ((before, "stored"), (after, "written")):
            if doc is not None and not in_compartment(doc, pid):
                raise policy.Denied(f"patient/ scopes allow writes in Patient/{pid}'s compartment only "
                                    f"(the {when} {rtype} lies outside it)")


def own_members(group: dict[str, Any], patient: str) -> dict[str, Any]:
    """A Group reduced to ``patient``'s own member entries: the other members (their ids, coverage and
    attributed providers) and the member count are left out, and the Group is tagged as subsetted."""
    me = f"Patient/{patient}"
    members = [m for m in group.get("member") or [] if isinstance(m, dict) and str(
        (m.get("entity") or {}).get("reference", "")).split("/_history/")[0].endswith(me)]
    out = {k: v for k, v in group.items() if k not in ("member", "quantity")}
    if members:
        out["member"] = members
    meta = dict(out.get("meta") or {})
    meta["tag"] = [*(meta.get("tag") or []), SUBSETTED]
    out["meta"] = meta
    return out


def _token_match(found: list[tuple[str | None, str | None, str | None]], raw: str) -> bool:
    """One token search value (``code``, ``system|code``, ``|code`` or ``system|``) against extracted tokens."""
    if "|" not in raw:
        return any(code == raw for _, code, _ in found)
    system, _, code = raw.partition("|")
    if not system:
        return any(s is None and c == code for s, c, _ in found)
    if not code:
        return any(s == system for s, _, _ in found)
    return any(s == system and c == code for s, c, _ in found)
