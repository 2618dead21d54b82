"""The database-backed parts of authorization on every backend of the shared `store` fixture (SQLite file
and PostgreSQL): client registry, assertion replay cache, token records and revocation, compartment search."""

from __future__ import annotations

from fastapi.testclient import TestClient

from gateway.auth.context import SYSTEM, acting_as

from .conftest import bearer, issue, register_backend


def test_backend_token_replay_and_revocation(auth_client_any: TestClient) -> None:
    c = auth_client_any
    b = register_backend(c, "system/*.rs", "RS384")
    a = b.assertion()
    first = b.token_request(assertion=a)
    assert first.status_code == 200, first.text
    replay = b.token_request(assertion=a)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_client"
    token = first.json()["access_token"]
    assert c.get("/fhir/Patient", headers=bearer(token)).status_code == 200
    c.app.state.authority.tokens.revoke(token)
    assert c.get("/fhir/Patient", headers=bearer(token)).status_code == 401


def test_patient_compartment_search(auth_client_any: TestClient) -> None:
    c = auth_client_any
    rest = c.app.state.rest
    with acting_as(SYSTEM):
        for pid in ("p1", "p2"):
            rest.update("Patient", pid, {"resourceType": "Patient", "id": pid})
            rest.update("Condition", f"c-{pid}", {"resourceType": "Condition", "id": f"c-{pid}",
                                                   "subject": {"reference": f"Patient/{pid}"}})
    t = bearer(issue(c, "patient/*.rs", "p1"))
    r = c.get("/fhir/Condition?_include=Condition:subject", headers=t)
    got = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in r.json()["entry"]}
    assert got == {"Condition/c-p1", "Patient/p1"}
