"""$collect-data: what one gateway hands out, submitted to a second gateway with $submit-data, gives the same
$evaluate-measure results there; lastReceivedOn pulls only what changed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.store.sql.store import SqlStore
from tests.conftest import make_client
from tests.test_care_gaps import PERIOD, load_cases, load_corrected_measure
from tests.test_evaluate_measure import JSON, counts, measure_id

UPDATE_EXT = "http://hl7.org/fhir/us/davinci-deqm/StructureDefinition/extension-submitDataUpdateType"


@pytest.fixture()
def client(store: Any) -> Iterator[TestClient]:
    with make_client(store, enforce_referential_integrity=False) as c:
        yield c


@pytest.fixture()
def second(tmp_path: Path) -> Iterator[TestClient]:
    other = SqlStore(f"sqlite:///{tmp_path / 'second.db'}")
    with make_client(other, enforce_referential_integrity=False) as c:
        yield c
    other.close()


def evaluate(c: TestClient, mid: str, subject: str | None = None) -> list[dict[str, Any]]:
    params = {**PERIOD, **({"subject": subject} if subject else {"reportType": "population"})}
    r = c.get(f"/fhir/Measure/{mid}/$evaluate-measure", params=params)
    assert r.status_code == 200, r.text
    return counts(r.json())


def test_collected_data_gives_the_same_results_elsewhere(client: TestClient, second: TestClient) -> None:
    chosen = load_cases(client, "CMS130", per_category=2)
    load_corrected_measure(second, "CMS130")
    mid = measure_id("CMS130")
    r = client.get(f"/fhir/Measure/{mid}/$collect-data", params={**PERIOD, "organization": "Organization/prov1"})
    assert r.status_code == 200, r.text
    bundles = [p["resource"] for p in r.json()["parameter"]]
    pids = sorted(p for ids in chosen.values() for p in ids)
    assert sorted(b["entry"][0]["resource"]["subject"]["reference"] for b in bundles) == [f"Patient/{p}" for p in pids]
    for b in bundles:
        mr = b["entry"][0]["resource"]
        assert mr["type"] == "data-collection" and mr["extension"][0] == {"url": UPDATE_EXT, "valueCode": "snapshot"}
        assert {e["reference"] for e in mr["evaluatedResource"]} == \
            {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in b["entry"][1:]}
        sent = second.post("/fhir/Measure/$submit-data", headers=JSON,
                           json={"resourceType": "Parameters", "parameter": [{"name": "bundle", "resource": b}]})
        assert sent.status_code == 200, sent.text
    for pid in pids:
        assert evaluate(second, mid, f"Patient/{pid}") == evaluate(client, mid, f"Patient/{pid}")
    assert evaluate(second, mid) == evaluate(client, mid)


def test_last_received_on_sends_only_changes(client: TestClient) -> None:
    chosen = load_cases(client, "CMS130")
    mid = measure_id("CMS130")
    params = {**PERIOD, "organization": "Organization/prov1", "subject": f"Patient/{chosen['numerator'][0]}"}
    first = client.get(f"/fhir/Measure/{mid}/$collect-data", params=params).json()["parameter"][0]["resource"]
    data = [e["resource"] for e in first["entry"][1:] if e["resource"]["resourceType"] != "Patient"]
    assert data
    cut = max(e["resource"]["meta"]["lastUpdated"] for e in first["entry"][1:])
    r = client.get(f"/fhir/Measure/{mid}/$collect-data", params={**params, "lastReceivedOn": cut})
    assert r.status_code == 200 and r.json().get("parameter", []) == []
    changed = {k: v for k, v in data[0].items() if k != "meta"}
    assert client.put(f"/fhir/{changed['resourceType']}/{changed['id']}", json={**changed, "language": "en"},
                      headers=JSON).status_code == 200
    r = client.post(f"/fhir/Measure/{mid}/$collect-data", headers=JSON, json={"resourceType": "Parameters", "parameter": [
        {"name": "periodStart", "valueDate": "2025-01-01"}, {"name": "periodEnd", "valueDate": "2025-12-31"},
        {"name": "organization", "valueString": "Organization/prov1"},
        {"name": "subject", "valueString": params["subject"]}, {"name": "lastReceivedOn", "valueDateTime": cut}]})
    assert r.status_code == 200, r.text
    bundle = r.json()["parameter"][0]["resource"]
    assert bundle["entry"][0]["resource"]["extension"][0]["valueCode"] == "incremental"
    assert [(e["resource"]["resourceType"], e["resource"]["id"]) for e in bundle["entry"][1:]] == \
        [(changed["resourceType"], changed["id"])]


def test_bad_input(client: TestClient) -> None:
    load_corrected_measure(client, "CMS130")
    url = f"/fhir/Measure/{measure_id('CMS130')}/$collect-data"
    for params, words in (({**PERIOD, "organization": "Practitioner/x"}, "organization"),
                          ({**PERIOD, "organization": "Organization/o", "lastReceivedOn": "yesterday"}, "lastReceivedOn"),
                          ({"periodStart": "2025-01-01", "organization": "Organization/o"}, "periodEnd"),
                          ({**PERIOD, "organization": "Organization/o", "subject": "Observation/1"}, "subject")):
        r = client.get(url, params=params)
        assert r.status_code == 400 and words in r.text, r.text
    assert client.get("/fhir/Measure/none/$collect-data",
                      params={**PERIOD, "organization": "Organization/o"}).status_code == 404


def test_r4_form_without_organization(client: TestClient) -> None:
    """Base R4 Measure-collect-data has no organization parameter: generic clients call it without one, and
    get measureReport + resource parameters, with an OperationOutcome naming the form assumed."""
    chosen = load_cases(client, "CMS130", per_category=1)
    mid = measure_id("CMS130")
    r = client.get(f"/fhir/Measure/{mid}/$collect-data", params=PERIOD)
    assert r.status_code == 200, r.text
    params = r.json()["parameter"]
    names = [p["name"] for p in params]
    assert "return" not in names and names.count("outcome") == 1
    reports = [p["resource"] for p in params if p["name"] == "measureReport"]
    assert sorted(m["subject"]["reference"] for m in reports) == \
        sorted(f"Patient/{p}" for ids in chosen.values() for p in ids)
    assert all(m["type"] == "data-collection" and "reporter" not in m for m in reports)
    assert all("meta" not in m for m in reports)
    outcome = next(p["resource"] for p in params if p["name"] == "outcome")
    assert "R4 form" in outcome["issue"][0]["diagnostics"]
    data = [p["resource"] for p in params if p["name"] == "resource"]
    refs = {f"{d['resourceType']}/{d['id']}" for d in data}
    assert {e["reference"] for m in reports for e in m.get("evaluatedResource", [])} <= refs
    # with an organization the DEQM form answers, and says so
    deqm = client.get(f"/fhir/Measure/{mid}/$collect-data", params={**PERIOD, "organization": "Organization/o"})
    dnames = [p["name"] for p in deqm.json()["parameter"]]
    assert set(dnames) == {"return"} and len(dnames) == len(reports)
