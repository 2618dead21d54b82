"""Attacks on Patient/$everything, a new path to whole patient records, with real tokens signed by the gateway
on SQLite and PostgreSQL: another patient's record under a patient token, the type level under a patient
token, filtered and per-type scopes inside the record, attribution-restricted callers, cursors replayed
under another token, and requests without a usable grant. Every refusal is an OperationOutcome that reveals
nothing of the record it was aimed at."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest
from fastapi.testclient import TestClient

from gateway.store.sql.store import SqlStore
from tests.security.worlds import issued_token, loaded_world

PA, PB = "pa", "pb"
ATTRIBUTED = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-attributedProvider"
LAB = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}
VITAL = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}
PB_MARKERS = ("MARKERPB", "Secretfamily", "1902-03-04")
VITAL_MARKER = "MARKERVITALPA"
DATA: list[dict[str, Any]] = [
    {"resourceType": "Practitioner", "id": "dr-a", "name": [{"family": "Attributed"}]},
    {"resourceType": "Practitioner", "id": "dr-b", "name": [{"family": "Unattributed"}]},
    {"resourceType": "Patient", "id": PA, "name": [{"family": "Ownfamily"}], "birthDate": "1980-01-01"},
    {"resourceType": "Patient", "id": PB, "name": [{"family": "Secretfamily", "given": ["MARKERPBname"]}],
     "birthDate": "1902-03-04"},
    # another patient's record that links to the launch patient: in its compartment (Patient.link), yet another
    # patient's data that a patient/ token must not see
    {"resourceType": "Patient", "id": "pb-link", "name": [{"family": "MARKERPBlinked"}],
     "link": [{"other": {"reference": f"Patient/{PA}"}, "type": "seealso"}]},
    {"resourceType": "Observation", "id": "pa-lab", "status": "final", "category": [LAB], "code": {"text": "own lab"},
     "subject": {"reference": f"Patient/{PA}"}},
    {"resourceType": "Observation", "id": "pa-vital", "status": "final", "category": [VITAL],
     "code": {"text": VITAL_MARKER}, "subject": {"reference": f"Patient/{PA}"}},
    {"resourceType": "Condition", "id": "pa-cond", "code": {"text": "own condition"},
     "subject": {"reference": f"Patient/{PA}"}},
    {"resourceType": "Observation", "id": "pb-lab", "status": "final", "category": [LAB],
     "code": {"text": "MARKERPBlab"}, "subject": {"reference": f"Patient/{PB}"}},
    {"resourceType": "Condition", "id": "pb-cond", "code": {"text": "MARKERPBcondition"},
     "subject": {"reference": f"Patient/{PB}"}},
    {"resourceType": "Group", "id": "list-a", "type": "person", "actual": True, "name": "list of dr-a",
     "member": [{"entity": {"reference": f"Patient/{PA}"},
                 "extension": [{"url": ATTRIBUTED, "valueReference": {"reference": "Practitioner/dr-a"}}]}]},
    {"resourceType": "Group", "id": "list-all", "type": "person", "actual": True, "name": "payer list",
     "managingEntity": {"reference": "Organization/payer"},
     "member": [{"entity": {"reference": f"Patient/{PA}"}},
                {"entity": {"reference": f"Patient/{PB}", "display": "MARKERPBmember"}}]},
    {"resourceType": "Group", "id": "list-mixed", "type": "person", "actual": True, "name": "payer list by provider",
     "managingEntity": {"reference": "Organization/payer"},
     "member": [{"entity": {"reference": f"Patient/{PA}"},
                 "extension": [{"url": ATTRIBUTED, "valueReference": {"reference": "Practitioner/dr-a"}}]},
                {"entity": {"reference": f"Patient/{PB}"},
                 "extension": [{"url": ATTRIBUTED, "valueReference": {"reference": "Practitioner/dr-b"}}]}]},
    {"resourceType": "Organization", "id": "payer", "name": "Payer"},
]


@pytest.fixture(scope="module")
def world(session_store: SqlStore) -> Iterator[TestClient]:
    with loaded_world(session_store, DATA) as client:
        yield client


token = issued_token


def ids(body: dict[str, Any], mode: str | None = None) -> list[str]:
    return [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in body.get("entry") or []
            if e["search"]["mode"] != "outcome" and (mode is None or e["search"]["mode"] == mode)]


def outcome(body: dict[str, Any]) -> str:
    return " ".join(i["diagnostics"] for e in body.get("entry") or [] if e["search"]["mode"] == "outcome"
                    for i in e["resource"]["issue"])


def local(url: str) -> str:
    return urlsplit(url)._replace(scheme="", netloc="").geturl()


def walk(client: TestClient, url: str, headers: dict[str, str]) -> tuple[list[str], str]:
    """Every entry of every page, and the raw text of all pages."""
    out, text = [], ""
    while url:
        r = client.get(url, headers=headers)
        assert r.status_code == 200, r.text
        text += r.text
        body = r.json()
        out += ids(body)
        url = next((local(lk["url"]) for lk in body["link"] if lk["relation"] == "next"), "")
    return out, text


def assert_refused(r: Any, statuses: set[int]) -> None:
    assert r.status_code in statuses, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome" and "entry" not in body and "total" not in body
    leaked = [m for m in (*PB_MARKERS, VITAL_MARKER, "Ownfamily", "own lab") if m in r.text]
    assert not leaked, leaked


PARAMS = {"resourceType": "Parameters", "parameter": []}


def test_no_grant_is_401(world: TestClient) -> None:
    for url in (f"/fhir/Patient/{PA}/$everything", "/fhir/Patient/$everything"):
        assert_refused(world.get(url), {401})
        assert_refused(world.post(url, json=PARAMS), {401})
        assert_refused(world.get(url, headers={"Authorization": "Bearer not-a-token"}), {401})
        assert_refused(world.get(url, headers={"Authorization": "Basic dXNlcjpwYXNz"}), {401})


def test_scopes_without_patient_read_are_403(world: TestClient) -> None:
    for scope in ("patient/Observation.rs", "patient/*.cud", "user/Observation.rs", "__admin", "launch/patient"):
        h = token(world, scope, PA)
        for url in (f"/fhir/Patient/{PA}/$everything", "/fhir/Patient/$everything"):
            assert_refused(world.get(url, headers=h), {403})


@pytest.mark.parametrize("scope", ["patient/*.rs", "patient/*.read", "patient/Patient.rs patient/Observation.rs"])
def test_patient_token_on_another_patient_is_refused_and_reveals_nothing(world: TestClient, scope: str) -> None:
    h = token(world, scope, PA)
    for pid in (PB, "no-such-patient"):  # the same answer whether the other patient exists or not
        for r in (world.get(f"/fhir/Patient/{pid}/$everything", headers=h),
                  world.get(f"/fhir/Patient/{pid}/$everything?_type=Observation&_count=1", headers=h),
                  world.post(f"/fhir/Patient/{pid}/$everything", json=PARAMS, headers=h)):
            assert_refused(r, {403})
    got, text = walk(world, f"/fhir/Patient/{PA}/$everything?_count=1", h)
    assert "Patient/pa" in got and not [m for m in PB_MARKERS if m in text]


def test_patient_token_at_type_level_sees_its_own_record_only(world: TestClient) -> None:
    h = token(world, "patient/*.rs", PA)
    for count in (1, 2, 50):
        got, text = walk(world, f"/fhir/Patient/$everything?_count={count}", h)
        assert not [m for m in PB_MARKERS if m in text], count
        assert {"Patient/pa", "Observation/pa-lab", "Observation/pa-vital", "Condition/pa-cond"} <= set(got)
        assert not {"Patient/pb", "Observation/pb-lab", "Condition/pb-cond"} & set(got)
    r = world.get("/fhir/Patient/$everything", headers=h)
    assert r.json()["total"] == len(ids(r.json(), "match"))  # totals count nothing the token may not see
    # the attribution lists it is on, when asked for, show only its own membership
    r = world.get(f"/fhir/Patient/{PA}/$everything?_type=Group", headers=h)
    assert r.status_code == 200 and "MARKERPB" not in r.text
    assert set(ids(r.json())) == {"Group/list-a", "Group/list-all", "Group/list-mixed"}


def test_filtered_scope_is_honoured_inside_the_record(world: TestClient) -> None:
    for scope, patient in (("patient/Patient.rs patient/Observation.rs?category=laboratory", PA),
                           ("user/Patient.rs user/Observation.rs?category=laboratory", None)):
        h = token(world, scope, patient)
        r = world.get(f"/fhir/Patient/{PA}/$everything", headers=h)
        assert r.status_code == 200, r.text
        body = r.json()
        linked = {"Patient/pb-link"} if patient is None else set()  # user/ scopes see the linked record
        assert set(ids(body)) == {"Patient/pa", "Observation/pa-lab"} | linked, scope
        assert body["total"] == 2 + len(linked)  # counted after the gate, like the entries
        assert VITAL_MARKER not in r.text and "own condition" not in r.text
        assert "Condition" in outcome(body) and "left out" in outcome(body)  # said, not silently dropped
        # asking for the types explicitly changes nothing: left out, named, not an error
        r = world.get(f"/fhir/Patient/{PA}/$everything?_type=Observation,Condition", headers=h)
        assert r.status_code == 200 and ids(r.json()) == ["Observation/pa-lab"]
        assert outcome(r.json()).endswith(": Condition")


def test_per_type_user_scopes_leave_other_types_out(world: TestClient) -> None:
    h = token(world, "user/Patient.rs user/Condition.rs")
    got, text = walk(world, "/fhir/Patient/$everything", h)
    assert set(got) == {"Patient/pa", "Condition/pa-cond", "Patient/pb", "Condition/pb-cond", "Patient/pb-link"}
    assert "own lab" not in text and "MARKERPBlab" not in text
    # read without search (or search without read) is not enough to enumerate a type
    h = token(world, "user/Patient.rs user/Observation.r user/Condition.s")
    r = world.get(f"/fhir/Patient/{PA}/$everything", headers=h)
    assert r.status_code == 200 and ids(r.json()) == ["Patient/pa", "Patient/pb-link"]
    assert "Condition" in outcome(r.json()) and "Observation" in outcome(r.json())


def test_attribution_restricted_caller_reaches_its_attributed_patients_only(world: TestClient) -> None:
    h = token(world, "user/*.rs", fhir_user="Practitioner/dr-a")
    r = world.get(f"/fhir/Patient/{PA}/$everything", headers=h)
    assert r.status_code == 200 and "Patient/pa" in ids(r.json())
    assert_refused(world.get(f"/fhir/Patient/{PB}/$everything", headers=h), {404})
    got, text = walk(world, "/fhir/Patient/$everything?_count=2", h)
    assert "Patient/pa" in got and not [m for m in PB_MARKERS if m in text]
    assert "Patient/pb-link" not in got  # linked to the attributed patient, yet not attributed itself
    r = world.get(f"/fhir/Patient/{PA}/$everything", headers=h)
    assert r.json()["total"] == len(ids(r.json(), "match")) and "MARKERPB" not in r.text
    r = world.get(f"/fhir/Patient/{PA}/$everything?_type=Group", headers=h)
    # the payer's own list stays hidden; the payer's list by provider shows (dr-a is attributed on it), yet
    # the member attributed to dr-b on that same list was not reachable above
    assert set(ids(r.json())) == {"Group/list-a", "Group/list-mixed"}
    # dr-b, attributed to the other patient only, reaches that patient and nobody else
    h = token(world, "user/*.rs", fhir_user="Practitioner/dr-b")
    assert world.get(f"/fhir/Patient/{PB}/$everything", headers=h).status_code == 200
    assert_refused(world.get(f"/fhir/Patient/{PA}/$everything", headers=h), {404})
    got, _ = walk(world, "/fhir/Patient/$everything", h)
    assert "Patient/pb" in got and "Patient/pa" not in got
    # a practitioner attributed to nobody reaches nobody, and cannot tell who exists
    h = token(world, "system/*.rs", fhir_user="Practitioner/dr-nobody")
    for pid in (PA, PB, "no-such-patient"):
        assert_refused(world.get(f"/fhir/Patient/{pid}/$everything", headers=h), {404})
    r = world.get("/fhir/Patient/$everything", headers=h)
    assert r.status_code == 200 and ids(r.json()) == []


def test_a_cursor_replayed_under_another_token_stays_confined(world: TestClient) -> None:
    """A next link minted for a user token, pointing into the other patient's record, replayed with a patient
    token: the cursor names a position, never a permission."""
    user = token(world, "user/*.rs")
    url = "/fhir/Patient/$everything?_count=1"
    deep = ""
    while url:
        body = world.get(url, headers=user).json()
        if "Patient/pb" in ids(body):
            deep = url
            break
        url = next((local(lk["url"]) for lk in body["link"] if lk["relation"] == "next"), "")
    assert deep and "_cursor" in deep
    patient = token(world, "patient/*.rs", PA)
    got, text = walk(world, deep, patient)
    assert not [m for m in PB_MARKERS if m in text] and "Patient/pb" not in got
    # and an instance cursor of one patient is refused on another patient's record
    body = world.get(f"/fhir/Patient/{PB}/$everything?_count=1", headers=user).json()
    cursor = dict(parse_qsl(urlsplit(next(lk["url"] for lk in body["link"] if lk["relation"] == "next")).query))
    r = world.get(f"/fhir/Patient/{PA}/$everything?_count=1&_cursor={cursor['_cursor']}", headers=user)
    assert r.status_code == 400 and "MARKERPB" not in r.text


def test_inputs_are_not_a_way_around_the_grant(world: TestClient) -> None:
    """Parameters naming other patients or types are refused or confined, never followed."""
    h = token(world, "patient/*.rs", PA)
    for q in ("patient=Patient/pb", "subject=Patient/pb", "_id=pb", "_type=Patient&_type=Observation,Group"):
        r = world.get(f"/fhir/Patient/$everything?{q}", headers=h)
        assert "MARKERPB" not in r.text and "Secretfamily" not in r.text, q
        assert r.status_code in (200, 400), (q, r.text)
    body = {"resourceType": "Parameters", "parameter": [{"name": "patient", "valueReference": {"reference": "Patient/pb"}}]}
    r = world.post(f"/fhir/Patient/{PA}/$everything", content=orjson.dumps(body), headers={
        **h, "Content-Type": "application/fhir+json"})
    assert r.status_code == 400 and "MARKERPB" not in r.text
