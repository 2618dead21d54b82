"""X-Provenance (FHIR R4 provenance.html#header, ATR SHOULD): a Provenance sent in the header of a create
or update is stored with the resource, atomically, targeting the version written; bad headers change
nothing."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

H = {"Content-Type": "application/fhir+json"}
PROV = {"resourceType": "Provenance", "recorded": "2026-11-20T10:00:00Z",
        "agent": [{"who": {"reference": "Organization/payer-1"}}],
        "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                                 "code": "CREATE"}]}}


def provenances(client: TestClient) -> list[dict]:
    return [e["resource"] for e in client.get("/fhir/Provenance?_count=100").json().get("entry", [])]


def org(oid: str, name: str = "Clinic") -> dict:
    return {"resourceType": "Organization", "id": oid, "name": name}


def test_create_and_update_store_the_header_provenance(client: TestClient) -> None:
    r = client.post("/fhir/Organization", json=org("x"), headers={**H, "X-Provenance": json.dumps(PROV)})
    assert r.status_code == 201
    oid = r.json()["id"]
    [p] = provenances(client)
    assert p["target"] == [{"reference": f"Organization/{oid}/_history/1"}]
    assert p["agent"] == PROV["agent"] and p["recorded"] == PROV["recorded"]
    # update: a target naming the resource (any version) is accepted and pinned to the version written
    upd = {**PROV, "target": [{"reference": f"Organization/{oid}"}]}
    r = client.put(f"/fhir/Organization/{oid}", json=org(oid, "Renamed"),
                   headers={**H, "X-Provenance": json.dumps(upd)})
    assert r.status_code == 200 and r.json()["meta"]["versionId"] == "2"
    targets = sorted(p["target"][0]["reference"] for p in provenances(client))
    assert targets == [f"Organization/{oid}/_history/1", f"Organization/{oid}/_history/2"]
    # searchable by target
    found = client.get(f"/fhir/Provenance?target=Organization/{oid}").json()
    assert found["total"] == 2
    # conditional update too
    r = client.put("/fhir/Organization?name=Renamed", json={"resourceType": "Organization", "name": "Renamed"},
                   headers={**H, "X-Provenance": json.dumps(PROV)})
    assert r.status_code == 200 and len(provenances(client)) == 3


def test_bad_headers_are_refused_and_nothing_is_written(client: TestClient) -> None:
    client.put("/fhir/Organization/keep", json=org("keep"), headers=H)
    cases = [
        ("{not json", 400),
        (json.dumps({"resourceType": "Patient"}), 400),
        (json.dumps({**PROV, "recorded": "yesterday"}), 400),  # invalid Provenance
        (json.dumps({k: v for k, v in PROV.items() if k != "agent"}), 400),  # agent is 1..*
        (json.dumps({**PROV, "target": [{"reference": "Organization/other"}]}), 422),  # another Organization
        (json.dumps({**PROV, "target": [{"reference": "Patient/keep"}]}), 422),  # another type
    ]
    for header, status in cases:
        r = client.put("/fhir/Organization/keep", json=org("keep", "Changed"),
                       headers={**H, "X-Provenance": header})
        assert r.status_code == status, (header, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
        if "Organization/other" in header:
            continue  # a create's id is the server's to choose: a target may name only the type
        r = client.post("/fhir/Organization", json=org("new"), headers={**H, "X-Provenance": header})
        assert r.status_code == status
    assert client.get("/fhir/Organization/keep").json()["meta"]["versionId"] == "1"
    assert client.get("/fhir/Organization/keep").json()["name"] == "Clinic"
    assert [e["resource"]["id"] for e in client.get("/fhir/Organization").json()["entry"]] == ["keep"]
    assert provenances(client) == []


def test_conditional_create_that_matches_writes_no_provenance(client: TestClient) -> None:
    body = {"resourceType": "Organization", "name": "Once", "identifier": [{"system": "urn:x", "value": "1"}]}
    h = {**H, "X-Provenance": json.dumps(PROV), "If-None-Exist": "identifier=urn:x|1"}
    assert client.post("/fhir/Organization", json=body, headers=h).status_code == 201
    assert client.post("/fhir/Organization", json=body, headers=h).status_code == 200
    assert len(provenances(client)) == 1
