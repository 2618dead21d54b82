"""Patient/$everything over HTTP on SQLite and PostgreSQL: what a record holds, the start/end/_since/_type
filters, paging by cursor (also while others write), POST Parameters, bad input as 400 OperationOutcomes, and
the CapabilityStatement and OpenAPI claims derived from the declaration."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from fastapi.testclient import TestClient

from gateway.rest.everything.service import CARE_DATES, REFERENCED
from gateway.search.params import patient_compartment, registry

CAT = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}


def obs(oid: str, pid: str, when: str | None = None, **extra: Any) -> dict[str, Any]:
    r: dict[str, Any] = {"resourceType": "Observation", "id": oid, "status": "final", "category": [CAT],
                         "code": {"text": oid}, "subject": {"reference": f"Patient/{pid}"}, **extra}
    if when:
        r["effectiveDateTime"] = when
    return r


RECORD: list[dict[str, Any]] = [
    {"resourceType": "Organization", "id": "org", "name": "Clinic"},
    {"resourceType": "Organization", "id": "org-unused", "name": "Nobody refers to me"},
    {"resourceType": "Practitioner", "id": "dr"},
    {"resourceType": "Practitioner", "id": "dr2"},
    {"resourceType": "Location", "id": "loc", "name": "Ward 1"},
    {"resourceType": "Medication", "id": "med", "code": {"text": "aspirin"}},
    {"resourceType": "Patient", "id": "p1", "generalPractitioner": [{"reference": "Practitioner/dr"}],
     "managingOrganization": {"reference": "Organization/org"}},
    {"resourceType": "Patient", "id": "p2", "generalPractitioner": [{"reference": "Practitioner/dr2"}]},
    obs("o-2019", "p1", "2019-06-01"),
    obs("o-2021", "p1", "2021-03-15", performer=[{"reference": "Practitioner/dr2"}]),
    obs("o-undated", "p1"),
    obs("o-p2", "p2", "2021-03-15"),
    {"resourceType": "Encounter", "id": "enc", "status": "finished",
     "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
     "subject": {"reference": "Patient/p1"}, "period": {"start": "2020-12-30", "end": "2021-01-02"},
     "location": [{"location": {"reference": "Location/loc"}}]},
    {"resourceType": "MedicationRequest", "id": "mr", "status": "active", "intent": "order",
     "medicationReference": {"reference": "Medication/med"}, "subject": {"reference": "Patient/p1"},
     "authoredOn": "2021-02-01"},
    {"resourceType": "Coverage", "id": "cov", "status": "active", "beneficiary": {"reference": "Patient/p1"},
     "payor": [{"reference": "Organization/org"}]},
    {"resourceType": "Group", "id": "grp", "type": "person", "actual": True,
     "member": [{"entity": {"reference": "Patient/p1"}}, {"entity": {"reference": "Patient/p2"}}]},
    {"resourceType": "Measure", "id": "m1", "status": "active"},
]
P1_ALL = {"Patient/p1", "Observation/o-2019", "Observation/o-2021", "Observation/o-undated", "Encounter/enc",
          "MedicationRequest/mr", "Coverage/cov", "Practitioner/dr", "Practitioner/dr2", "Organization/org",
          "Location/loc", "Medication/med"}


@pytest.fixture()
def loaded(client: TestClient) -> TestClient:
    for res in RECORD:
        r = client.put(f"/fhir/{res['resourceType']}/{res['id']}", json=res)
        assert r.status_code in (200, 201), r.text
    return client


def refs(bundle: dict[str, Any], mode: str | None = None) -> list[str]:
    return [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry") or []
            if e["search"]["mode"] != "outcome" and (mode is None or e["search"]["mode"] == mode)]


def get(client: TestClient, url: str, status: int = 200) -> dict[str, Any]:
    r = client.get(url)
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    return body


def follow(client: TestClient, bundle: dict[str, Any]) -> dict[str, Any] | None:
    nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
    return get(client, urlsplit(nxt[0])._replace(scheme="", netloc="").geturl()) if nxt else None


def walk(client: TestClient, url: str) -> list[str]:
    out: list[str] = []
    page: dict[str, Any] | None = get(client, url)
    while page is not None:
        out += refs(page)
        page = follow(client, page)
    return out


def test_the_record_is_the_patient_its_compartment_and_what_it_references(loaded: TestClient) -> None:
    b = get(loaded, "/fhir/Patient/p1/$everything")
    assert b["resourceType"] == "Bundle" and b["type"] == "searchset"
    assert set(refs(b)) == P1_ALL and len(refs(b)) == len(P1_ALL)
    assert refs(b)[0] == "Patient/p1"  # the patient first, then its compartment, then what they reference
    assert set(refs(b, "include")) == {"Practitioner/dr", "Practitioner/dr2", "Organization/org", "Location/loc",
                                       "Medication/med"}
    assert refs(b).index("Coverage/cov") < refs(b).index("Location/loc")
    for e in b["entry"]:
        assert e["fullUrl"] == f"http://testserver/fhir/{e['resource']['resourceType']}/{e['resource']['id']}"
    # the other patient's data, unreferenced resources, the Measure and the attribution Group are not in it
    assert not {"Observation/o-p2", "Patient/p2", "Organization/org-unused", "Measure/m1", "Group/grp"} & set(refs(b))
    assert [link["relation"] for link in b["link"]] == ["self", "first"]


def test_type_asks_for_group_and_limits_the_types(loaded: TestClient) -> None:
    b = get(loaded, "/fhir/Patient/p1/$everything?_type=Observation,Group")
    assert set(refs(b)) == {"Observation/o-2019", "Observation/o-2021", "Observation/o-undated", "Group/grp"}
    b = get(loaded, "/fhir/Patient/p1/$everything?_type=Patient&_type=Practitioner")
    assert set(refs(b)) == {"Patient/p1", "Practitioner/dr"}  # dr2 is referenced by an Observation left out
    b = get(loaded, "/fhir/Patient/p1/$everything?_type=Encounter,Location")
    assert refs(b) == ["Encounter/enc", "Location/loc"]


def test_start_and_end_filter_by_care_date(loaded: TestClient) -> None:
    b = get(loaded, "/fhir/Patient/p1/$everything?start=2021-01-01&end=2021-12-31")
    got = set(refs(b))
    # in the range: o-2021, the Encounter whose period overlaps it, the MedicationRequest authored in it;
    # Coverage has no care date and is kept; the undated Observation and o-2019 are left out
    assert {"Observation/o-2021", "Encounter/enc", "MedicationRequest/mr", "Coverage/cov", "Patient/p1"} <= got
    assert not {"Observation/o-2019", "Observation/o-undated"} & got
    assert {"Medication/med", "Location/loc", "Practitioner/dr2"} <= got  # referenced from what is returned
    b = get(loaded, "/fhir/Patient/p1/$everything?end=2020")
    assert {"Observation/o-2019"} <= set(refs(b)) and "Observation/o-2021" not in refs(b)
    assert "Encounter/enc" in refs(b)  # its period starts in 2020
    b = get(loaded, "/fhir/Patient/p1/$everything?start=2021-01-02T12:00:00Z")
    assert "Encounter/enc" in refs(b) and "Observation/o-2019" not in refs(b)
    b = get(loaded, "/fhir/Patient/p1/$everything?start=2021-01-03")
    assert "Encounter/enc" not in refs(b) and "Location/loc" not in refs(b)


def test_since_filters_by_last_updated(loaded: TestClient) -> None:
    before = get(loaded, "/fhir/Patient/p1/$everything")
    assert len(refs(before)) == len(P1_ALL)
    time.sleep(0.01)  # a later lastUpdated than everything loaded so far (no timing is asserted)
    r = loaded.put("/fhir/Observation/o-2019", json=obs("o-2019", "p1", "2019-06-02"))
    assert r.status_code == 200
    since = r.json()["meta"]["lastUpdated"]
    b = get(loaded, f"/fhir/Patient/p1/$everything?{urlencode({'_since': since})}")
    assert refs(b) == ["Observation/o-2019"]
    b = get(loaded, "/fhir/Patient/p1/$everything?_since=2000-01-01T00:00:00%2B01:00")
    assert set(refs(b)) == P1_ALL


def test_post_parameters_answer_as_get(loaded: TestClient) -> None:
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "start", "valueDate": "2021-01-01"}, {"name": "_type", "valueCode": "Observation,Encounter"},
        {"name": "_count", "valueInteger": 1}]}
    r = loaded.post("/fhir/Patient/p1/$everything", json=params)
    assert r.status_code == 200, r.text
    got = walk(loaded, urlsplit(next(link["url"] for link in r.json()["link"] if link["relation"] == "self"))
               ._replace(scheme="", netloc="").geturl())
    assert got == refs(get(loaded, "/fhir/Patient/p1/$everything?start=2021-01-01&_type=Observation,Encounter"))
    assert set(got) == {"Observation/o-2021", "Encounter/enc"}


@pytest.mark.parametrize("query, words", [
    ("start=yesterday", "start must be a FHIR date"),
    ("end=2021-13-01", "end must be a FHIR date"),
    ("start=2022-01-01&end=2021-01-01", "start lies after end"),
    ("_since=2021-01-01", "_since must be an instant"),
    ("_since=2021-01-01T00:00:00", "_since must be an instant"),
    ("_type=Nonsense", "not a FHIR R4 resource type"),
    ("_type=Observation,", "empty type name"),
    ("_type=Measure", "never holds"),
    ("_count=0", "_count must be a positive integer"),
    ("_count=-5", "_count must be a positive integer"),
    ("_count=ten", "_count must be a positive integer"),
    ("_count=1&_count=2", "at most once"),
    ("patient=Patient/p2", "does not take patient"),
    ("_cursor=abc.def", "paging cursor is not valid"),
])
def test_bad_input_is_a_400_outcome(loaded: TestClient, query: str, words: str) -> None:
    for url in ("/fhir/Patient/p1/$everything", "/fhir/Patient/$everything"):
        r = loaded.get(f"{url}?{query}")
        assert r.status_code == 400, (url, query, r.text)
        body = r.json()
        assert body["resourceType"] == "OperationOutcome" and words in body["issue"][0]["diagnostics"], body
        assert "Traceback" not in r.text


def test_bad_post_bodies_are_400(loaded: TestClient) -> None:
    for body in ({"resourceType": "Patient"}, {"resourceType": "Parameters", "parameter": [{"name": "start"}]},
                 {"resourceType": "Parameters", "parameter": [{"name": "x", "resource": {"resourceType": "Patient"}}]},
                 [1, 2]):
        r = loaded.post("/fhir/Patient/p1/$everything", json=body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
    r = loaded.post("/fhir/Patient/p1/$everything", content=b"{not json", headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"


def test_unknown_and_deleted_patients(loaded: TestClient) -> None:
    r = loaded.get("/fhir/Patient/nobody/$everything")
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"
    assert loaded.delete("/fhir/Patient/p2").status_code in (200, 204)
    assert loaded.get("/fhir/Patient/p2/$everything").status_code == 410
    assert "Patient/p2" not in walk(loaded, "/fhir/Patient/$everything")


def test_paging_walks_the_record_once(loaded: TestClient) -> None:
    whole = refs(get(loaded, "/fhir/Patient/p1/$everything"))
    for count in (1, 2, 5, 11, 12, 13):
        first = get(loaded, f"/fhir/Patient/p1/$everything?_count={count}")
        assert len(refs(first)) == min(count, len(whole))
        assert walk(loaded, f"/fhir/Patient/p1/$everything?_count={count}") == whole, count
    # a cursor belongs to its patient and its filters
    b = get(loaded, "/fhir/Patient/p1/$everything?_count=2")
    cursor = dict(parse_qsl(urlsplit(next(lk["url"] for lk in b["link"] if lk["relation"] == "next")).query))["_cursor"]
    for other in (f"/fhir/Patient/p2/$everything?_count=2&_cursor={cursor}",
                  f"/fhir/Patient/p1/$everything?_count=2&_type=Observation&_cursor={cursor}",
                  f"/fhir/Patient/$everything?_count=2&_cursor={cursor}",
                  f"/fhir/Patient/p1/$everything?_count=2&_cursor={cursor[:-2]}xx"):
        r = loaded.get(other)
        assert r.status_code == 400 and "cursor" in r.json()["issue"][0]["diagnostics"], other


def test_type_level_lists_every_patient_with_its_record(loaded: TestClient) -> None:
    whole = walk(loaded, "/fhir/Patient/$everything")
    assert whole.index("Patient/p1") < whole.index("Observation/o-2021") < whole.index("Patient/p2")
    assert whole.index("Patient/p2") < whole.index("Observation/o-p2")
    assert set(whole) == P1_ALL | {"Patient/p2", "Observation/o-p2"}
    assert len(whole) == len(set(whole))  # dr2, referenced from both records, once on this one page
    for count in (1, 3, 7):
        paged = walk(loaded, f"/fhir/Patient/$everything?_count={count}")
        # a resource two records reference comes once per page it is needed on: with small pages dr2 comes
        # in p1's record and again in p2's; the matches come exactly once whatever the page size
        assert set(paged) == set(whole), count
        assert [x for x in paged if not x.startswith(REFERENCED)] == [x for x in whole if not x.startswith(REFERENCED)]
        assert paged.count("Practitioner/dr2") == 2, count  # entries 12 and 15 of the order: never one page
    b = get(loaded, "/fhir/Patient/$everything?_type=Patient")
    assert refs(b, "match") == ["Patient/p1", "Patient/p2"]


def test_paging_is_stable_while_others_write(loaded: TestClient) -> None:
    """Walking the pages while resources are created, updated and deleted: everything that existed
    throughout is seen exactly once, nothing twice, and no page fails."""
    for i in range(20):
        r = loaded.put(f"/fhir/Observation/w{i:02d}", json=obs(f"w{i:02d}", "p1", "2021-05-01"))
        assert r.status_code == 201
    throughout = set(refs(get(loaded, "/fhir/Patient/p1/$everything?_count=1000"))) - {"Observation/w10"}
    seen: list[str] = []
    page: dict[str, Any] | None = get(loaded, "/fhir/Patient/p1/$everything?_count=4")
    step = 0
    while page is not None:
        seen += refs(page)
        step += 1
        # writes between pages: a new resource, an update of one already seen and of one not yet seen, and
        # (once) the deletion of one not yet seen
        assert loaded.put(f"/fhir/Observation/new{step}", json=obs(f"new{step}", "p1", "2021-06-01")).status_code == 201
        last = next((x.split("/")[1] for x in reversed(seen) if x.startswith("Observation/")), None)
        if last is not None:
            assert loaded.put(f"/fhir/Observation/{last}", json=obs(last, "p1", "2021-05-03")).status_code == 200
        assert loaded.put("/fhir/Observation/w19", json=obs("w19", "p1", f"2021-07-{step:02d}")).status_code == 200
        if step == 2:
            assert loaded.delete("/fhir/Observation/w10").status_code in (200, 204)
        page = follow(loaded, page)
    assert len(seen) == len(set(seen)), sorted(x for x in seen if seen.count(x) > 1)
    assert throughout <= set(seen), sorted(throughout - set(seen))
    assert "Observation/w10" not in seen
    assert step > 5


def test_the_declaration_is_claimed_and_documented(loaded: TestClient) -> None:
    rest = get(loaded, "/fhir/metadata")["rest"][0]
    patient = next(r for r in rest["resource"] if r["type"] == "Patient")
    ops = [op for op in patient["operation"] if op["name"] == "everything"]
    assert [op["definition"] for op in ops] == ["http://hl7.org/fhir/OperationDefinition/Patient-everything"]
    assert not any(op["name"] == "everything" for op in rest.get("operation", []))
    observation = next(r for r in rest["resource"] if r["type"] == "Observation")
    assert not any(op["name"] == "everything" for op in observation.get("operation", []))
    paths = loaded.get("/openapi.json").json()["paths"]
    for path in ("/fhir/Patient/{pid}/$everything", "/fhir/Patient/$everything"):
        assert set(paths[path]) == {"get", "post"}
        assert "`_since`" in paths[path]["get"]["description"]
    assert loaded.get("/fhir/Observation/o-2019/$everything").status_code == 404
    assert loaded.get("/fhir/$everything").status_code == 404


def test_care_date_parameters_exist() -> None:
    """Every care date parameter named is a date search parameter of its type, on a compartment type, and the
    referenced types lie outside the compartment."""
    reg = registry()
    for rtype, codes in CARE_DATES.items():
        assert rtype in patient_compartment(), rtype
        for code in codes:
            sp = reg.get(rtype, code)
            assert sp is not None and sp.type == "date" and sp.extract is not None, (rtype, code)
    assert not set(REFERENCED) & set(patient_compartment())


def test_totals_count_the_matches_of_the_whole_selection(loaded: TestClient) -> None:
    """Bundle.total: the patient and its compartment resources (the matches, not the included references),
    the same on every page; at type level the sum over every record."""
    matches = len(P1_ALL) - 5
    assert get(loaded, "/fhir/Patient/p1/$everything")["total"] == matches
    assert get(loaded, "/fhir/Patient/p1/$everything?_count=2&_type=Observation")["total"] == 3
    assert get(loaded, "/fhir/Patient/p1/$everything?start=2021-01-01&end=2021-12-31")["total"] == 5
    page = get(loaded, "/fhir/Patient/$everything?_count=3")
    while page is not None:
        assert page["total"] == matches + 2  # p2 and its Observation
        page = follow(loaded, page)
    assert get(loaded, "/fhir/Patient/$everything?_type=Practitioner")["total"] == 0


def test_the_deqm_test_kit_calls(client: TestClient) -> None:
    """What the DEQM test kit's Patient/$everything group sends: a POST without a body for one patient (the
    total equals the patient and its compartment; a Condition that names no patient is not in it), a POST
    without a body at type level, and an unknown id (404 OperationOutcome with an error issue)."""
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": res, "request": {"method": "PUT", "url": f"{res['resourceType']}/{res['id']}"}} for res in (
            {"resourceType": "Encounter", "id": "test-encounter", "status": "finished",
             "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
             "subject": {"reference": "Patient/test-patient"}},
            {"resourceType": "Procedure", "id": "test-procedure", "status": "completed",
             "subject": {"reference": "Patient/test-patient"}},
            {"resourceType": "Condition", "id": "test-condition", "subject": {"reference": "Patient/other"}},
            {"resourceType": "Patient", "id": "test-patient"}, {"resourceType": "Patient", "id": "other"})]}
    assert client.post("/fhir", json=tx).status_code == 200
    headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
    r = client.post("/fhir/Patient/test-patient/$everything", headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == 3 and sorted(refs(body)) == ["Encounter/test-encounter", "Patient/test-patient",
                                                         "Procedure/test-procedure"]
    r = client.post("/fhir/Patient/$everything", headers=headers)
    assert r.status_code == 200 and r.json()["total"] >= 5
    assert {x.split("/")[0] for x in refs(r.json())} >= {"Patient", "Encounter", "Procedure", "Condition"}
    r = client.post("/fhir/Patient/INVALID/$everything", headers=headers)
    assert r.status_code == 404 and r.json()["issue"][0]["severity"] == "error"
