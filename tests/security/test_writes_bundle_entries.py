"""Bundle entries are read by one parser (gateway/fhir/rest_url.py) for authorization and execution alike
(issue 13, defect 1): an entry URL naming an operation is refused, never run as a create; URLs the REST API
answers 404/405 get the same answer inside a Bundle; a transaction naming one resource twice fails whole.
Real SMART tokens, the real ASGI app, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.auth import policy
from gateway.auth.context import SYSTEM, acting_as
from gateway.auth.middleware import AuthMiddleware
from gateway.fhir.errors import FhirError
from gateway.fhir.rest_url import parse_request
from gateway.store.sql.store import SqlStore
from tests.conftest import make_client
from tests.smart.conftest import BASE, bearer, issue, make_auth_client

FHIR = {"Content-Type": "application/fhir+json"}
MEASURE = {"resourceType": "Measure", "status": "active", "url": "http://example.org/Measure/injected"}
PATIENT = {"resourceType": "Patient", "name": [{"family": "Injected"}]}
GROUP = {"resourceType": "Group", "type": "person", "actual": True}


@pytest.fixture()
def authed(store: SqlStore) -> Iterator[TestClient]:
    with make_auth_client(store) as c:
        rest = c.app.state.rest
        with acting_as(SYSTEM):  # test set-up, on behalf of the system
            for r in ({"resourceType": "Patient", "id": "pa", "name": [{"family": "A"}]},
                      {"resourceType": "Patient", "id": "pb", "name": [{"family": "B"}]},
                      {"resourceType": "Patient", "id": "keep", "name": [{"family": "Keep"}]}):
                rest.update("Patient", r["id"], r)
        yield c


def count(client: TestClient, rtype: str) -> int:
    """Stored, non-deleted resources of ``rtype``, read from the store itself (no token involved)."""
    return sum(1 for _ in client.app.state.store.iter_current(rtype))


def bundle(btype: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": btype, "entry": list(entries)}


def entry(method: str, url: str, resource: dict[str, Any] | None = None) -> dict[str, Any]:
    e: dict[str, Any] = {"request": {"method": method, "url": url}}
    if resource is not None:
        e["resource"] = resource
    return e


CASES = [(scope, "Measure/$data-requirements", MEASURE) for scope in ("patient/*.rs", "user/*.rs", "system/*.rs")]
CASES += [(scope, url, res) for scope in ("user/*.rs", "system/*.rs")
          for url, res in (("Patient/$export", PATIENT), ("Group/g1/$export", GROUP),
                           ("Group/g1/$davinci-data-export", GROUP), ("Measure/m1/$evaluate-measure", MEASURE))]


@pytest.mark.parametrize(("scope", "url", "resource"), CASES)
def test_operation_entry_is_not_a_create_for_read_only_tokens(authed: TestClient, scope: str, url: str,
                                                             resource: dict[str, Any]) -> None:
    """Defect 1: a read-only token posting an operation URL (`POST Measure/$data-requirements`,
    `POST Patient/$export`) with a resource created that resource."""
    rtype = resource["resourceType"]
    before = count(authed, rtype)
    h = {**bearer(issue(authed, scope, "pa" if scope.startswith("patient/") else None)), **FHIR}
    r = authed.post("/fhir", json=bundle("transaction", entry("POST", url, resource)), headers=h)
    assert r.status_code in (400, 403), r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    r = authed.post("/fhir", json=bundle("batch", entry("POST", url, resource)), headers=h)
    if r.status_code == 200:  # the batch runs, the entry is refused on its own
        resp = r.json()["entry"][0]["response"]
        assert resp["status"].startswith("400"), resp
        assert "Bundle.entry[0]" in str(resp["outcome"]) and url.split("/")[-1] in str(resp["outcome"])
        assert "location" not in resp
    else:
        assert r.status_code == 403, r.text
    assert count(authed, rtype) == before


def test_operation_entry_refused_with_an_outcome_naming_the_entry(authed: TestClient) -> None:
    """Even a token that could create Measures gets a 400 naming the entry: operations are not entries."""
    h = {**bearer(issue(authed, "system/*.cruds")), **FHIR}
    before = count(authed, "Measure")
    r = authed.post("/fhir", json=bundle("transaction",
                                         entry("POST", "Patient", {"resourceType": "Patient"}),
                                         entry("POST", "Measure/$data-requirements", MEASURE)), headers=h)
    assert r.status_code == 400, r.text
    text = r.json()["issue"][0]["diagnostics"]
    assert "Bundle.entry[1]" in text and "$data-requirements" in text and "Traceback" not in r.text
    assert count(authed, "Measure") == before
    assert count(authed, "Patient") == 3  # the transaction's other entry was not written either
    for url in ("Measure/m1/$evaluate-measure", "$export", "Patient/pa/$everything", "Patient/$validate"):
        r = authed.post("/fhir", json=bundle("batch", entry("POST", url, PATIENT)), headers=h)
        assert r.status_code == 200, r.text
        assert r.json()["entry"][0]["response"]["status"].startswith("400"), url
    assert count(authed, "Patient") == 3


def test_patient_write_app_cannot_create_for_another_patient_through_an_operation_url(authed: TestClient) -> None:
    """Defect 1: a patient/*.write app created data in another patient's compartment via an operation URL."""
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "subject": {"reference": "Patient/pb"}}
    for scope in ("patient/*.write", "patient/*.cruds"):
        h = {**bearer(issue(authed, scope, "pa")), **FHIR}
        for btype in ("transaction", "batch"):
            for url in ("Measure/$data-requirements", "Patient/pa/$everything", "Observation/$validate"):
                authed.post("/fhir", json=bundle(btype, entry("POST", url, obs)), headers=h)
        # the plain entry is refused by the compartment check, as before
        r = authed.post("/fhir", json=bundle("transaction", entry("POST", "Observation", obs)), headers=h)
        assert r.status_code == 403
    assert count(authed, "Observation") == 0


def test_history_url_delete_is_405_not_a_delete(authed: TestClient) -> None:
    """Defect 1: `DELETE Patient/keep/_history/1` in a transaction deleted the whole resource."""
    h = {**bearer(issue(authed, "system/*.cruds")), **FHIR}
    assert authed.delete("/fhir/Patient/keep/_history/1", headers=h).status_code == 405
    r = authed.post("/fhir", json=bundle("transaction", entry("DELETE", "Patient/keep/_history/1")), headers=h)
    assert r.status_code == 405, r.text
    assert "Bundle.entry[0]" in r.json()["issue"][0]["diagnostics"]
    r = authed.post("/fhir", json=bundle("batch", entry("DELETE", "Patient/keep/_history/1")), headers=h)
    assert r.status_code == 200 and r.json()["entry"][0]["response"]["status"].startswith("405")
    assert authed.get("/fhir/Patient/keep", headers=h).status_code == 200
    assert authed.app.state.store.read("Patient", "keep").version == 1


@pytest.mark.parametrize("entries", [
    [entry("PUT", "Patient/keep", {"resourceType": "Patient", "id": "keep", "gender": "male"}),
     entry("PUT", "Patient/keep", {"resourceType": "Patient", "id": "keep", "gender": "female"})],
    [entry("PUT", "Patient/keep", {"resourceType": "Patient", "id": "keep", "gender": "male"}),
     entry("DELETE", "Patient/keep")],
    [entry("DELETE", f"{BASE}/Patient/keep"), entry("DELETE", "Patient/keep")],
    [entry("PUT", "Patient?name=Keep", {"resourceType": "Patient", "gender": "male"}),
     entry("PUT", "Patient/keep", {"resourceType": "Patient", "id": "keep", "gender": "female"})],
    [entry("DELETE", "Patient?name=Keep"),
     entry("PUT", "Patient/keep", {"resourceType": "Patient", "id": "keep", "gender": "female"})],
], ids=["put-put", "put-delete", "delete-delete", "conditional-put", "conditional-delete"])
def test_transaction_naming_a_resource_twice_fails(authed: TestClient, entries: list[dict[str, Any]]) -> None:
    """R4 http.html#transaction: a resource appears once; the transaction fails with 400 and writes nothing."""
    h = {**bearer(issue(authed, "system/*.cruds")), **FHIR}
    extra = entry("POST", "Patient", {"resourceType": "Patient", "name": [{"family": "New"}]})
    r = authed.post("/fhir", json=bundle("transaction", extra, *entries), headers=h)
    assert r.status_code == 400, r.text
    assert "only once" in r.json()["issue"][0]["diagnostics"]
    stored = authed.app.state.store.read("Patient", "keep")
    assert stored.version == 1 and not stored.deleted
    assert count(authed, "Patient") == 3


def test_distinct_resources_in_one_transaction_still_work(authed: TestClient) -> None:
    h = {**bearer(issue(authed, "system/*.cruds")), **FHIR}
    r = authed.post("/fhir", json=bundle(
        "transaction",
        entry("PUT", "Patient/keep", {"resourceType": "Patient", "id": "keep", "gender": "male"}),
        entry("DELETE", "Patient/pb"),
        entry("GET", "Patient/keep"), entry("GET", "Patient/keep/_history/1"), entry("HEAD", "Patient?name=A")),
        headers=h)
    assert r.status_code == 200, r.text
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert statuses[:2] == ["200 OK", "204 No Content"] and statuses[2:] == ["200 OK"] * 3
    assert r.json()["entry"][3]["resource"]["name"][0]["family"] == "Keep"  # vread: version 1, not the current
    assert authed.app.state.store.read("Patient", "keep").version == 2


# -- the REST answer and the Bundle-entry answer agree ---------------------------------------------------------
PARITY = [("POST", "Patient/keep"), ("PATCH", "Patient"), ("GET", "Nope/1"), ("DELETE", "Nope/1"),
          ("GET", "Patient/keep/a/b/c"), ("PUT", "Patient/_history"), ("DELETE", "Patient/keep/_history"),
          ("PUT", "Patient/keep/_history/1"), ("POST", "Patient/keep/_history/1"), ("GET", "Patient/bad_id"),
          ("DELETE", "Patient/_history"), ("GET", "Patient/keep/Observation/x"), ("PUT", "Patient/pa/Observation")]


@pytest.fixture()
def plain(store: SqlStore) -> Iterator[TestClient]:
    with make_client(store) as c:
        with acting_as(SYSTEM):
            c.app.state.rest.update("Patient", "keep", {"resourceType": "Patient", "id": "keep"})
        yield c


def test_rest_404_and_405_are_the_same_inside_a_batch(plain: TestClient) -> None:
    body = {"resourceType": "Patient", "id": "keep"}
    for method, url in PARITY:
        rest = plain.request(method, f"/fhir/{url}", json=body, headers=FHIR).status_code
        assert rest in (404, 405), (method, url, rest)
        r = plain.post("/fhir", json=bundle("batch", entry(method, url, body)), headers=FHIR)
        assert r.status_code == 200, r.text
        assert r.json()["entry"][0]["response"]["status"].startswith(str(rest)), (method, url)
        r = plain.post("/fhir", json=bundle("transaction", entry(method, url, body)), headers=FHIR)
        assert r.status_code == rest, (method, url, r.text)
    assert plain.get("/fhir/Patient/keep").json()["meta"]["versionId"] == "1"


ROUTED = [("GET", "Patient"), ("POST", "Patient"), ("PUT", "Patient"), ("DELETE", "Patient"),
          ("GET", "Patient/x"), ("PUT", "Patient/x"), ("PATCH", "Patient/x"), ("DELETE", "Patient/x"),
          ("GET", "Patient/x/_history"), ("GET", "Patient/x/_history/2"), ("GET", "Patient/_history"),
          ("POST", "Patient/_search"), ("GET", "Patient/x/Observation"), ("GET", "_history"), ("GET", "metadata"),
          ("POST", "Measure/$data-requirements"), ("POST", "Measure/m/$evaluate-measure"), ("GET", "$export"),
          ("POST", "Group/g/$member-add")]


def test_entry_parser_matches_the_http_router(plain: TestClient) -> None:
    """Every request line the entry parser accepts is routed by the HTTP API to a route the policy reads the
    same way: same interaction, type, id, operation and needed scopes."""
    mw = AuthMiddleware(plain.app, None)
    scope = {"app": plain.app}
    for method, url in ROUTED:
        parsed = parse_request(method, url, BASE)
        template, params, _ = mw.match(scope, "/fhir/" + url, method)
        assert template is not None, (method, url)
        if parsed.interaction != "operation":
            assert (template, params) == (parsed.template, parsed.params), (method, url)
        assert policy.classify(method, template, params, []) == \
            policy.classify(method, parsed.template, parsed.params, []), (method, url)
    for method, url in PARITY:
        with pytest.raises(FhirError) as err:
            parse_request(method, url, BASE)
        template, _, other = mw.match(scope, "/fhir/" + url, method)
        assert err.value.status == (405 if other else 404) or template is not None, (method, url)
