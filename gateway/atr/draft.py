"""Turn computed attributions into an ATR draft list, with changeType against the previous version."""

from __future__ import annotations

import copy
from typing import Any

from ..fhir.atr_model import (
    EXT_CHANGE_TYPE,
    EXT_COVERAGE,
    EXT_PROVIDER,
    make_group,
    make_member,
    member_ref,
    set_ext,
)
from .claims_rule import Attribution


def draft_list(group_id: str, name: str, payer: str, attributions: dict[str, Attribution],
               coverages: dict[str, str], period: dict[str, str], previous: dict[str, Any] | None) -> dict[str, Any]:
    """The new draft Group: one member per attributed patient. Against ``previous``, a member is ``new``,
    ``nochange`` (same provider and coverage), ``changed`` (another provider or coverage), and a previously
    active member no longer attributed stays listed as inactive with ``dropped``."""
    before: dict[str, dict[str, Any]] = {}
    for m in (previous or {}).get("member") or []:
        ref = (m.get("entity") or {}).get("reference")
        if not m.get("inactive") and isinstance(ref, str):  # one without a literal reference matches no patient
            before.setdefault(ref, m)
    members = []
    for patient in sorted(attributions):
        a = attributions[patient]
        coverage = coverages.get(patient)
        old = before.get(patient)
        if old is None:
            change = "new"
        elif member_ref(old, EXT_PROVIDER) == a.provider and member_ref(old, EXT_COVERAGE) == coverage:
            change = "nochange"
        else:
            change = "changed"
        members.append(make_member(patient, coverage, a.provider, period, change))
    for patient, old in sorted(before.items()):
        if patient not in attributions:
            m = copy.deepcopy(old)
            m["inactive"] = True
            set_ext(m, EXT_CHANGE_TYPE, "valueCode", "dropped")
            members.append(m)
    g = make_group(group_id, name, payer, members, "draft", contract_period=period)
    if previous:  # keep the list's identity: identifiers, name, recipient and contract extensions
        for key in ("identifier", "name", "characteristic"):
            if key in previous:
                g[key] = previous[key]
        keep = [e for e in previous.get("extension") or [] if e["url"] != g["extension"][0]["url"]]
        g["extension"] = [g["extension"][0], *keep]
    g["quantity"] = len(attributions)
    return g
