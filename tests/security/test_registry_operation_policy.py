"""Operation-level policy from the registry: an operation's declared subject parameter is checked against what
the caller may see. Regression: an attribution-restricted client (a Practitioner fhirUser) could run $evaluate,
$care-gaps and $collect-data with ``subject=Group/<a list it cannot read>`` and get one Bundle per member,
revealing who is on another organization's attribution list."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.app import REGISTRY
from gateway.store.sql.store import SqlStore
from tests.conftest import make_client
from tests.smart.conftest import bearer, make_auth_client
from tests.test_evaluate_measure import load_measure, measure_id

PERIOD = "periodStart=2026-01-01&periodEnd=2026-12-31"
DR = "Practitioner/dr-x"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str, str]]:
    store = SqlStore(f"sqlite:///{tmp_path_factory.mktemp('subject-groups') / 'gateway.sqlite3'}")
    with make_client(store) as loader:
        load_measure(loader, "CMS122")
        for pid in ("hid-a", "hid-b", "mine-a"):
            r = loader.put(f"/fhir/Patient/{pid}", json={"resourceType": "Patient", "id": pid, "gender": "female",
                                                         "birthDate": "1960-01-01"})
            assert r.status_code == 201, r.text
        loader.put("/fhir/Practitioner/dr-x", json={"resourceType": "Practitioner", "id": "dr-x"})
        for gid, members, manager in (("hidden", ("hid-a", "hid-b"), "Organization/other"),
                                      ("mine", ("mine-a",), DR)):
            r = loader.put(f"/fhir/Group/{gid}", json={
                "resourceType": "Group", "id": gid, "type": "person", "actual": True,
                "managingEntity": {"reference": manager},
                "member": [{"entity": {"reference": f"Patient/{m}"}} for m in members]})
            assert r.status_code == 201, r.text
    client = make_auth_client(store)
    token = client.app.state.authority.tokens.issue_access("atr-app", "user/*.rs", 600, "f", "dr",
                                                           {"fhirUser": DR}).token
    yield client, token, measure_id("CMS122")
    store.close()


def _calls(mid: str, group: str) -> list[tuple[str, str, Any]]:
    """GET and POST forms of every declared Measure operation with a subject parameter, naming ``group``
    (``Library/$evaluate`` takes a Patient subject only: a Group there is a 400 before anything is read)."""
    out: list[tuple[str, str, Any]] = []
    extra = {"care-gaps": "&status=open-gap&status=not-applicable", "collect-data": "&organization=Organization/o"}
    for op in REGISTRY:
        if op.subject_param is None:
            continue
        for e in op.endpoints:
            if e.level != "instance" or not e.serves("Measure"):
                continue
            path = "/fhir" + e.path(op.code).replace("{" + e.id_param + "}", mid)
            q = f"{PERIOD}&{op.subject_param}=Group/{group}{extra.get(op.key, '')}"
            out.append(("GET", f"{path}?{q}", None))
            params = [{"name": k, "valueString": v} for k, v in (p.split("=", 1) for p in q.split("&"))
                      if k != op.subject_param]
            params.append({"name": op.subject_param, "valueString": f"Group/{group}"})
            out.append(("POST", path, {"resourceType": "Parameters", "parameter": params}))
    return out


def test_a_restricted_client_cannot_evaluate_over_a_list_it_cannot_see(world: tuple[TestClient, str, str]) -> None:
    client, token, mid = world
    calls = _calls(mid, "hidden")
    assert len(calls) >= 8
    for method, url, body in calls:
        r = client.request(method, url, json=body, headers=bearer(token))
        assert r.status_code == 404, (method, url, r.status_code, r.text[:300])
        assert r.json()["resourceType"] == "OperationOutcome"
        assert "hid-a" not in r.text and "hid-b" not in r.text, (method, url)


def test_a_restricted_client_evaluates_over_its_own_list(world: tuple[TestClient, str, str]) -> None:
    client, token, mid = world
    answered = 0
    for method, url, body in _calls(mid, "mine"):
        r = client.request(method, url, json=body, headers=bearer(token))
        assert r.status_code == 200, (method, url, r.status_code, r.text[:300])
        answered += "mine-a" in r.text
    assert answered >= 4  # $evaluate, $care-gaps and $collect-data list the member, GET and POST


def test_unrestricted_clients_are_not_affected(world: tuple[TestClient, str, str]) -> None:
    client, _, mid = world
    token = client.app.state.authority.tokens.issue_access("payer-app", "user/*.rs", 600, "g", "payer").token
    for method, url, body in _calls(mid, "hidden"):
        r = client.request(method, url, json=body, headers=bearer(token))
        assert r.status_code == 200, (method, url, r.status_code, r.text[:300])


# -- type parameters: every parameter the operation reads types from, in the query and in the body --------
@pytest.fixture()
def patients_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    store = SqlStore(f"sqlite:///{tmp_path_factory.mktemp('type-params') / 'gateway.sqlite3'}")
    client = make_auth_client(store)
    token = client.app.state.authority.tokens.issue_access("bulk-app", "system/Patient.rs", 600, "b", "bulk").token
    yield client, token
    store.close()


def _parameters(*pairs: tuple[str, str]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [{"name": k, "valueString": v} for k, v in pairs]}


@pytest.mark.parametrize("method,url,body", [
    # regression: the policy read only the query's _type, the export also the body's and resourceTypes
    ("GET", "/fhir/$export?_type=Patient&resourceTypes=Observation", None),
    ("POST", "/fhir/$export?_type=Patient", _parameters(("_type", "Observation"))),
    ("POST", "/fhir/Patient/$export?_type=Patient", _parameters(("resourceTypes", "Condition"))),
    ("POST", "/fhir/$export", _parameters(("_type", "Patient,Observation"))),
])
def test_export_types_named_anywhere_need_scopes(patients_only: tuple[TestClient, str], method: str, url: str,
                                                 body: Any) -> None:
    client, token = patients_only
    r = client.request(method, url, json=body, headers=bearer(token))
    assert r.status_code == 403, r.text
    assert r.json()["resourceType"] == "OperationOutcome" and "Content-Location" not in r.headers


@pytest.mark.parametrize("method,url,body", [
    ("GET", "/fhir/$export?_type=Patient", None),
    ("POST", "/fhir/$export", _parameters(("_type", "Patient"))),
    ("POST", "/fhir/Patient/$export?_type=Patient", _parameters(("resourceTypes", "Patient"))),
])
def test_export_of_the_granted_types_is_accepted(patients_only: tuple[TestClient, str], method: str, url: str,
                                                 body: Any) -> None:
    client, token = patients_only
    r = client.request(method, url, json=body, headers={**bearer(token), "Prefer": "respond-async"})
    assert r.status_code == 202, r.text
