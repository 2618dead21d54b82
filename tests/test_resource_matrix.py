"""The RESTful lifecycle of 47 R4 resource types through HTTP on both backends.

For each type, tests/fixtures/resources/<Type>.json holds one valid R4 resource (no id, no meta). Each test
creates it and drives one part of the lifecycle: create and read, update and vread, search by one standard
R4 search parameter of that type, instance and type history, delete, and create-on-update. One more test
checks that the CapabilityStatement announces every interaction and search parameter used here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.conftest import BASE, FIXTURES

JSON = {"Content-Type": "application/fhir+json"}
RESOURCES = FIXTURES / "resources"
SELF = "{id}"  # in a search value: the server-assigned id of the created resource
INTERACTIONS = {"read", "vread", "update", "delete", "create", "search-type", "history-instance", "history-type"}

RIVERSIDE = "http://riverside-health.example.org/fhir"
SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


@dataclass(frozen=True)
class Search:
    """A standard R4 search parameter of the type, a value the fixture matches and one it does not."""

    param: str
    hit: str
    miss: str


SEARCH: dict[str, Search] = {
    "Patient": Search("identifier", f"{RIVERSIDE}/sid/mrn|MRN-100234", f"{RIVERSIDE}/sid/mrn|MRN-999999"),
    "Practitioner": Search("family", "lindqvist", "Lindgren"),
    "PractitionerRole": Search("practitioner", "Practitioner/prac-2001", "Practitioner/prac-9999"),
    "Organization": Search("name", "Riverside Comm", "Lakeshore"),
    "Location": Search("address-city", "Portsmouth", "Dover"),
    "RelatedPerson": Search("patient", "Patient/pat-1001", "Patient/pat-9999"),
    "Coverage": Search("beneficiary", "Patient/pat-1001", "Patient/pat-9999"),
    "Group": Search("type", "person", "device"),
    "Encounter": Search("class", f"{ACT_CODE}|AMB", f"{ACT_CODE}|IMP"),
    "Condition": Search("code", f"{SCT}|44054006", f"{SCT}|46635009"),
    "Procedure": Search("date", "2023-05-10", "2023-05-11"),
    "Observation": Search("code", f"{LOINC}|4548-4", f"{LOINC}|2339-0"),
    "MedicationRequest": Search("code", f"{RXNORM}|860975", f"{RXNORM}|197361"),
    "MedicationDispense": Search("whenhandedover", "2023-06-02", "2023-06-03"),
    "MedicationAdministration": Search("effective-time", "2023-06-03", "2023-06-04"),
    "Immunization": Search("vaccine-code", "http://hl7.org/fhir/sid/cvx|208", "http://hl7.org/fhir/sid/cvx|140"),
    "DiagnosticReport": Search("result", "Observation/obs-7001", "Observation/obs-7999"),
    "AllergyIntolerance": Search("criticality", "high", "low"),
    "ServiceRequest": Search("authored", "2023-04-20", "2023-04-21"),
    "Claim": Search("use", "claim", "preauthorization"),
    "ClaimResponse": Search("outcome", "complete", "error"),
    "ExplanationOfBenefit": Search("claim", "Claim/claim-8101", "Claim/claim-8999"),
    "Measure": Search("url", f"{RIVERSIDE}/Measure/diabetes-hba1c-poor-control",
                      f"{RIVERSIDE}/Measure/diabetes-eye-exam"),
    "MeasureReport": Search("measure", f"{RIVERSIDE}/Measure/diabetes-hba1c-poor-control",
                            f"{RIVERSIDE}/Measure/diabetes-eye-exam"),
    "Library": Search("name", "riversidediabetes", "FHIRHelpers"),
    "ValueSet": Search("url", f"{RIVERSIDE}/ValueSet/diabetes-diagnoses", f"{RIVERSIDE}/ValueSet/hypertension"),
    "CodeSystem": Search("code", "high-risk", "no-risk"),
    "DetectedIssue": Search("code", f"{ACT_CODE}|DUPTHPY", f"{ACT_CODE}|DRG"),
    "GuidanceResponse": Search("request", f"{RIVERSIDE}/sid/cds-request|req-20230611-0042",
                               f"{RIVERSIDE}/sid/cds-request|req-20230611-0043"),
    "Composition": Search("type", f"{LOINC}|11488-4", f"{LOINC}|18842-5"),
    "Bundle": Search("type", "collection", "document"),
    # Parameters and OperationOutcome have no type-specific R4 search parameter; only the Resource ones
    "Parameters": Search("_id", SELF, "no-such-id"),
    "OperationOutcome": Search("_id", SELF, "no-such-id"),
    "Provenance": Search("target", "Observation/obs-7001", "Observation/obs-7999"),
    "AuditEvent": Search("type", "http://terminology.hl7.org/CodeSystem/audit-event-type|rest",
                         "http://terminology.hl7.org/CodeSystem/audit-event-type|export"),
    "Subscription": Search("url", "https://care-gaps.riverside-health.example.org/notify",
                           "https://care-gaps.riverside-health.example.org/other"),
    "List": Search("title", "current medication", "allergies"),
    "Task": Search("code", "http://hl7.org/fhir/CodeSystem/task-code|fulfill",
                   "http://hl7.org/fhir/CodeSystem/task-code|approve"),
    "Device": Search("device-name", "glucocheck", "Inhaler"),
    "DeviceRequest": Search("code", f"{SCT}|337414009", f"{SCT}|469008006"),
    "Communication": Search("sent", "2023-08-14", "2023-08-15"),
    "CommunicationRequest": Search("priority", "urgent", "routine"),
    "CarePlan": Search("category", f"{SCT}|698360004", f"{SCT}|734163000"),
    "CareTeam": Search("participant", "Practitioner/prac-2001", "Practitioner/prac-9999"),
    "Goal": Search("target-date", "2023-12-31", "2024-06-30"),
    "DocumentReference": Search("contenttype", "application/pdf", "text/plain"),
    "QuestionnaireResponse": Search("questionnaire", f"{RIVERSIDE}/Questionnaire/phq-2",
                                    f"{RIVERSIDE}/Questionnaire/phq-9"),
}
TYPES = list(SEARCH)


def fixture(rtype: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((RESOURCES / f"{rtype}.json").read_text())
    return body


def content(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource without the server-managed id and meta, and without the ELM the server adds to a Library
    sent as CQL only (translated on write: docs/cql-translator.md; tests/test_library_cql_write.py)."""
    out = {k: v for k, v in resource.items() if k not in ("id", "meta")}
    if resource.get("resourceType") == "Library" and isinstance(out.get("content"), list):
        out["content"] = [c for c in out["content"] if c.get("contentType") != "application/elm+json"]
    return out


