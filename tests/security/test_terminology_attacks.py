"""Attacks on the terminology operations ($expand, $validate-code, $lookup, $subsumes) with real tokens signed
by the gateway on SQLite and PostgreSQL: no grant, grants without ValueSet/CodeSystem read, patient/ scopes,
and filtered scopes that leave a CodeSystem and a ValueSet out. The operations read through the store gate,
so content outside the grant is "not known" or "not stored" — never expanded, looked up or leaked through
the expansion cache a wider grant filled."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.store.sql.store import SqlStore
from tests.security.worlds import issued_token, loaded_world

OPEN_CS = "http://example.org/cs/open"
SECRET_CS = "http://example.org/cs/secret"
MARKER = "MARKERSECRET"


def _vs(rid: str, status: str, compose: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "ValueSet", "id": rid, "url": f"http://example.org/vs/{rid}", "status": status,
            "compose": compose}


DATA: list[dict[str, Any]] = [
    {"resourceType": "CodeSystem", "id": "open", "url": OPEN_CS, "status": "active", "content": "complete",
     "concept": [{"code": "a", "display": "Open A", "concept": [{"code": "a1", "display": "Open A1"}]}]},
    {"resourceType": "CodeSystem", "id": "secret", "url": SECRET_CS, "status": "draft", "content": "complete",
     "concept": [{"code": "s", "display": f"{MARKER} root", "concept": [{"code": "s1", "display": f"{MARKER} 1"}]}]},
    _vs("open", "active", {"include": [{"system": OPEN_CS, "filter": [{"property": "concept", "op": "is-a",
                                                                         "value": "a"}]}]}),
    _vs("over-secret", "active", {"include": [{"system": SECRET_CS, "filter": [
        {"property": "concept", "op": "is-a", "value": "s"}]}]}),
    _vs("secret", "draft", {"include": [{"system": "http://x", "concept": [{"code": "z", "display": MARKER}]}]}),
    _vs("nests-secret", "active", {"include": [{"valueSet": ["http://example.org/vs/secret"]}]}),
]

ROUTES = [("/fhir/ValueSet/$expand", {"url": "http://example.org/vs/open"}),
          ("/fhir/ValueSet/open/$expand", {}),
          ("/fhir/ValueSet/$validate-code", {"url": "http://example.org/vs/open", "system": OPEN_CS, "code": "a"}),
          ("/fhir/ValueSet/open/$validate-code", {"system": OPEN_CS, "code": "a"}),
          ("/fhir/CodeSystem/$lookup", {"system": OPEN_CS, "code": "a"}),
          ("/fhir/CodeSystem/$subsumes", {"system": OPEN_CS, "codeA": "a", "codeB": "a1"}),
          ("/fhir/CodeSystem/open/$subsumes", {"codeA": "a", "codeB": "a1"})]
FILTERED = "user/ValueSet.rs?status=active user/CodeSystem.rs?status=active"


@pytest.fixture(scope="module")
def world(session_store: SqlStore) -> Iterator[TestClient]:
    with loaded_world(session_store, DATA) as client:
        yield client


token = issued_token


def refused(r: Any, statuses: set[int]) -> str:
    assert r.status_code in statuses, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    assert MARKER not in r.text and "s1" not in r.text
    return " ".join(i.get("diagnostics", "") for i in body["issue"])


def as_params(q: dict[str, str]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [{"name": k, "valueString": v} for k, v in q.items()]}


def test_no_grant_is_401(world: TestClient) -> None:
    for url, q in ROUTES:
        refused(world.get(url, params=q), {401})
        refused(world.post(url, json=as_params(q)), {401})
        refused(world.get(url, params=q, headers={"Authorization": "Bearer not-a-token"}), {401})


def test_the_same_routes_answer_under_a_read_grant(world: TestClient) -> None:
    h = token(world, "user/ValueSet.rs user/CodeSystem.rs")
    for url, q in ROUTES:
        r = world.get(url, params=q, headers=h)
        assert r.status_code == 200, (url, r.text)


@pytest.mark.parametrize("scope", ["user/Patient.rs", "user/ValueSet.cud user/CodeSystem.cud", "__admin",
                                   "patient/ValueSet.rs patient/CodeSystem.rs", "patient/*.rs"])
def test_grants_without_terminology_read_are_403(world: TestClient, scope: str) -> None:
    h = token(world, scope, "p1" if scope.startswith("patient/") else None)
    for url, q in ROUTES:
        refused(world.get(url, params=q, headers=h), {403})


def test_value_set_operations_need_code_system_read_too(world: TestClient) -> None:
    h = token(world, "user/ValueSet.rs")
    refused(world.get("/fhir/ValueSet/open/$expand", headers=h), {403})
    h = token(world, "user/CodeSystem.rs")
    assert world.get("/fhir/CodeSystem/$lookup", params={"system": OPEN_CS, "code": "a"}, headers=h).status_code == 200
    refused(world.get("/fhir/ValueSet/open/$expand", headers=h), {403})


def test_filtered_scopes_leave_the_secret_code_system_and_value_set_out(world: TestClient) -> None:
    wide, narrow = token(world, "user/ValueSet.rs user/CodeSystem.rs"), token(world, FILTERED)
    # the wide grant expands everything, which fills the expansion cache ...
    for rid in ("over-secret", "secret", "nests-secret"):
        r = world.get(f"/fhir/ValueSet/{rid}/$expand", headers=wide)
        assert r.status_code == 200 and (MARKER in r.text or "s1" in r.text), r.text
    # ... and the narrow grant gets none of it
    ok = world.get("/fhir/ValueSet/open/$expand", headers=narrow)
    assert ok.status_code == 200 and [c["code"] for c in ok.json()["expansion"]["contains"]] == ["a", "a1"]
    assert "not stored" in refused(world.get("/fhir/ValueSet/over-secret/$expand", headers=narrow), {422})
    assert "not available" in refused(world.get("/fhir/ValueSet/nests-secret/$expand", headers=narrow), {422})
    refused(world.get("/fhir/ValueSet/secret/$expand", headers=narrow), {404})
    refused(world.get("/fhir/ValueSet/$expand", params={"url": "http://example.org/vs/secret"}, headers=narrow),
            {404})
    refused(world.get("/fhir/ValueSet/$validate-code", headers=narrow, params={
        "url": "http://example.org/vs/secret", "system": "http://x", "code": "z"}), {404})
    refused(world.get("/fhir/CodeSystem/$lookup", params={"system": SECRET_CS, "code": "s"}, headers=narrow), {404})
    refused(world.get("/fhir/CodeSystem/$subsumes", params={"system": SECRET_CS, "codeA": "s", "codeB": "s1"},
                      headers=narrow), {404})
    refused(world.get("/fhir/CodeSystem/secret/$subsumes", params={"codeA": "s", "codeB": "s1"}, headers=narrow),
            {404})
    # an inline value set is no way around the grant either
    inline = {"resourceType": "Parameters", "parameter": [{"name": "valueSet", "resource": DATA[3]}]}
    assert "not stored" in refused(world.post("/fhir/ValueSet/$expand", json=inline, headers=narrow), {422})
