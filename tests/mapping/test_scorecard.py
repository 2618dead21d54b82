"""Scorecards (`fhir-gateway extract --to scorecard-csv|scorecard-parquet`): stored individual MeasureReports of
the demo measures over synthetic patients become one row per patient × measure × period; the rows are read back
(csv module, pyarrow) and compared with the reports' populations, and the gap status of every row is the one
$care-gaps gives for that patient over HTTP."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from gateway.demo.synth import demo_measures, ndjson_lines
from gateway.demo.synth import iter_resources as synth_resources
from gateway.deqm.evaluation import MeasureService
from gateway.deqm.scorecard import COLUMNS, export_scorecard
from gateway.ingest.loader import Loader
from gateway.resources.rest import RestService
from gateway.store.sql.store import SqlStore
from tests.conftest import BASE, clean_env, gateway_exe, make_client

PERIOD = ("2025-01-01", "2025-12-31")
SITE = "http://fhir-vbc-gateway.example.org/Measure/"
POPS = ("initial-population", "denominator", "denominator-exclusion", "denominator-exception", "numerator",
        "numerator-exclusion")


def _load(store: Any, tmp_path: Path, patients: int = 40) -> RestService:
    rest = RestService(store, BASE)
    for m in demo_measures():
        rest.update("Measure", m["id"], m)
    path = tmp_path / "synthetic.ndjson"
    path.write_bytes(b"".join(ndjson_lines(synth_resources(patients, 7, 2025))))
    assert not Loader(rest, "strict").load([path]).errors
    return rest


def _store_reports(store: Any, rest: RestService) -> list[dict[str, Any]]:
    """Individual reports of every patient for the three demo measures, stored as $submit-data would."""
    svc = MeasureService(store, BASE)
    out = []
    for m in demo_measures():
        for pid in svc.subjects(None):
            mr = svc.evaluate(m, *PERIOD, "subject", f"Patient/{pid}")
            rest.update("MeasureReport", mr["id"], mr)
            out.append(mr)
    return out


def _pops(mr: dict[str, Any]) -> dict[str, int]:
    return {p["code"]["coding"][0]["code"]: p["count"] for p in mr["group"][0]["population"]}


def _expected_gap(mr: dict[str, Any]) -> str:
    """The DEQM rule written out for the demo measures (proportion; the diabetes measure is inverse)."""
    c = _pops(mr)
    den = c["denominator"] - c.get("denominator-exclusion", 0) - c.get("denominator-exception", 0)
    num = c["numerator"] - c.get("numerator-exclusion", 0)
    if c["initial-population"] == 0 or den <= 0:
        return "not-applicable"
    gap = num > 0 if "diabetes" in mr["measure"] else num < den
    return "open" if gap else "closed"


def test_stored_reports_to_csv_and_parquet(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rest = _load(store, tmp_path)
    reports = _store_reports(store, rest)
    # an older report for the first patient and measure, with other counts: the newest one is exported
    stale = {**reports[0], "id": "stale-report", "date": "2025-01-02T00:00:00Z",
             "group": [{**reports[0]["group"][0], "population": [
                 {**p, "count": 1} for p in reports[0]["group"][0]["population"]]}]}
    rest.update("MeasureReport", stale["id"], stale)

    n_csv = export_scorecard(store, BASE, "scorecard-csv", tmp_path / "card.csv")
    n_pq = export_scorecard(store, BASE, "scorecard-parquet", tmp_path / "card.parquet")
    assert n_csv == n_pq == len(reports) == 3 * 40
    with (tmp_path / "card.csv").open(newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == COLUMNS
        rows = list(reader)
    by_key = {(r["patient_id"], r["measure_url"]): r for r in rows}
    assert len(by_key) == len(rows)
    gaps: dict[str, int] = {}
    for mr in reports:
        pid = mr["subject"]["reference"].removeprefix("Patient/")
        url, _, version = mr["measure"].partition("|")
        row = by_key[(pid, url)]
        assert row["report_id"] == mr["id"] and row["measure_version"] == version == "1.0.0"
        assert (row["period_start"], row["period_end"]) == (mr["period"]["start"], mr["period"]["end"])
        for code, count in _pops(mr).items():
            assert row[code.replace("-", "_")] == str(count), (pid, url, code)
        assert row["measure_population"] == ""  # not a population of these measures
        assert row["gap_status"] == _expected_gap(mr), (pid, url)
        assert row["patient_identifiers"].startswith("http://fhir-vbc-gateway.example.org/synthetic-mrn|MRN007")
        gaps[row["gap_status"]] = gaps.get(row["gap_status"], 0) + 1
    assert gaps.get("open", 0) > 0 and gaps.get("closed", 0) > 0 and gaps.get("not-applicable", 0) > 0
    assert "stale-report" not in {r["report_id"] for r in rows}

    # a report of a measure this store does not hold: scoring and improvement notation from the report itself
    inverse = next(mr for mr in reports if "diabetes" in mr["measure"] and _pops(mr)["initial-population"])
    want = _expected_gap(inverse)  # inverse: read as a positive measure, open and closed would swap
    foreign = {**inverse, "id": "foreign-report", "measure": "http://example.org/Measure/other|2"}
    rest.update("MeasureReport", foreign["id"], foreign)
    export_scorecard(store, BASE, "scorecard-csv", tmp_path / "more.csv")
    with (tmp_path / "more.csv").open(newline="") as fh:
        other = [r for r in csv.DictReader(fh) if r["measure_url"] == "http://example.org/Measure/other"]
    assert [(r["measure_version"], r["gap_status"], r["deqm_gap_status"]) for r in other] == [
        ("2", want, f"{want}-gap")]

    table = pq.read_table(tmp_path / "card.parquet")
    assert table.column_names == list(COLUMNS)
    assert str(table.schema.field("numerator").type) == "int64"
    for prow in table.to_pylist():
        crow = by_key[(prow["patient_id"], prow["measure_url"])]
        assert {k: "" if v is None else str(v) for k, v in prow.items()} == crow


def test_gap_status_matches_care_gaps(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rest = _load(store, tmp_path, patients=25)
    _store_reports(store, rest)
    export_scorecard(store, BASE, "scorecard-csv", tmp_path / "card.csv")
    with (tmp_path / "card.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    picked = {}
    for r in rows:
        picked.setdefault(r["deqm_gap_status"], r)
    assert {"open-gap", "closed-gap", "not-applicable"} <= set(picked)
    with make_client(store) as client:
        for status, row in picked.items():
            mid = row["measure_url"].removeprefix(SITE)
            r = client.get(f"/fhir/Measure/{mid}/$care-gaps", params={
                "periodStart": PERIOD[0], "periodEnd": PERIOD[1], "subject": f"Patient/{row['patient_id']}",
                "status": ["open-gap", "closed-gap", "prospective-gap", "not-applicable"]})
            assert r.status_code == 200, r.text
            issues = [e["resource"] for p in r.json()["parameter"] for e in p["resource"]["entry"]
                      if e["resource"]["resourceType"] == "DetectedIssue"]
            found = [c["code"] for i in issues for ext in i["modifierExtension"]
                     for c in ext["valueCodeableConcept"]["coding"]]
            assert found == [status], (row["patient_id"], found)


def test_cli_scorecard(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    store = SqlStore(db)
    try:
        _load(store, tmp_path, patients=12)
    finally:
        store.close()
    run = [gateway_exe(), "extract", "--database", db, "--quiet"]
    # no stored reports: a clear error that says how to evaluate now
    none = subprocess.run([*run, "--to", "scorecard-csv", "--out", str(tmp_path / "x.csv")], capture_output=True,
                          text=True, env=clean_env(), timeout=300)
    assert none.returncode == 1 and "--measure" in none.stderr
    out = tmp_path / "card.parquet"
    ok = subprocess.run([*run, "--to", "scorecard-parquet", "--out", str(out), "--measure",
                         "demo-breast-cancer-screening", "--measure", SITE + "demo-diabetes-a1c-poor-control",
                         "--period-start", PERIOD[0], "--period-end", PERIOD[1]],
                        capture_output=True, text=True, env=clean_env(), timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert "Wrote 24 scorecard rows" in ok.stdout
    rows = pq.read_table(out).to_pylist()
    assert {r["measure_url"] for r in rows} == {SITE + "demo-breast-cancer-screening",
                                                SITE + "demo-diabetes-a1c-poor-control"}
    # the evaluated rows agree with $evaluate-measure for each patient
    store = SqlStore(db)
    try:
        svc = MeasureService(store, BASE)
        m = svc.find_measure("demo-breast-cancer-screening", None)
        for r in rows:
            if r["measure_url"].endswith("screening"):
                pops = _pops(svc.evaluate(m, *PERIOD, "subject", f"Patient/{r['patient_id']}"))
                assert (r["initial_population"], r["numerator"]) == (pops["initial-population"], pops["numerator"])
    finally:
        store.close()
    bad = subprocess.run([*run, "--to", "scorecard-xlsx"], capture_output=True, text=True, env=clean_env(),
                         timeout=120)
    assert bad.returncode == 1 and "scorecard-csv" in bad.stderr
