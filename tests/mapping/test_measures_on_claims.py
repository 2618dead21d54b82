"""Measures work on mapped claims: a CMS125 (breast cancer screening) test patient without a mammogram is in the
denominator and not the numerator; a CCLF Part B claim line for a screening mammogram (CPT 77067) closes the
gap. The measure, its value sets and the patient come from ../shared/testdata/ecqm/CMS125; the claim row is the
first row of the Tuva partb_physicians.csv with the member, claim ids, code and dates changed."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.deqm.evaluation import MeasureService
from gateway.ingest.loader import Loader
from gateway.resources.rest import RestService
from tests.conftest import BASE, SHARED
from tests.mapping.helpers import INTERNAL, ingest

CMS125 = SHARED / "testdata" / "ecqm" / "CMS125"
CASE = CMS125 / "tests" / "591e960d-b937-41f3-9817-56cf201a06db.json"  # expected: denominator 1, numerator 0
MBI = "9TT0FK0XZ99"


def _counts(store) -> dict[str, int]:  # type: ignore[no-untyped-def]
    svc = MeasureService(store, BASE)
    report = svc.evaluate(svc.find_measure("BreastCancerScreeningFHIR", None), "2025-01-01", "2025-12-31",
                          "subject", f"Patient/mbi-{MBI}")
    return {p["code"]["coding"][0]["code"]: p["count"] for p in report["group"][0]["population"]}


def test_mammography_claim_closes_the_gap(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rest = RestService(store, BASE)
    assert not Loader(rest, "lenient").load([CMS125 / "measure-bundle.json"]).errors
    case = CASE.read_text().replace("591e960d-b937-41f3-9817-56cf201a06db", f"mbi-{MBI}")
    entries = [e["resource"] for e in json.loads(case)["entry"] if e["resource"]["resourceType"] != "MeasureReport"]
    (tmp_path / "case.ndjson").write_text("\n".join(json.dumps(r) for r in entries) + "\n")
    assert not Loader(rest, "lenient").load([tmp_path / "case.ndjson"]).errors
    before = _counts(store)
    assert before["denominator"] == 1 and before["numerator"] == 0

    src = (INTERNAL / "cclf" / "csv_fixtures" / "tuva" / "partb_physicians.csv").read_text().splitlines()
    header = src[0].split(",")
    row = dict(zip(header, src[1].split(","), strict=True))
    row.update({"CUR_CLM_UNIQ_ID": "0000000009001", "BENE_MBI_ID": MBI, "CLM_LINE_HCPCS_CD": "77067",
                "CLM_FROM_DT": "2025-03-10", "CLM_THRU_DT": "2025-03-10", "CLM_LINE_FROM_DT": "2025-03-10",
                "CLM_LINE_THRU_DT": "2025-03-10", "CLM_CNTL_NUM": "000000000009001"})
    claims = tmp_path / "claims"
    claims.mkdir()
    (claims / "partb_physicians.csv").write_text(src[0] + "\n" + ",".join(row[h] for h in header) + "\n")
    summary = ingest(store, "cclf", claims)
    assert summary.rejects == []
    after = _counts(store)
    assert after["denominator"] == 1 and after["numerator"] == 1
