"""What the console's screens show, fetched through the FHIR API with the user's token (``api.Fhir``):
population reports per measure and period, the gap rows of a selection of patients, attribution lists and
the changes between their versions. Nothing here reads the store."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import orjson

from ..deqm.scorecard import COLUMNS, Scorecard
from ..fhir.atr_model import (
    EXT_CHANGE_TYPE,
    EXT_CONTRACT_PERIOD,
    EXT_COVERAGE,
    EXT_PROVIDER,
    EXT_STATUS,
    list_status,
)
from .api import ApiError, Fhir

__all__ = ["EXT_CONTRACT_PERIOD", "EXT_PROVIDER", "EXT_STATUS", "list_status"]  # used by the routes too
GAP_STATUSES = ("open-gap", "closed-gap", "prospective-gap", "not-applicable")
POPULATION_ORDER = ("initial-population", "denominator", "denominator-exclusion", "denominator-exception",
                    "numerator", "numerator-exclusion", "measure-population", "measure-population-exclusion")


# -- periods ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Period:
    key: str  # "2025" or "2025-Q2"
    start: str
    end: str

    @property
    def label(self) -> str:
        return self.key.replace("-", " ")


def quarter(year: int, q: int) -> Period:
    ends = {1: "03-31", 2: "06-30", 3: "09-30", 4: "12-31"}
    return Period(f"{year}-Q{q}", f"{year}-{(q - 1) * 3 + 1:02d}-01", f"{year}-{ends[q]}")


def year_period(year: int) -> Period:
    return Period(str(year), f"{year}-01-01", f"{year}-12-31")


def parse_period(key: str) -> Period:
    """``2025`` or ``2025-Q3``; ValueError otherwise."""
    y, _, q = key.partition("-Q")
    if not (y.isdigit() and len(y) == 4) or (q and q not in "1234") or (key.count("-") and not q):
        raise ValueError(f"a period is a year (2025) or a quarter (2025-Q3), not {key!r}")
    return quarter(int(y), int(q)) if q else year_period(int(y))


def trend_periods(year: int, grain: str, count: int = 4) -> list[Period]:
    """The ``count`` periods of a trend ending with the last quarter of ``year`` (quarters) or with ``year``
    itself (years), oldest first."""
    count = max(1, min(count, 12))
    if grain == "year":
        return [year_period(y) for y in range(year - count + 1, year + 1)]
    last = year * 4 + 3  # the fourth quarter of ``year``, counting quarters from year 0
    return [quarter(i // 4, i % 4 + 1) for i in range(last - count + 1, last + 1)]


async def latest_care_year(fhir: Fhir) -> int:
    """The year of the most recent Encounter the user may see (the year worth looking at first); the current
    year when there is none."""
    try:
        found = await fhir.get("Encounter", [("_sort", "-date"), ("_count", "1"), ("_elements", "period")])
    except ApiError:
        found = {}
    for e in found.get("entry") or []:
        start = str(((e.get("resource") or {}).get("period") or {}).get("start") or "")
        if start[:4].isdigit():
            return int(start[:4])
    return datetime.now(UTC).year


# -- measures and population reports ---------------------------------------------------------------------------
def measure_title(m: dict[str, Any]) -> str:
    return str(m.get("title") or m.get("name") or m.get("url") or m.get("id"))


def canonical(m: dict[str, Any]) -> str:
    return f"{m.get('url')}|{m['version']}" if m.get("version") else str(m.get("url"))


def lower_is_better(m: dict[str, Any]) -> bool:
    codes = [c.get("code") for c in (m.get("improvementNotation") or {}).get("coding") or []]
    return "decrease" in codes


async def measures(fhir: Fhir) -> list[dict[str, Any]]:
    """The Measures the user may read, by title."""
    found = await fhir.search_all("Measure", [("_sort", "title")], limit=500)
    return sorted(found, key=lambda m: measure_title(m).lower())


def _code(cc: Any) -> str | None:
    for c in (cc or {}).get("coding") or []:
        if c.get("code"):
            return str(c["code"])
    return (cc or {}).get("text")


@dataclass
class Rate:
    """One group (or stratum) of a population report: its population counts and score."""
    counts: dict[str, int]
    score: float | None

    @property
    def numerator(self) -> int | None:
        return self.counts.get("numerator")

    @property
    def denominator(self) -> int | None:
        return self.counts.get("denominator")


@dataclass
class Stratum:
    value: str
    rate: Rate


@dataclass
class GroupResult:
    group_id: str | None
    rate: Rate
    stratifiers: list[tuple[str, list[Stratum]]] = field(default_factory=list)


def _rate(node: dict[str, Any]) -> Rate:
    counts: dict[str, int] = {}
    for p in node.get("population") or []:
        code = _code(p.get("code"))
        if code:
            counts[code] = counts.get(code, 0) + int(p.get("count") or 0)
    score = (node.get("measureScore") or {}).get("value")
    if score is None and "numerator" in counts and "denominator" in counts:
        # a stratum without a score: the proportion of its own counts (DEQM does not require one there)
        den = counts["denominator"] - counts.get("denominator-exclusion", 0) - counts.get("denominator-exception", 0)
        num = counts["numerator"] - counts.get("numerator-exclusion", 0)
        score = num / den if den > 0 else None
    return Rate(counts, float(score) if score is not None else None)


def report_groups(report: dict[str, Any]) -> list[GroupResult]:
    """The groups of a population report as rates, with their stratifiers' strata."""
    out = []
    for g in report.get("group") or []:
        strat = []
        for s in g.get("stratifier") or []:
            name = " / ".join(filter(None, (_code(c) for c in s.get("code") or []))) or "stratifier"
            strata = [Stratum(str(_code(st.get("value")) or "(none)"), _rate(st)) for st in s.get("stratum") or []]
            strat.append((name, strata))
        out.append(GroupResult(g.get("id"), _rate(g), strat))
    return out


