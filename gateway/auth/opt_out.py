"""Provider Access opt-out (CMS-0057-F, Da Vinci PDex): which members chose not to have their data shared with
providers through the Provider Access API.

A member is opted out when any of these says so (docs/specs/pdex-provider-access.md, "Member opt-out"):

- a ``Consent`` of the PDex Provider Access Consent profile: status ``active``, a category coding
  ``pdex-consent-api-purpose#provider-access``, ``provision.type`` ``deny`` and a ``provision.period`` that
  covers today. A later such Consent with ``provision.type`` ``permit`` (or setting the deny Consent to
  ``inactive``) revokes the opt-out: per member, the most recent decisive Consent wins;
- a PDex Member Opt-Out ``Group`` (code ``PdexMultiMemberMatchResultCS#consentconstraint``, not
  ``active: false``): every member entry not marked ``inactive``;
- the configured list (``GATEWAY_PROVIDER_ACCESS_OPT_OUT``): comma-separated ``Patient/[id]`` references or
  member identifiers ``system|value`` (a Patient's or a Coverage's identifier; the Coverage's beneficiary).

The answer is the payer's own bookkeeping, read under the ``SYSTEM`` grant: the provider asking for a match
or an export may not read other members' Consents, and must not be able to hide an opt-out by lacking a
scope. The member match (atr/provider_match), the Provider Access export (bulk) and the store gate (the
patients attributed to a provider, auth/groups.py) all use it, so they can never disagree about who opted
out. It lives in the auth layer so that the gate may use it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from ..fhir.dates import now_instant
from ..search.query import QueryParser
from ..store.base import ResourceStore
from . import context  # a module: the gate's groups.py imports this one while context.py loads

PDEX = "http://hl7.org/fhir/us/davinci-pdex"
API_PURPOSE_CS = f"{PDEX}/CodeSystem/pdex-consent-api-purpose"
MATCH_RESULT_CS = f"{PDEX}/CodeSystem/PdexMultiMemberMatchResultCS"
PROVIDER_CONSENT_PROFILE = f"{PDEX}/StructureDefinition/pdex-provider-consent"
OPT_OUT_GROUP_PROFILE = f"{PDEX}/StructureDefinition/pdex-member-opt-out"
SEARCH_LIMIT = 100_000  # resources one opt-out look-up reads per search (Consents, opt-out Groups)
CHUNK = 200  # member ids named in one search when only some members are asked about


def _codes(concepts: Any) -> set[tuple[str | None, str | None]]:
    out: set[tuple[str | None, str | None]] = set()
    for cc in concepts if isinstance(concepts, list) else [concepts]:
        for c in (cc or {}).get("coding") or [] if isinstance(cc, dict) else []:
            if isinstance(c, dict):
                out.add((c.get("system"), c.get("code")))
    return out


def consent_decision(consent: dict[str, Any], today: str) -> str | None:
    """``"deny"`` (opted out) or ``"permit"`` (opt-out revoked) when ``consent`` is an active Provider Access
    Consent in force on ``today`` (YYYY-MM-DD); None when it decides nothing."""
    if consent.get("resourceType") != "Consent" or consent.get("status") != "active":
        return None
    if (API_PURPOSE_CS, "provider-access") not in _codes(consent.get("category")):
        return None
    provision: dict[str, Any] = consent["provision"] if isinstance(consent.get("provision"), dict) else {}
    kind = provision.get("type")
    if kind not in ("deny", "permit"):
        return None
    period: dict[str, Any] = provision["period"] if isinstance(provision.get("period"), dict) else {}
    start, end = str(period.get("start") or "")[:10], str(period.get("end") or "")[:10]
    if (start and start > today) or (end and end < today):
        return None
    return str(kind)


def is_provider_access_group(group: dict[str, Any]) -> bool:
    """A Group made by $provider-member-match (code PdexMultiMemberMatchResultCS#match): the members it lists
    are shared with the provider only while they have not opted out of Provider Access."""
    return any(c.get("system") == MATCH_RESULT_CS and c.get("code") == "match"
               for c in (group.get("code") or {}).get("coding") or [] if isinstance(c, dict))


def _patient_id(reference: Any) -> str | None:
    ref = str((reference or {}).get("reference") or "") if isinstance(reference, dict) else ""
    parts = ref.split("/_history/")[0].split("/")
    return parts[-1] if len(parts) >= 2 and parts[-2] == "Patient" and parts[-1] else None


class OptOuts:
    """Look-ups of opted-out members on one store (any ResourceStore: searched under the SYSTEM grant)."""

    def __init__(self, store: ResourceStore, configured: str = "") -> None:
        self.store = store
        self.configured = [e.strip() for e in configured.split(",") if e.strip()]

    def _search(self, rtype: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        q = QueryParser(strict=True).parse(rtype, params)
        q.count, q.total = SEARCH_LIMIT, "none"
        return [orjson.loads(s.content) for s in self.store.search(q).matches if s.content is not None]

    def opted_out(self, candidates: Iterable[str] | None = None) -> set[str]:
        """The Patient ids among ``candidates`` (every member when None) who opted out of Provider Access."""
        wanted = None if candidates is None else set(candidates)
        if wanted is not None and not wanted:
            return set()
        with context.acting_as(context.SYSTEM):  # the payer's own records, whatever the caller may read (module docstring)
            out = self._by_consent(wanted) | self._by_group(wanted) | self._by_configuration()
        return out if wanted is None else out & wanted

    def _narrowed(self, rtype: str, params: list[tuple[str, str]], name: str,
                  wanted: set[str] | None) -> list[dict[str, Any]]:
        """The search, limited to resources naming one of ``wanted`` in ``name`` (a few hundred at a time)."""
        if wanted is None:
            return self._search(rtype, params)
        ids, out = sorted(wanted), []
        for i in range(0, len(ids), CHUNK):
            refs = ",".join(f"Patient/{p}" for p in ids[i:i + CHUNK])
            out += self._search(rtype, [*params, (name, refs)])
        return out

    def _by_consent(self, wanted: set[str] | None) -> set[str]:
        today = now_instant()[:10]
        latest: dict[str, tuple[str, str]] = {}  # patient -> (when, decision)
        for c in self._narrowed("Consent", [("category", f"{API_PURPOSE_CS}|provider-access")], "patient", wanted):
            decision = consent_decision(c, today)
            pid = _patient_id(c.get("patient"))
            if decision is None or pid is None:
                continue
            when = str(c.get("dateTime") or (c.get("meta") or {}).get("lastUpdated") or "")
            if pid not in latest or when >= latest[pid][0]:
                latest[pid] = (when, decision)
        return {pid for pid, (_, decision) in latest.items() if decision == "deny"}

    def _by_group(self, wanted: set[str] | None) -> set[str]:
        out: set[str] = set()
        for g in self._narrowed("Group", [("code", f"{MATCH_RESULT_CS}|consentconstraint")], "member", wanted):
            if g.get("active") is False:
                continue
            for m in g.get("member") or []:
                pid = _patient_id(m.get("entity")) if isinstance(m, dict) and m.get("inactive") is not True else None
                if pid:
                    out.add(pid)
        return out

    def _by_configuration(self) -> set[str]:
        out: set[str] = set()
        for entry in self.configured:
            if entry.startswith("Patient/"):
                out.add(entry.split("/", 1)[1])
                continue
            out.update(str(p["id"]) for p in self._search("Patient", [("identifier", entry)]))
            for cov in self._search("Coverage", [("identifier", entry)]):
                pid = _patient_id(cov.get("beneficiary"))
                if pid:
                    out.add(pid)
        return out
