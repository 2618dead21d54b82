"""Issue 13, the store gate: writes and reads that reached data by a path other than the plain REST route
(conditional update, FHIRPath Patch, shared resources under patient/ scopes, Group members, filtered history).
Real SMART tokens on the real ASGI app, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.resources.rest import RestService
from gateway.store.sql.store import SqlStore
from tests.security.worlds import issued_token
from tests.smart.conftest import bearer, issue, make_auth_client

FHIR_JSON = "application/fhir+json"


def obs(oid: str, pid: str, category: str = "laboratory", ident: str | None = None) -> dict[str, Any]:
    o: dict[str, Any] = {
        "resourceType": "Observation", "id": oid, "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": category}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
        "subject": {"reference": f"Patient/{pid}"}}
    if ident:
        o["identifier"] = [{"system": "urn:lab", "value": ident}]
    return o


def group(gid: str, *patients: str) -> dict[str, Any]:
    ext = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-attributedProvider"
    return {"resourceType": "Group", "id": gid, "type": "person", "actual": True, "quantity": len(patients),
            "managingEntity": {"reference": "Organization/payer"},
            "member": [{"entity": {"reference": f"Patient/{p}", "display": f"Name of {p}"},
                        "extension": [{"url": ext, "valueReference": {"reference": f"Practitioner/dr-{p}"}}]}
                       for p in patients]}


SEED: list[dict[str, Any]] = [
    {"resourceType": "Patient", "id": "p1", "name": [{"family": "One"}]},
    {"resourceType": "Patient", "id": "p2", "name": [{"family": "Two"}]},
    {"resourceType": "Practitioner", "id": "dr", "name": [{"family": "Doc"}]},
    {"resourceType": "Organization", "id": "org", "name": "Clinic"},
    {"resourceType": "Library", "id": "lib", "status": "active", "type": {"coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/library-type", "code": "logic-library"}]}},
    {"resourceType": "Measure", "id": "m", "status": "active", "url": "http://example.org/Measure/m"},
    obs("o1", "p1", "laboratory"), obs("o2", "p2", "laboratory"), obs("o3", "p1", "vital-signs"),
    group("g1", "p1", "p2"),
]


@pytest.fixture()
def seeded(store: SqlStore) -> Iterator[TestClient]:
    """Authorization on, on SQLite and PostgreSQL, with two patients, their data and shared resources."""
    with make_auth_client(store) as c:
        put(c, *SEED)
        yield c


def put(c: TestClient, *resources: dict[str, Any]) -> None:
    """Store test data directly (the raw store, as an operator's tooling would), not through any grant."""
    rest = RestService(c.app.state.store, "http://localhost/fhir")
    for r in resources:
        rest.update(r["resourceType"], r["id"], r)


def stored(c: TestClient, rtype: str, rid: str) -> dict[str, Any] | None:
    s = c.app.state.store.read(rtype, rid)
    if s is None or s.deleted:
        return None
    import orjson

    return dict(orjson.loads(s.content))


def count(c: TestClient, rtype: str) -> int:
    return sum(1 for _ in c.app.state.store.iter_current(rtype))


def writer(c: TestClient, scope: str = "patient/*.cruds", patient: str = "p1") -> dict[str, str]:
    return {**bearer(issue(c, scope, patient)), "Content-Type": FHIR_JSON}


# -- defect 2: conditional update -----------------------------------------------------------------------
def test_conditional_update_cannot_create_in_another_compartment(seeded: TestClient) -> None:
    h = writer(seeded)
    body = obs("new", "p2", ident="x-1")
    del body["id"]
    assert seeded.post("/fhir/Observation", json=body, headers=h).status_code == 403
    r = seeded.put("/fhir/Observation?identifier=urn:lab|x-1", json=body, headers=h)
    assert r.status_code == 403, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    assert "compartment" in r.json()["issue"][0]["diagnostics"]
    assert count(seeded, "Observation") == 3  # nothing written
    # the same through a transaction entry
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": body, "request": {"method": "PUT", "url": "Observation?identifier=urn:lab|x-1"}}]}
    r = seeded.post("/fhir", json=bundle, headers=h)
    assert r.status_code == 403, r.text
    assert count(seeded, "Observation") == 3
    # in the launch patient's own compartment the same request works
    mine = {**body, "subject": {"reference": "Patient/p1"}}
    assert seeded.put("/fhir/Observation?identifier=urn:lab|x-1", json=mine, headers=h).status_code == 201
    assert count(seeded, "Observation") == 4


def test_conditional_create_criteria_in_the_query_string_stay_in_the_compartment(seeded: TestClient) -> None:
    """Criteria in a create's query string act as If-None-Exist: their search runs through the gate, so it
    cannot find (and answer with) another patient's resource, and the create stays in the compartment."""
    put(seeded, obs("o2-id", "p2", ident="shared-1"))
    h = writer(seeded)
    before = count(seeded, "Observation")
    mine = obs("ignored", "p1", ident="shared-1")
    del mine["id"]
    r = seeded.post("/fhir/Observation?identifier=urn:lab|shared-1", json=mine, headers=h)
    assert r.status_code == 201, r.text  # p2's match is invisible: a new resource, not p2's
    assert r.json()["subject"]["reference"] == "Patient/p1" and r.json()["id"] != "o2-id"
    assert "p2" not in r.text
    assert count(seeded, "Observation") == before + 1
    theirs = {**mine, "subject": {"reference": "Patient/p2"}, "identifier": [{"system": "urn:lab", "value": "q-2"}]}
    r = seeded.post("/fhir/Observation?identifier=urn:lab|q-2", json=theirs, headers=h)
    assert r.status_code == 403 and r.json()["resourceType"] == "OperationOutcome"
    assert count(seeded, "Observation") == before + 1
    assert stored(seeded, "Observation", "o2-id") is not None


def test_conditional_update_cannot_take_over_another_patients_resource(seeded: TestClient) -> None:
    h = writer(seeded)
    body = obs("o2", "p1")
    r = seeded.put("/fhir/Observation?_id=o2", json=body, headers=h)  # no match in p1's compartment
    assert r.status_code == 403, r.text
    assert stored(seeded, "Observation", "o2")["subject"]["reference"] == "Patient/p2"


# -- defect 3: PATCH ------------------------------------------------------------------------------------
def test_fhirpath_patch_cannot_move_a_resource_to_another_patient(seeded: TestClient) -> None:
    h = writer(seeded)
    params = {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "replace"}, {"name": "path", "valueString": "Observation.subject"},
        {"name": "value", "valueReference": {"reference": "Patient/p2"}}]}]}
    r = seeded.patch("/fhir/Observation/o1", json=params, headers=h)
    assert r.status_code == 403, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    after = seeded.app.state.store.read("Observation", "o1")
    assert after.version == 1 and stored(seeded, "Observation", "o1")["subject"]["reference"] == "Patient/p1"


