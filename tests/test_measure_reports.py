"""MeasureReport exchange: the official DEQM examples are accepted where valid and round-trip; one mutated
copy per profile rule is refused with a message naming the rule; receivers take reports by POST and in
transactions; payers find them with the MeasureReport search parameters, DEQM's category included."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import SHARED, make_client

EXAMPLES = SHARED / "examples" / "deqm"
JSON = {"Content-Type": "application/fhir+json"}
CATEGORY = "http://hl7.org/fhir/StructureDefinition/measurereport-category"
VALID = ["MeasureReport-indv-measurereport01.json", "MeasureReport-summ-measurereport01.json",
         "MeasureReport-subjectlist-measurereport01.json", "MeasureReport-datax-measurereport01.json",
         "MeasureReport-gaps-indv-measurereport01.json", "MeasureReport-summ-medicare-stratification-example.json",
         "MeasureReport-indv-measurereportlist2.json", "Composition-gaps-composition01.json",
         "DetectedIssue-gaps-detectedissue01.json", "Group-gaps-subject-group01.json",
         "GuidanceResponse-detailedguidanceresponse01.json", "Measure-measure-mrp-example.json",
         "Bundle-single-gaps-open-indv-report01.json", "Bundle-non-document-gaps-open.json"]


def example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / name).read_text())


@pytest.fixture()
def client(store: Any) -> Any:
    with make_client(store, enforce_referential_integrity=False) as c:
        yield c


def strip(r: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(r)
    out.get("meta", {}).pop("versionId", None)
    out.get("meta", {}).pop("lastUpdated", None)
    if out.get("meta") == {}:
        del out["meta"]
    return out


def test_official_examples_round_trip(client: TestClient) -> None:
    for name in VALID:
        res = example(name)
        r = client.put(f"/fhir/{res['resourceType']}/{res['id']}", json=res, headers=JSON)
        assert r.status_code == 201, (name, r.text)
        back = client.get(f"/fhir/{res['resourceType']}/{res['id']}").json()
        assert strip(back) == strip(res), name


def test_example_that_breaks_deqm_2_is_refused(client: TestClient) -> None:
    # proportion scoring without improvementNotation: the IG's own example breaks its invariant deqm-2
    res = example("MeasureReport-summ-contained-supplemental.json")
    r = client.post("/fhir/MeasureReport", json=res, headers=JSON)
    assert r.status_code == 400 and "deqm-2" in r.text
    fixed = {**res, "improvementNotation": {"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/measure-improvement-notation", "code": "increase"}]}}
    assert client.post("/fhir/MeasureReport", json=fixed, headers=JSON).status_code == 201


def _drop(*path: str) -> Callable[[dict[str, Any]], None]:
    def f(r: dict[str, Any]) -> None:
        node: Any = r
        for p in path[:-1]:
            node = node[int(p)] if isinstance(node, list) else node[p]
        del node[int(path[-1]) if isinstance(node, list) else path[-1]]
    return f


def _set(value: Any, *path: str) -> Callable[[dict[str, Any]], None]:
    def f(r: dict[str, Any]) -> None:
        node: Any = r
        for p in path[:-1]:
            node = node[int(p)] if isinstance(node, list) else node[p]
        node[path[-1]] = value
    return f


INDV = "MeasureReport-indv-measurereport01.json"
SUMM = "MeasureReport-summ-measurereport01.json"
LIST = "MeasureReport-subjectlist-measurereport01.json"
DATAX = "MeasureReport-datax-measurereport01.json"
GAPS = "Bundle-single-gaps-open-indv-report01.json"
MUTATIONS = [
    (INDV, _drop("subject"), "MeasureReport.subject"),
    (INDV, _set("summary", "type"), "type is fixed"),
    (INDV, _set("http://hl7.org/fhir/us/davinci-deqm/Measure/measure-mrp-example", "measure"), "deqm-0"),
    (INDV, _drop("period", "end"), "deqm-1"),
    (INDV, _set("2018-08", "period", "start"), "deqm-1"),
    (INDV, _drop("extension"), "deqm-3"),
    (INDV, _drop("improvementNotation"), "deqm-2"),
    (INDV, _set({"value": 2}, "group", "0", "measureScore"), "deqm-6"),
    (INDV, _drop("reporter"), "MeasureReport.reporter"),
    (INDV, _drop("group", "0", "population", "0", "code"), "population.code"),
    (SUMM, _set({"reference": "Patient/patient01"}, "subject"), "0..0"),
    (SUMM, _drop("group"), "group is required"),
    (LIST, _drop("group", "0", "population", "0", "subjectResults"), "subjectResults"),
    (DATAX, _drop("extension"), "extension-submitDataUpdateType"),
    (DATAX, _set([{"population": []}], "group"), "mrp-1"),
    (DATAX, _drop("period"), "MeasureReport.period"),
    (GAPS, _drop("entry", "0"), "gic-1"),
    (GAPS, _drop("identifier"), "Bundle.identifier"),
    (GAPS, _set({"coding": [{"system": "http://loinc.org", "code": "11503-0"}]}, "entry", "0", "resource", "type"),
     "96315-7"),
    (GAPS, _drop("entry", "3", "resource", "modifierExtension"), "extension-gapStatus"),
    (GAPS, _set({"coding": [{"code": "ISSUE"}]}, "entry", "3", "resource", "code"), "CAREGAP"),
    ("Composition-gaps-composition01.json", _drop("section"), "section is required"),
    ("DetectedIssue-gaps-detectedissue01.json", _set("closed", "modifierExtension", "0", "valueCodeableConcept",
                                                     "coding", "0", "code"), "gap status"),
]


def test_mutated_copies_are_refused_naming_the_rule(client: TestClient) -> None:
    for name, mutate, rule in MUTATIONS:
        res = example(name)
        mutate(res)
        r = client.post(f"/fhir/{res['resourceType']}", json=res, headers=JSON)
        assert r.status_code == 400, (name, rule, r.text)
        assert r.json()["resourceType"] == "OperationOutcome" and rule in r.text, (name, rule, r.text)
        assert client.get(f"/fhir/{res['resourceType']}", params={"_summary": "count"}).json()["total"] == 0


def test_validate_reports_violations(client: TestClient) -> None:
    good = example(INDV)
    r = client.post("/fhir/MeasureReport/$validate", json=good, headers=JSON)
    assert r.status_code == 200 and r.json()["issue"][0]["severity"] == "information"
    bad = example(INDV)
    del bad["reporter"]
    bad["extension"] = []
    r = client.post("/fhir/MeasureReport/$validate", headers=JSON,
                    json={"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": bad}]})
    assert r.status_code == 200, r.text
    messages = [i["diagnostics"] for i in r.json()["issue"] if i["severity"] == "error"]
    assert any(m.startswith("deqm-3") for m in messages) and any("reporter" in m for m in messages)
    assert client.get("/fhir/MeasureReport", params={"_summary": "count"}).json()["total"] == 0
    assert client.post("/fhir/Nope/$validate", json=good, headers=JSON).status_code == 404


def test_transaction_and_search(client: TestClient) -> None:
    indv, summ, datax = example(INDV), example(SUMM), example(DATAX)
    summ["extension"].append({"url": CATEGORY, "valueCodeableConcept": {"coding": [{
        "system": "http://example.org/category", "code": "quality"}]}})
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"MeasureReport/{r['id']}"}} for r in (indv, summ, datax)]}
    assert client.post("/fhir", json=tx, headers=JSON).status_code == 200
    bad = copy.deepcopy(tx)
    bad["entry"][0]["resource"]["id"] = bad["entry"][0]["request"]["url"].split("/")[1] = "other"
    del bad["entry"][0]["resource"]["period"]
    bad["entry"][0]["request"]["url"] = "MeasureReport/other"
    assert client.post("/fhir", json=bad, headers=JSON).status_code == 400
    assert client.get("/fhir/MeasureReport/other").status_code == 404

    def ids(**params: str) -> set[str]:
        r = client.get("/fhir/MeasureReport", params=params)
        assert r.status_code == 200, r.text
        return {e["resource"]["id"] for e in r.json().get("entry", [])}

    everything = {indv["id"], summ["id"], datax["id"]}
    assert ids(measure=indv["measure"]) == everything
    assert ids(subject="Patient/patient01") == {indv["id"], datax["id"]}
    assert ids(patient="Patient/patient01") == {indv["id"], datax["id"]}
    assert ids(reporter="Organization/organization01") == everything
    assert ids(status="complete") == everything
    assert ids(period="ge2018-08-15") == everything
    assert ids(period="2019") == set()
    assert ids(**{"evaluated-resource": indv["evaluatedResource"][0]["reference"]}) >= {indv["id"]}
    assert ids(date=f"ge{indv['date'][:10]}") >= {indv["id"]}
    assert ids(_lastUpdated="ge2000-01-01") == everything
    assert ids(category="http://example.org/category|quality") == {summ["id"]}
    assert ids(category="quality") == {summ["id"]}


def test_care_gap_remark_patch(client: TestClient) -> None:
    report = example(INDV)
    report["group"][0]["id"] = "group-001"  # the group the official PATCH example addresses
    assert client.put(f"/fhir/MeasureReport/{report['id']}", json=report, headers=JSON).status_code == 201
    patch = example("Parameters-measurereport01-patch.json")
    r = client.patch(f"/fhir/MeasureReport/{report['id']}", json=patch, headers=JSON)
    assert r.status_code == 200, r.text
    group = client.get(f"/fhir/MeasureReport/{report['id']}").json()["group"][0]
    remark = group["extension"][-1]
    assert remark == {"url": "http://hl7.org/fhir/us/davinci-deqm/StructureDefinition/extension-careGapRemark",
                      "extension": [{"url": "authorDatetime", "valueDateTime": "2023-12-11"}]}
    assert group["extension"][:-1] == report["group"][0].get("extension", [])
    # a second remark on the report itself, with a code and text; the If-Match of a stale version is refused
    op = {"name": "operation", "part": [
        {"name": "type", "valueCode": "add"}, {"name": "path", "valueString": "MeasureReport"},
        {"name": "name", "valueString": "extension"},
        {"name": "value", "part": [
            {"name": "url", "valueUri": "http://hl7.org/fhir/us/davinci-deqm/StructureDefinition/extension-careGapRemark"},
            {"name": "extension", "part": [{"name": "url", "valueUri": "code"}, {"name": "value", "valueCodeableConcept": {
                "coding": [{"system": "http://hl7.org/fhir/us/davinci-deqm/CodeSystem/care-gap-remark",
                            "code": "order-placed"}]}}]},
            {"name": "extension", "part": [{"name": "url", "valueUri": "text"},
                                           {"name": "value", "valueString": "Colonoscopy ordered"}]}]}]}
    body = {"resourceType": "Parameters", "parameter": [op]}
    stale = client.patch(f"/fhir/MeasureReport/{report['id']}", json=body, headers={**JSON, "If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert client.patch(f"/fhir/MeasureReport/{report['id']}", json=body, headers=JSON).status_code == 200
    stored = client.get(f"/fhir/MeasureReport/{report['id']}").json()
    assert stored["meta"]["versionId"] == "3"
    assert [e["url"] for e in stored["extension"][-1]["extension"]] == ["code", "text"]
    nowhere = {"resourceType": "Parameters", "parameter": [{**op, "part": [
        {"name": "type", "valueCode": "add"}, {"name": "path", "valueString": "MeasureReport.group.where(id='nope')"},
        *op["part"][2:]]}]}
    assert client.patch(f"/fhir/MeasureReport/{report['id']}", json=nowhere, headers=JSON).status_code == 422
    assert client.get(f"/fhir/MeasureReport/{report['id']}").json()["meta"]["versionId"] == "3"
