"""The demo's synthetic claims (gateway/demo/claims.py, shipped as gateway/demo/claims.csv): the generator is
deterministic and the shipped file is its output; `--demo` ingests it through the claims-csv mapping onto the
demo patients (PATIENT_ID), and screening mammogram claims close breast cancer screening gaps — which patients
and how many is worked out here from the CSV rows (latest version of each claim, voids dropped) and each
patient's report without the claims, not taken from the generator."""

from __future__ import annotations

import csv
import io
import subprocess
from importlib import resources as pkg_resources
from pathlib import Path
from typing import Any

import orjson

from gateway.demo.claims import claims_csv, demo_claims_csv
from gateway.deqm.evaluation import MeasureService
from gateway.ingest.loader import load_demo
from gateway.resources.rest import RestService
from gateway.store.sql.store import SqlStore
from tests.conftest import BASE, clean_env, gateway_exe

PERIOD = ("2025-01-01", "2025-12-31")
SCREENING = ("77067", "G0202")


def _latest_claims(text: str) -> tuple[list[list[dict[str, str]]], list[list[dict[str, str]]]]:
    """The lines of the newest version of each claim: (kept claims, voided claims)."""
    by_claim: dict[str, dict[int, list[dict[str, str]]]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        by_claim.setdefault(row["CLAIM_ID"], {}).setdefault(int(row["VERSION"]), []).append(row)
    kept, voided = [], []
    for versions in by_claim.values():
        lines = versions[max(versions)]
        (voided if lines[0]["FREQUENCY"] == "8" else kept).append(lines)
    return kept, voided


def _screened(claims: list[list[dict[str, str]]]) -> set[str]:
    return {ln["PATIENT_ID"] for lines in claims for ln in lines
            if ln["PROCEDURE_CODE"] in SCREENING and ln["FROM_DATE"] >= "2023-10-01"}


def _patient_counts(svc: MeasureService, measure: dict[str, Any], pid: str) -> tuple[int, int]:
    r = svc.evaluate(measure, *PERIOD, "subject", f"Patient/{pid}")
    c = {p["code"]["coding"][0]["code"]: p["count"] for p in r["group"][0]["population"]}
    return c["initial-population"], c["numerator"]


def _population(svc: MeasureService, measure: dict[str, Any]) -> dict[str, int]:
    r = svc.evaluate(measure, *PERIOD, "population", None)
    return {p["code"]["coding"][0]["code"]: p["count"] for p in r["group"][0]["population"]}


def test_shipped_file_is_the_generators_output() -> None:
    shipped = pkg_resources.files("gateway.demo").joinpath("claims.csv").read_text()
    assert shipped == demo_claims_csv() == claims_csv(200, 1, 2025)
    assert claims_csv(200, 2, 2025) != shipped
    kept, voided = _latest_claims(shipped)
    rows = list(csv.DictReader(io.StringIO(shipped)))
    assert all(r["PATIENT_ID"].startswith("synth-1-") for r in rows)
    codes = {ln["PROCEDURE_CODE"] for lines in kept for ln in lines} | {
        ln[f"DX{i}"] for lines in kept for ln in lines for i in range(1, 5)}
    assert {"99213", "99214", "83036", "I10", "Z1231"} <= codes and codes & {"E119", "E1165"}
    assert codes & set(SCREENING) and any(ln["NDC"] for lines in kept for ln in lines)
    assert {r["FREQUENCY"] for r in rows} == {"1", "7", "8"}  # originals, replacements and voids
    assert _screened(voided)  # some mammogram claims are voided


def test_demo_claims_close_screening_gaps() -> None:
    without, with_claims = SqlStore("sqlite://"), SqlStore("sqlite://")
    text = demo_claims_csv()
    kept, voided = _latest_claims(text)
    screened, void_only = _screened(kept), _screened(voided) - _screened(kept)
    try:
        load_demo(RestService(without, BASE), claims=False)
        summary = load_demo(RestService(with_claims, BASE))
        assert summary.errors == []
        before_svc, after_svc = MeasureService(without, BASE), MeasureService(with_claims, BASE)
        measure = before_svc.find_measure("demo-breast-cancer-screening", None)
        before = {pid: _patient_counts(before_svc, measure, pid) for pid in screened | void_only}
        after = {pid: _patient_counts(after_svc, measure, pid) for pid in screened | void_only}
        # the claims' patients were in the measure with an open gap, and a kept mammogram claim closes it
        closed = {pid for pid in screened if before[pid] == (1, 0)}
        assert len(closed) >= 3
        assert all(after[pid] == (1, 1) for pid in closed)
        assert all(after[pid] == before[pid] for pid in void_only)  # a voided claim closes nothing
        totals_before = _population(before_svc, measure)
        totals_after = _population(after_svc, measure)
        assert totals_after["initial-population"] == totals_before["initial-population"]
        assert totals_after["numerator"] - totals_before["numerator"] == len(closed)
        # the claims stay on the demo patients: no Patient comes from them
        assert sum(1 for _ in with_claims.iter_current("Patient")) == sum(1 for _ in without.iter_current("Patient"))
    finally:
        without.close()
        with_claims.close()


def test_cli_writes_the_claims_file(tmp_path: Path) -> None:
    out = tmp_path / "claims.csv"
    run = subprocess.run([gateway_exe(), "synth", "--claims", str(out)], capture_output=True, text=True,
                         env=clean_env(), timeout=120)
    assert run.returncode == 0, run.stderr
    assert out.read_text() == demo_claims_csv()
    db = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    small = subprocess.run([gateway_exe(), "synth", "--claims", str(out), "--patients", "30", "--seed", "9"],
                           capture_output=True, text=True, env=clean_env(), timeout=120)
    assert small.returncode == 0 and out.read_text() == claims_csv(30, 9, 2025)
    # the claims of seed 9's patients load onto those patients once they are in the database
    assert subprocess.run([gateway_exe(), "synth", "--patients", "30", "--seed", "9", "--database", db, "--quiet"],
                          capture_output=True, text=True, env=clean_env(), timeout=300).returncode == 0
    ingest = subprocess.run([gateway_exe(), "ingest", "--format", "claims-csv", "--database", db, "--quiet",
                             str(out)], capture_output=True, text=True, env=clean_env(), timeout=300)
    assert ingest.returncode == 0, ingest.stderr
    store = SqlStore(db)
    try:
        patients = {s.id for s in store.iter_current("Patient")}
        assert len(patients) == 30 and all(p.startswith("synth-9-") for p in patients)
        # the matched Patients are left as the clinical record wrote them (tag, MRN), not rewritten from claims
        for s in store.iter_current("Patient"):
            p = orjson.loads(s.content)
            assert p["meta"]["tag"][0]["code"] == "synthetic" and p["identifier"][0]["value"].startswith("MRN009")
        subjects = {orjson.loads(r.content)["patient"]["reference"] for r in store.iter_current("ExplanationOfBenefit")}
        assert subjects and subjects <= {f"Patient/{p}" for p in patients}
    finally:
        store.close()
