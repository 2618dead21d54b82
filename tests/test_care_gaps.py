"""$care-gaps over HTTP against the eCQM measures and test patients: gap status per patient follows the
measure's improvement notation and the populations the case's published report expects; the Bundles keep
the gaps-in-care profile rules the official examples keep."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.deqm.care_gaps import service as care_gaps
from gateway.fhir.deqm_rules import check_gaps_bundle
from gateway.measure.cases import _counts, case_paths
from gateway.measure.gaps import gap_status_of
from tests.conftest import SHARED, make_client
from tests.test_evaluate_measure import ECQM, JSON, OVERRIDES, as_transaction, load_measure, measure_id

EXAMPLES = SHARED / "examples" / "deqm"
PERIOD = {"periodStart": "2025-01-01", "periodEnd": "2025-12-31"}
ALL = ["open-gap", "closed-gap", "prospective-gap", "not-applicable"]


@pytest.fixture()
def client(store: Any) -> Any:
    with make_client(store, enforce_referential_integrity=False) as c:
        yield c


def expected_counts(measure: str, path: Any, case: dict[str, Any]) -> dict[str, int]:
    override = OVERRIDES.get((measure, path.stem))
    return override["expected"][0] if override else _counts(case["entry"][-1]["resource"]["group"][0])


def category(c: dict[str, int]) -> str:
    """Where the published expectation puts the patient: outside, excluded, numerator or denominator only."""
    if not c.get("initial-population") or not c.get("denominator"):
        return "outside"
    if c.get("denominator-exclusion") or c.get("denominator-exception"):
        return "excluded"
    return "numerator" if c.get("numerator") else "denominator"


# The published measure bundles code every group's improvement notation as 'decrease' with the display
# 'increase' (docs/measures.md). The gateway follows the code, so the tests restore the notation CMS publishes
# for each measure: CMS130 (screening done) is positive, CMS122 (HbA1c > 9 %) is inverse.
NOTATION = {"CMS130": "increase", "CMS122": "decrease"}


def load_corrected_measure(client: TestClient, measure: str) -> None:
    load_measure(client, measure)
    res = client.get(f"/fhir/Measure/{measure_id(measure)}").json()
    for g in res["group"]:
        for ext in g.get("extension", []):
            if ext["url"].endswith("cqfm-improvementNotation"):
                ext["valueCodeableConcept"]["coding"][0].update(code=NOTATION[measure], display=NOTATION[measure])
    assert client.put(f"/fhir/Measure/{res['id']}", json=res, headers=JSON).status_code == 200


def load_cases(client: TestClient, measure: str, per_category: int = 1) -> dict[str, list[str]]:
    """Load the measure and, per category, the first cases of that category; patient ids by category."""
    load_corrected_measure(client, measure)
    chosen: dict[str, list[str]] = {}
    for path in case_paths(ECQM / measure):
        case = json.loads(path.read_text())
        cat = category(expected_counts(measure, path, case))
        if len(chosen.get(cat, [])) >= per_category:
            continue
        assert client.post("/fhir", json=as_transaction(case), headers=JSON).status_code == 200
        pid = next(e["resource"]["id"] for e in case["entry"] if e["resource"]["resourceType"] == "Patient")
        chosen.setdefault(cat, []).append(pid)
    return chosen


def statuses(params: dict[str, Any]) -> dict[str, list[str]]:
    """patient reference -> gap statuses found in the returned Bundles (every Bundle checked against the rules)."""
    out: dict[str, list[str]] = {}
    for p in params["parameter"]:
        bundle = p["resource"]
        assert check_gaps_bundle(bundle) == []
        for e in bundle["entry"]:
            r = e["resource"]
            if r["resourceType"] == "DetectedIssue":
                out.setdefault(r["patient"]["reference"], []).append(gap_status_of(r))
    return out


def test_official_examples_keep_the_gaps_rules() -> None:
    for name in ("Bundle-single-gaps-open-indv-report01.json", "Bundle-non-document-gaps-open.json"):
        assert check_gaps_bundle(json.loads((EXAMPLES / name).read_text())) == []
    params = json.loads((EXAMPLES / "Parameters-single-gaps-open-indv-report01.json").read_text())
    assert [check_gaps_bundle(p["resource"]) for p in params["parameter"]] == [[]]


def test_positive_measure_gap_status_per_population(client: TestClient) -> None:
    measure = "CMS130"  # colorectal cancer screening: improvement notation increase
    chosen = load_cases(client, measure)
    assert set(chosen) == {"outside", "excluded", "numerator", "denominator"}
    expect = {"outside": "not-applicable", "excluded": "not-applicable", "numerator": "closed-gap",
              "denominator": "open-gap"}
    for cat, pids in chosen.items():
        r = client.get(f"/fhir/Measure/{measure_id(measure)}/$care-gaps",
                       params={**PERIOD, "subject": f"Patient/{pids[0]}", "status": ALL})
        assert r.status_code == 200, r.text
        found = statuses(r.json())
        assert found == {f"Patient/{pids[0]}": [expect[cat]]}, cat
        bundle = r.json()["parameter"][0]["resource"]
        assert bundle["type"] == "document"
        comp = bundle["entry"][0]["resource"]
        report = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "MeasureReport")
        assert comp["section"][0]["focus"]["reference"] == f"urn:uuid:{report['id']}"
        # the report is the one $evaluate-measure gives for that patient
        same = client.get(f"/fhir/Measure/{measure_id(measure)}/$evaluate-measure",
                          params={**PERIOD, "subject": f"Patient/{pids[0]}"}).json()
        assert [g["population"] for g in report["group"]] == [g["population"] for g in same["group"]]
        urls = {e["fullUrl"] for e in bundle["entry"]}
        assert f"http://testserver/fhir/Patient/{pids[0]}" in urls
        for ev in report.get("evaluatedResource", []):
            assert f"http://testserver/fhir/{ev['reference']}" in urls
        issue = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DetectedIssue")
        if cat != "denominator":
            assert len(issue["evidence"]) == 1
            continue
        # an open gap also points at a detailed GuidanceResponse: what is missing, and what data would close it
        guide_ref = issue["evidence"][1]["detail"][0]["reference"]
        guide = next(e["resource"] for e in bundle["entry"] if e["fullUrl"] == guide_ref)
        assert guide["resourceType"] == "GuidanceResponse"
        assert guide["reasonCode"][0]["coding"][0]["code"] == "Missing"
        full = client.get(f"/fhir/Measure/{measure_id(measure)}/$data-requirements").json()["dataRequirement"]
        assert guide["dataRequirement"] and all(d in full for d in guide["dataRequirement"])
        assert "Procedure" in {d["type"] for d in guide["dataRequirement"]}  # the colonoscopy


def test_inverse_measure_and_group_subject(client: TestClient) -> None:
    measure = "CMS122"  # HbA1c > 9%: improvement notation decrease, the numerator is the gap
    chosen = load_cases(client, measure)
    members = [p for pids in chosen.values() for p in pids]
    client.put("/fhir/Group/g122", headers=JSON, json={
        "resourceType": "Group", "id": "g122", "type": "person", "actual": True,
        "member": [{"entity": {"reference": f"Patient/{p}"}} for p in members]})
    r = client.post("/fhir/Measure/$care-gaps", headers=JSON, json={"resourceType": "Parameters", "parameter": [
        {"name": "periodStart", "valueDate": "2025-01-01"}, {"name": "periodEnd", "valueDate": "2025-12-31"},
        {"name": "subject", "valueString": "Group/g122"}, {"name": "isDocument", "valueBoolean": False},
        {"name": "measureUrl", "valueCanonical": "https://madie.cms.gov/Measure/"
                                                 "DiabetesGlycemicStatusAssessmentGreaterThan9PercentFHIR"},
        *[{"name": "status", "valueCode": s} for s in ALL]]})
    assert r.status_code == 200, r.text
    bundles = [p["resource"] for p in r.json()["parameter"]]
    assert {b["type"] for b in bundles} == {"collection"} and len(bundles) == len(members)
    found = statuses(r.json())
    expect = {"outside": "not-applicable", "excluded": "not-applicable", "numerator": "open-gap",
              "denominator": "closed-gap"}
    assert found == {f"Patient/{pids[0]}": [expect[cat]] for cat, pids in chosen.items()}
    # the status filter keeps only the requested gaps
    only_open = client.get("/fhir/Measure/$care-gaps", params={
        **PERIOD, "subject": "Group/g122", "measureId": measure_id(measure), "status": "open-gap"}).json()
    assert statuses(only_open) == {f"Patient/{chosen['numerator'][0]}": ["open-gap"]}


def test_prospective_gap_while_the_period_runs(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    measure = "CMS130"
    chosen = load_cases(client, measure)
    params = {**PERIOD, "measureId": measure_id(measure), "status": ALL}
    monkeypatch.setattr(care_gaps, "utc_now", lambda: datetime(2025, 6, 30, 12, 0))  # mid-period
    for cat, expect in (("denominator", "prospective-gap"), ("numerator", "closed-gap"),
                        ("outside", "not-applicable")):
        pid = chosen[cat][0]
        r = client.get("/fhir/Measure/$care-gaps", params={**params, "subject": f"Patient/{pid}"})
        assert r.status_code == 200, r.text
        assert statuses(r.json()) == {f"Patient/{pid}": [expect]}
    monkeypatch.setattr(care_gaps, "utc_now", lambda: datetime(2026, 1, 1, 0, 0))  # the period has ended
    pid = chosen["denominator"][0]
    r = client.get("/fhir/Measure/$care-gaps", params={**params, "subject": f"Patient/{pid}"})
    assert statuses(r.json()) == {f"Patient/{pid}": ["open-gap"]}


def test_practitioner_and_organization_select_patients(client: TestClient) -> None:
    measure = "CMS130"
    chosen = load_cases(client, measure)
    pid = chosen["denominator"][0]
    client.put("/fhir/Organization/payer1", headers=JSON, json={"resourceType": "Organization", "id": "payer1",
                                                                "name": "Payer One"})
    patient = client.get(f"/fhir/Patient/{pid}").json()
    patient["managingOrganization"] = {"reference": "Organization/payer1"}
    assert client.put(f"/fhir/Patient/{pid}", headers=JSON, json=patient).status_code == 200
    r = client.get("/fhir/Measure/$care-gaps", params={**PERIOD, "organization": "Organization/payer1",
                                                       "measureId": measure_id(measure), "status": "open-gap"})
    assert r.status_code == 200, r.text
    bundle = r.json()["parameter"][0]["resource"]
    assert statuses(r.json()) == {f"Patient/{pid}": ["open-gap"]}
    comp = bundle["entry"][0]["resource"]
    assert comp["author"] == [{"reference": "Organization/payer1"}]
    report = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "MeasureReport")
    assert report["reporter"] == {"reference": "Organization/payer1"}
    assert "http://testserver/fhir/Organization/payer1" in {e["fullUrl"] for e in bundle["entry"]}


def test_every_way_to_name_measures_and_patients(client: TestClient) -> None:
    chosen = load_cases(client, "CMS130")
    pid = chosen["denominator"][0]
    mid = measure_id("CMS130")
    measure = client.get(f"/fhir/Measure/{mid}").json()
    measure["topic"] = [{"coding": [{"system": "http://example.org/topic", "code": "screening"}]}]
    assert client.put(f"/fhir/Measure/{mid}", json=measure, headers=JSON).status_code == 200
    canonical = f"{measure['url']}|{measure['version']}"
    client.put("/fhir/Library/program-2025", headers=JSON, json={
        "resourceType": "Library", "id": "program-2025", "url": "http://example.org/Library/program-2025",
        "version": "1", "status": "active", "type": {"coding": [{"code": "asset-collection"}]},
        "relatedArtifact": [{"type": "composed-of", "resource": canonical}]})
    base = {**PERIOD, "subject": f"Patient/{pid}", "status": "open-gap"}
    expect = {f"Patient/{pid}": ["open-gap"]}
    for named in ({"measureUrl": canonical}, {"measure": f"Measure/{mid}"},
                  {"measureIdentifier": "https://madie.cms.gov/measure/shortName|CMS130FHIR"},
                  {"manifest": "http://example.org/Library/program-2025|1"},
                  {"topic": "http://example.org/topic|screening"}):
        r = client.get("/fhir/Measure/$care-gaps", params={**base, **named})
        assert r.status_code == 200, (named, r.text)
        assert statuses(r.json()) == expect, named
    # inline Group, inline Measure and inline Organization (POST)
    org = {"resourceType": "Organization", "id": "payer-inline", "name": "Inline Payer"}
    r = client.post("/fhir/Measure/$care-gaps", headers=JSON, json={"resourceType": "Parameters", "parameter": [
        {"name": "periodStart", "valueDate": "2025-01-01"}, {"name": "periodEnd", "valueDate": "2025-12-31"},
        {"name": "status", "valueCode": "open-gap"}, {"name": "measureResource", "resource": measure},
        {"name": "organizationResource", "resource": org},
        {"name": "subjectGroup", "resource": {"resourceType": "Group", "type": "person", "actual": True,
                                              "member": [{"entity": {"reference": f"Patient/{pid}"}}]}}]})
    assert r.status_code == 200, r.text
    assert statuses(r.json()) == expect
    bundle = r.json()["parameter"][0]["resource"]
    assert bundle["entry"][0]["resource"]["author"] == [{"reference": "Organization/payer-inline"}]
    assert {"fullUrl": "http://testserver/fhir/Organization/payer-inline", "resource": org} in bundle["entry"]
    for bad in ({"manifest": "http://example.org/Library/none"}, {"topic": "http://example.org/topic|none"},
                {"measureUrl": "http://example.org/Measure/none"}):
        assert client.get("/fhir/Measure/$care-gaps", params={**base, **bad}).status_code == 404, bad


def test_respond_async(client: TestClient) -> None:
    chosen = load_cases(client, "CMS130")
    members = [p for pids in chosen.values() for p in pids]
    client.put("/fhir/Group/g130", headers=JSON, json={
        "resourceType": "Group", "id": "g130", "type": "person", "actual": True,
        "member": [{"entity": {"reference": f"Patient/{p}"}} for p in members]})
    params = {**PERIOD, "subject": "Group/g130", "measureId": measure_id("CMS130"), "status": ALL}
    sync = client.get("/fhir/Measure/$care-gaps", params=params).json()
    bad = client.get("/fhir/Measure/$care-gaps", params={**params, "status": "nope"},
                     headers={"Prefer": "respond-async"})
    assert bad.status_code == 400
    r = client.get("/fhir/Measure/$care-gaps", params=params, headers={"Prefer": "respond-async"})
    assert r.status_code == 202, r.text
    status_url = r.headers["content-location"]
    assert status_url.startswith("http://testserver/fhir/Measure/$care-gaps-status/")
    path = status_url.removeprefix("http://testserver")
    deadline = time.monotonic() + 120
    while (status := client.get(path)).status_code == 202:
        assert time.monotonic() < deadline, "the job did not finish in time"
        time.sleep(0.2)
    assert status.status_code == 200, status.text
    manifest = status.json()
    assert manifest["error"] == [] and manifest["output"][0]["count"] == len(members)
    out = client.get(manifest["output"][0]["url"].removeprefix("http://testserver"))
    assert out.headers["content-type"].startswith("application/fhir+ndjson")
    bundles = [json.loads(line) for line in out.text.splitlines()]
    assert statuses({"parameter": [{"resource": b} for b in bundles]}) == statuses(sync)
    assert client.delete(path).status_code == 202
    assert client.get(path).status_code in (404, 410)


def test_bad_input(client: TestClient) -> None:
    load_corrected_measure(client, "CMS130")
    url = f"/fhir/Measure/{measure_id('CMS130')}/$care-gaps"

    def oo(params: dict[str, Any], status: int = 400) -> str:
        r = client.get(url, params=params)
        assert r.status_code == status, r.text
        assert r.json()["resourceType"] == "OperationOutcome"
        return r.json()["issue"][0]["diagnostics"]

    assert "subject" in oo({**PERIOD, "status": "open-gap"})
    assert "gaps-status" in oo({**PERIOD, "status": "open", "subject": "Patient/x"})
    assert "status" in oo({**PERIOD, "subject": "Patient/x"})
    assert "periodEnd" in oo({"periodStart": "2025-01-01", "status": "open-gap", "subject": "Patient/x"})
    assert "Encounter" in oo({**PERIOD, "status": "open-gap", "subject": "Encounter/x"})
    assert "bogus" in oo({**PERIOD, "status": "open-gap", "subject": "Patient/x", "bogus": "1"})
    oo({**PERIOD, "status": "open-gap", "subject": "Patient/none"}, 404)
    r = client.get("/fhir/Measure/nope/$care-gaps", params={**PERIOD, "status": "open-gap", "subject": "Patient/x"})
    assert r.status_code == 404
