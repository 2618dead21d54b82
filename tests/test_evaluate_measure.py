"""$evaluate-measure through HTTP: the eCQM test cases loaded with POST /fhir transactions reproduce their
individual reports; population and subject-list reports agree with the sum of individual ones; bad input."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.auth.context import SYSTEM, acting_as
from gateway.ingest.loader import Loader
from gateway.measure.cases import _counts, case_paths, load_overrides
from tests.conftest import FIXTURES, SHARED, make_client

ECQM = SHARED / "testdata" / "ecqm"
OVERRIDES = load_overrides(FIXTURES / "ecqm-expectation-overrides.json")
MEASURES = ["CMS122", "CMS125", "CMS130", "CMS165", "CMS347", "CMS69", "CMS871", "CMS986"]
JSON = {"Content-Type": "application/fhir+json"}


@pytest.fixture()
def client(store: Any) -> Any:
    # the published test cases reference practitioners and organizations they do not include
    with make_client(store, enforce_referential_integrity=False) as c:
        yield c


@cache
def measure_id(measure: str) -> str:
    bundle = json.loads((ECQM / measure / "measure-bundle.json").read_text())
    return next(e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Measure")


def as_transaction(bundle: dict[str, Any]) -> dict[str, Any]:
    """The case as a transaction of PUTs. Cases reuse ids such as Encounter-1 for different patients, so every
    id but the Patient's gets the case's prefix (references rewritten) and cases can share one database.
    Five CMS347 cases hold data copied from other cases that still refers to the other case's patient; a
    FHIR server rightly files it under that patient, so those references are pointed at the case's own
    patient here (docs/measures.md lists the cases)."""
    prefix = bundle["id"][:8]
    resources = [json.loads(json.dumps(e["resource"])) for e in bundle["entry"]
                 if e["resource"]["resourceType"] != "MeasureReport"]
    patient_ref = next(f"Patient/{r['id']}" for r in resources if r["resourceType"] == "Patient")
    def new_id(old: str) -> str:
        candidate = f"{prefix}-{old}"
        return candidate if len(candidate) <= 64 else f"{prefix}-{hashlib.sha1(old.encode()).hexdigest()[:20]}"

    renamed = {f"{r['resourceType']}/{r['id']}": f"{r['resourceType']}/{new_id(r['id'])}"
               for r in resources if r["resourceType"] != "Patient"}

    def fix(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "reference" and isinstance(v, str) and v in renamed:
                    node[k] = renamed[v]
                elif k == "reference" and isinstance(v, str) and v.startswith("Patient/") and v != patient_ref:
                    node[k] = patient_ref
                else:
                    fix(v)
        elif isinstance(node, list):
            for v in node:
                fix(v)

    entries = []
    for r in resources:
        fix(r)
        key = f"{r['resourceType']}/{r['id']}"
        if key in renamed:
            r["id"] = renamed[key].split("/", 1)[1]
        entries.append({"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def load_measure(client: TestClient, measure: str) -> None:
    # measure content loads leniently, as `fhir-gateway load` does (CMS347's Measure has a 68-character id
    # and whitespace inside a code, which strict REST validation refuses)
    rest = client.app.state.rest
    with acting_as(SYSTEM):
        summary = Loader(rest, "lenient").load([ECQM / measure / "measure-bundle.json"])
    assert summary.errors == []


def counts(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in _counts(g).items() if not k.endswith("-observation")} for g in report["group"]]


def run_cases(client: TestClient, measure: str, paths: list[Path], load: bool = True) -> list[dict[str, Any]]:
    if load:
        load_measure(client, measure)
    reports = []
    for path in paths:
        case = json.loads(path.read_text())
        r = client.post("/fhir", json=as_transaction(case), headers=JSON)
        assert r.status_code == 200, r.text
        expected_mr = case["entry"][-1]["resource"]
        pid = next(e["resource"]["id"] for e in case["entry"] if e["resource"]["resourceType"] == "Patient")
        period = expected_mr["period"]
        got = client.get(f"/fhir/Measure/{measure_id(measure)}/$evaluate-measure",
                         params={"subject": f"Patient/{pid}", "periodStart": period["start"], "periodEnd": period["end"]})
        assert got.status_code == 200, got.text
        report = got.json()
        assert report["type"] == "individual" and report["subject"]["reference"] == f"Patient/{pid}"
        override = OVERRIDES.get((measure, path.stem))
        expected = override["expected"] if override else [_counts(g) for g in expected_mr["group"]]
        expected = [{k: v for k, v in g.items() if not k.endswith("-observation")} for g in expected]
        assert counts(report) == expected, (measure, path.stem)
        reports.append(report)
    return reports


@pytest.mark.parametrize("measure", MEASURES)
def test_every_case_through_http(client: TestClient, measure: str) -> None:
    run_cases(client, measure, case_paths(ECQM / measure))


def test_population_and_subject_list_agree_with_individual_reports(client: TestClient) -> None:
    measure = "CMS130"
    paths = case_paths(ECQM / measure)[:15]
    reports = run_cases(client, measure, paths)
    total: Counter[str] = Counter()
    for rep in reports:
        for code, n in counts(rep)[0].items():
            total[code] += n
    pids = [r["subject"]["reference"] for r in reports]
    group = {"resourceType": "Group", "id": "cms130-cohort", "type": "person", "actual": True,
             "member": [{"entity": {"reference": p}} for p in pids]}
    assert client.put("/fhir/Group/cms130-cohort", json=group, headers=JSON).status_code == 201
    params = {"periodStart": "2025-01-01", "periodEnd": "2025-12-31", "subject": "Group/cms130-cohort"}
    summary = client.get(f"/fhir/Measure/{measure_id(measure)}/$evaluate-measure",
                         params={**params, "reportType": "population"}).json()
    assert summary["type"] == "summary" and dict(total) == counts(summary)[0]
    listed = client.get(f"/fhir/Measure/{measure_id(measure)}/$evaluate-measure",
                        params={**params, "reportType": "subject-list"}).json()
    assert listed["type"] == "subject-list" and counts(listed)[0] == dict(total)
    lists = {c["id"]: c for c in listed["contained"]}
    for pop in listed["group"][0]["population"]:
        members = lists[pop["subjectResults"]["reference"][1:]].get("entry", [])
        assert len(members) == pop["count"]
    num = total["numerator"] - total.get("numerator-exclusion", 0)
    den = total["denominator"] - total["denominator-exclusion"] - total.get("denominator-exception", 0)
    if den:
        assert summary["group"][0]["measureScore"]["value"] == pytest.approx(num / den)
    post = client.post(f"/fhir/Measure/{measure_id(measure)}/$evaluate-measure", headers=JSON, json={
        "resourceType": "Parameters", "parameter": [
            {"name": "periodStart", "valueDate": "2025-01-01"}, {"name": "periodEnd", "valueDate": "2025-12-31"},
            {"name": "subject", "valueString": "Group/cms130-cohort"}, {"name": "reportType", "valueCode": "population"}]})
    assert post.status_code == 200 and counts(post.json()) == counts(summary)


def test_bad_input(store: Any) -> None:
    with make_client(store, enforce_referential_integrity=False) as client:
        load_measure(client, "CMS130")
        mid = measure_id("CMS130")
        url = f"/fhir/Measure/{mid}/$evaluate-measure"

        def oo(r: Any, status: int) -> str:
            assert r.status_code == status, r.text
            assert r.json()["resourceType"] == "OperationOutcome"
            return r.json()["issue"][0]["diagnostics"]

        oo(client.get(url, params={"periodStart": "2025-12-31", "periodEnd": "2025-01-01"}), 400)
        oo(client.get(url, params={"periodStart": "2025-01-01"}), 400)
        oo(client.get(url, params={"periodStart": "2025-01-01", "periodEnd": "2025-13-01"}), 400)
        oo(client.get("/fhir/Measure/nope/$evaluate-measure",
                      params={"periodStart": "2025-01-01", "periodEnd": "2025-12-31"}), 404)
        oo(client.get(url, params={"periodStart": "2025-01-01", "periodEnd": "2025-12-31",
                                   "subject": "Patient/none"}), 404)
        oo(client.get(url, params={"periodStart": "2025-01-01", "periodEnd": "2025-12-31",
                                   "reportType": "everything"}), 400)
        # a Measure whose library is not loaded, and a Library whose ELM does not parse
        client.put("/fhir/Measure/orphan", headers=JSON, json={
            "resourceType": "Measure", "id": "orphan", "status": "active",
            "library": ["http://example.org/Library/Missing"]})
        msg = oo(client.get("/fhir/Measure/orphan/$evaluate-measure",
                            params={"periodStart": "2025-01-01", "periodEnd": "2025-12-31"}), 422)
        assert "Missing" in msg
        client.put("/fhir/Library/broken", headers=JSON, json={
            "resourceType": "Library", "id": "broken", "url": "http://example.org/Library/Broken", "status": "active",
            "type": {"coding": [{"code": "logic-library"}]},
            "content": [{"contentType": "application/elm+json", "data": "bm90IGpzb24="}]})
        client.put("/fhir/Measure/broken", headers=JSON, json={
            "resourceType": "Measure", "id": "broken", "status": "active",
            "library": ["http://example.org/Library/Broken"]})
        msg = oo(client.get("/fhir/Measure/broken/$evaluate-measure",
                            params={"periodStart": "2025-01-01", "periodEnd": "2025-12-31"}), 422)
        assert "does not parse" in msg


def test_stratifiers_partition_the_populations(client: TestClient) -> None:
    measure = "CMS130"  # two stratifiers (age 46-49, age 50-75), each applying to the initial population
    reports = run_cases(client, measure, case_paths(ECQM / measure)[:12])
    pids = [r["subject"]["reference"] for r in reports]
    group = {"resourceType": "Group", "id": "strata", "type": "person", "actual": True,
             "member": [{"entity": {"reference": p}} for p in pids]}
    client.put("/fhir/Group/strata", json=group, headers=JSON)
    summary = client.get(f"/fhir/Measure/{measure_id(measure)}/$evaluate-measure", params={
        "periodStart": "2025-01-01", "periodEnd": "2025-12-31", "subject": "Group/strata",
        "reportType": "population"}).json()
    g = summary["group"][0]
    total = {p["code"]["coding"][0]["code"]: p["count"] for p in g["population"]}
    assert len(g["stratifier"]) == 2
    for strat in g["stratifier"]:
        values = {s["value"]["text"] for s in strat["stratum"]}
        assert values <= {"true", "false"}
        for code, n in total.items():
            assert sum(next(p["count"] for p in s["population"] if p["code"]["coding"][0]["code"] == code)
                       for s in strat["stratum"]) == n


def test_deqm_evaluate_several_measures(client: TestClient) -> None:
    r125 = run_cases(client, "CMS125", case_paths(ECQM / "CMS125")[:2])
    r130 = run_cases(client, "CMS130", case_paths(ECQM / "CMS130")[:2])
    pid = r130[-1]["subject"]["reference"]
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "periodStart", "valueDate": "2025-01-01"}, {"name": "periodEnd", "valueDate": "2025-12-31"},
        {"name": "measureId", "valueId": measure_id("CMS125")}, {"name": "measureId", "valueId": measure_id("CMS130")},
        {"name": "subject", "valueString": pid}, {"name": "reportType", "valueCode": "subject"}]}
    r = client.post("/fhir/Measure/$evaluate", json=body, headers=JSON)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["resourceType"] == "Parameters" and len(out["parameter"]) == 2
    for p, expected in zip(out["parameter"], [None, r130[-1]], strict=True):
        bundle = p["resource"]
        report = bundle["entry"][0]["resource"]
        assert report["type"] == "individual" and report["subject"]["reference"] == pid
        refs = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"][1:]}
        assert refs == {x["reference"] for x in report.get("evaluatedResource", [])}
        if expected is not None:
            assert counts(report) == counts(expected)
    assert r125  # CMS125 cases ran through HTTP too
    get = client.get("/fhir/Measure/$evaluate", params=[("periodStart", "2025-01-01"), ("periodEnd", "2025-12-31"),
                                                      ("measureUrl", "https://madie.cms.gov/Measure/ColonCancerScreeningFHIR")])
    assert get.status_code == 200 and get.json()["parameter"][0]["resource"]["entry"][0]["resource"]["type"] == "summary"
    none = client.get("/fhir/Measure/$evaluate", params={"periodStart": "2025-01-01", "periodEnd": "2025-12-31"})
    assert none.status_code == 400
