"""Corrected claims retire what their earlier versions produced (gateway/ingest/claim_versions.py): an
adjustment that drops a diagnosis retires that Condition (entered-in-error) and the demo diabetes measure stops
counting the patient; a void retires every fact of the claim; loading the same files again changes nothing.

Each version arrives in its own file and its own ingest run, as monthly claim feeds deliver them. The CCLF rows
are the Tuva warehouse tables' first header / diagnosis / beneficiary rows with ids, dates and codes changed."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from gateway.demo.synth import demo_measures
from gateway.deqm.evaluation import MeasureService
from gateway.ingest.claim_versions import derived_of
from gateway.resources.rest import RestService
from tests.conftest import BASE, FIXTURES
from tests.mapping.helpers import INTERNAL, counts, ingest, read

TUVA = INTERNAL / "cclf" / "csv_fixtures" / "tuva"
DIABETES = "http://fhir-vbc-gateway.example.org/Measure/demo-diabetes-a1c-poor-control"


def _load_measures(store: Any) -> None:
    rest = RestService(store, BASE)
    for m in demo_measures():
        rest.update("Measure", m["id"], m)


def _initial_population(store: Any, patient: str) -> int:
    svc = MeasureService(store, BASE)
    report = svc.evaluate(svc.find_measure(None, DIABETES),
                          "2025-01-01", "2025-12-31", "subject", f"Patient/{patient}")
    return {p["code"]["coding"][0]["code"]: p["count"] for p in report["group"][0]["population"]}[
        "initial-population"]


def _dx_status(store: Any, cid: str) -> str:
    return read(store, "Condition", cid)["verificationStatus"]["coding"][0]["code"]


# -- the generic claims CSV ---------------------------------------------------------------------------------------
def _claims_csv(folder: Path, name: str, rows: list[dict[str, str]]) -> Path:
    header = (FIXTURES / "mapping" / "claims.csv").read_text().splitlines()[0].split(",")
    base = {h: "" for h in header}
    base.update({"CLAIM_ID": "C10", "CLAIM_TYPE": "professional", "MEMBER_ID": "M5", "MEMBER_FAMILY": "Roe",
                 "MEMBER_GIVEN": "Ben", "MEMBER_BIRTH_DATE": "1961-07-09", "MEMBER_SEX": "M", "PAYER_ID": "P1",
                 "PAYER_NAME": "Plan One", "BILLING_NPI": "1234567893", "FROM_DATE": "2025-05-06",
                 "THRU_DATE": "2025-05-06", "PLACE_OF_SERVICE": "11", "LINE_NUMBER": "1",
                 "PROCEDURE_CODE": "99213", "UNITS": "1", "CHARGE": "120.00", "PAID": "80.00"})
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, header)
        w.writeheader()
        for r in rows:
            w.writerow({**base, **r})
    return path


def test_claims_csv_adjustment_and_void_retire_facts(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _load_measures(store)
    v1 = _claims_csv(tmp_path / "v1", "claims.csv", [
        {"VERSION": "1", "FREQUENCY": "1", "DX1": "I10", "DX2": "E119", "ADJUDICATED_DATE": "2025-05-20"}])
    v2 = _claims_csv(tmp_path / "v2", "claims.csv", [
        {"VERSION": "2", "FREQUENCY": "7", "DX1": "I10", "ADJUDICATED_DATE": "2025-06-20"}])
    v3 = _claims_csv(tmp_path / "v3", "claims.csv", [
        {"VERSION": "3", "FREQUENCY": "8", "ADJUDICATED_DATE": "2025-07-20"}])
    patient = "member-P1-M5"

    assert ingest(store, "claims-csv", v1).rejects == []
    assert _dx_status(store, "claim-P1-C10-dx2") == "confirmed"
    assert derived_of(read(store, "ExplanationOfBenefit", "claim-P1-C10")) == [
        ("Condition", "claim-P1-C10-dx1"), ("Condition", "claim-P1-C10-dx2"), ("Encounter", "claim-P1-C10-enc"),
        ("Procedure", "claim-P1-C10-ln1")]
    assert _initial_population(store, patient) == 1  # E11.9 + a finished visit in 2025, age 63

    # the adjustment drops E11.9: that Condition is retired, the measure no longer sees diabetes
    assert ingest(store, "claims-csv", v2).rejects == []
    retired = read(store, "Condition", "claim-P1-C10-dx2")
    assert retired["verificationStatus"]["coding"][0]["code"] == "entered-in-error"
    assert "clinicalStatus" not in retired and retired["code"]["coding"][0]["code"] == "E11.9"
    assert _dx_status(store, "claim-P1-C10-dx1") == "confirmed"
    eob = read(store, "ExplanationOfBenefit", "claim-P1-C10")
    assert eob["status"] == "active" and ("Condition", "claim-P1-C10-dx2") not in derived_of(eob)
    assert _initial_population(store, patient) == 0

    # loading both versions again (one run, and the adjustment alone) changes nothing
    before = counts(store)
    for paths in ([v1, v2], [v2]):
        again = ingest(store, "claims-csv", *paths)
        assert again.rejects == [] and again.created == 0
        assert counts(store) == before
        assert _dx_status(store, "claim-P1-C10-dx2") == "entered-in-error"
        assert _dx_status(store, "claim-P1-C10-dx1") == "confirmed"

    # the void (no diagnoses on it) retires every fact of the claim
    assert ingest(store, "claims-csv", v3).rejects == []
    assert read(store, "ExplanationOfBenefit", "claim-P1-C10")["status"] == "entered-in-error"
    assert _dx_status(store, "claim-P1-C10-dx1") == "entered-in-error"
    assert read(store, "Encounter", "claim-P1-C10-enc")["status"] == "entered-in-error"
    assert read(store, "Procedure", "claim-P1-C10-ln1")["status"] == "entered-in-error"
    assert counts(store) == before  # retired, not deleted: the history stays readable
    again = ingest(store, "claims-csv", v1, v2, v3)
    assert again.rejects == [] and again.created == 0 and counts(store) == before
    assert _dx_status(store, "claim-P1-C10-dx1") == "entered-in-error"


# -- CCLF warehouse tables ----------------------------------------------------------------------------------------
def _rows(name: str) -> tuple[list[str], dict[str, str]]:
    with (TUVA / name).open(newline="") as fh:
        reader = csv.DictReader(fh)
        first = next(reader)
        return list(reader.fieldnames or []), first


def _write(folder: Path, name: str, rows: list[dict[str, str]]) -> None:
    header, first = _rows(name)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / name).open("w", newline="") as fh:
        w = csv.DictWriter(fh, header)
        w.writeheader()
        for r in rows:
            w.writerow({**first, **r})


MBI = "9TT0FK0XZ77"


def _cclf_version(folder: Path, uniq: str, cntl: str, org: str, adj: str, eff: str, dx: list[str]) -> Path:
    _write(folder, "beneficiary_demographics.csv", [{"BENE_MBI_ID": MBI, "BENE_DOB": "1962-03-14", "BENE_AGE": "063"}])
    _write(folder, "parta_claims_header.csv", [{
        "CUR_CLM_UNIQ_ID": uniq, "BENE_MBI_ID": MBI, "CLM_TYPE_CD": "40", "CLM_FROM_DT": "2025-04-14",
        "CLM_THRU_DT": "2025-04-14", "PRNCPL_DGNS_CD": dx[0] if dx else "~", "ADMTG_DGNS_CD": "~",
        "CLM_ADJSMT_TYPE_CD": adj, "CLM_EFCTV_DT": eff, "CLM_CNTL_NUM": cntl, "CLM_ORG_CNTL_NUM": org}])
    _write(folder, "parta_diagnosis_code.csv", [
        {"CUR_CLM_UNIQ_ID": uniq, "BENE_MBI_ID": MBI, "CLM_TYPE_CD": "40", "CLM_VAL_SQNC_NUM": f"{n:02d}",
         "CLM_DGNS_CD": code, "CLM_FROM_DT": "2025-04-14", "CLM_THRU_DT": "2025-04-14"}
        for n, code in enumerate(dx, 1)])
    return folder


def test_cclf_adjustment_and_cancellation_retire_facts(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _load_measures(store)
    chain = "00000000009500SYN"
    v1 = _cclf_version(tmp_path / "m1", "0000000009501", chain, "", "0", "2025-04-20", ["E119", "I10"])
    v2 = _cclf_version(tmp_path / "m2", "0000000009502", "00000000009502SYN", chain, "2", "2025-05-20", ["I10"])
    v3 = _cclf_version(tmp_path / "m3", "0000000009503", "00000000009503SYN", chain, "1", "2025-06-20", [])
    patient, eob = f"mbi-{MBI}", f"cclf-a-{chain}"

    assert ingest(store, "cclf", v1).rejects == []
    assert [read(store, "Condition", f"{eob}-dx{n}")["code"]["coding"][0]["code"] for n in (1, 2)] == ["E11.9", "I10"]
    assert _initial_population(store, patient) == 1

    # the adjustment keeps I10 only (it becomes dx1); the second diagnosis of version 1 is retired
    assert ingest(store, "cclf", v2).rejects == []
    assert read(store, "ExplanationOfBenefit", eob)["status"] == "active"
    dx1 = read(store, "Condition", f"{eob}-dx1")
    assert dx1["code"]["coding"][0]["code"] == "I10" and _dx_status(store, f"{eob}-dx1") == "confirmed"
    assert _dx_status(store, f"{eob}-dx2") == "entered-in-error"
    assert _initial_population(store, patient) == 0  # E11.9 is gone

    before = counts(store)
    again = ingest(store, "cclf", v1, v2)
    assert again.rejects == [] and again.created == 0 and counts(store) == before
    assert _dx_status(store, f"{eob}-dx2") == "entered-in-error"

    # the cancellation retires the claim and everything it produced
    assert ingest(store, "cclf", v3).rejects == []
    assert read(store, "ExplanationOfBenefit", eob)["status"] == "entered-in-error"
    assert read(store, "Encounter", f"{eob}-enc")["status"] == "entered-in-error"
    assert _dx_status(store, f"{eob}-dx1") == "entered-in-error"
    again = ingest(store, "cclf", v1, v2, v3)
    assert again.rejects == [] and again.created == 0 and counts(store) == before