def test_json_patch_cannot_move_a_resource_to_another_patient(seeded: TestClient) -> None:
    h = {**writer(seeded), "Content-Type": "application/json-patch+json"}
    ops = [{"op": "replace", "path": "/subject/reference", "value": "Patient/p2"}]
    r = seeded.patch("/fhir/Observation/o1", json=ops, headers=h)
    assert r.status_code == 403, r.text
    assert seeded.app.state.store.read("Observation", "o1").version == 1
    # a patch that keeps the resource in the compartment is allowed
    ok = [{"op": "replace", "path": "/status", "value": "amended"}]
    assert seeded.patch("/fhir/Observation/o1", json=ok, headers=h).status_code == 200


# -- defect 5: shared resources and Groups under patient/ write scopes ----------------------------------
@pytest.mark.parametrize("scope", ["patient/*.write patient/*.read", "patient/*.cruds"])
def test_patient_write_scopes_cannot_touch_shared_resources(seeded: TestClient, scope: str) -> None:
    h = writer(seeded, scope)
    t = bearer(issue(seeded, scope, "p1"))
    refused = [
        seeded.post("/fhir/Measure", json={"resourceType": "Measure", "status": "draft"}, headers=h),
        seeded.put("/fhir/Measure/m", json={"resourceType": "Measure", "id": "m", "status": "retired"}, headers=h),
        seeded.post("/fhir/Library", json={**SEED[4], "id": None}, headers=h),
        seeded.put("/fhir/Organization/org", json={"resourceType": "Organization", "id": "org", "name": "X"},
                   headers=h),
        seeded.post("/fhir/Practitioner", json={"resourceType": "Practitioner"}, headers=h),
        seeded.delete("/fhir/Practitioner/dr", headers=t),
        seeded.delete("/fhir/Library/lib", headers=t),
        seeded.put("/fhir/Group/g1", json=group("g1", "p1"), headers=h),
        seeded.delete("/fhir/Group/g1", headers=t),
        seeded.post("/fhir/Group", json={**group("g9", "p1"), "id": None}, headers=h),
    ]
    for r in refused:
        assert r.status_code == 403, (r.request.method, r.request.url, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
    for rtype, rid in (("Measure", "m"), ("Library", "lib"), ("Organization", "org"), ("Practitioner", "dr"),
                       ("Group", "g1")):
        assert seeded.app.state.store.read(rtype, rid).version == 1, rtype
    assert count(seeded, "Measure") == 1 and count(seeded, "Group") == 1 and count(seeded, "Practitioner") == 1
    # the same through a batch: each entry refused, nothing written
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Organization", "name": "Y"}, "request": {"method": "POST", "url": "Organization"}},
        {"request": {"method": "DELETE", "url": "Group?_id=g1"}}]}
    r = seeded.post("/fhir", json=batch, headers=h)
    assert r.status_code == 403 or all(e["response"]["status"].startswith("403") for e in r.json()["entry"])
    assert count(seeded, "Organization") == 1 and count(seeded, "Group") == 1


