"""Pure edits of an attribution list's members: add, remove (by status), confirm. No I/O.

Rules (ATR 2.1 §member-add/member-remove): only draft and open lists change; in draft a removed member stays
listed with inactive=true and changeType=dropped; in open it is deleted; confirming makes the list final
and drops inactive members.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from ..fhir.atr_model import (
    EXT_CHANGE_TYPE,
    EXT_COVERAGE,
    EXT_PROVIDER,
    EXT_STATUS,
    list_status,
    make_member,
    member_ref,
    set_ext,
)
from ..fhir.errors import Unprocessable


@dataclass(frozen=True)
class Selector:
    """Which member entries an operation means; None matches anything."""

    patients: frozenset[str]
    provider: str | None = None
    coverage: str | None = None

    def matches(self, m: dict[str, Any]) -> bool:
        return ((m.get("entity") or {}).get("reference") in self.patients
                and (self.provider is None or member_ref(m, EXT_PROVIDER) == self.provider)
                and (self.coverage is None or member_ref(m, EXT_COVERAGE) == self.coverage))


def require_changeable(group: dict[str, Any]) -> str:
    status = list_status(group)
    if status == "final":
        raise Unprocessable(f"Group/{group.get('id')} is a final attribution list: members can no longer be added "
                            "or removed")
    if status not in ("draft", "open"):
        raise Unprocessable(f"Group/{group.get('id')} has no draft or open attribution list status")
    return status


def add_member(group: dict[str, Any], patient: str, provider: str, coverage: str | None,
               period: dict[str, Any] | None) -> tuple[dict[str, Any] | None, str]:
    """The new Group (None when nothing changes) and a message saying what happened."""
    require_changeable(group)
    g = copy.deepcopy(group)
    members = g.setdefault("member", [])
    for m in members:
        if Selector(frozenset([patient]), provider).matches(m):
            if not m.get("inactive"):
                return None, f"{patient} is already attributed to {provider}"
            m["inactive"] = False  # a dropped attribution comes back
            set_ext(m, EXT_CHANGE_TYPE, "valueCode", "changed")
            if period:
                m["period"] = period
            if coverage:
                set_ext(m, EXT_COVERAGE, "valueReference", {"reference": coverage})
            return _counted(g), f"{patient} attributed to {provider} again"
    members.append(make_member(patient, coverage, provider, period, "new"))
    return _counted(g), f"{patient} added, attributed to {provider}"


def remove_members(group: dict[str, Any], sel: Selector) -> tuple[dict[str, Any], int]:
    status = require_changeable(group)
    g = copy.deepcopy(group)
    hits = [m for m in g.get("member") or [] if sel.matches(m) and not (status == "draft" and m.get("inactive"))]
    if not hits:
        raise Unprocessable("No matching member attribution on this list", code="not-found")
    if status == "open":
        g["member"] = [m for m in g["member"] if not any(m is h for h in hits)]
    else:
        for m in hits:
            m["inactive"] = True
            set_ext(m, EXT_CHANGE_TYPE, "valueCode", "dropped")
    return _counted(g), len(hits)


def confirm(group: dict[str, Any]) -> dict[str, Any]:
    require_changeable(group)
    g = copy.deepcopy(group)
    g["member"] = [m for m in g.get("member") or [] if not m.get("inactive")]
    if not g["member"]:
        raise Unprocessable("An attribution list without active members cannot be confirmed")
    set_ext(g, EXT_STATUS, "valueCode", "final")
    return _counted(g)


def _counted(g: dict[str, Any]) -> dict[str, Any]:
    g["quantity"] = len({(m.get("entity") or {}).get("reference") for m in g.get("member") or []
                         if not m.get("inactive")})
    if not g.get("member"):
        g.pop("member", None)
    return g
