"""Measure scorecards for analysts and BI tools: one flat row per patient × measure × period (× measure group)
with the patient's population flags and gap status, written as CSV or Parquet.

Where the rows come from:

* **stored reports** (the default): the individual MeasureReports in the store — those received through
  ``$submit-data``, loaded, or kept from earlier runs. When several reports exist for the same patient, measure
  and period, the newest (``MeasureReport.date``, then the time it was stored) is the one reported.
* **evaluated now** (``measures`` given): each measure is evaluated for every patient in the store for the
  period, exactly as ``$evaluate-measure`` with ``reportType=subject`` would, and nothing is stored. Use this
  for a scorecard of the current data.

Population flags are the counts of the individual report's group (1/0 for patient-based measures, the number
of episodes for episode-based ones); a population the measure group does not define is left empty. The gap
status follows ``$care-gaps`` (gateway/measure/gaps.py): ``deqm_gap_status`` is the DEQM code (``open-gap``,
``prospective-gap``, ``closed-gap``, ``not-applicable``) and ``gap_status`` its plain reading (``open`` for an
open or prospective gap, ``closed``, ``not-applicable``).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ..fhir.dates import parse_range
from ..measure.gaps import group_gap_status
from ..measure.model import MeasureDef
from ..measure.report import individual_report

if TYPE_CHECKING:
    from ..store.base import ResourceStore

POPULATIONS = ("initial-population", "denominator", "denominator-exclusion", "denominator-exception",
               "numerator", "numerator-exclusion", "measure-population", "measure-population-exclusion",
               "measure-observation")
COLUMNS = ("patient_id", "patient_identifiers", "measure_url", "measure_version", "group_id", "period_start",
           "period_end", *(p.replace("-", "_") for p in POPULATIONS), "measure_score", "gap_status",
           "deqm_gap_status", "report_id", "report_date")
INT_COLUMNS = frozenset(p.replace("-", "_") for p in POPULATIONS)
PLAIN_GAP = {"open-gap": "open", "prospective-gap": "open", "closed-gap": "closed", "not-applicable": "not-applicable"}
SCORING_EXT = "extension-measureScoring"


class ScorecardError(ValueError):
    pass


@dataclass
class GroupRule:
    scoring: str
    improvement: str | None


def _code(cc: Any) -> str | None:
    for c in (cc or {}).get("coding") or []:
        if c.get("code"):
            return str(c["code"])
    return None


# -- where the reports come from ------------------------------------------------------------------------------
def stored_reports(store: ResourceStore) -> list[dict[str, Any]]:
    """The newest stored individual MeasureReport per patient, measure and period."""
    best: dict[tuple[str, str, str, str], tuple[tuple[str, str], dict[str, Any]]] = {}
    for s in store.iter_current("MeasureReport"):
        mr = orjson.loads(s.body)
        if mr.get("type") != "individual" or mr.get("status") == "error":
            continue
        subject = (mr.get("subject") or {}).get("reference") or ""
        period = mr.get("period") or {}
        key = (subject, str(mr.get("measure")), str(period.get("start")), str(period.get("end")))
        rank = (str(mr.get("date") or ""), str(s.last_updated or ""))
        if key not in best or rank > best[key][0]:
            best[key] = (rank, mr)
    return [mr for _rank, mr in sorted(best.values(), key=lambda x: _report_key(x[1]))]


def evaluated_reports(svc: Any, measures: list[dict[str, Any]], period_start: str, period_end: str,
                      progress: Callable[[int, int], None] | None = None) -> Iterator[dict[str, Any]]:
    """Individual reports of every patient for each measure over the period, evaluated now (not stored)."""
    period, _ = svc.period(period_start, period_end)
    ids = svc.subjects(None)
    for m in measures:
        prepared = svc.prepare(m)
        for r in svc.iter_results(m, period, ids, progress):
            yield individual_report(prepared.measure, r, period, [], svc.default_reporter)


def _report_key(mr: dict[str, Any]) -> tuple[str, str, str]:
    return ((mr.get("subject") or {}).get("reference") or "", str(mr.get("measure")),
            str((mr.get("period") or {}).get("start")))


# -- rows -------------------------------------------------------------------------------------------------------
class Scorecard:
    """Builds rows from individual reports; ``now`` (UTC, ``YYYY-MM-DDTHH:MM:SS``) decides whether a period
    is still open (a gap in an open period is ``prospective-gap``, as in ``$care-gaps``)."""

    def __init__(self, store: ResourceStore, find_measure: Callable[[str], dict[str, Any] | None], now: str) -> None:
        self.store = store
        self.find_measure = find_measure
        self.now = now
        self._rules: dict[str, list[GroupRule] | None] = {}
        self._identifiers: dict[str, str] = {}

    def rows(self, reports: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for mr in reports:
            yield from self.report_rows(mr)

    def report_rows(self, mr: dict[str, Any]) -> list[dict[str, Any]]:
        subject = (mr.get("subject") or {}).get("reference") or ""
        pid = subject.removeprefix("Patient/") if subject.startswith("Patient/") else subject
        url, _, version = str(mr.get("measure") or "").partition("|")
        period = mr.get("period") or {}
        rules = self._rules_for(str(mr.get("measure") or ""), mr)
        period_open = parse_range(str(period.get("end")))[1] >= self.now if period.get("end") else False
        out = []
        for gi, group in enumerate(mr.get("group") or []):
            counts: dict[str, int] = {}
            for p in group.get("population") or []:
                code = _code(p.get("code"))
                if code:
                    counts[code] = counts.get(code, 0) + int(p.get("count") or 0)
            rule = rules[gi] if rules and gi < len(rules) else self._rule_from_report(mr, group)
            deqm = group_gap_status(group, rule.scoring, rule.improvement, period_open)
            score = (group.get("measureScore") or {}).get("value")
            row: dict[str, Any] = {
                "patient_id": pid, "patient_identifiers": self._patient_identifiers(pid),
                "measure_url": url, "measure_version": version or None, "group_id": group.get("id"),
                "period_start": period.get("start"), "period_end": period.get("end"),
            }
            for p in POPULATIONS:
                row[p.replace("-", "_")] = counts.get(p)
            row.update({"measure_score": float(score) if score is not None else None,
                        "gap_status": PLAIN_GAP[deqm], "deqm_gap_status": deqm,
                        "report_id": mr.get("id"), "report_date": mr.get("date")})
            out.append(row)
        return out

    def _rules_for(self, canonical: str, mr: dict[str, Any]) -> list[GroupRule] | None:
        if canonical not in self._rules:
            rules = None
            measure = self.find_measure(canonical) if canonical else None
            if measure is not None:
                try:
                    rules = [GroupRule(g.scoring, g.improvement) for g in MeasureDef.from_resource(measure).groups]
                except ValueError:
                    rules = None
            self._rules[canonical] = rules
        return self._rules[canonical]

    @staticmethod
    def _rule_from_report(mr: dict[str, Any], group: dict[str, Any]) -> GroupRule:
        """Without the Measure: the scoring and improvement notation the report itself states (DEQM)."""
        scoring = None
        for node in (group, mr):
            for e in node.get("extension") or []:
                if str(e.get("url", "")).endswith(SCORING_EXT):
                    scoring = scoring or _code(e.get("valueCodeableConcept"))
        return GroupRule(scoring or "proportion", _code(mr.get("improvementNotation")))

    def _patient_identifiers(self, pid: str) -> str | None:
        if pid not in self._identifiers:
            s = self.store.read("Patient", pid) if pid else None
            ids = []
            if s is not None and not s.deleted and s.content:
                for i in orjson.loads(s.content).get("identifier") or []:
                    if i.get("value"):
                        ids.append(f"{i['system']}|{i['value']}" if i.get("system") else str(i["value"]))
            self._identifiers[pid] = "; ".join(ids)
        return self._identifiers[pid] or None


# -- files ------------------------------------------------------------------------------------------------------
def write_csv(rows: Iterable[dict[str, Any]], path: Path) -> int:
    n = 0
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if r.get(k) is None else r[k] for k in COLUMNS})
            n += 1
    return n


def write_parquet(rows: Iterable[dict[str, Any]], path: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(c, pa.int64() if c in INT_COLUMNS else pa.float64() if c == "measure_score"
                         else pa.string()) for c in COLUMNS])
    data = list(rows)
    table = pa.Table.from_pylist(data, schema=schema)
    pq.write_table(table, path)
    return len(data)


WRITERS: dict[str, Callable[[Iterable[dict[str, Any]], Path], int]] = {
    "scorecard-csv": write_csv, "scorecard-parquet": write_parquet}


def export_scorecard(store: ResourceStore, base_url: str, fmt: str, out: Path, *, measures: list[str] | None = None,
                     period_start: str | None = None, period_end: str | None = None, now: str | None = None,
                     progress: Callable[[int, int], None] | None = None) -> int:
    """Write the scorecard; the number of rows written. ``measures`` (ids, ``Measure/[id]`` or canonical
    URLs): evaluate them now over the period instead of reading stored reports."""
    from .care_gaps.service import utc_now
    from .evaluation import MeasureService

    if fmt not in WRITERS:
        raise ScorecardError(f"unknown scorecard format {fmt!r} ({', '.join(WRITERS)})")
    svc = MeasureService(store, base_url)

    def find(canonical: str) -> dict[str, Any] | None:
        try:
            return svc.find_measure(None, canonical)
        except Exception:  # noqa: BLE001  (a report of a measure this store does not hold)
            return None

    if measures:
        if not (period_start and period_end):
            raise ScorecardError("evaluating measures for a scorecard needs --period-start and --period-end")
        resolved = [svc.find_measure(None, m) if "/" in m and not m.startswith("Measure/") or "|" in m
                    else svc.find_measure(m.removeprefix("Measure/"), None) for m in measures]
        reports: Iterable[dict[str, Any]] = evaluated_reports(svc, resolved, period_start, period_end, progress)
    else:
        if period_start or period_end:
            raise ScorecardError("--period-start/--period-end need --measure (stored reports keep their periods)")
        reports = stored_reports(store)
        if not reports:
            raise ScorecardError("the store holds no individual MeasureReports: give --measure with "
                                 "--period-start/--period-end to evaluate now")
    card = Scorecard(store, find, now or utc_now().strftime("%Y-%m-%dT%H:%M:%S.%f"))
    return WRITERS[fmt](card.rows(reports), out)