def changed(resource: dict[str, Any], rid: str) -> dict[str, Any]:
    """The update sent by the tests: the same resource with its language set (an element of every type)."""
    assert "language" not in resource
    return {**resource, "id": rid, "language": "en-GB"}


def fhir_json(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    body: dict[str, Any] = r.json()
    return body


def create(client: TestClient, rtype: str) -> tuple[str, dict[str, Any]]:
    body = fhir_json(client.post(f"/fhir/{rtype}", json=fixture(rtype), headers=JSON), 201)
    return body["id"], body


def update(client: TestClient, rtype: str, rid: str) -> dict[str, Any]:
    sent = changed(fixture(rtype), rid)
    r = client.put(f"/fhir/{rtype}/{rid}", json=sent, headers=JSON)
    body = fhir_json(r, 200)
    assert r.headers["etag"] == 'W/"2"'
    assert r.headers["location"] == f"{BASE}/{rtype}/{rid}/_history/2"
    assert body["meta"]["versionId"] == "2"
    assert content(body) == content(sent)
    return body


def search(client: TestClient, rtype: str, value: str, rid: str) -> list[str]:
    """Run the type's search; check the searchset Bundle and return the ids of the matches."""
    param = SEARCH[rtype].param
    bundle = fhir_json(client.get(f"/fhir/{rtype}", params={param: value.replace(SELF, rid)}), 200)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    entries = bundle.get("entry", [])
    assert [e for e in entries if e["search"]["mode"] == "outcome"] == [], f"{param} was not understood"
    matches = [e for e in entries if e["search"]["mode"] == "match"]
    assert bundle["total"] == len(matches)
    for e in matches:
        assert e["fullUrl"] == f"{BASE}/{rtype}/{e['resource']['id']}"
        assert e["resource"]["resourceType"] == rtype
    return [e["resource"]["id"] for e in matches]


def history(client: TestClient, url: str) -> list[dict[str, Any]]:
    bundle = fhir_json(client.get(url), 200)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "history"
    entries: list[dict[str, Any]] = bundle.get("entry", [])
    assert bundle["total"] == len(entries)
    return entries


@pytest.mark.parametrize("rtype", TYPES)
def test_fixture_validates(rtype: str) -> None:
    """The fixtures pass the fhir.resources R4B models, the models the server validates with."""
    from fhir.resources.R4B import get_fhir_model_class

    body = fixture(rtype)
    assert body["resourceType"] == rtype and "id" not in body and "meta" not in body
    get_fhir_model_class(rtype).model_validate(body)


def test_fixture_set_is_complete() -> None:
    assert len(TYPES) == 47
    assert sorted(p.stem for p in RESOURCES.glob("*.json")) == sorted(TYPES)


@pytest.mark.parametrize("rtype", TYPES)
def test_create_and_read(client: TestClient, rtype: str) -> None:
    sent = fixture(rtype)
    r = client.post(f"/fhir/{rtype}", json=sent, headers=JSON)
    body = fhir_json(r, 201)
    rid = body["id"]
    assert rid
    assert r.headers["location"] == f"{BASE}/{rtype}/{rid}/_history/1"
    assert r.headers["etag"] == 'W/"1"'
    assert body["meta"]["versionId"] == "1"
    assert content(body) == content(sent)
    modified = parsedate_to_datetime(r.headers["last-modified"])
    updated = datetime.fromisoformat(body["meta"]["lastUpdated"].replace("Z", "+00:00"))
    assert modified == updated.replace(microsecond=0)

    g = client.get(f"/fhir/{rtype}/{rid}")
    read = fhir_json(g, 200)
    assert g.headers["etag"] == 'W/"1"'
    assert g.headers["last-modified"] == r.headers["last-modified"]
    assert read["resourceType"] == rtype and read["id"] == rid
    assert read["meta"]["versionId"] == "1"
    assert content(read) == content(sent)


@pytest.mark.parametrize("rtype", TYPES)
def test_update_and_vread(client: TestClient, rtype: str) -> None:
    rid, _ = create(client, rtype)
    new = update(client, rtype, rid)

    g = client.get(f"/fhir/{rtype}/{rid}")
    assert fhir_json(g, 200) == new
    assert g.headers["etag"] == 'W/"2"'

    v1 = client.get(f"/fhir/{rtype}/{rid}/_history/1")
    old = fhir_json(v1, 200)
    assert v1.headers["etag"] == 'W/"1"'
    assert old["id"] == rid and old["meta"]["versionId"] == "1"
    assert content(old) == fixture(rtype)

    v2 = client.get(f"/fhir/{rtype}/{rid}/_history/2")
    assert fhir_json(v2, 200) == new
    assert v2.headers["etag"] == 'W/"2"'
    assert client.get(f"/fhir/{rtype}/{rid}/_history/3").status_code == 404


@pytest.mark.parametrize("rtype", TYPES)
def test_search(client: TestClient, rtype: str) -> None:
    rid, _ = create(client, rtype)
    s = SEARCH[rtype]
    assert search(client, rtype, s.hit, rid) == [rid]
    assert search(client, rtype, s.miss, rid) == []
    update(client, rtype, rid)  # the index is rewritten for version 2: still exactly one match
    assert search(client, rtype, s.hit, rid) == [rid]
    assert search(client, rtype, s.miss, rid) == []


@pytest.mark.parametrize("rtype", TYPES)
def test_history(client: TestClient, rtype: str) -> None:
    rid, _ = create(client, rtype)
    update(client, rtype, rid)

    entries = history(client, f"/fhir/{rtype}/{rid}/_history")
    assert [e["resource"]["meta"]["versionId"] for e in entries] == ["2", "1"]
    assert [e["request"]["method"] for e in entries] == ["PUT", "POST"]
    assert [e["response"]["etag"] for e in entries] == ['W/"2"', 'W/"1"']
    assert all(e["fullUrl"] == f"{BASE}/{rtype}/{rid}" for e in entries)
    assert content(entries[0]["resource"]) == content(changed(fixture(rtype), rid))
    assert content(entries[1]["resource"]) == fixture(rtype)

    type_entries = history(client, f"/fhir/{rtype}/_history")
    assert [(e["resource"]["id"], e["resource"]["meta"]["versionId"]) for e in type_entries] == [
        (rid, "2"), (rid, "1")]


@pytest.mark.parametrize("rtype", TYPES)
def test_delete(client: TestClient, rtype: str) -> None:
    rid, _ = create(client, rtype)
    update(client, rtype, rid)
    s = SEARCH[rtype]
    assert search(client, rtype, s.hit, rid) == [rid]

    assert client.delete(f"/fhir/{rtype}/{rid}").status_code == 200
    gone = fhir_json(client.get(f"/fhir/{rtype}/{rid}"), 410)
    assert gone["resourceType"] == "OperationOutcome" and gone["issue"]

    entries = history(client, f"/fhir/{rtype}/{rid}/_history")
    assert [e["request"]["method"] for e in entries] == ["DELETE", "PUT", "POST"]
    assert [e["response"]["etag"] for e in entries] == ['W/"3"', 'W/"2"', 'W/"1"']
    assert "resource" not in entries[0]
    assert fhir_json(client.get(f"/fhir/{rtype}/{rid}/_history/2"), 200)["meta"]["versionId"] == "2"
    assert search(client, rtype, s.hit, rid) == []


@pytest.mark.parametrize("rtype", TYPES)
def test_create_on_update(client: TestClient, rtype: str) -> None:
    rid = "client-chosen-id"
    sent = {**fixture(rtype), "id": rid}
    r = client.put(f"/fhir/{rtype}/{rid}", json=sent, headers=JSON)
    body = fhir_json(r, 201)
    assert r.headers["location"] == f"{BASE}/{rtype}/{rid}/_history/1"
    assert r.headers["etag"] == 'W/"1"'
    assert body["id"] == rid and body["meta"]["versionId"] == "1"
    read = fhir_json(client.get(f"/fhir/{rtype}/{rid}"), 200)
    assert read["id"] == rid and content(read) == fixture(rtype)
    assert search(client, rtype, SEARCH[rtype].hit, rid) == [rid]


def test_capability_statement(client: TestClient) -> None:
    cs = fhir_json(client.get("/fhir/metadata"), 200)
    assert cs["resourceType"] == "CapabilityStatement"
    resources = {r["type"]: r for r in cs["rest"][0]["resource"]}
    missing = [t for t in TYPES if t not in resources]
    assert missing == []
    for rtype, s in SEARCH.items():
        declared = resources[rtype]
        assert {i["code"] for i in declared["interaction"]} >= INTERACTIONS, rtype
        assert s.param in {p["name"] for p in declared["searchParam"]}, rtype
