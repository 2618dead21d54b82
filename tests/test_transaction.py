"""Batch and transaction Bundles at POST /fhir on both backends."""

from __future__ import annotations

from fastapi.testclient import TestClient

JSON = {"Content-Type": "application/fhir+json"}
U = "urn:uuid:6f1b2c4e-1111-4a4a-9d9d-{:012d}"


def bundle(btype: str, entries: list[dict]) -> dict:
    return {"resourceType": "Bundle", "type": btype, "entry": entries}


def test_transaction_resolves_urn_uuid_references(client: TestClient) -> None:
    entries = [
        {"fullUrl": U.format(2), "resource": {"resourceType": "Observation", "status": "final",
                                              "code": {"text": "bp"}, "subject": {"reference": U.format(1)},
                                              "encounter": {"reference": U.format(3)}},
         "request": {"method": "POST", "url": "Observation"}},
        {"fullUrl": U.format(1), "resource": {"resourceType": "Patient", "name": [{"family": "Tx"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": U.format(3), "resource": {"resourceType": "Encounter", "status": "finished",
                                              "class": {"code": "AMB"}, "subject": {"reference": U.format(1)}},
         "request": {"method": "POST", "url": "Encounter"}},
    ]
    r = client.post("/fhir", json=bundle("transaction", entries), headers=JSON)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["type"] == "transaction-response"
    assert [e["response"]["status"] for e in body["entry"]] == ["201 Created"] * 3
    obs_loc, pat_loc, enc_loc = (e["response"]["location"] for e in body["entry"])
    pid = pat_loc.split("/")[1]
    obs = client.get("/fhir/" + obs_loc.split("/_history")[0]).json()
    assert obs["subject"]["reference"] == f"Patient/{pid}"
    assert obs["encounter"]["reference"] == enc_loc.split("/_history")[0]
    assert client.get(f"/fhir/Observation?patient={pid}").json()["total"] == 1


def test_transaction_order_and_conditionals(client: TestClient) -> None:
    client.put("/fhir/Patient/keep", json={"resourceType": "Patient", "id": "keep", "identifier": [{"system": "s", "value": "1"}]}, headers=JSON)
    client.put("/fhir/Patient/drop", json={"resourceType": "Patient", "id": "drop"}, headers=JSON)
    entries = [
        {"fullUrl": U.format(10), "resource": {"resourceType": "Patient", "identifier": [{"system": "s", "value": "1"}]},
         "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=s|1"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                      "subject": {"reference": U.format(10)}, "performer": [{"reference": "Patient?identifier=s|1"}]},
         "request": {"method": "POST", "url": "Observation"}},
        {"request": {"method": "DELETE", "url": "Patient/drop"}},
        {"resource": {"resourceType": "Patient", "identifier": [{"system": "s", "value": "2"}], "gender": "male"},
         "request": {"method": "PUT", "url": "Patient?identifier=s|2"}},
        {"request": {"method": "GET", "url": "Patient?identifier=s|1"}},
    ]
    r = client.post("/fhir", json=bundle("transaction", entries), headers=JSON)
    assert r.status_code == 200, r.text
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert statuses == ["200 OK", "201 Created", "204 No Content", "201 Created", "200 OK"]
    search = r.json()["entry"][4]["resource"]
    assert search["type"] == "searchset" and search["total"] == 1
    obs_id = r.json()["entry"][1]["response"]["location"].split("/")[1]
    obs = client.get(f"/fhir/Observation/{obs_id}").json()
    assert obs["subject"]["reference"] == "Patient/keep"
    assert obs["performer"][0]["reference"] == "Patient/keep"
    assert client.get("/fhir/Patient/drop").status_code == 410


def test_transaction_prefer_representation(client: TestClient) -> None:
    entries = [{"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}]
    r = client.post("/fhir", json=bundle("transaction", entries), headers={**JSON, "Prefer": "return=representation"})
    assert r.json()["entry"][0]["resource"]["resourceType"] == "Patient"
    r = client.post("/fhir", json=bundle("transaction", entries), headers=JSON)
    assert "resource" not in r.json()["entry"][0]


def test_batch_entries_independent(client: TestClient) -> None:
    entries = [
        {"resource": {"resourceType": "Patient", "name": [{"family": "B1"}]}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "birthDate": "bad"}, "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "GET", "url": "Patient/nope"}},
        {"resource": {"resourceType": "Patient", "id": "b3"}, "request": {"method": "PUT", "url": "Patient/b3"}},
    ]
    r = client.post("/fhir", json=bundle("batch", entries), headers=JSON)
    assert r.status_code == 200
    body = r.json()
    assert body["type"] == "batch-response"
    st = [e["response"]["status"] for e in body["entry"]]
    assert st[0] == "201 Created" and st[1].startswith("400") and st[2].startswith("404") and st[3] == "201 Created"
    assert body["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/Patient").json()["total"] == 2


def test_transaction_duplicate_full_url_rejected(client: TestClient) -> None:
    e = {"fullUrl": U.format(5), "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}
    r = client.post("/fhir", json=bundle("transaction", [e, e]), headers=JSON)
    assert r.status_code == 400
    assert client.get("/fhir/Patient").json()["total"] == 0
