"""Compute a draft ATR attribution list from the claims and encounters in the store and save it as a new
version of the list (gateway/atr/claims_rule.py holds the rule)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson

from ..fhir.atr_model import list_status
from ..fhir.errors import Unprocessable
from ..resources.rest import RestService, resource_json
from .claims_rule import AttributionRule, attribute
from .draft import draft_list

if TYPE_CHECKING:
    from ..store.base import ResourceStore

SOURCES = ("ExplanationOfBenefit", "Claim", "Encounter")
VOID = ("cancelled", "entered-in-error")


def _rows(store: ResourceStore, rtype: str) -> Iterator[dict[str, Any]]:
    for s in store.iter_current(rtype):
        yield orjson.loads(s.body)


def claim_sources(store: ResourceStore) -> Iterator[dict[str, Any]]:
    """The claims and encounters the rule reads, each service once: an active ExplanationOfBenefit stands for the
    Claim it adjudicates (``claim``: an 835 payment attached to its 837), so that Claim is left out; a cancelled
    or entered-in-error claim or EOB (a reversed payment, a voided claim) is left out, and the Claim of a
    reversed payment counts again (the service was still rendered)."""
    adjudicated: set[str] = set()
    for eob in _rows(store, "ExplanationOfBenefit"):
        if eob.get("status") in VOID:
            continue
        ref = (eob.get("claim") or {}).get("reference")
        if ref:
            adjudicated.add(ref)
        yield eob
    for claim in _rows(store, "Claim"):
        if claim.get("status") not in VOID and f"Claim/{claim.get('id')}" not in adjudicated:
            yield claim
    yield from _rows(store, "Encounter")


def compute_draft(rest: RestService, group_id: str, payer: str, rule: AttributionRule,
                  name: str | None = None) -> tuple[dict[str, Any], int]:
    """Store the computed draft as Group/``group_id`` (a new version if it exists); returns it and the count of
    attributed patients. A final list is not overwritten."""
    store = rest.store
    attributions = attribute(claim_sources(store), rule)
    coverages: dict[str, str] = {}
    for cov in _rows(store, "Coverage"):
        patient = (cov.get("beneficiary") or {}).get("reference")
        if cov.get("status") == "active" and patient in attributions:
            payors = [p.get("reference") for p in cov.get("payor") or []]
            better = payer in payors
            if patient not in coverages or better:
                coverages[patient] = f"Coverage/{cov['id']}"
    previous = None
    existing = store.read("Group", group_id)
    if existing is not None and not existing.deleted:
        previous = resource_json(existing)
        if list_status(previous) == "final":
            raise Unprocessable(f"Group/{group_id} is final; compute into a new list id")
    period = {"start": rule.window_start.isoformat(), "end": rule.as_of.isoformat()}
    group = draft_list(group_id, name or f"Attribution list {group_id}", payer, attributions, coverages, period,
                       previous)
    out = rest.update("Group", group_id, group)
    return resource_json(out.stored), len(attributions)
