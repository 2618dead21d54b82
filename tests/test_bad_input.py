"""Bad input gets a clear OperationOutcome with the right status, and leaves the store unchanged."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from gateway.store.sql.store import SqlStore
from gateway.store.sql.tables import HISTORY, RESOURCE
from tests.conftest import make_client

JSON = {"Content-Type": "application/fhir+json"}


def snapshot(store: SqlStore) -> tuple[int, int, list]:
    with store.engine.connect() as conn:
        res = conn.execute(RESOURCE.select().order_by(RESOURCE.c.pk)).all()
        hist = conn.execute(HISTORY.select()).all()
    return len(res), len(hist), [(r.res_type, r.res_id, r.version, r.content) for r in res]


@pytest.fixture()
def seeded(client: TestClient, store: SqlStore) -> tuple[TestClient, SqlStore, str]:
    r = client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1", "gender": "male"}, headers=JSON)
    assert r.status_code == 201
    return client, store, "p1"


def outcome(r, status: int, code: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["diagnostics"]
    if code:
        assert body["issue"][0]["code"] == code
    return body


CASES = [
    ("malformed json", "post", "/fhir/Patient", b'{"resourceType": "Patient", ', 400, None),
    ("not an object", "post", "/fhir/Patient", b"[1, 2]", 400, None),
    ("wrong resourceType for url", "post", "/fhir/Patient", b'{"resourceType": "Observation", "status": "final", "code": {"text": "x"}}', 400, None),
    ("unknown type", "post", "/fhir/Patientt", b'{"resourceType": "Patientt"}', 404, None),
    ("unknown element", "post", "/fhir/Patient", b'{"resourceType": "Patient", "colour": "blue"}', 400, "structure"),
    ("invalid date", "post", "/fhir/Patient", b'{"resourceType": "Patient", "birthDate": "1990-02-30"}', 400, None),
    ("invalid date format", "put", "/fhir/Patient/p1", b'{"resourceType": "Patient", "id": "p1", "birthDate": "02/03/1990"}', 400, None),
    ("id mismatch", "put", "/fhir/Patient/p1", b'{"resourceType": "Patient", "id": "p2"}', 400, None),
    ("missing id on update", "put", "/fhir/Patient/p1", b'{"resourceType": "Patient"}', 400, None),
    ("bad id", "put", "/fhir/Patient/p1", b'{"resourceType": "Patient", "id": "bad id!"}', 400, None),
    ("empty body", "post", "/fhir/Patient", b"", 400, None),
    ("wrong media type", "post", "/fhir/Patient", b"<Patient/>", 415, None),
    ("missing required element", "post", "/fhir/Observation", b'{"resourceType": "Observation", "status": "final"}', 400, None),
    ("bad enum code", "post", "/fhir/Patient", b'{"resourceType": "Patient", "gender": 12}', 400, None),
]


@pytest.mark.parametrize(("name", "method", "url", "body", "status", "code"), CASES, ids=[c[0] for c in CASES])
def test_rejected_and_unchanged(seeded, name, method, url, body, status, code) -> None:  # type: ignore[no-untyped-def]
    client, store, _ = seeded
    before = snapshot(store)
    ctype = "text/plain" if name == "wrong media type" else "application/fhir+json"
    r = getattr(client, method)(url, content=body, headers={"Content-Type": ctype})
    outcome(r, status, code)
    assert snapshot(store) == before


def test_oversize_body(store: SqlStore) -> None:
    with make_client(store, max_body_bytes=1000) as client:
        before = snapshot(store)
        big = b'{"resourceType": "Patient", "name": [{"text": "' + b"x" * 5000 + b'"}]}'
        outcome(client.post("/fhir/Patient", content=big, headers=JSON), 413)
        assert snapshot(store) == before


def test_unknown_route_and_method(client: TestClient) -> None:
    outcome(client.get("/fhir/Patient/x/y/z/w"), 404)
    outcome(client.get("/fhir/Patient/nope"), 404, "not-found")
    outcome(client.patch("/fhir/Patient", content=b"{}", headers=JSON), 405)


def test_bad_search_values(seeded) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = seeded
    outcome(client.get("/fhir/Patient?birthdate=not-a-date"), 400)
    outcome(client.get("/fhir/Observation?value-quantity=abc"), 400)
    outcome(client.get("/fhir/Patient?_count=many"), 400)
    outcome(client.get("/fhir/Patient?_sort=nonsense"), 400)
    outcome(client.get("/fhir/Patient?name:bogus=x"), 400)
    outcome(client.get("/fhir/Patient?foo=bar", headers={"Prefer": "handling=strict"}), 400)
    lenient = client.get("/fhir/Patient?foo=bar", headers={"Prefer": "handling=lenient"}).json()
    assert lenient["total"] == 1
    assert lenient["entry"][-1]["search"]["mode"] == "outcome"


def test_bad_transactions_change_nothing(seeded) -> None:  # type: ignore[no-untyped-def]
    client, store, _ = seeded
    before = snapshot(store)
    good = {"fullUrl": "urn:uuid:0d8d3f1e-0000-4000-8000-000000000001",
            "resource": {"resourceType": "Patient", "name": [{"family": "Ok"}]},
            "request": {"method": "POST", "url": "Patient"}}
    broken_ref = {"fullUrl": "urn:uuid:0d8d3f1e-0000-4000-8000-000000000002",
                  "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                               "subject": {"reference": "urn:uuid:0d8d3f1e-0000-4000-8000-00000000dead"}},
                  "request": {"method": "POST", "url": "Observation"}}
    missing_target = {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                                   "subject": {"reference": "Patient/does-not-exist"}},
                      "request": {"method": "POST", "url": "Observation"}}
    invalid = {"resource": {"resourceType": "Patient", "birthDate": "yesterday"},
               "request": {"method": "POST", "url": "Patient"}}
    update_p1 = {"resource": {"resourceType": "Patient", "id": "p1", "gender": "female"},
                 "request": {"method": "PUT", "url": "Patient/p1"}}
    for bad in (broken_ref, missing_target, invalid):
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [update_p1, good, bad]}
        r = client.post("/fhir", json=bundle, headers=JSON)
        body = outcome(r, 400)
        assert "Bundle.entry[2]" in body["issue"][0]["diagnostics"]
        assert snapshot(store) == before
    outcome(client.post("/fhir", json={"resourceType": "Bundle", "type": "collection"}, headers=JSON), 400)
    outcome(client.post("/fhir", json={"resourceType": "Patient"}, headers=JSON), 400)
    no_request = {"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": {"resourceType": "Patient"}}]}
    outcome(client.post("/fhir", json=no_request, headers=JSON), 400)
    assert snapshot(store) == before


def test_if_match_failure_leaves_store(seeded) -> None:  # type: ignore[no-untyped-def]
    client, store, pid = seeded
    before = snapshot(store)
    outcome(client.put(f"/fhir/Patient/{pid}", json={"resourceType": "Patient", "id": pid},
                       headers={**JSON, "If-Match": 'W/"9"'}), 412)
    assert snapshot(store) == before