def evaluate_params(period: Period, subject: str | None = None, practitioner: str | None = None) -> list[tuple[str, str]]:
    params = [("periodStart", period.start), ("periodEnd", period.end), ("reportType", "population")]
    if subject:
        params.append(("subject", subject))
    if practitioner:
        params.append(("practitioner", practitioner))
    return params


class ReportCache:
    """Population reports per user session and request, kept while the stored data has not changed (the
    newest entry of the system history is the stamp): going back to a screen does not evaluate again."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self._items: dict[tuple[str, str, str], tuple[float, Any]] = {}

    def get(self, key: tuple[str, str, str]) -> Any:
        hit = self._items.get(key)
        return hit[1] if hit else None

    def put(self, key: tuple[str, str, str], value: Any) -> None:
        if len(self._items) >= self.size:
            for k, _ in sorted(self._items.items(), key=lambda kv: kv[1][0])[: self.size // 4]:
                del self._items[k]
        self._items[key] = (time.monotonic(), value)


async def data_stamp(fhir: Fhir) -> str | None:
    """The version of everything the user may see: the newest history entry (None when unreadable)."""
    try:
        h = await fhir.get("_history", [("_count", "1")])
    except ApiError:
        return None
    for e in h.get("entry") or []:
        return str(e.get("fullUrl") or "") + str(((e.get("resource") or {}).get("meta") or {}).get("lastUpdated"))
    return "empty"


async def population_report(fhir: Fhir, cache: ReportCache, who: str, stamp: str | None, measure_id: str,
                            params: list[tuple[str, str]]) -> dict[str, Any]:
    path = f"Measure/{measure_id}/$evaluate-measure"
    key = (who, path + "?" + "&".join(f"{k}={v}" for k, v in params), stamp or "")
    hit = cache.get(key) if stamp else None
    if hit is not None:
        return dict(hit)
    report = await fhir.get(path, params)
    if stamp:
        cache.put(key, report)
    return dict(report)


# -- people and payers -------------------------------------------------------------------------------------------
def person_name(res: dict[str, Any] | None) -> str:
    if not res:
        return ""
    if isinstance(res.get("name"), str):
        return str(res["name"])
    for n in res.get("name") or []:
        if n.get("text"):
            return str(n["text"])
        parts = [*(n.get("given") or []), n.get("family") or ""]
        text = " ".join(p for p in parts if p).strip()
        if text:
            return text
    return str(res.get("id") or "")


def ref_display(ref: dict[str, Any] | None) -> str:
    return str((ref or {}).get("display") or (ref or {}).get("reference") or "")


@dataclass
class Selection:
    """The patients a worklist covers, with what the worklist shows beside each."""
    patients: list[dict[str, Any]]
    providers: dict[str, str]  # Practitioner reference -> display, every general practitioner seen
    payers: dict[str, str]  # Organization reference -> display, every payer of an active Coverage seen
    payer_of: dict[str, list[str]]  # patient id -> payer references


async def selection(fhir: Fhir, provider: str | None, payer: str | None) -> Selection:
    """Every patient the user may see, narrowed to those whose general practitioner is ``provider`` and those
    with an active Coverage paid by ``payer`` (FHIR searches, so the grant decides what is found)."""
    patients = await fhir.search_all("Patient", [("_elements", "identifier,name,birthDate,generalPractitioner")])
    coverages = await fhir.search_all("Coverage", [("status", "active"), ("_elements", "beneficiary,payor,status")])
    payer_of: dict[str, list[str]] = {}
    payers: dict[str, str] = {}
    for c in coverages:
        pid = str((c.get("beneficiary") or {}).get("reference") or "").removeprefix("Patient/")
        for p in c.get("payor") or []:
            ref = str(p.get("reference") or "")
            if ref.startswith("Organization/"):
                payer_of.setdefault(pid, []).append(ref)
                payers.setdefault(ref, ref_display(p))
    unnamed = [ref.split("/", 1)[1] for ref, name in payers.items() if name == ref]
    if unnamed:
        for org in await fhir.search_all("Organization", [("_id", ",".join(unnamed)), ("_elements", "name")]):
            payers[f"Organization/{org['id']}"] = person_name(org)
    providers: dict[str, str] = {}
    for p in patients:
        for gp in p.get("generalPractitioner") or []:
            ref = str(gp.get("reference") or "")
            if ref:
                providers.setdefault(ref, ref_display(gp))
    kept = patients
    if provider:
        kept = [p for p in kept if any(gp.get("reference") == provider for gp in p.get("generalPractitioner") or [])]
    if payer:
        kept = [p for p in kept if payer in payer_of.get(str(p.get("id")), [])]
    return Selection(kept, providers, payers, payer_of)


# -- gaps and the scorecard ------------------------------------------------------------------------------------
class _Patients:
    """What ``Scorecard`` reads of the store (a patient's identifiers), answered from the fetched Patients."""

    @dataclass
    class _Stored:
        content: bytes
        deleted: bool = False

    def __init__(self, patients: Iterable[dict[str, Any]]) -> None:
        self.by_id = {str(p.get("id")): p for p in patients}

    def read(self, rtype: str, rid: str) -> _Patients._Stored | None:
        p = self.by_id.get(rid) if rtype == "Patient" else None
        return self._Stored(orjson.dumps(p)) if p is not None else None


def care_gaps_body(patient_ids: list[str], measure_ids: list[str], period: Period) -> dict[str, Any]:
    """The $care-gaps Parameters for these patients (an inline Group), measures and period, every status."""
    group = {"resourceType": "Group", "id": "console-selection", "type": "person", "actual": True,
             "member": [{"entity": {"reference": f"Patient/{pid}"}} for pid in patient_ids]}
    params: list[dict[str, Any]] = [{"name": "periodStart", "valueDate": period.start},
                                    {"name": "periodEnd", "valueDate": period.end}]
    params += [{"name": "measureId", "valueString": m} for m in measure_ids]
    params.append({"name": "subjectGroup", "resource": group})
    params += [{"name": "status", "valueCode": s} for s in GAP_STATUSES]
    return {"resourceType": "Parameters", "parameter": params}


async def scorecard_rows(fhir: Fhir, patients: list[dict[str, Any]], chosen: list[dict[str, Any]],
                         period: Period) -> list[dict[str, Any]]:
    """The scorecard rows (``fhir-gateway extract --to scorecard-csv``) of these patients for these measures
    and period, from the individual MeasureReports ``$care-gaps`` returns: measure by measure in the order
    given, patients in the order given, one row per measure group."""
    if not patients or not chosen:
        return []
    ids = [str(p["id"]) for p in patients]
    body = care_gaps_body(ids, [str(m["id"]) for m in chosen], period)
    answer = await fhir.post("Measure/$care-gaps", body)
    reports: dict[tuple[str, str], dict[str, Any]] = {}
    for p in answer.get("parameter") or []:
        bundle = p.get("resource") or {}
        for e in bundle.get("entry") or []:
            r = e.get("resource") or {}
            if r.get("resourceType") == "MeasureReport" and r.get("type") == "individual":
                subject = str((r.get("subject") or {}).get("reference") or "")
                reports[(str(r.get("measure")), subject.removeprefix("Patient/"))] = r
    by_canonical = {canonical(m): m for m in chosen}
    card = Scorecard(_Patients(patients), by_canonical.get,  # type: ignore[arg-type]
                     datetime.now(UTC).replace(tzinfo=None).strftime("%Y-%m-%dT%H:%M:%S.%f"))
    rows: list[dict[str, Any]] = []
    for m in chosen:
        for pid in ids:
            mr = reports.get((canonical(m), pid))
            if mr is not None:
                rows.extend(card.report_rows(mr))
    return rows


def csv_text(rows: Iterable[dict[str, Any]]) -> str:
    """Rows as the scorecard CSV (the columns and cell format of ``extract --to scorecard-csv``)."""
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, COLUMNS)
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r.get(k) is None else r[k] for k in COLUMNS})
    return buf.getvalue()


