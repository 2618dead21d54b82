"""Round trip: internal records -> FHIR (ingest) -> internal rows (extract) gives back the source values of every
mapped field checked here, per format. The expected side is read from the source files in the test itself, not
from the gateway's output."""

from __future__ import annotations

import csv
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from gateway.ingest.extract import extract_internal
from gateway.store.sql.internal import clear
from tests.conftest import clean_env, gateway_exe
from tests.mapping.helpers import INTERNAL, ingest

TUVA = INTERNAL / "cclf" / "csv_fixtures" / "tuva"
SYN = INTERNAL / "synthea_csv"


def _rows(store, sql: str) -> list[tuple[Any, ...]]:  # type: ignore[no-untyped-def]
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql)).all()]


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture()
def fresh(store):  # type: ignore[no-untyped-def]
    clear(store.engine)
    yield store
    clear(store.engine)


def test_cclf_round_trip(fresh) -> None:  # type: ignore[no-untyped-def]
    assert ingest(fresh, "cclf", TUVA).rejects == []
    extract_internal(fresh)
    # members: newest CCLF8 row per current MBI (CCLF9 chains followed)
    xref = {r["PRVS_NUM"]: r["CRNT_NUM"] for r in _csv(TUVA / "beneficiary_xref.csv")}

    def current(mbi: str) -> str:
        seen = set()
        while mbi in xref and mbi not in seen:
            seen.add(mbi)
            mbi = xref[mbi]
        return mbi

    newest: dict[str, dict[str, str]] = {}
    for r in _csv(TUVA / "beneficiary_demographics.csv"):
        k = current(r["BENE_MBI_ID"])
        if k not in newest or r["FILE_DATE"] >= newest[k]["FILE_DATE"]:
            newest[k] = r
    sex = {"1": "male", "2": "female", "0": "unknown"}
    want = {(k, r["BENE_DOB"], sex[r["BENE_SEX_CD"]], r["BENE_LAST_NAME"], r["BENE_1ST_NAME"], r["GEO_ZIP5_CD"])
            for k, r in newest.items()}
    got = set(_rows(fresh, "select member_id, birth_date, sex, family_name, given_name, postal_code "
                           "from internal_member"))
    assert got == want
    # Part D: NDC, fill date, days supply, quantity
    want_d = Counter((r["CLM_LINE_NDC_CD"], r["CLM_LINE_FROM_DT"], float(r["CLM_LINE_DAYS_SUPLY_QTY"]),
                      float(r["CLM_LINE_SRVC_UNIT_QTY"])) for r in _csv(TUVA / "partd_claims.csv"))
    got_d = Counter(_rows(fresh, "select code, event_date, days_supply, quantity from internal_medication "
                                 "where resource_type = 'MedicationDispense'"))
    assert got_d == want_d
    # Part B claim 7001 (never adjusted): its lines' HCPCS and paid amounts
    want_b = [(int(r["CLM_LINE_NUM"]), r["CLM_LINE_HCPCS_CD"], float(r["CLM_LINE_CVRD_PD_AMT"]))
              for r in _csv(TUVA / "partb_physicians.csv") if r["CLM_CNTL_NUM"] == "000000000007001"]
    got_b = _rows(fresh, "select line_no, code, amount from internal_claim_line "
                         "where claim_fhir_id = 'cclf-b-000000000007001' order by line_no")
    assert got_b == want_b
    # extracting again replaces rows
    before = _rows(fresh, "select count(*) from internal_claim_line")
    extract_internal(fresh)
    assert _rows(fresh, "select count(*) from internal_claim_line") == before


def test_synthea_round_trip(fresh) -> None:  # type: ignore[no-untyped-def]
    files = [SYN / n for n in ("patients.csv", "observations.csv", "immunizations.csv")]
    assert ingest(fresh, "synthea-csv", *files).rejects == []
    extract_internal(fresh)
    sex = {"M": "male", "F": "female"}
    want = {(f"syn-{r['Id']}", r["BIRTHDATE"], sex[r["GENDER"]], r["FIRST"], r["LAST"], r["ZIP"] or None)
            for r in _csv(SYN / "patients.csv")}
    assert set(_rows(fresh, "select fhir_id, birth_date, sex, given_name, family_name, postal_code "
                            "from internal_member")) == want
    obs = _csv(SYN / "observations.csv")
    want_num = Counter((f"syn-{r['PATIENT']}", r["CODE"], float(r["VALUE"]), r["UNITS"], r["DATE"])
                       for r in obs if r["TYPE"] == "numeric")
    got_num = Counter(_rows(fresh, "select member_fhir_id, code, value_num, unit, effective from "
                                   "internal_lab_result where value_num is not null"))
    assert got_num == want_num
    want_txt = Counter((r["CODE"], r["VALUE"]) for r in obs if r["TYPE"] != "numeric")
    assert Counter(_rows(fresh, "select code, value_text from internal_lab_result where value_num is null")) == want_txt
    want_imm = Counter((f"syn-{r['PATIENT']}", r["CODE"], r["DATE"]) for r in _csv(SYN / "immunizations.csv"))
    assert Counter(_rows(fresh, "select member_fhir_id, code, event_date from internal_medication")) == want_imm


def test_hl7v2_round_trip(fresh) -> None:  # type: ignore[no-untyped-def]
    path = INTERNAL / "hl7v2" / "oru" / "LAB-ORU-1.hl7"
    assert ingest(fresh, "hl7v2", path).rejects == []
    extract_internal(fresh)
    want = Counter()
    for seg in path.read_text(encoding="utf-8-sig").splitlines():
        f = seg.split("|")
        if f[0] == "OBX" and f[5]:
            want[(f[3].split("^")[0], float(f[5]), f[6])] += 1
    got = Counter(_rows(fresh, "select code, value_num, unit from internal_lab_result where value_num is not null"))
    assert got == want and sum(want.values()) == 8


def test_x12_round_trip(fresh) -> None:  # type: ignore[no-untyped-def]
    path = INTERNAL / "x12" / "837p" / "demo.example1.837"
    assert ingest(fresh, "x12-837", path).rejects == []
    extract_internal(fresh)
    want = []
    for seg in path.read_text().replace("\n", "").split("~"):
        f = seg.split("*")
        if f[0] == "LX":
            n = int(f[1])
        if f[0] == "SV1":
            want.append((n, f[1].split(":")[1], float(f[2]), float(f[4])))
    assert _rows(fresh, "select line_no, code, amount, quantity from internal_claim_line order by line_no") == want


def test_cli_extract_to_a_separate_database(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'g.sqlite3'}"
    target = f"sqlite:///{tmp_path / 'internal.sqlite3'}"
    env = clean_env()
    subprocess.run([gateway_exe(), "ingest", "--quiet", "--database", db, "--format", "cclf",
                    str(TUVA / "partd_claims.csv")], check=True, capture_output=True, env=env)
    run = subprocess.run([gateway_exe(), "extract", "--quiet", "--database", db, "--to", "internal",
                          "--target-database", target], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert "internal_medication 2" in run.stdout
    import sqlite3

    with sqlite3.connect(tmp_path / "internal.sqlite3") as conn:
        assert sorted(r[0] for r in conn.execute("select code from internal_medication")) == [
            "00003089421", "00093715698"]
