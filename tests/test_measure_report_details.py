"""Supplemental data and evaluatedResource in $evaluate-measure reports (CMS165 test cases, over HTTP)."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

from fastapi.testclient import TestClient

from gateway.measure.cases import case_paths
from gateway.measure.supplemental import CRITERIA_REF, SUPPLEMENTAL_EXT
from tests.test_evaluate_measure import ECQM, JSON, as_transaction, client, load_measure, measure_id

__all__ = ["client"]  # the fixture: published cases reference practitioners they do not include

MEASURE = "CMS165"
PERIOD = {"periodStart": "2025-01-01", "periodEnd": "2025-12-31"}


def _load_cases(client: TestClient, n: int) -> list[tuple[dict[str, Any], str]]:
    """(case bundle, stored patient id) for the first n cases; transaction ids are the stored ones."""
    load_measure(client, MEASURE)
    out = []
    for path in case_paths(ECQM / MEASURE)[:n]:
        case = json.loads(path.read_text())
        tx = as_transaction(case)
        r = client.post("/fhir", json=tx, headers=JSON)
        assert r.status_code == 200, r.text
        pid = next(e["resource"]["id"] for e in tx["entry"] if e["resource"]["resourceType"] == "Patient")
        out.append((tx, pid))
    return out


def _report(client: TestClient, **params: str) -> dict[str, Any]:
    r = client.get(f"/fhir/Measure/{measure_id(MEASURE)}/$evaluate-measure", params={**PERIOD, **params})
    assert r.status_code == 200, r.text
    return r.json()


def _sde_codes(report: dict[str, Any]) -> dict[str, Counter[str]]:
    """SDE id -> Counter of 'system|code' from the contained Observations the supplementalData extensions name."""
    contained = {c["id"]: c for c in report.get("contained", [])}
    out: dict[str, Counter[str]] = {}
    for ext in report.get("extension", []):
        if ext["url"] != SUPPLEMENTAL_EXT:
            continue
        ref = ext["valueReference"]
        sde = next(e["valueString"] for e in ref["extension"] if e["url"] == CRITERIA_REF)
        obs = contained[ref["reference"][1:]]
        coding = obs["code"]["coding"][0]
        out.setdefault(sde, Counter())[f"{coding['system']}|{coding['code']}"] += obs["valueInteger"]
    return out


def _omb(patient: dict[str, Any], url_suffix: str) -> set[str]:
    return {f"{x['valueCoding']['system']}|{x['valueCoding']['code']}"
            for e in patient.get("extension", []) if e["url"].endswith(url_suffix)
            for x in e.get("extension", []) if x["url"] == "ombCategory"}


def test_supplemental_data_in_individual_and_summary_reports(client: TestClient) -> None:
    cases = _load_cases(client, 6)
    measure = client.get(f"/fhir/Measure/{measure_id(MEASURE)}").json()
    sde_ids = {s["id"] for s in measure["supplementalData"]}
    total: dict[str, Counter[str]] = {}
    for tx, pid in cases:
        patient = next(e["resource"] for e in tx["entry"] if e["resource"]["resourceType"] == "Patient")
        report = _report(client, subject=f"Patient/{pid}")
        sdes = _sde_codes(report)
        assert set(sdes) <= sde_ids
        # race and ethnicity are the patient's OMB categories; sex is the administrative gender's code
        assert set(sdes["sde-race"]) == _omb(patient, "us-core-race")
        assert set(sdes["sde-ethnicity"]) == _omb(patient, "us-core-ethnicity")
        [(sex, one)] = sdes["sde-sex"].items()
        assert one == 1 and sex.split("|")[1] == patient["gender"][0].upper()
        # individual reports also list the SDE Observations in evaluatedResource, with their SDE id
        listed = {r["reference"]: r for r in report["evaluatedResource"]}
        for ext in report["extension"]:
            if ext["url"] == SUPPLEMENTAL_EXT:
                assert listed[ext["valueReference"]["reference"]]["extension"] == ext["valueReference"]["extension"]
        for sde, counts in sdes.items():
            total.setdefault(sde, Counter()).update(counts)
    group = {"resourceType": "Group", "id": "cms165-sde", "type": "person", "actual": True,
             "member": [{"entity": {"reference": f"Patient/{pid}"}} for _, pid in cases]}
    assert client.put("/fhir/Group/cms165-sde", json=group, headers=JSON).status_code == 201
    summary = _report(client, subject="Group/cms165-sde", reportType="population")
    assert _sde_codes(summary) == total
    assert "evaluatedResource" not in summary  # 0..0 in the DEQM summary profile
    listed = _report(client, subject="Group/cms165-sde", reportType="subject-list")
    assert _sde_codes(listed) == total


def test_evaluated_resources_name_the_populations_they_fed(client: TestClient) -> None:
    load_measure(client, MEASURE)
    measure = client.get(f"/fhir/Measure/{measure_id(MEASURE)}").json()
    pop_ids = {p["code"]["coding"][0]["code"]: p["id"] for g in measure["group"] for p in g["population"]}
    allowed = set(pop_ids.values()) | {s["id"] for s in measure["supplementalData"]}
    # a denominator-exclusion case: chronic kidney disease stage 5 (ICD-10-CM N18.5) during the period
    path = ECQM / MEASURE / "tests" / "0b9cb569-149a-4b47-a535-66b59a77bceb.json"
    tx = as_transaction(json.loads(path.read_text()))
    assert client.post("/fhir", json=tx, headers=JSON).status_code == 200
    by_code = {}
    for e in tx["entry"]:
        res = e["resource"]
        for c in (res.get("code") or {}).get("coding", []):
            by_code[c["code"]] = f"{res['resourceType']}/{res['id']}"
    pid = next(e["resource"]["id"] for e in tx["entry"] if e["resource"]["resourceType"] == "Patient")
    report = _report(client, subject=f"Patient/{pid}")
    fed = {r["reference"]: {x["valueString"] for x in r.get("extension", []) if x["url"] == CRITERIA_REF}
           for r in report["evaluatedResource"]}
    assert set().union(*fed.values()) <= allowed
    ckd = fed[by_code["N18.5"]]
    assert pop_ids["denominator-exclusion"] in ckd and pop_ids["initial-population"] not in ckd
    hypertension = fed[by_code["371125006"]]
    assert pop_ids["initial-population"] in hypertension
    # population runs do not track resources: the subject-list report lists subjects, not resources
    group = {"resourceType": "Group", "id": "one", "type": "person", "actual": True,
             "member": [{"entity": {"reference": f"Patient/{pid}"}}]}
    client.put("/fhir/Group/one", json=group, headers=JSON)
    assert "evaluatedResource" not in _report(client, subject="Group/one", reportType="subject-list")


def _counts(report: dict[str, Any]) -> dict[str, int]:
    return {p["code"]["coding"][0]["code"]: p["count"] for p in report["group"][0]["population"]}


def test_practitioner_selects_that_practitioners_patients(client: TestClient) -> None:
    cases = _load_cases(client, 5)
    pids = [pid for _, pid in cases]
    client.put("/fhir/Practitioner/dr-a", json={"resourceType": "Practitioner", "id": "dr-a"}, headers=JSON)
    theirs = pids[1:4:2]
    for pid in theirs:
        patient = client.get(f"/fhir/Patient/{pid}").json()
        patient["generalPractitioner"] = [{"reference": "Practitioner/dr-a"}]
        assert client.put(f"/fhir/Patient/{pid}", json=patient, headers=JSON).status_code == 200
    expected: Counter[str] = Counter()
    for pid in theirs:
        expected.update(_counts(_report(client, subject=f"Patient/{pid}")))
    summary = _report(client, practitioner="Practitioner/dr-a", reportType="population")
    assert _counts(summary) == dict(expected) and _counts(summary)["initial-population"] <= len(theirs)
    listed = _report(client, practitioner="Practitioner/dr-a", reportType="subject-list")
    members = {e["item"]["reference"] for c in listed["contained"] if c["resourceType"] == "List"
               for e in c.get("entry", [])}
    assert members <= {f"Patient/{p}" for p in theirs}
    # within a Group: the Group's members that are also the practitioner's patients
    group = {"resourceType": "Group", "id": "g2", "type": "person", "actual": True,
             "member": [{"entity": {"reference": f"Patient/{p}"}} for p in pids[:2]]}
    client.put("/fhir/Group/g2", json=group, headers=JSON)
    only = _report(client, subject="Group/g2", practitioner="Practitioner/dr-a", reportType="population")
    assert _counts(only) == _counts(_report(client, subject=f"Patient/{pids[1]}"))
    base = f"/fhir/Measure/{measure_id(MEASURE)}/$evaluate-measure"
    r = client.get(base, params={**PERIOD, "subject": f"Patient/{pids[0]}", "practitioner": "Practitioner/dr-a"})
    assert r.status_code == 400 and "not a patient of Practitioner/dr-a" in r.text
    r = client.get(base, params={**PERIOD, "practitioner": "Practitioner/nobody"})
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"
    assert client.get(base, params={**PERIOD, "practitioner": "dr-a"}).status_code == 400


def test_last_received_on_lists_only_what_changed(client: TestClient) -> None:
    [(tx, pid)] = _load_cases(client, 1)
    full = _report(client, subject=f"Patient/{pid}")
    stored = [r["reference"] for r in full["evaluatedResource"] if not r["reference"].startswith("#")]
    assert len(stored) >= 2
    assert [r["reference"] for r in _report(client, subject=f"Patient/{pid}",
                                             lastReceivedOn="2000-01-01")["evaluatedResource"]] == \
        [r["reference"] for r in full["evaluatedResource"]]
    mark = client.get(f"/fhir/{stored[-1]}").json()["meta"]["lastUpdated"]
    unchanged = _report(client, subject=f"Patient/{pid}", lastReceivedOn=mark)
    assert [r["reference"] for r in unchanged.get("evaluatedResource", [])
            if not r["reference"].startswith("#")] == []
    assert _counts(unchanged) == _counts(full)  # the populations are computed on all data regardless
    time.sleep(0.01)
    changed = client.get(f"/fhir/{stored[1]}").json()
    changed.setdefault("meta", {})["tag"] = [{"system": "urn:example:test", "code": "edited"}]
    assert client.put(f"/fhir/{stored[1]}", json=changed, headers=JSON).status_code == 200
    after = _report(client, subject=f"Patient/{pid}", lastReceivedOn=mark)
    assert [r["reference"] for r in after["evaluatedResource"] if not r["reference"].startswith("#")] == [stored[1]]
    base = f"/fhir/Measure/{measure_id(MEASURE)}/$evaluate-measure"
    r = client.get(base, params={**PERIOD, "subject": f"Patient/{pid}", "lastReceivedOn": "yesterday"})
    assert r.status_code == 400 and "lastReceivedOn" in r.text
    r = client.get(base, params={**PERIOD, "reportType": "population", "lastReceivedOn": "2025-01-01"})
    assert r.status_code == 400 and "patient-level" in r.text


def test_cql_messages_reach_the_report(client: TestClient) -> None:
    """A CQL Message with severity Error (FHIRHelpers on a Quantity whose system is not UCUM's) is reported in
    a contained OperationOutcome named by cqf-messages; the populations are still computed."""
    load_measure(client, "CMS69")
    cases = []
    for path in case_paths(ECQM / "CMS69"):
        text = path.read_text()
        if "https://ucum.org" in text:
            cases.append(json.loads(text))
    assert cases
    tx = as_transaction(cases[0])
    for entry in tx["entry"]:  # the BMI retrieve selects by the profile a resource declares: declare none, so
        if "https://ucum.org" in json.dumps(entry["resource"]):  # the Observation is chosen by its LOINC code
            entry["resource"].pop("meta", None)
    assert client.post("/fhir", json=tx, headers=JSON).status_code == 200
    pid = next(e["resource"]["id"] for e in tx["entry"] if e["resource"]["resourceType"] == "Patient")
    r = client.get(f"/fhir/Measure/{measure_id('CMS69')}/$evaluate-measure",
                   params={**PERIOD, "subject": f"Patient/{pid}"})
    report = r.json()
    [ext] = [e for e in report["extension"] if e["url"] == "http://hl7.org/fhir/StructureDefinition/cqf-messages"]
    oo = {c["id"]: c for c in report["contained"]}[ext["valueReference"]["reference"][1:]]
    assert oo["resourceType"] == "OperationOutcome"
    assert any(i["severity"] == "error" and "https://ucum.org" in i["diagnostics"] for i in oo["issue"])
    assert report["group"][0]["population"]
    # a clean case has no messages
    clean = next(json.loads(p.read_text()) for p in case_paths(ECQM / MEASURE))
    load_measure(client, MEASURE)
    tx = as_transaction(clean)
    assert client.post("/fhir", json=tx, headers=JSON).status_code == 200
    pid = next(e["resource"]["id"] for e in tx["entry"] if e["resource"]["resourceType"] == "Patient")
    assert not any("messages" in e["url"] for e in _report(client, subject=f"Patient/{pid}")["extension"])


def test_reports_follow_the_deqm_scoring_notation_and_reporter_rules(store: Any) -> None:
    from tests.conftest import make_client

    with make_client(store, enforce_referential_integrity=False, reporter="Organization/acme-health") as c:
        [(_, pid)] = _load_cases(c, 1)
        measure = c.get(f"/fhir/Measure/{measure_id(MEASURE)}").json()
        notation = [next(e["valueCodeableConcept"]["coding"][0]["code"] for e in g["extension"]
                         if e["url"].endswith("cqfm-improvementNotation")) for g in measure["group"]]
        scoring_url = "http://hl7.org/fhir/us/davinci-deqm/StructureDefinition/extension-measureScoring"
        for params in ({"subject": f"Patient/{pid}"}, {"reportType": "population"},
                       {"subject": f"Patient/{pid}", "reporter": "Organization/other"}):
            report = _report(c, **params)
            # deqm-3: scoring on the report (one scoring for all groups) and not on the groups
            assert [e["url"] for e in report["extension"]].count(scoring_url) == 1
            assert all(e["url"] != scoring_url for g in report["group"] for e in g["extension"])
            # deqm-2 / deqm-4: improvement notation on the report and on each scored group, as the Measure says
            assert report["improvementNotation"]["coding"][0]["code"] == notation[0]
            assert [next(e["valueCodeableConcept"]["coding"][0]["code"] for e in g["extension"]
                         if e["url"].endswith("extension-groupImprovementNotation"))
                    for g in report["group"]] == notation
            assert report["reporter"] == {"reference": params.get("reporter", "Organization/acme-health")}
    with make_client(store, enforce_referential_integrity=False) as c:
        report = _report(c, reportType="population")
        assert report["reporter"]["display"]  # 1..1 in DEQM: without a configured Organization, a display
