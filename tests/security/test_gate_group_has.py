"""Group membership is not learnt through searches (issue 13, gap 3). A caller that reads Groups only in part
(an attribution-restricted client: its own lists; patient/ scopes: the patient's own member entries) is
refused (403) a chain or ``_has`` into Group, whatever Group it names; reading the Group itself still works
as the store gate allows. Unrestricted callers keep the search. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.auth.context import SYSTEM, acting_as
from gateway.store.sql.store import SqlStore
from tests.smart.conftest import bearer, issue, make_auth_client

SEED: list[dict[str, Any]] = [
    {"resourceType": "Organization", "id": "o1", "name": "Riverside"},
    {"resourceType": "Organization", "id": "o2", "name": "Lakeside"},
    {"resourceType": "Patient", "id": "p1"},
    {"resourceType": "Patient", "id": "p2"},
    {"resourceType": "Patient", "id": "p3"},
    {"resourceType": "Practitioner", "id": "dr"},
    {"resourceType": "Group", "id": "g-mine", "type": "person", "actual": True,
     "managingEntity": {"reference": "Organization/o1"}, "member": [{"entity": {"reference": "Patient/p1"}}]},
    # another organization's list: p2 and p3 (and, for the patient case, p1 and a practitioner)
    {"resourceType": "Group", "id": "g-other", "type": "person", "actual": True,
     "managingEntity": {"reference": "Organization/o2"},
     "member": [{"entity": {"reference": "Patient/p2"}}, {"entity": {"reference": "Patient/p3"}}]},
    {"resourceType": "Group", "id": "g-mixed", "type": "person", "actual": True,
     "managingEntity": {"reference": "Organization/o2"},
     "member": [{"entity": {"reference": "Patient/p1"}}, {"entity": {"reference": "Patient/p2"}},
                {"entity": {"reference": "Practitioner/dr"}}]},
]

PROBES = ["/fhir/Patient?_has:Group:member:_id=g-other", "/fhir/Patient?_has:Group:member:_id=g-mine",
          "/fhir/Patient?_has:Group:member:managing-entity=Organization/o2",
          "/fhir/Practitioner?_has:Group:member:_id=g-mixed",
          "/fhir/Patient?_id=p2&_has:Group:member:actual=true",
          "/fhir/Observation?subject:Group._id=g-other"]


@pytest.fixture()
def app(store: SqlStore) -> Iterator[TestClient]:
    with make_auth_client(store) as c:
        with acting_as(SYSTEM):  # test set-up, on behalf of the system
            for r in SEED:
                c.app.state.rest.update(r["resourceType"], r["id"], r)
        yield c


def _token(c: TestClient, scope: str, **ctx: str) -> dict[str, str]:
    return bearer(c.app.state.authority.tokens.issue_access("atr-app", scope, 300, "fam", "someone", ctx).token)


def _ids(r: Any) -> set[str]:
    assert r.status_code == 200, r.text
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in r.json().get("entry", [])
            if e["resource"]["resourceType"] != "OperationOutcome"}


def _refused(r: Any) -> None:
    assert r.status_code == 403, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome" and "Group" in body["issue"][0]["diagnostics"]
    assert "entry" not in body


def test_attribution_restricted_client_cannot_probe_group_membership(app: TestClient) -> None:
    token = _token(app, "system/Patient.rs system/Group.rs system/Practitioner.rs system/Observation.rs",
                   fhirUser="Organization/o1")
    for url in PROBES:
        _refused(app.get(url, headers=token))
    # the same answer for its own list: the refusal does not say which Groups are readable
    # reading Groups still follows the gate: its own list, not the other one
    assert app.get("/fhir/Group/g-mine", headers=token).status_code == 200
    assert app.get("/fhir/Group/g-other", headers=token).status_code == 404
    assert _ids(app.get("/fhir/Group", headers=token)) == {"Group/g-mine"}


def test_patient_app_cannot_probe_group_membership(app: TestClient) -> None:
    token = bearer(issue(app, "patient/*.rs", "p1"))  # p1 is in g-mixed, with p2 and a practitioner
    for url in PROBES:
        _refused(app.get(url, headers=token))
    # the Group read itself: reduced to p1's own entry
    r = app.get("/fhir/Group/g-mixed", headers=token)
    assert r.status_code == 200
    assert [m["entity"]["reference"] for m in r.json()["member"]] == ["Patient/p1"]


def test_unrestricted_clients_keep_the_search(app: TestClient) -> None:
    token = _token(app, "system/*.rs")
    assert _ids(app.get("/fhir/Patient?_has:Group:member:_id=g-other", headers=token)) == {"Patient/p2", "Patient/p3"}
    assert _ids(app.get("/fhir/Practitioner?_has:Group:member:_id=g-mixed", headers=token)) == {"Practitioner/dr"}
