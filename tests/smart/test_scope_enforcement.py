"""Scope enforcement through the real app: v1 and v2 scopes, query filters, and patient/ scopes confining
reads, searches (with _include/_revinclude), history, writes, transactions and operation outputs to the
launch patient's compartment."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import Request
from fastapi.testclient import TestClient

from gateway.auth.context import SYSTEM, acting_as

from .conftest import bearer, issue

CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
LAB = f"{CAT}|laboratory"


def _obs(oid: str, pid: str, category: str, performer: str | None = None) -> dict[str, Any]:
    o: dict[str, Any] = {"resourceType": "Observation", "id": oid, "status": "final",
                         "category": [{"coding": [{"system": CAT, "code": category}]}],
                         "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
                         "subject": {"reference": f"Patient/{pid}"}, "valueQuantity": {"value": 7.1, "unit": "%"}}
    if performer:
        o["performer"] = [{"reference": performer}]
    return o


@pytest.fixture()
def seeded(auth_client: TestClient) -> TestClient:
    rest = auth_client.app.state.rest
    for r in [{"resourceType": "Patient", "id": "p1", "name": [{"family": "One"}]},
              {"resourceType": "Patient", "id": "p2", "name": [{"family": "Two"}]},
              {"resourceType": "Practitioner", "id": "dr", "name": [{"family": "Doc"}]},
              _obs("o1", "p1", "laboratory", "Practitioner/dr"), _obs("o2", "p2", "laboratory"),
              _obs("o3", "p1", "vital-signs")]:
        with acting_as(SYSTEM):
            rest.update(r["resourceType"], r["id"], r)
    return auth_client


def ids(bundle: dict[str, Any]) -> set[str]:
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry", [])
            if "resource" in e}


def test_patient_scope_search_is_confined(seeded: TestClient) -> None:
    t = bearer(issue(seeded, "patient/*.rs", "p1"))
    r = seeded.get("/fhir/Observation", headers=t)
    assert r.status_code == 200 and ids(r.json()) == {"Observation/o1", "Observation/o3"}
    assert r.json()["total"] == 2
    r = seeded.get("/fhir/Observation?_include=Observation:subject&_include=Observation:performer", headers=t)
    assert ids(r.json()) == {"Observation/o1", "Observation/o3", "Patient/p1", "Practitioner/dr"}
    r = seeded.get("/fhir/Patient?_revinclude=Observation:subject", headers=t)
    assert ids(r.json()) == {"Patient/p1", "Observation/o1", "Observation/o3"}
    r = seeded.post("/fhir/Observation/_search", data={"subject": "Patient/p2"}, headers=t)
    assert r.status_code == 200 and ids(r.json()) == set()
    # chained search cannot reach across either
    r = seeded.get("/fhir/Observation?subject.family=Two", headers=t)
    assert ids(r.json()) == set()


def test_patient_scope_reads(seeded: TestClient) -> None:
    t = bearer(issue(seeded, "patient/*.rs", "p1"))
    assert seeded.get("/fhir/Observation/o1", headers=t).status_code == 200
    assert seeded.get("/fhir/Patient/p1", headers=t).status_code == 200
    for path in ("/fhir/Observation/o2", "/fhir/Patient/p2", "/fhir/Observation/o2/_history/1",
                 "/fhir/Observation/o2/_history"):
        r = seeded.get(path, headers=t)
        assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome", path
    # the compartment of another patient is refused outright
    assert seeded.get("/fhir/Patient/p2/Observation", headers=t).status_code == 403
    r = seeded.get("/fhir/Patient/p1/Observation", headers=t)
    assert ids(r.json()) == {"Observation/o1", "Observation/o3"}
    # non-compartment types are shared reference data [policy]
    assert seeded.get("/fhir/Practitioner/dr", headers=t).status_code == 200


def test_patient_scope_history_is_confined(seeded: TestClient) -> None:
    with acting_as(SYSTEM):
        seeded.app.state.rest.delete("Observation", "o2")
    t = bearer(issue(seeded, "patient/*.rs", "p1"))
    for path in ("/fhir/Observation/_history", "/fhir/_history"):
        r = seeded.get(path, headers=t)
        assert r.status_code == 200, path
        got = ids(r.json())
        assert "Observation/o2" not in got and "Patient/p2" not in got and "Observation/o1" in got, path
        urls = [e.get("request", {}).get("url", "") for e in r.json()["entry"]]
        assert not any("o2" in u for u in urls), urls  # nor the deletion of p2's observation


def test_patient_scope_writes(seeded: TestClient) -> None:
    t = bearer(issue(seeded, "patient/*.cruds", "p1"))
    h = {**t, "Content-Type": "application/fhir+json"}
    ok = seeded.post("/fhir/Observation", json=_obs("x", "p1", "laboratory"), headers=h)
    assert ok.status_code == 201
    r = seeded.post("/fhir/Observation", json=_obs("x", "p2", "laboratory"), headers=h)
    assert r.status_code == 403 and r.json()["resourceType"] == "OperationOutcome"
    r = seeded.put("/fhir/Observation/o2", json=_obs("o2", "p1", "laboratory"), headers=h)
    assert r.status_code == 403  # the stored version belongs to p2
    r = seeded.put("/fhir/Observation/o1", json=_obs("o1", "p2", "laboratory"), headers=h)
    assert r.status_code == 403  # the new version would leave the compartment
    assert seeded.delete("/fhir/Observation/o2", headers=t).status_code == 403
    assert seeded.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=h).status_code == 403
    # nothing of p2 changed
    assert seeded.app.state.store.read("Observation", "o2").version == 1


def test_transaction_entries_are_checked_one_by_one(seeded: TestClient) -> None:
    t = {**bearer(issue(seeded, "patient/*.cruds", "p1")), "Content-Type": "application/fhir+json"}
    bad = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": _obs("a", "p1", "laboratory"), "request": {"method": "POST", "url": "Observation"}},
        {"resource": _obs("b", "p2", "laboratory"), "request": {"method": "POST", "url": "Observation"}}]}
    r = seeded.post("/fhir", json=bad, headers=t)
    assert r.status_code == 403 and "entry[1]" in r.text
    assert seeded.get("/fhir/Observation?_summary=count", headers=t).json()["total"] == 2  # nothing written
    narrow = {**bearer(issue(seeded, "patient/Observation.rs", "p1")), "Content-Type": "application/fhir+json"}
    r = seeded.post("/fhir", json={"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "DELETE", "url": "Observation/o1"}}]}, headers=narrow)
    assert r.status_code == 403
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Observation/o1"}}, {"request": {"method": "GET", "url": "Observation?_count=50"}}]}
    r = seeded.post("/fhir", json=batch, headers=narrow)
    assert r.status_code == 200, r.text
    inner = r.json()["entry"][1]["resource"]
    assert ids(inner) == {"Observation/o1", "Observation/o3"}


def test_v1_scopes(seeded: TestClient) -> None:
    t = bearer(issue(seeded, "patient/Observation.read", "p1"))
    assert seeded.get("/fhir/Observation/o1", headers=t).status_code == 200
    assert ids(seeded.get("/fhir/Observation", headers=t).json()) == {"Observation/o1", "Observation/o3"}
    h = {**t, "Content-Type": "application/fhir+json"}
    assert seeded.post("/fhir/Observation", json=_obs("y", "p1", "laboratory"), headers=h).status_code == 403
    assert seeded.get("/fhir/Condition", headers=t).status_code == 403
    w = bearer(issue(seeded, "user/Observation.write"))
    assert seeded.get("/fhir/Observation/o1", headers=w).status_code == 403  # write does not imply read
    assert seeded.post("/fhir/Observation", json=_obs("y", "p2", "laboratory"),
                       headers={**w, "Content-Type": "application/fhir+json"}).status_code == 201


def test_v2_scope_query_filters(seeded: TestClient) -> None:
    t = bearer(issue(seeded, f"patient/Observation.rs?category={LAB}", "p1"))
    assert ids(seeded.get("/fhir/Observation", headers=t).json()) == {"Observation/o1"}
    assert seeded.get("/fhir/Observation/o1", headers=t).status_code == 200
    assert seeded.get("/fhir/Observation/o3", headers=t).status_code == 404  # a vital sign
    u = bearer(issue(seeded, f"user/Observation.rs?category={LAB}"))
    assert ids(seeded.get("/fhir/Observation", headers=u).json()) == {"Observation/o1", "Observation/o2"}


def test_user_and_system_scopes_see_everything_they_cover(seeded: TestClient) -> None:
    for scope in ("user/*.rs", "system/*.rs", "patient/*.rs user/Observation.rs"):
        t = bearer(issue(seeded, scope, "p1"))
        got = ids(seeded.get("/fhir/Observation", headers=t).json())
        assert got == {"Observation/o1", "Observation/o2", "Observation/o3"}, scope


def test_patient_scopes_need_a_launch_patient(seeded: TestClient) -> None:
    t = bearer(issue(seeded, "patient/*.rs"))
    r = seeded.get("/fhir/Observation", headers=t)
    assert r.status_code == 403 and "launch patient" in r.text


def test_request_state_carries_the_grant(seeded: TestClient) -> None:
    seen: dict[str, Any] = {}

    async def peek(request: Request) -> dict[str, str]:
        seen.update(client_id=request.state.client_id, patient=request.state.patient,
                    scopes=request.state.scopes)
        return {}

    router = seeded.app.router
    router.add_api_route("/fhir/Observation/$peek", peek, methods=["GET"])
    router.routes.insert(0, router.routes.pop())
    from gateway.auth import policy

    policy.OPERATIONS["peek"] = policy.OperationPolicy((policy.Need("Observation", "r"),), patient=True)
    try:
        r = seeded.get("/fhir/Observation/$peek", headers=bearer(issue(seeded, "patient/Observation.r", "p1",
                                                                         client_id="the-app")))
        assert r.status_code == 200, r.text
        assert seen == {"client_id": "the-app", "patient": "p1", "scopes": "patient/Observation.r"}
    finally:
        del policy.OPERATIONS["peek"]
        router.routes.pop(0)


def test_token_validation(seeded: TestClient) -> None:
    auth = seeded.app.state.authority
    expired = issue(seeded, "user/*.rs", lifetime=-10)
    r = seeded.get("/fhir/Patient", headers=bearer(expired))
    assert r.status_code == 401 and "invalid_token" in r.headers["www-authenticate"]
    good = issue(seeded, "user/*.rs")
    head, payload, sig = good.split(".")
    assert seeded.get("/fhir/Patient", headers=bearer(f"{head}.{payload}.{sig[::-1]}")).status_code == 401
    # a token for another audience, signed by this server's own key
    from joserfc import jwt

    key = auth.keys.signing_key
    other = jwt.encode({"alg": "RS256", "kid": key.kid}, {"iss": auth.fhir_base, "aud": "https://other.example.org/fhir",
                                                          "exp": 4102444800, "jti": "x", "scope": "user/*.rs"}, key)
    assert seeded.get("/fhir/Patient", headers=bearer(other)).status_code == 401
    # revoked
    assert seeded.get("/fhir/Patient", headers=bearer(good)).status_code == 200
    auth.tokens.revoke(good)
    assert seeded.get("/fhir/Patient", headers=bearer(good)).status_code == 401


def test_includes_of_types_the_scopes_do_not_cover_are_dropped(seeded: TestClient) -> None:
    t = bearer(issue(seeded, "user/Observation.rs"))
    r = seeded.get("/fhir/Observation?_include=Observation:subject&_include=Observation:performer", headers=t)
    assert r.status_code == 200 and ids(r.json()) == {"Observation/o1", "Observation/o2", "Observation/o3"}
    r = seeded.post("/fhir/Observation/_search", data={"_include": "Observation:subject"}, headers=t)
    assert ids(r.json()) == {"Observation/o1", "Observation/o2", "Observation/o3"}
    # an explicitly typed include of an uncovered type is refused outright
    assert seeded.get("/fhir/Observation?_include=Observation:subject:Patient", headers=t).status_code == 403
    assert seeded.get("/fhir/Patient?_revinclude=Observation:subject",
                      headers=bearer(issue(seeded, "user/Patient.rs"))).status_code == 403
    both = bearer(issue(seeded, "user/Observation.rs user/Patient.rs"))
    r = seeded.get("/fhir/Observation?_include=Observation:subject", headers=both)
    assert {"Patient/p1", "Patient/p2"} <= ids(r.json())


def test_patch_cannot_move_a_resource_out_of_the_compartment(seeded: TestClient) -> None:
    t = {**bearer(issue(seeded, "patient/*.cruds", "p1")), "Content-Type": "application/json-patch+json"}
    move = [{"op": "replace", "path": "/subject/reference", "value": "Patient/p2"}]
    assert seeded.patch("/fhir/Observation/o1", json=move, headers=t).status_code == 403
    fine = [{"op": "replace", "path": "/status", "value": "amended"}]
    assert seeded.patch("/fhir/Observation/o1", json=fine, headers=t).status_code == 200
    assert seeded.app.state.store.read("Observation", "o1").version == 2