def test_shared_resources_stay_writable_for_user_and_system_scopes(seeded: TestClient) -> None:
    h = writer(seeded, "user/*.cruds", "")
    r = seeded.put("/fhir/Measure/m", json={"resourceType": "Measure", "id": "m", "status": "retired"}, headers=h)
    assert r.status_code == 200, r.text


# -- defect 6: a patient reading a Group ----------------------------------------------------------------
def test_patient_token_sees_only_its_own_group_membership(seeded: TestClient) -> None:
    t = bearer(issue(seeded, "patient/*.rs", "p1"))
    r = seeded.get("/fhir/Group/g1", headers=t)
    assert r.status_code == 200, r.text
    g = r.json()
    assert [m["entity"]["reference"] for m in g["member"]] == ["Patient/p1"]
    assert "p2" not in r.text and "quantity" not in g
    assert any(tag.get("code") == "SUBSETTED" for tag in g["meta"]["tag"])
    for path in ("/fhir/Group?member=Patient/p1", "/fhir/Group", "/fhir/Group/g1/_history",
                 "/fhir/Group/g1/_history/1", "/fhir/Patient/p1/Group", "/fhir/Patient?_id=p1&_revinclude=Group:member"):
        r = seeded.get(path, headers=t)
        assert r.status_code == 200, (path, r.text)
        assert "Patient/p2" not in r.text and "dr-p2" not in r.text, path
    # the stored Group is untouched; user/ scopes still see every member
    assert len(stored(seeded, "Group", "g1")["member"]) == 2
    u = bearer(issue(seeded, "user/*.rs"))
    assert len(seeded.get("/fhir/Group/g1", headers=u).json()["member"]) == 2


def test_patient_token_does_not_see_a_group_without_it(seeded: TestClient) -> None:
    put(seeded, group("g2", "p2"))
    t = bearer(issue(seeded, "patient/*.rs", "p1"))
    assert seeded.get("/fhir/Group/g2", headers=t).status_code == 404


@pytest.mark.parametrize("subset", ["_summary=true", "_elements=id", "_summary=data"])
def test_practitioner_sees_its_attributed_group_when_subsetted(seeded: TestClient, subset: str) -> None:
    """A Group a practitioner may see through its attributed members stays visible when ``_summary`` or
    ``_elements`` drops the members (the response confiner judges it on the stored version); one it may not
    see stays hidden, with a total that agrees with the entries."""
    put(seeded, {"resourceType": "Practitioner", "id": "dr-p1"}, {"resourceType": "Practitioner", "id": "dr-x"})
    mine = issued_token(seeded, "user/*.rs", fhir_user="Practitioner/dr-p1")
    other = issued_token(seeded, "user/*.rs", fhir_user="Practitioner/dr-x")
    for url in (f"/fhir/Group?{subset}", f"/fhir/Group?_id=g1&{subset}"):
        b = seeded.get(url, headers=mine).json()
        assert b["total"] == 1 and [e["resource"]["id"] for e in b["entry"]] == ["g1"], url
        assert ("member" in b["entry"][0]["resource"]) == (subset == "_summary=data")
        b = seeded.get(url, headers=other).json()
        assert b["total"] == 0 and not b.get("entry"), url
    assert seeded.get(f"/fhir/Group/g1?{subset}", headers=mine).status_code == 200
    assert seeded.get(f"/fhir/Group/g1?{subset}", headers=other).status_code == 404


# -- defect 10: filtered scopes and history -------------------------------------------------------------
def test_filtered_scope_applies_to_type_history(seeded: TestClient) -> None:
    t = bearer(issue(seeded, "patient/Observation.rs?category=laboratory", "p1"))
    r = seeded.get("/fhir/Observation/_history", headers=t)
    assert r.status_code == 200, r.text
    got = {e["resource"]["id"] for e in r.json()["entry"] if "resource" in e}
    assert got == {"o1"}
    assert r.json()["total"] == 1
    assert seeded.get("/fhir/Observation/o3", headers=t).status_code == 404
    assert seeded.get("/fhir/Observation/o3/_history/1", headers=t).status_code == 404
    assert seeded.get("/fhir/Observation/o3/_history", headers=t).status_code == 404


def test_patient_scoped_system_history_counts_only_what_it_shows(seeded: TestClient) -> None:
    t = bearer(issue(seeded, "patient/*.rs", "p1"))
    r = seeded.get("/fhir/_history?_count=2", headers=t)
    assert r.status_code == 200, r.text
    body = r.json()
    # visible: Patient p1, o1, o3, the Group (reduced), and the shared Practitioner, Organization, Library, Measure
    full = seeded.get("/fhir/_history?_count=100", headers=t).json()
    shown = [e for e in full["entry"]]
    assert body["total"] == full["total"] == len(shown) < len(SEED)
    assert len(body["entry"]) == 2
    assert not any("p2" in str(e.get("resource", {}).get("subject", "")) for e in shown)
