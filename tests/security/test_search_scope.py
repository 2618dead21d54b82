"""Searches that reach other types (chains, _has, _include/_revinclude and their :iterate forms) with real
SMART tokens, on SQLite and PostgreSQL: every type reached must be searchable under the grant, and under
patient/ scopes the sub-queries see only the launch patient's compartment and the v2 scope filters of
their type (issue 13, defect 4)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.auth.context import SYSTEM, acting_as
from gateway.store.sql.store import SqlStore
from tests.smart.conftest import bearer, issue, make_auth_client

CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"


def _obs(oid: str, pid: str, category: str, code: str, value: float, performer: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "category": [{"coding": [{"system": CAT, "code": category}]}],
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "subject": {"reference": f"Patient/{pid}"}, "performer": [{"reference": performer}],
            "valueQuantity": {"value": value, "unit": "%"}}


SEED: list[dict[str, Any]] = [
    {"resourceType": "Patient", "id": "p1", "name": [{"family": "One"}], "birthDate": "1970-01-01"},
    {"resourceType": "Patient", "id": "p2", "name": [{"family": "Secret"}], "birthDate": "1980-05-05"},
    {"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "Doc"}]},
    {"resourceType": "Practitioner", "id": "dr2", "name": [{"family": "Other"}]},
    {"resourceType": "Practitioner", "id": "dr3", "name": [{"family": "Vitals"}]},
    {"resourceType": "Organization", "id": "payer", "name": "Payer"},
    # p1: a lab result by dr1 and a vital sign by dr3; p2: an HbA1c of 9.5 by dr2
    _obs("o1", "p1", "laboratory", "4548-4", 6.1, "Practitioner/dr1"),
    _obs("o3", "p1", "vital-signs", "8867-4", 4, "Practitioner/dr3"),
    _obs("o2", "p2", "laboratory", "4548-4", 9.5, "Practitioner/dr2"),
    {"resourceType": "Coverage", "id": "cov2", "status": "active", "beneficiary": {"reference": "Patient/p2"},
     "payor": [{"reference": "Organization/payer"}]},
    {"resourceType": "Condition", "id": "c2", "subject": {"reference": "Patient/p2"},
     "code": {"coding": [{"system": SNOMED, "code": "44054006"}]}},
]


@pytest.fixture()
def app(store: SqlStore) -> Iterator[TestClient]:
    with make_auth_client(store) as c:
        rest = c.app.state.rest
        with acting_as(SYSTEM):  # test set-up, on behalf of the system
            for r in SEED:
                rest.update(r["resourceType"], r["id"], r)
        yield c


def ids(r: Any) -> set[str]:
    assert r.status_code == 200, r.text
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in r.json().get("entry", [])
            if e.get("resource", {}).get("resourceType") != "OperationOutcome"}


def refused(r: Any, word: str) -> None:
    assert r.status_code == 403, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    assert word in body["issue"][0]["diagnostics"]


def test_has_on_practitioner_is_no_oracle_on_another_patient(app: TestClient) -> None:
    t = bearer(issue(app, "patient/*.rs", "p1"))
    # p2's birth date, lab value, name and identity: each guess, right or wrong, answers the same (nothing)
    for probe in ("_has:Observation:performer:subject:Patient.birthdate=1980-05-05",
                  "_has:Observation:performer:subject:Patient.birthdate=1999-01-01",
                  "_has:Observation:performer:value-quantity=gt9",
                  "_has:Observation:performer:value-quantity=9.5",
                  "_has:Observation:performer:subject:Patient.family=Secret",
                  "_has:Observation:performer:patient=Patient/p2"):
        assert ids(app.get(f"/fhir/Practitioner?{probe}", headers=t)) == set(), probe
    # the launch patient's own data still answers
    assert ids(app.get("/fhir/Practitioner?_has:Observation:performer:subject:Patient.birthdate=1970-01-01",
                       headers=t)) == {"Practitioner/dr1", "Practitioner/dr3"}
    assert ids(app.get("/fhir/Practitioner?_has:Observation:performer:value-quantity=lt9", headers=t)) == {
        "Practitioner/dr1", "Practitioner/dr3"}


def test_has_on_organization_reveals_no_other_patients_payer(app: TestClient) -> None:
    t = bearer(issue(app, "patient/*.rs", "p1"))
    for probe in ("_has:Coverage:payor:beneficiary=Patient/p2", "_has:Coverage:payor:status=active"):
        assert ids(app.get(f"/fhir/Organization?{probe}", headers=t)) == set(), probe
    # a user-level token still sees it: the narrowing is the grant's, not the search's
    u = bearer(issue(app, "user/*.rs"))
    assert ids(app.get("/fhir/Organization?_has:Coverage:payor:beneficiary=Patient/p2", headers=u)) == {
        "Organization/payer"}


def test_chain_into_a_type_without_search_scope_is_refused(app: TestClient) -> None:
    t = bearer(issue(app, "patient/Observation.rs", "p1"))
    refused(app.get("/fhir/Observation?subject:Patient.birthdate=1970-01-01", headers=t), "Patient")
    refused(app.get("/fhir/Observation?performer:Practitioner.family=Doc", headers=t), "Practitioner")
    # the same with the right scopes answers, confined to the launch patient
    both = bearer(issue(app, "patient/Observation.rs patient/Patient.rs", "p1"))
    assert ids(app.get("/fhir/Observation?subject:Patient.birthdate=1970-01-01", headers=both)) == {
        "Observation/o1", "Observation/o3"}


def test_has_nested_in_a_chain_needs_scope_on_every_type(app: TestClient) -> None:
    t = bearer(issue(app, "patient/Observation.rs patient/Patient.rs", "p1"))
    refused(app.get("/fhir/Observation?subject:Patient._has:Condition:subject:code=44054006", headers=t),
            "Condition")
    refused(app.get("/fhir/Practitioner?_has:Observation:performer:code=4548-4",
                    headers=bearer(issue(app, "patient/Practitioner.rs", "p1"))), "Observation")
    # with Condition too the nested _has runs, inside the compartment: p1 has no such condition
    more = bearer(issue(app, "patient/Observation.rs patient/Patient.rs patient/Condition.rs", "p1"))
    assert ids(app.get("/fhir/Observation?subject:Patient._has:Condition:subject:code=44054006",
                       headers=more)) == set()
    assert ids(app.get("/fhir/Patient?_has:Condition:subject:code=44054006", headers=more)) == set()


def test_user_scope_chains_stay_open(app: TestClient) -> None:
    u = bearer(issue(app, "user/*.rs"))
    assert ids(app.get("/fhir/Practitioner?_has:Observation:performer:subject:Patient.birthdate=1980-05-05",
                       headers=u)) == {"Practitioner/dr2"}
    assert ids(app.get("/fhir/Patient?_has:Condition:subject:code=44054006", headers=u)) == {"Patient/p2"}


def test_scope_filter_applies_inside_has(app: TestClient) -> None:
    t = bearer(issue(app, f"patient/Practitioner.rs patient/Observation.rs?category={CAT}|laboratory", "p1"))
    # o3 is a vital sign: the lab-only grant may not learn who performed it, nor that it exists
    assert ids(app.get("/fhir/Practitioner?_has:Observation:performer:code=8867-4", headers=t)) == set()
    assert ids(app.get("/fhir/Practitioner?_has:Observation:performer:patient=Patient/p1", headers=t)) == {
        "Practitioner/dr1"}


def test_scope_filter_applies_to_revinclude_and_iterate(app: TestClient) -> None:
    lab = f"patient/Observation.rs?category={CAT}|laboratory"
    t = bearer(issue(app, f"patient/Patient.rs patient/Practitioner.rs {lab}", "p1"))
    assert ids(app.get("/fhir/Patient?_revinclude=Observation:subject", headers=t)) == {
        "Patient/p1", "Observation/o1"}
    r = app.get("/fhir/Practitioner?_id=dr1,dr3&_revinclude:iterate=Observation:performer", headers=t)
    assert ids(r) == {"Practitioner/dr1", "Practitioner/dr3", "Observation/o1"}
    # an include without a target type reaches only the types the grant may search
    r = app.get("/fhir/Observation?_include=Observation:performer&_include:iterate=Observation:subject",
                headers=t)
    assert ids(r) == {"Observation/o1", "Practitioner/dr1", "Patient/p1"}


def test_explicit_include_of_an_unscoped_type_is_refused_in_conditional_writes(app: TestClient) -> None:
    # the route check covers GET searches; the conditional delete below reaches the parser directly
    t = bearer(issue(app, "patient/Observation.cruds", "p1"))
    r = app.delete("/fhir/Observation?subject:Patient.family=Secret", headers=t)
    refused(r, "Patient")
    assert app.app.state.store.read("Observation", "o2").deleted is False


def test_revinclude_through_practitioner_stays_in_the_compartment(app: TestClient) -> None:
    t = bearer(issue(app, "patient/*.rs", "p1"))
    r = app.get("/fhir/Practitioner?_revinclude=Observation:performer&_include:iterate=Observation:subject",
                headers=t)
    assert ids(r) == {"Practitioner/dr1", "Practitioner/dr2", "Practitioner/dr3", "Observation/o1",
                      "Observation/o3", "Patient/p1"}


PROBES = st.sampled_from([
    "_has:Observation:performer:value-quantity={v}", "_has:Observation:performer:subject:Patient.birthdate={d}",
    "_has:Observation:subject:code={c}", "_has:Condition:subject:code={c}", "subject:Patient.birthdate={d}",
    "performer:Practitioner.family={f}", "_has:Coverage:beneficiary:status=active", "subject.family={f}",
    "_revinclude=Observation:performer", "_include=Observation:subject", "_has:Coverage:payor:status=active",
])
TYPES = st.sampled_from(["Patient", "Practitioner", "Organization", "Observation", "Coverage", "Condition"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rtype=TYPES, probes=st.lists(PROBES, min_size=1, max_size=3),
       v=st.sampled_from(["gt5", "lt9", "9.5", "ge0"]), d=st.sampled_from(["1980-05-05", "1970", "ge1900"]),
       c=st.sampled_from(["4548-4", "44054006", "8867-4"]), f=st.sampled_from(["Secret", "One", "Doc"]))
def test_random_reaching_searches_never_leave_the_compartment(app: TestClient, rtype: str, probes: list[str],
                                                               v: str, d: str, c: str, f: str) -> None:
    """Whatever chains, _has and includes a patient token combines, every resource answered is the launch
    patient's or a shared (non-compartment) one, and an answer never depends on another patient's data."""
    t = bearer(issue(app, "patient/*.rs", "p1"))
    query = "&".join(p.format(v=v, d=d, c=c, f=f) for p in probes)
    r = app.get(f"/fhir/{rtype}?{query}", headers=t)
    assert r.status_code in (200, 400), r.text
    if r.status_code != 200:
        return
    got = ids(r)
    assert not got & {"Patient/p2", "Observation/o2", "Coverage/cov2", "Condition/c2"}, (query, got)
    # shared resources found by a _has must owe it to p1's data: dr2 and the payer only link to p2
    if "_has" in query and "_revinclude" not in query:
        assert not got & {"Practitioner/dr2", "Organization/payer"}, (query, got)
