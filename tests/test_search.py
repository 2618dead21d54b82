"""Search through HTTP on both backends: parameter types, modifiers, prefixes, chains, includes, paging."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

JSON = {"Content-Type": "application/fhir+json"}


def put(client: TestClient, res: dict) -> None:
    r = client.put(f"/fhir/{res['resourceType']}/{res['id']}", json=res, headers=JSON)
    assert r.status_code in (200, 201), r.text


def ids(client: TestClient, url: str) -> list[str]:
    r = client.get(url)
    assert r.status_code == 200, r.text
    return [e["resource"]["id"] for e in r.json().get("entry", []) if e["search"]["mode"] == "match"]


@pytest.fixture()
def data(client: TestClient) -> TestClient:
    put(client, {"resourceType": "Organization", "id": "org1", "name": "Riverbend Clinic",
                 "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}]})
    put(client, {"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "Okafor", "given": ["Chidi"]}]})
    put(client, {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1960-05-01",
                 "name": [{"family": "Müller", "given": ["Anna"]}], "managingOrganization": {"reference": "Organization/org1"},
                 "identifier": [{"system": "urn:mrn", "value": "M1"}], "active": True,
                 "generalPractitioner": [{"reference": "Practitioner/dr1"}],
                 "address": [{"city": "Springfield", "postalCode": "12345"}]})
    put(client, {"resourceType": "Patient", "id": "p2", "gender": "male", "birthDate": "1985-11-20",
                 "name": [{"family": "Mullins", "given": ["Bo"]}], "identifier": [{"system": "urn:mrn", "value": "M2"}]})
    put(client, {"resourceType": "Patient", "id": "p3", "gender": "female", "birthDate": "2001",
                 "name": [{"family": "Smith", "given": ["Cy"]}]})
    obs = [("o1", "p1", "4548-4", 9.5, "2025-03-01T10:00:00Z"), ("o2", "p1", "4548-4", 7.1, "2025-06-15"),
           ("o3", "p2", "4548-4", 6.0, "2024-12-31T23:30:00-05:00"), ("o4", "p2", "2339-0", 110, "2025-01-10")]
    for oid, pid, code, val, eff in obs:
        put(client, {"resourceType": "Observation", "id": oid, "status": "final",
                     "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                               "code": "laboratory"}]}],
                     "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": "HbA1c" if code == "4548-4" else "Glucose"}],
                              "text": "Hemoglobin A1c" if code == "4548-4" else "Glucose"},
                     "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": eff,
                     "valueQuantity": {"value": val, "unit": "%", "system": "http://unitsofmeasure.org",
                                       "code": "%" if code == "4548-4" else "mg/dL"}})
    put(client, {"resourceType": "Observation", "id": "bp1", "status": "final",
                 "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
                 "subject": {"reference": "Patient/p1"}, "effectivePeriod": {"start": "2025-02-01", "end": "2025-02-02"},
                 "component": [
                     {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                      "valueQuantity": {"value": 150, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
                     {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                      "valueQuantity": {"value": 85, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}]})
    put(client, {"resourceType": "Measure", "id": "m1", "url": "http://example.org/Measure/CMS122", "status": "active",
                 "version": "1.0.0", "name": "DiabetesA1c"})
    put(client, {"resourceType": "MeasureReport", "id": "mr1", "status": "complete", "type": "individual",
                 "measure": "http://example.org/Measure/CMS122|1.0.0", "subject": {"reference": "Patient/p1"},
                 "period": {"start": "2025-01-01", "end": "2025-12-31"}})
    return client


def test_token(data: TestClient) -> None:
    assert sorted(ids(data, "/fhir/Observation?code=http://loinc.org|4548-4")) == ["o1", "o2", "o3"]
    assert sorted(ids(data, "/fhir/Observation?code=4548-4,2339-0")) == ["o1", "o2", "o3", "o4"]
    assert ids(data, "/fhir/Observation?code=http://snomed.info/sct|4548-4") == []
    assert sorted(ids(data, "/fhir/Patient?gender=female")) == ["p1", "p3"]
    assert sorted(ids(data, "/fhir/Patient?gender:not=female")) == ["p2"]
    assert ids(data, "/fhir/Patient?identifier=urn:mrn|M2") == ["p2"]
    assert ids(data, "/fhir/Patient?active=true") == ["p1"]
    assert ids(data, "/fhir/Observation?code:text=glucose") == ["o4"]
    assert sorted(ids(data, "/fhir/Observation?category=laboratory&code=4548-4")) == ["o1", "o2", "o3"]


def test_string(data: TestClient) -> None:
    assert sorted(ids(data, "/fhir/Patient?name=mul")) == ["p1", "p2"]  # accent-insensitive prefix
    assert ids(data, "/fhir/Patient?family:exact=Müller") == ["p1"]
    assert ids(data, "/fhir/Patient?family:exact=muller") == []
    assert ids(data, "/fhir/Patient?name:contains=llin") == ["p2"]
    assert ids(data, "/fhir/Patient?address-city=springfield") == ["p1"]
    assert ids(data, "/fhir/Patient?name=mul&gender=male") == ["p2"]


def test_date_prefixes(data: TestClient) -> None:
    assert ids(data, "/fhir/Patient?birthdate=1960-05-01") == ["p1"]
    assert ids(data, "/fhir/Patient?birthdate=1960") == ["p1"]
    assert sorted(ids(data, "/fhir/Patient?birthdate=gt1970")) == ["p2", "p3"]
    assert ids(data, "/fhir/Patient?birthdate=lt1970-01-01") == ["p1"]
    assert sorted(ids(data, "/fhir/Patient?birthdate=ge1985-11-20")) == ["p2", "p3"]
    assert ids(data, "/fhir/Patient?birthdate=le1960-05-01") == ["p1"]
    assert sorted(ids(data, "/fhir/Patient?birthdate=ne1960-05-01")) == ["p2", "p3"]
    assert ids(data, "/fhir/Patient?birthdate=2001-06") == []  # the year 2001 is not inside June
    assert ids(data, "/fhir/Patient?birthdate=ap2001-06") == ["p3"]
    # time zones: 2024-12-31T23:30-05:00 is 2025-01-01T04:30Z
    assert "o3" in ids(data, "/fhir/Observation?date=2025-01-01")
    assert "o3" not in ids(data, "/fhir/Observation?date=lt2025-01-01T00:00:00Z")
    assert sorted(ids(data, "/fhir/Observation?date=ge2025-01-01&date=lt2025-04-01")) == ["bp1", "o1", "o3", "o4"]
    assert ids(data, "/fhir/Observation?date=sa2025-06-01") == ["o2"]
    assert ids(data, "/fhir/Observation?date=eb2025-01-05") == ["o3"]
    assert ids(data, "/fhir/Observation?date=2025-02-01T12:00:00Z") == []  # period is wider than the second
    assert ids(data, "/fhir/Observation?date=ap2025-02-01T12:00:00Z") == ["bp1"]
    assert ids(data, "/fhir/MeasureReport?period=2025") == ["mr1"]


def test_quantity_and_number(data: TestClient) -> None:
    assert sorted(ids(data, "/fhir/Observation?value-quantity=gt9")) == ["o1", "o4"]
    assert ids(data, "/fhir/Observation?value-quantity=9.5") == ["o1"]
    assert ids(data, "/fhir/Observation?value-quantity=9") == []  # 9 means [8.5, 9.5)
    assert sorted(ids(data, "/fhir/Observation?value-quantity=le7.1|http://unitsofmeasure.org|%")) == ["o2", "o3"]
    assert ids(data, "/fhir/Observation?value-quantity=gt9|http://unitsofmeasure.org|mg/dL") == ["o4"]
    assert ids(data, "/fhir/Observation?value-quantity=ap100") == ["o4"]
    assert ids(data, "/fhir/Observation?component-value-quantity=gt140") == ["bp1"]


def test_composite(data: TestClient) -> None:
    assert ids(data, "/fhir/Observation?component-code-value-quantity=http://loinc.org|8480-6$gt140") == ["bp1"]
    assert ids(data, "/fhir/Observation?component-code-value-quantity=http://loinc.org|8462-4$gt140") == []
    assert ids(data, "/fhir/Observation?code-value-quantity=4548-4$ge9") == ["o1"]


def test_reference_and_chains(data: TestClient) -> None:
    assert sorted(ids(data, "/fhir/Observation?subject=Patient/p1")) == ["bp1", "o1", "o2"]
    assert sorted(ids(data, "/fhir/Observation?patient=p1")) == ["bp1", "o1", "o2"]
    assert sorted(ids(data, "/fhir/Observation?subject:Patient=p1")) == ["bp1", "o1", "o2"]
    assert sorted(ids(data, "/fhir/Observation?subject=http://testserver/fhir/Patient/p1")) == ["bp1", "o1", "o2"]
    assert sorted(ids(data, "/fhir/Observation?subject:Patient.identifier=urn:mrn|M2")) == ["o3", "o4"]
    assert sorted(ids(data, "/fhir/Observation?patient.name=smith")) == []
    assert sorted(ids(data, "/fhir/Observation?patient.organization.name=riverbend")) == ["bp1", "o1", "o2"]
    assert ids(data, "/fhir/Patient?_has:Observation:patient:code=2339-0") == ["p2"]
    assert ids(data, "/fhir/MeasureReport?measure=http://example.org/Measure/CMS122") == ["mr1"]
    assert ids(data, "/fhir/Measure?url=http://example.org/Measure/CMS122") == ["m1"]
    assert ids(data, "/fhir/Measure?url:below=http://example.org/Measure") == ["m1"]


def test_missing_and_id(data: TestClient) -> None:
    assert ids(data, "/fhir/Patient?birthdate:missing=true") == []
    assert ids(data, "/fhir/Patient?identifier:missing=true") == ["p3"]
    assert sorted(ids(data, "/fhir/Patient?_id=p1,p3")) == ["p1", "p3"]
    assert ids(data, "/fhir/Patient?_lastUpdated=gt2000-01-01&_id=p2") == ["p2"]
    assert ids(data, "/fhir/Patient?_lastUpdated=lt2000-01-01") == []


def test_sort_count_paging(data: TestClient) -> None:
    assert ids(data, "/fhir/Patient?_sort=birthdate") == ["p1", "p2", "p3"]
    assert ids(data, "/fhir/Patient?_sort=-birthdate") == ["p3", "p2", "p1"]
    assert ids(data, "/fhir/Patient?_sort=family") == ["p1", "p2", "p3"]
    assert ids(data, "/fhir/Observation?_sort=-date&code=4548-4") == ["o2", "o1", "o3"]
    page1 = data.get("/fhir/Patient?_sort=_id&_count=2").json()
    assert page1["total"] == 3 and [e["resource"]["id"] for e in page1["entry"]] == ["p1", "p2"]
    nxt = next(link["url"] for link in page1["link"] if link["relation"] == "next")
    page2 = data.get(nxt.replace("http://testserver", "")).json()
    assert [e["resource"]["id"] for e in page2["entry"]] == ["p3"]
    assert not any(link["relation"] == "next" for link in page2["link"])
    count = data.get("/fhir/Observation?_summary=count").json()
    assert count["total"] == 5 and "entry" not in count


def test_elements_and_summary_in_search(data: TestClient) -> None:
    body = data.get("/fhir/Patient?_id=p1&_elements=birthDate").json()
    res = body["entry"][0]["resource"]
    assert set(res) == {"resourceType", "id", "meta", "birthDate"}


def test_include_revinclude(data: TestClient) -> None:
    b = data.get("/fhir/Observation?code=2339-0&_include=Observation:subject").json()
    modes = {(e["resource"]["resourceType"], e["resource"]["id"], e["search"]["mode"]) for e in b["entry"]}
    assert modes == {("Observation", "o4", "match"), ("Patient", "p2", "include")}
    assert b["total"] == 1
    b = data.get("/fhir/Patient?_id=p1&_revinclude=Observation:subject").json()
    inc = sorted(e["resource"]["id"] for e in b["entry"] if e["search"]["mode"] == "include")
    assert inc == ["bp1", "o1", "o2"]
    b = data.get("/fhir/Observation?_id=o1&_include=Observation:subject&_include:iterate=Patient:organization").json()
    assert {e["resource"]["id"] for e in b["entry"]} == {"o1", "p1", "org1"}
    b = data.get("/fhir/Patient?_id=p1&_include=*").json()
    assert {e["resource"]["id"] for e in b["entry"]} == {"p1", "org1", "dr1"}


def test_post_search(data: TestClient) -> None:
    r = data.post("/fhir/Patient/_search", content="gender=female&_sort=_id",
                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert [e["resource"]["id"] for e in r.json()["entry"]] == ["p1", "p3"]


def test_compartment(data: TestClient) -> None:
    assert sorted(ids(data, "/fhir/Patient/p1/Observation")) == ["bp1", "o1", "o2"]
    assert ids(data, "/fhir/Patient/p1/Observation?code=4548-4&date=2025-06") == ["o2"]
    assert ids(data, "/fhir/Patient/p1/MeasureReport") == ["mr1"]


def test_deleted_and_updated_resources_reindexed(data: TestClient) -> None:
    assert data.delete("/fhir/Observation/o1").status_code == 200
    assert "o1" not in ids(data, "/fhir/Observation?code=4548-4")
    p2 = data.get("/fhir/Patient/p2").json()
    p2["gender"] = "female"
    put(data, p2)
    assert sorted(ids(data, "/fhir/Patient?gender=female")) == ["p1", "p2", "p3"]
    assert ids(data, "/fhir/Patient?gender=male") == []
