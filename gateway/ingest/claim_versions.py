"""Corrected claims retire the facts their earlier versions produced.

A claim feed sends a claim again when it is adjusted (a replacement version) or voided. The mapping engine
resolves each claim's chain of versions to the latest one (``versions`` in a mapping file) and renders it; the
resources it renders are written as updates over the earlier version's. What the earlier version produced and
the latest one no longer does (a diagnosis dropped by the adjustment, a line taken off) would otherwise stay in
the store as if still billed. This module closes that gap:

* the claim (ExplanationOfBenefit or Claim) of every unit of a versioned entity lists the clinical facts it
  produced — Encounter, Condition, Procedure, Observation, MedicationDispense, MedicationRequest, Immunization —
  in ``extension`` entries ``DERIVED`` (``valueReference``), kept on the claim itself so that tracking them costs
  no extra resource per claim;
* when a claim comes again, the facts its stored version lists and the new version does not render are
  **retired**: a copy marked ``entered-in-error`` (``verificationStatus`` for a Condition, ``status`` for the
  others) is added to the unit;
* a void (the claim itself is ``entered-in-error`` or ``cancelled``) retires every fact of the claim, whatever
  the mapping file rendered for them.

The retired copies travel in the claim's own unit, so they are validated and written in the same transaction
as the new version: a rejected claim retires nothing. Retired facts keep their history (``_history`` shows what
was billed before); measures ignore ``entered-in-error`` data (the demo measures test ``status`` /
``verificationStatus``, as QI-Core based measures do). Units are handled in batches: one read of the stored
claims per batch and claim type, one read per resource type for the facts to retire.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import orjson

from ..mapping.engine import Unit
from ..mapping.spec import MappingSpec

if TYPE_CHECKING:
    from ..store.base import ResourceStore

BATCH = 200
CLAIM_TYPES = ("ExplanationOfBenefit", "Claim")
VOID_STATUSES = ("entered-in-error", "cancelled")
FACT_TYPES = ("Encounter", "Condition", "Procedure", "Observation", "MedicationDispense", "MedicationRequest",
              "Immunization")
VER_STATUS = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
DERIVED = "http://fhir-vbc-gateway.example.org/StructureDefinition/derived-resource"


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
    """Lists derived facts on the claims and adds retirements to the units of a mapping's versioned entities (see the module doc)."""

    def __init__(self, store: ResourceStore, spec: MappingSpec) -> None:
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
        stored: dict[tuple[str, str], Any] = {}
        for rtype in CLAIM_TYPES:
            ids = [c["id"] for c in claims.values() if c["resourceType"] == rtype]
            if ids:
                stored.update({(rtype, k): v for k, v in self.store.read_many(rtype, ids).items()})
        # the facts earlier versions produced that the new versions do not render: (type, id) -> unit index
        dropped: dict[tuple[str, str], int] = {}
        for i, claim in claims.items():
            facts = [r for r in units[i].resources if r.get("resourceType") in FACT_TYPES and r.get("id")]
            if claim.get("status") in VOID_STATUSES:
                fact_ids = {id(r) for r in facts}
                units[i].resources[:] = [retired(r) if id(r) in fact_ids and not is_retired(r) else r
                                         for r in units[i].resources]
            now = {(r["resourceType"], r["id"]) for r in facts}
            prev = stored.get((claim["resourceType"], claim["id"]))
            if prev is not None and prev.content:
                for rtype, rid in derived_of(orjson.loads(prev.content)):
                    if rtype in FACT_TYPES and (rtype, rid) not in now:
                        dropped[(rtype, rid)] = i
            exts = [e for e in claim.get("extension") or [] if e.get("url") != DERIVED] + [
                {"url": DERIVED, "valueReference": {"reference": f"{t}/{rid}"}} for t, rid in sorted(now)]
            if exts:
                claim["extension"] = exts
            else:  # R4 JSON has no empty arrays
                claim.pop("extension", None)
        by_type: dict[str, list[str]] = {}
        for rtype, rid in dropped:
            by_type.setdefault(rtype, []).append(rid)
        for rtype, rids in by_type.items():
            for rid, s in self.store.read_many(rtype, rids).items():
                res = orjson.loads(s.content) if s.content else None
                if res and not is_retired(res):
                    units[dropped[(rtype, rid)]].resources.append(retired(res))
        return units


def derived_of(claim: dict[str, Any]) -> list[tuple[str, str]]:
    """The (type, id) of the facts a stored claim lists as derived from it."""
    out = []
    for e in claim.get("extension") or []:
        if e.get("url") == DERIVED:
            rtype, _, rid = str((e.get("valueReference") or {}).get("reference", "")).partition("/")
            if rtype and rid:
                out.append((rtype, rid))
    return out