# -- attribution lists -----------------------------------------------------------------------------------------
def ext_value(node: dict[str, Any], url: str) -> Any:
    for e in node.get("extension") or []:
        if e.get("url") == url:
            for k, v in e.items():
                if k.startswith("value"):
                    return v
    return None


@dataclass(frozen=True)
class Member:
    patient: str
    provider: str
    coverage: str
    change: str
    inactive: bool
    start: str
    end: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.patient, self.provider)


def members(group: dict[str, Any]) -> list[Member]:
    out = []
    for m in group.get("member") or []:
        period = m.get("period") or {}
        out.append(Member(str((m.get("entity") or {}).get("reference") or ""),
                          str((ext_value(m, EXT_PROVIDER) or {}).get("reference") or ""),
                          str((ext_value(m, EXT_COVERAGE) or {}).get("reference") or ""),
                          str(ext_value(m, EXT_CHANGE_TYPE) or ""), bool(m.get("inactive")),
                          str(period.get("start") or ""), str(period.get("end") or "")))
    return out


@dataclass
class Diff:
    added: list[Member]
    removed: list[Member]
    changed: list[tuple[Member, Member]]
    status: tuple[str | None, str | None]


def diff(before: dict[str, Any], after: dict[str, Any]) -> Diff:
    """What changed from one version of an attribution list to another, member by member (a member is a
    patient with an attributed provider)."""
    old = {m.key: m for m in members(before)}
    new = {m.key: m for m in members(after)}
    return Diff([new[k] for k in new if k not in old], [old[k] for k in old if k not in new],
                [(old[k], new[k]) for k in new if k in old and old[k] != new[k]],
                (list_status(before), list_status(after)))


def today() -> str:
    return date.today().isoformat()
