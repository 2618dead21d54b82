"""$submit-data end to end: a provider's data closes a patient's gap in $care-gaps; snapshot and incremental
updates; Provenance; bad submissions leave nothing stored."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.measure.cases import case_paths
from tests.conftest import SHARED, make_client
from tests.test_care_gaps import ALL, PERIOD, category, expected_counts, load_cases, statuses
from tests.test_evaluate_measure import ECQM, JSON, measure_id

DEQM = "http://hl7.org/fhir/us/davinci-deqm/StructureDefinition/"
EXAMPLES = SHARED / "examples" / "deqm"
CMS130_URL = "https://madie.cms.gov/Measure/ColonCancerScreeningFHIR|0.1.000"


@pytest.fixture()
def client(store: Any) -> Any:
    with make_client(store, enforce_referential_integrity=False) as c:
        yield c


def closing_data(pid: str) -> list[dict[str, Any]]:
    """The clinical data of the first CMS130 numerator case (its screening), moved to patient ``pid``."""
    for path in case_paths(ECQM / "CMS130"):
        case = json.loads(path.read_text())
        if category(expected_counts("CMS130", path, case)) != "numerator":
            continue
        own = next(e["resource"]["id"] for e in case["entry"] if e["resource"]["resourceType"] == "Patient")
        out = []
        for e in case["entry"]:
            r = e["resource"]
            if r["resourceType"] in ("Patient", "MeasureReport", "Encounter"):
                continue
            text = json.dumps(r).replace(f"Patient/{own}", f"Patient/{pid}")
            moved = json.loads(text)
            moved["id"] = f"sub-{pid[:8]}-{r['id']}"[:64]
            out.append(moved)
        if out:
            return out
    raise AssertionError("no CMS130 numerator case with clinical data")


def datax(pid: str, update: str = "snapshot", reporter: str = "Organization/provider1", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "MeasureReport", "meta": {"profile": [DEQM + "datax-measurereport-deqm"]},
            "extension": [{"url": DEQM + "extension-submitDataUpdateType", "valueCode": update}],
            "status": "complete", "type": "data-collection", "measure": CMS130_URL,
            "subject": {"reference": f"Patient/{pid}"}, "date": "2025-11-01T10:00:00Z",
            "reporter": {"reference": reporter}, "period": {"start": "2025-01-01", "end": "2025-12-31"}, **extra}


def submit(client: TestClient, report: dict[str, Any], data: list[dict[str, Any]], path: str = "/fhir/Measure/$submit-data",
           headers: dict[str, str] | None = None) -> Any:
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": report}] + [{"resource": r} for r in data]}
    return client.post(path, headers={**JSON, **(headers or {})},
                       json={"resourceType": "Parameters", "parameter": [{"name": "bundle", "resource": bundle}]})


def gaps(client: TestClient, pid: str) -> list[str]:
    r = client.get("/fhir/Measure/$care-gaps", params={**PERIOD, "subject": f"Patient/{pid}",
                                                       "measureId": measure_id("CMS130"), "status": ALL})
    assert r.status_code == 200, r.text
    return statuses(r.json())[f"Patient/{pid}"]


def count(client: TestClient, rtype: str) -> int:
    return client.get(f"/fhir/{rtype}", params={"_summary": "count"}).json()["total"]


def test_submitted_data_closes_the_gap(client: TestClient) -> None:
    chosen = load_cases(client, "CMS130")
    pid = chosen["denominator"][0]
    assert gaps(client, pid) == ["open-gap"]
    data = closing_data(pid)
    prov = {"resourceType": "Provenance", "agent": [{"who": {"reference": "Organization/provider1"}}],
            "target": [{"reference": "Patient/x"}], "recorded": "2025-11-01T10:00:00Z"}
    r = submit(client, datax(pid), data, f"/fhir/Measure/{measure_id('CMS130')}/$submit-data",
               headers={"X-Provenance": json.dumps(prov)})
    assert r.status_code == 200, r.text
    assert gaps(client, pid) == ["closed-gap"]
    # the report is stored with its data listed, and a Provenance names the sender and everything written
    stored = client.get("/fhir/MeasureReport", params={"subject": f"Patient/{pid}"}).json()["entry"]
    assert len(stored) == 1
    listed = {e["reference"] for e in stored[0]["resource"]["evaluatedResource"]}
    assert listed == {f"{d['resourceType']}/{d['id']}" for d in data}
    provs = client.get("/fhir/Provenance").json()["entry"]
    assert len(provs) == 1
    p = provs[0]["resource"]
    assert p["agent"] == prov["agent"]
    assert {t["reference"] for t in p["target"]} == listed | {f"MeasureReport/{stored[0]['resource']['id']}"}


def test_snapshot_replaces_and_incremental_adds(client: TestClient) -> None:
    chosen = load_cases(client, "CMS130")
    pid = chosen["denominator"][0]
    data = closing_data(pid)
    assert submit(client, datax(pid, "incremental"), data).status_code == 200
    assert gaps(client, pid) == ["closed-gap"]
    extra = {"resourceType": "Observation", "id": f"note-{pid[:8]}", "status": "final",
             "code": {"text": "note"}, "subject": {"reference": f"Patient/{pid}"}}
    assert submit(client, datax(pid, "incremental"), [extra]).status_code == 200
    assert client.get(f"/fhir/Observation/{extra['id']}").status_code == 200
    assert all(client.get(f"/fhir/{d['resourceType']}/{d['id']}").status_code == 200 for d in data)
    # a snapshot from the same reporter replaces its earlier submissions: the screening is gone
    assert submit(client, datax(pid, "snapshot"), [extra]).status_code == 200
    assert all(client.get(f"/fhir/{d['resourceType']}/{d['id']}").status_code == 410 for d in data)
    assert client.get(f"/fhir/Observation/{extra['id']}").status_code == 200
    assert gaps(client, pid) == ["open-gap"]
    reports = client.get("/fhir/MeasureReport", params={"subject": f"Patient/{pid}"}).json()["entry"]
    assert len(reports) == 1
    # another reporter's snapshot leaves the first reporter's data alone
    assert submit(client, datax(pid, "snapshot", "Organization/other"), []).status_code == 200
    assert client.get(f"/fhir/Observation/{extra['id']}").status_code == 200


def test_r4_form_and_official_example(client: TestClient) -> None:
    chosen = load_cases(client, "CMS130")
    pid = chosen["denominator"][0]
    data = closing_data(pid)
    r = client.post("/fhir/Measure/$submit-data", headers=JSON, json={"resourceType": "Parameters", "parameter": [
        {"name": "measureReport", "resource": datax(pid)}, *[{"name": "resource", "resource": d} for d in data]]})
    assert r.status_code == 200, r.text
    assert gaps(client, pid) == ["closed-gap"]
    # the official submit example names a measure this server does not have: refused, nothing stored
    before = count(client, "Observation"), count(client, "MeasureReport")
    example = json.loads((EXAMPLES / "Parameters-col-submit-obs.json").read_text())
    r = client.post("/fhir/Measure/$submit-data", headers=JSON, json=example)
    assert r.status_code == 422 and "not a Measure known" in r.json()["issue"][0]["diagnostics"]
    assert (count(client, "Observation"), count(client, "MeasureReport")) == before
    # with that measure on the server the official example is accepted and its resources round-trip
    client.put("/fhir/Measure/exm130", headers=JSON, json={
        "resourceType": "Measure", "id": "exm130", "status": "active", "version": "8.0.000",
        "url": "http://hl7.org/fhir/us/cqfmeasures/Measure/EXM130-FHIR"})
    r = client.post("/fhir/Measure/$submit-data", headers=JSON, json=example)
    assert r.status_code == 200, r.text
    for e in example["parameter"][0]["resource"]["entry"]:
        sent = e["resource"]
        if sent.get("id"):
            back = client.get(f"/fhir/{sent['resourceType']}/{sent['id']}").json()
            listed = {x["reference"] for x in back.get("evaluatedResource", [])}
            assert {k: v for k, v in back.items() if k not in ("meta", "evaluatedResource")} == \
                {k: v for k, v in sent.items() if k not in ("meta", "evaluatedResource")}
            assert {x["reference"] for x in sent.get("evaluatedResource", [])} <= listed


def test_bad_submissions_store_nothing(client: TestClient) -> None:
    chosen = load_cases(client, "CMS130")
    pid = chosen["denominator"][0]
    data = closing_data(pid)
    before = {t: count(client, t) for t in ("MeasureReport", "Provenance", "Procedure", "Observation")}

    def refused(report: dict[str, Any], status: int, words: str, **kw: Any) -> None:
        r = submit(client, report, data, **kw)
        assert r.status_code == status, r.text
        assert r.json()["resourceType"] == "OperationOutcome"
        assert words in r.text
        assert {t: count(client, t) for t in before} == before

    refused(datax(pid, "replace"), 400, "submitDataUpdateType")
    refused({k: v for k, v in datax(pid).items() if k != "period"}, 400, "period")
    refused({**datax(pid), "measure": "http://example.org/Measure/unknown|1"}, 422, "not a Measure known")
    refused({**datax(pid), "type": "individual"}, 400, "data-collection")
    refused({k: v for k, v in datax(pid).items() if k != "extension"}, 400, "submitDataUpdateType")
    refused({k: v for k, v in datax(pid).items() if k != "reporter"}, 400, "reporter")
    refused(datax(pid), 400, "X-Provenance", headers={"X-Provenance": json.dumps(
        {"resourceType": "Provenance", "agent": [{"who": {"reference": "Organization/someone-else"}}]})})
    refused(datax(pid), 404, "Measure/nope", path="/fhir/Measure/nope/$submit-data")
    bad = [{**data[0], "meta": {"lastUpdated": "not-a-date"}}]
    r = submit(client, datax(pid), bad)
    assert r.status_code == 400 and {t: count(client, t) for t in before} == before
