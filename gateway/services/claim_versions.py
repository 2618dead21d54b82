"""Corrected claims retire the facts their earlier versions produced.

A claim feed sends a claim again when it is adjusted (a replacement version) or voided. The mapping engine
resolves each claim's chain of versions to the latest one (``versions`` in a mapping file) and renders it; the
resources it renders are written as updates over the earlier version's. What the earlier version produced and
the latest one no longer does (a diagnosis dropped by the adjustment, a line taken off) would otherwise stay in
the store as if still billed. This module closes that gap:

* every unit of a versioned entity (one claim) gets a **Provenance** ``<claim id>-prov`` whose ``target`` lists
  the claim (ExplanationOfBenefit or Claim) and the clinical facts it produced — Encounter, Condition,
  Procedure, Observation, MedicationDispense, MedicationRequest, Immunization;
* when a claim comes again, the facts its stored Provenance names and the new version does not render are
  **retired**: a copy marked ``entered-in-error`` (``verificationStatus`` for a Condition, ``status`` for the
  others) is added to the unit;
* a void (the claim itself is ``entered-in-error`` or ``cancelled``) retires every fact of the claim, whatever
  the mapping file rendered for them.

The Provenance and the retired copies travel in the claim's own unit, so they are validated and written in the
same transaction as the new version: a rejected claim retires nothing. Retired facts keep their history
(``_history`` shows what was billed before); measures ignore ``entered-in-error`` data (the demo measures test
``status`` / ``verificationStatus``, as QI-Core based measures do). Units are handled in batches: one read of
the stored Provenances per batch, one read per resource type for the facts to retire.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from ..mapping.engine import Unit
from ..mapping.spec import MappingSpec

BATCH = 200
CLAIM_TYPES = ("ExplanationOfBenefit", "Claim")
VOID_STATUSES = ("entered-in-error", "cancelled")
FACT_TYPES = ("Encounter", "Condition", "Procedure", "Observation", "MedicationDispense", "MedicationRequest",
              "Immunization")
VER_STATUS = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
ACTIVITY = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"


def provenance_id(claim_id: str) -> str:
    return f"{claim_id}-prov"[:64]


def retired(res: dict[str, Any]) -> dict[str, Any]:
    """A copy of a clinical fact marked entered-in-error (a Condition loses its clinicalStatus: R4 con-5)."""
    out = copy.deepcopy(res)
    meta = out.get("meta")
    if isinstance(meta, dict):
        meta.pop("versionId", None)
        meta.pop("lastUpdated", None)
    if out["resourceType"] == "Condition":
        out.pop("clinicalStatus", None)
        out["verificationStatus"] = {"coding": [{"system": VER_STATUS, "code": "entered-in-error"}]}
    else:
        out["status"] = "entered-in-error"
    return out


def is_retired(res: dict[str, Any]) -> bool:
    if res.get("resourceType") == "Condition":
        codes = [c.get("code") for c in (res.get("verificationStatus") or {}).get("coding") or []]
        return "entered-in-error" in codes
    return res.get("status") == "entered-in-error"


class ClaimVersions:
    """Adds Provenance and retirements to the units of a mapping's versioned entities (see the module doc)."""

    def __init__(self, store: Any, spec: MappingSpec) -> None:
        self.store = store
        self.spec = spec
        self.versioned = {e.name for e in spec.entities if e.versions}

    def track(self, units: Iterable[Unit]) -> Iterator[Unit]:
        """The units, in order; those of versioned entities amended. Others pass straight through."""
        if not self.versioned:
            yield from units
            return
        batch: list[Unit] = []
        for unit in units:
            if unit.entity not in self.versioned:
                yield unit
                continue
            batch.append(unit)
            if len(batch) >= BATCH:
                yield from self._amend(batch)
                batch = []
        yield from self._amend(batch)

    def _amend(self, units: list[Unit]) -> list[Unit]:
        claims: dict[int, dict[str, Any]] = {}
        for i, u in enumerate(units):
            claim = next((r for r in u.resources if r.get("resourceType") in CLAIM_TYPES and r.get("id")), None)
            if claim is not None:
                claims[i] = claim
        if not claims:
            return units
        stored = self.store.read_many("Provenance", [provenance_id(c["id"]) for c in claims.values()])
        # the facts earlier versions produced that the new versions do not render: (type, id) -> unit index
        dropped: dict[tuple[str, str], int] = {}
        for i, claim in claims.items():
            void = claim.get("status") in VOID_STATUSES
            facts = [r for r in units[i].resources if r.get("resourceType") in FACT_TYPES and r.get("id")]
            if void:
                fact_ids = {id(r) for r in facts}
                units[i].resources[:] = [retired(r) if id(r) in fact_ids and not is_retired(r) else r
                                         for r in units[i].resources]
            now = {(r["resourceType"], r["id"]) for r in facts}
            prev = stored.get(provenance_id(claim["id"]))
            if prev is not None and prev.content:
                for ref in orjson.loads(prev.content).get("target") or []:
                    rtype, _, rid = str(ref.get("reference", "")).partition("/")
                    if rtype in FACT_TYPES and rid and (rtype, rid) not in now:
                        dropped[(rtype, rid)] = i
            units[i].resources.append(self._provenance(claim, facts))
        by_type: dict[str, list[str]] = {}
        for rtype, rid in dropped:
            by_type.setdefault(rtype, []).append(rid)
        for rtype, rids in by_type.items():
            for rid, s in self.store.read_many(rtype, rids).items():
                res = orjson.loads(s.content) if s.content else None
                if res and not is_retired(res):
                    units[dropped[(rtype, rid)]].resources.append(retired(res))
        return units

    def _provenance(self, claim: dict[str, Any], facts: list[dict[str, Any]]) -> dict[str, Any]:
        rtype, cid = claim["resourceType"], claim["id"]
        when = str(claim.get("created") or "1970-01-01")
        if "T" not in when:
            when = f"{when[:10]}T00:00:00Z"
        agent_ref = (claim.get("insurer") or claim.get("provider") or {}).get("reference")
        who = {"reference": agent_ref} if agent_ref else {"display": f"mapping {self.spec.format}"}
        return {
            "resourceType": "Provenance",
            "id": provenance_id(cid),
            "meta": {"source": self.spec.source_uri},
            "target": [{"reference": f"{rtype}/{cid}"}]
            + [{"reference": f"{r['resourceType']}/{r['id']}"} for r in facts],
            "recorded": when,
            "policy": [self.spec.source_uri],
            "activity": {"coding": [{"system": ACTIVITY, "code": "UPDATE"}]},
            "agent": [{"who": who}],
        }
