"""Attribution from claims: a Medicare Shared Savings Program style assignment rule, as pure logic.

Rule (configurable through ``AttributionRule``):
1. Qualifying services are primary-care services: claim lines (Claim, ExplanationOfBenefit) and Encounters
   whose procedure/type code is in ``codes`` (default: office/outpatient, home, nursing-facility and
   domiciliary evaluation and management visits, transitional care and annual wellness visits), dated
   within the look-back window ``[as_of - lookback_months, as_of]``.
2. Each service is worth its allowed charge: an ExplanationOfBenefit line's adjudication ``eligible``
   amount, else the line's ``net`` amount (Claims have no adjudication); an Encounter with no claim is
   worth ``encounter_value`` (default 0: it only counts as a visit for the tie-break).
3. A patient is attributed to the provider (Practitioner, PractitionerRole or Organization) with the
   plurality, i.e. the largest total, of allowed charges. Ties go to the provider with the most recent
   qualifying service, then to the smallest reference (so the result is deterministic).
4. Patients with no qualifying service in the window are not attributed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

# CPT/HCPCS primary-care service codes (MSSP assignment: 42 CFR 425.400(c), abridged)
DEFAULT_CODES = frozenset(
    [str(c) for c in range(99201, 99216)]  # office/outpatient E&M
    + [str(c) for c in range(99304, 99351)]  # nursing facility, domiciliary, home E&M
    + ["99495", "99496", "99490", "99491", "99487", "99489", "G0402", "G0438", "G0439", "G2211"])
PROVIDER_TYPES = ("Practitioner", "PractitionerRole", "Organization")


@dataclass(frozen=True)
class AttributionRule:
    as_of: date
    lookback_months: int = 12
    codes: frozenset[str] = DEFAULT_CODES
    encounter_value: float = 0.0

    @property
    def window_start(self) -> date:
        m = self.as_of.month - self.lookback_months
        y = self.as_of.year + (m - 1) // 12
        m = (m - 1) % 12 + 1
        day = min(self.as_of.day, 28)
        return date(y, m, day)


@dataclass(frozen=True)
class Service:
    patient: str  # Patient/id
    provider: str  # Practitioner/id | PractitionerRole/id | Organization/id
    when: str  # YYYY-MM-DD
    code: str
    allowed: float


@dataclass
class _Tally:
    total: float = 0.0
    latest: str = ""
    visits: int = 0


@dataclass
class Attribution:
    patient: str
    provider: str
    allowed: float
    latest: str
    visits: int
    candidates: dict[str, float] = field(default_factory=dict)


def _ref(node: Any) -> str | None:
    ref = (node or {}).get("reference") if isinstance(node, dict) else None
    return ref if isinstance(ref, str) and ref.count("/") == 1 else None


def _codes(cc: Any) -> list[str]:
    return [c.get("code") for c in (cc or {}).get("coding") or [] if c.get("code")]


def _day(value: Any) -> str | None:
    return value[:10] if isinstance(value, str) and len(value) >= 10 else None


def services_from(resource: dict[str, Any]) -> Iterator[Service]:
    """The primary-care services candidates a Claim, ExplanationOfBenefit or Encounter holds (codes unchecked)."""
    rtype = resource.get("resourceType")
    if rtype in ("Claim", "ExplanationOfBenefit"):
        patient = _ref(resource.get("patient"))
        provider = _ref(resource.get("provider"))
        if not provider:
            team = resource.get("careTeam") or []
            provider = _ref(team[0].get("provider")) if team else None
        default_day = _day((resource.get("billablePeriod") or {}).get("start")) or _day(resource.get("created"))
        for item in resource.get("item") or []:
            day = _day(item.get("servicedDate")) or _day((item.get("servicedPeriod") or {}).get("start")) or default_day
            allowed = None
            for adj in item.get("adjudication") or []:
                if "eligible" in _codes(adj.get("category")):
                    allowed = (adj.get("amount") or {}).get("value")
            if allowed is None:
                allowed = (item.get("net") or {}).get("value", 0.0)
            for code in _codes(item.get("productOrService")):
                if patient and provider and day:
                    yield Service(patient, provider, day, code, float(allowed or 0.0))
    elif rtype == "Encounter" and resource.get("status") in ("finished", None):
        patient = _ref(resource.get("subject"))
        day = _day((resource.get("period") or {}).get("start"))
        provider = next((r for p in resource.get("participant") or [] if (r := _ref(p.get("individual")))), None)
        provider = provider or _ref(resource.get("serviceProvider"))
        codes = [c for t in resource.get("type") or [] for c in _codes(t)]
        for code in codes:
            if patient and provider and day:
                yield Service(patient, provider, day, code, -1.0)  # -1: valued by the rule


def attribute(resources: Iterable[dict[str, Any]], rule: AttributionRule) -> dict[str, Attribution]:
    """Patient reference -> the provider the rule attributes it to."""
    lo, hi = rule.window_start.isoformat(), rule.as_of.isoformat()
    tallies: dict[str, dict[str, _Tally]] = {}
    for r in resources:
        seen: set[tuple[str, str, str]] = set()
        for s in services_from(r):
            if s.code not in rule.codes or not (lo <= s.when <= hi) or s.provider.split("/")[0] not in PROVIDER_TYPES:
                continue
            key = (s.patient, s.provider, s.when)
            t = tallies.setdefault(s.patient, {}).setdefault(s.provider, _Tally())
            t.total += rule.encounter_value if s.allowed < 0 else s.allowed
            if key not in seen:  # several lines of one claim on one day are one visit
                t.visits += 1
                seen.add(key)
            t.latest = max(t.latest, s.when)
    out: dict[str, Attribution] = {}
    for patient, by_provider in tallies.items():
        provider, t = max(by_provider.items(), key=lambda kv: (kv[1].total, kv[1].latest, _neg(kv[0])))
        out[patient] = Attribution(patient, provider, round(t.total, 2), t.latest, t.visits,
                                   {p: round(x.total, 2) for p, x in by_provider.items()})
    return out


def _neg(ref: str) -> tuple[int, ...]:
    """Orders references so that max() picks the smallest one."""
    return tuple(-ord(c) for c in ref)
