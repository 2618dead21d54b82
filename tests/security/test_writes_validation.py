"""Validation holds at the boundary (issue 13, defect 17): at the strict level (docs/validation.md) wrong JSON
types, empty arrays and objects, codes outside required bindings and active content in narrative are refused on
every write path — REST create, update and patch, batch and transaction entries, $submit-data, $validate and the
ingest fast path (gateway/fhir/shapes.py) — and a refused request writes nothing. SQLite and PostgreSQL."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.auth.context import SYSTEM, acting_as
from gateway.fhir.shapes import ShapeCache
from gateway.fhir.validation import validate_resource
from gateway.store.sql.store import SqlStore
from tests.conftest import make_client

FHIR = {"Content-Type": "application/fhir+json"}
XHTML = 'xmlns="http://www.w3.org/1999/xhtml"'
DEQM = "http://hl7.org/fhir/us/davinci-deqm/StructureDefinition/"

# (what, field values merged into a valid Patient, the element the OperationOutcome must name)
BAD_PATIENT: list[tuple[str, dict[str, Any], str]] = [
    ("boolean as string", {"active": "yes"}, "Patient.active"),
    ("boolean as number", {"active": 1}, "Patient.active"),
    ("integer as string", {"multipleBirthInteger": "2"}, "Patient.multipleBirthInteger"),
    ("integer as boolean", {"multipleBirthInteger": True}, "Patient.multipleBirthInteger"),
    ("string as number", {"birthDate": "1970-01-01", "name": [{"family": 42}]}, "Patient.name[0].family"),
    ("code outside required binding", {"gender": "x"}, "Patient.gender"),
    ("nested required code", {"telecom": [{"system": "pigeon", "value": "coo"}]}, "Patient.telecom[0].system"),
    ("empty array", {"name": []}, "Patient.name"),
    ("empty object", {"maritalStatus": {}}, "Patient.maritalStatus"),
    ("empty object in array", {"contact": [{}]}, "Patient.contact[0]"),
    ("decimal as string", {"extension": [{"url": "http://example.org/x", "valueDecimal": "1.5"}]},
     "Patient.extension[0].valueDecimal"),
    ("script in narrative", {"text": {"status": "generated", "div": f"<div {XHTML}><script>alert(1)</script></div>"}},
     "Patient.text.div"),
    ("event handler in narrative",
     {"text": {"status": "generated", "div": f'<div {XHTML}><img src="x.png" onerror="alert(1)"/></div>'}},
     "Patient.text.div"),
    ("javascript URL in narrative",
     {"text": {"status": "generated", "div": f'<div {XHTML}><a href=" jav&#x09;ascript:alert(1)">x</a></div>'}},
     "Patient.text.div"),
    ("bad contained resource", {"contained": [{"resourceType": "Organization", "id": "o", "active": "no"}]},
     "Patient.contained[0].active"),
]
ISSUE_PATIENT = {"resourceType": "Patient", "active": "yes", "multipleBirthInteger": "2", "gender": "x", "name": []}


@pytest.fixture()
def client(store: SqlStore) -> Iterator[TestClient]:
    with make_client(store, validation_rest="strict") as c:
        with acting_as(SYSTEM):
            c.app.state.rest.update("Patient", "keep", {"resourceType": "Patient", "id": "keep", "gender": "female"})
        yield c


def patients(client: TestClient) -> int:
    return sum(1 for _ in client.app.state.store.iter_current("Patient"))


def refused(r: Any, where: str | None = None) -> None:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    assert "Traceback" not in r.text and "ValidationError" not in r.text
    if where:
        assert any(where in str(i.get("expression")) or where in i.get("diagnostics", "") for i in body["issue"]), \
            (where, body)


def test_the_issue_patient_is_refused_and_not_stored(client: TestClient) -> None:
    """The exact body of the report: stored as sent (201) before."""
    r = client.post("/fhir/Patient", json=ISSUE_PATIENT, headers=FHIR)
    refused(r)
    found = {e for i in r.json()["issue"] for e in i.get("expression", [])}
    assert {"Patient.active", "Patient.multipleBirthInteger", "Patient.gender", "Patient.name"} <= found
    assert patients(client) == 1


@pytest.mark.parametrize(("what", "fields", "where"), BAD_PATIENT, ids=[b[0] for b in BAD_PATIENT])
def test_rest_create_and_update_refuse(client: TestClient, what: str, fields: dict[str, Any], where: str) -> None:
    r = client.post("/fhir/Patient", json={"resourceType": "Patient", **fields}, headers=FHIR)
    refused(r, where)
    r = client.put("/fhir/Patient/keep", json={"resourceType": "Patient", "id": "keep", **fields}, headers=FHIR)
    refused(r, where)
    r = client.put("/fhir/Patient?identifier=s|none", json={"resourceType": "Patient", **fields}, headers=FHIR)
    refused(r, where)
    assert patients(client) == 1
    assert client.app.state.store.read("Patient", "keep").version == 1


def test_valid_values_still_pass(client: TestClient) -> None:
    """The rules refuse what R4 forbids, not what it allows: safe narrative, every R4 observation status."""
    ok = {"resourceType": "Patient", "active": False, "gender": "unknown", "multipleBirthInteger": 0,
          "telecom": [{"system": "email", "value": "a@example.org"}],
          "text": {"status": "generated", "div": f'<div {XHTML}><p style="color: red">Ann <b>Doe</b> &lt;script&gt; '
                                                 f'<a href="https://example.org/x">link</a>'
                                                 f'<img src="data:image/png;base64,iVBORw0KGgo=" alt="x"/></p></div>'},
          "extension": [{"url": "http://example.org/x", "valueDecimal": 1.5}, {"url": "http://example.org/y",
                                                                              "valueDecimal": 2}]}
    r = client.post("/fhir/Patient", json=ok, headers=FHIR)
    assert r.status_code == 201, r.text
    for status in ("registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error",
                   "unknown"):
        r = client.post("/fhir/Observation", json={"resourceType": "Observation", "status": status,
                                                   "code": {"text": "x"}}, headers=FHIR)
        assert r.status_code == 201, (status, r.text)
    r = client.post("/fhir/Observation", json={"resourceType": "Observation", "status": "done",
                                               "code": {"text": "x"}}, headers=FHIR)
    refused(r, "Observation.status")


def test_patch_result_is_validated(client: TestClient) -> None:
    hdr = {"Content-Type": "application/json-patch+json"}
    for op in ([{"op": "replace", "path": "/gender", "value": "x"}],
               [{"op": "add", "path": "/active", "value": "yes"}],
               [{"op": "add", "path": "/name", "value": []}]):
        r = client.patch("/fhir/Patient/keep", json=op, headers=hdr)
        assert r.status_code in (400, 422), r.text
        assert r.json()["resourceType"] == "OperationOutcome"
    stored = client.app.state.store.read("Patient", "keep")
    assert stored.version == 1


def test_transaction_with_one_bad_patient_stores_none(client: TestClient) -> None:
    """The report: one transaction stored 20,000 Patients with gender "x"."""
    entries = [{"resource": {"resourceType": "Patient", "gender": "female"}, "request": {"method": "POST",
                                                                                     "url": "Patient"}}
               for _ in range(200)]
    entries[150]["resource"] = {"resourceType": "Patient", "gender": "x"}
    r = client.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": entries}, headers=FHIR)
    refused(r, "Bundle.entry[150]")
    assert patients(client) == 1
    every = [{"resource": {"resourceType": "Patient", "gender": "x"}, "request": {"method": "POST", "url": "Patient"}}
             for _ in range(50)]
    refused(client.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": every},
                        headers=FHIR))
    assert patients(client) == 1


def test_batch_refuses_each_bad_entry(client: TestClient) -> None:
    entries = [{"resource": {"resourceType": "Patient", **fields}, "request": {"method": "POST", "url": "Patient"}}
               for _, fields, _ in BAD_PATIENT]
    entries.append({"resource": {"resourceType": "Patient", "gender": "male"},
                    "request": {"method": "POST", "url": "Patient"}})
    r = client.post("/fhir", json={"resourceType": "Bundle", "type": "batch", "entry": entries}, headers=FHIR)
    assert r.status_code == 200, r.text
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert all(s.startswith("400") for s in statuses[:-1]), statuses
    assert statuses[-1].startswith("201")
    assert patients(client) == 2


def test_submit_data_refuses_bad_resources(client: TestClient) -> None:
    report = {"resourceType": "MeasureReport", "meta": {"profile": [DEQM + "datax-measurereport-deqm"]},
              "extension": [{"url": DEQM + "extension-submitDataUpdateType", "valueCode": "snapshot"}],
              "status": "complete", "type": "data-collection", "measure": "http://example.org/Measure/m|1",
              "subject": {"reference": "Patient/keep"}, "date": "2025-11-01T10:00:00Z",
              "reporter": {"reference": "Organization/o"}, "period": {"start": "2025-01-01", "end": "2025-12-31"}}
    obs = {"resourceType": "Observation", "id": "sub-obs", "status": "final", "code": {"text": "x"},
           "subject": {"reference": "Patient/keep"}, "valueBoolean": "true"}
    with acting_as(SYSTEM):
        client.app.state.rest.update("Measure", "m", {"resourceType": "Measure", "id": "m", "status": "active",
                                                      "url": "http://example.org/Measure/m", "version": "1"})
        client.app.state.rest.update("Organization", "o", {"resourceType": "Organization", "id": "o"})
    before = {t: sum(1 for _ in client.app.state.store.iter_current(t)) for t in ("MeasureReport", "Observation",
                                                                                   "Provenance")}
    for data, where in (([obs], "valueBoolean"), ([{**obs, "valueBoolean": True, "status": "bogus"}], "status"),
                        ([{**obs, "valueBoolean": True, "note": []}], "note")):
        bundle = {"resourceType": "Bundle", "type": "collection",
                  "entry": [{"resource": report}] + [{"resource": r} for r in data]}
        r = client.post("/fhir/Measure/$submit-data", headers=FHIR,
                        json={"resourceType": "Parameters", "parameter": [{"name": "bundle", "resource": bundle}]})
        refused(r, f"Observation.{where}")
    after = {t: sum(1 for _ in client.app.state.store.iter_current(t)) for t in before}
    assert after == before
    good = {"resourceType": "Bundle", "type": "collection",
            "entry": [{"resource": report}, {"resource": {**obs, "valueBoolean": True}}]}
    r = client.post("/fhir/Measure/$submit-data", headers=FHIR,
                    json={"resourceType": "Parameters", "parameter": [{"name": "bundle", "resource": good}]})
    assert r.status_code == 200, r.text  # the same submission with the defects removed is stored
    assert sum(1 for _ in client.app.state.store.iter_current("Observation")) == before["Observation"] + 1


def test_validate_operation_reports_the_defects(client: TestClient) -> None:
    r = client.post("/fhir/Patient/$validate", json=ISSUE_PATIENT, headers=FHIR)
    assert r.status_code == 200, r.text
    errors = [i for i in r.json()["issue"] if i["severity"] == "error"]
    assert {e for i in errors for e in i.get("expression", [])} >= {"Patient.active", "Patient.gender",
                                                                      "Patient.multipleBirthInteger", "Patient.name"}
    assert patients(client) == 1


def test_lenient_level_warns_and_keeps_the_resource() -> None:
    """docs/validation.md: at the lenient level (file loads) the same defects are warnings."""
    result = validate_resource(ISSUE_PATIENT, "lenient")
    assert result.ok and {e for i in result.warnings for e in i.expression} >= {"Patient.gender", "Patient.name"}
    assert not validate_resource(ISSUE_PATIENT, "strict").ok


def test_ingest_fast_path_agrees_with_full_validation() -> None:
    """The shape cache learns a valid resource's shape; a resource of that same shape with a code outside its
    required binding or active narrative must go to full validation and fail there, exactly as before."""
    good = {"resourceType": "Patient", "id": "p1", "gender": "female", "active": True,
            "telecom": [{"system": "phone", "value": "555"}],
            "text": {"status": "generated", "div": f"<div {XHTML}><p>Ann</p></div>"}}
    assert validate_resource(good).ok and not validate_resource(good).warnings
    cache = ShapeCache()
    cache.learn(good)
    same = copy.deepcopy(good)
    same["id"], same["gender"] = "p2", "male"
    assert cache.passes(same)
    variants = [("gender", "x"), ("telecom", [{"system": "pigeon", "value": "555"}]),
                ("text", {"status": "generated", "div": f"<div {XHTML}><script>x()</script></div>"}),
                ("text", {"status": "bogus", "div": f"<div {XHTML}><p>Ann</p></div>"}),
                ("active", "true"), ("telecom", [])]
    for key, value in variants:
        bad = copy.deepcopy(good)
        bad[key] = value
        assert not cache.passes(bad), key
        assert not validate_resource(bad).ok, key
