"""No request answered with an error writes anything (issue 13, gap 6), on SQLite and PostgreSQL.

Each case below is a write whose input fails late: after an earlier part of the same request was valid (a
transaction's last entry, a submission's report after its data, a PATCH whose result is invalid, an
X-Provenance header that is wrong only once the resource is known, ...). For every one the answer is a 4xx
OperationOutcome and the stored rows (current resources, every history version and every index row) are
exactly what they were."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from gateway.store.sql.store import SqlStore
from gateway.store.sql.tables import HISTORY, IDX, RESOURCE
from tests.conftest import make_client

FJ = {"Content-Type": "application/fhir+json"}
DEQM = "http://hl7.org/fhir/us/davinci-deqm/StructureDefinition/"
MEASURE_URL = "http://example.org/Measure/atomic"


@pytest.fixture()
def app(store: SqlStore) -> Iterator[TestClient]:
    with make_client(store) as c:
        for r in ({"resourceType": "Patient", "id": "p1", "name": [{"family": "Before"}]},
                  {"resourceType": "Organization", "id": "org1", "name": "Provider"},
                  {"resourceType": "Measure", "id": "atomic", "url": MEASURE_URL, "status": "active",
                   "version": "1"},
                  {"resourceType": "Group", "id": "g1", "type": "person", "actual": True,
                   "member": [{"entity": {"reference": "Patient/p1"}}]}):
            assert c.put(f"/fhir/{r['resourceType']}/{r['id']}", json=r, headers=FJ).status_code in (200, 201)
        yield c


def _rows(store: SqlStore) -> dict[str, int]:
    tables = {"resource": RESOURCE, "history": HISTORY, **{f"idx_{k}": t for k, t in IDX.items()}}
    with store.engine.connect() as conn:
        return {name: int(conn.execute(select(func.count()).select_from(t)).scalar_one()) for name, t in tables.items()}


def _obs(oid: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final", "code": {"text": "x"},
            "subject": {"reference": "Patient/p1"}, **extra}


def _tx(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def _put(resource: dict[str, Any], url: str | None = None) -> dict[str, Any]:
    return {"resource": resource, "request": {"method": "PUT", "url": url or f"{resource['resourceType']}/{resource['id']}"}}


def _report(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "MeasureReport", "meta": {"profile": [DEQM + "datax-measurereport-deqm"]},
            "extension": [{"url": DEQM + "extension-submitDataUpdateType", "valueCode": "incremental"}],
            "status": "complete", "type": "data-collection", "measure": MEASURE_URL,
            "subject": {"reference": "Patient/p1"}, "date": "2025-11-01T10:00:00Z",
            "reporter": {"reference": "Organization/org1"}, "period": {"start": "2025-01-01", "end": "2025-12-31"},
            **extra}


def _submit(report: dict[str, Any], data: list[dict[str, Any]]) -> dict[str, Any]:
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": report}] + [{"resource": r} for r in data]}
    return {"resourceType": "Parameters", "parameter": [{"name": "bundle", "resource": bundle}]}


PROV_OTHER_TARGET = json.dumps({"resourceType": "Provenance", "recorded": "2025-01-01T00:00:00Z",
                                "target": [{"reference": "Observation/someone-else"}],
                                "agent": [{"who": {"reference": "Organization/org1"}}]})
PROV_INVALID = json.dumps({"resourceType": "Provenance", "recorded": "not a date",
                           "agent": [{"who": {"reference": "Organization/org1"}}]})

CSV = (b"CLAIM_ID,VERSION,FREQUENCY,CLAIM_TYPE,MEMBER_ID,MEMBER_FAMILY,MEMBER_GIVEN,MEMBER_BIRTH_DATE,MEMBER_SEX,"
       b"PAYER_ID,PAYER_NAME,BILLING_NPI,RENDERING_NPI,FROM_DATE,THRU_DATE,PLACE_OF_SERVICE,DX1,DX2,DX3,DX4,"
       b"LINE_NUMBER,PROCEDURE_CODE,REVENUE_CODE,NDC,UNITS,CHARGE,PAID,ADJUDICATED_DATE\n"
       b"C1,1,1,professional,M1,Doe,Ann,1960-02-03,F,P1,Plan One,1234567893,1234567893,2025-03-01,2025-03-01,11,"
       b"Z1231,,,,1,77067,,,1,200.00,150.00,2025-03-10\n")

# (label, method, url, body, headers)
CASES: list[tuple[str, str, str, Any, dict[str, str]]] = [
    ("transaction: last entry references nothing", "POST", "/fhir", _tx(
        _put(_obs("t1")), _put(_obs("t2", subject={"reference": "Patient/missing"}))), {}),
    ("transaction: last entry invalid", "POST", "/fhir", _tx(
        _put(_obs("t3")), _put({"resourceType": "Observation", "id": "t4", "status": "nonsense"})), {}),
    ("transaction: same resource twice", "POST", "/fhir", _tx(_put(_obs("t5")), _put(_obs("t5"))), {}),
    ("transaction: conditional update criteria unknown", "POST", "/fhir", _tx(
        _put(_obs("t6")), _put(_obs("t7"), "Observation?no-such-param=1")), {}),
    ("transaction: ifNoneExist malformed", "POST", "/fhir", _tx(
        _put(_obs("t8")), {"resource": _obs("t9"), "request": {"method": "POST", "url": "Observation",
                                                               "ifNoneExist": "code:bogus=x"}}), {}),
    ("update: body invalid", "PUT", "/fhir/Patient/p1", {"resourceType": "Patient", "id": "p1", "gender": 7}, {}),
    ("create-on-update: body invalid", "PUT", "/fhir/Patient/new1",
     {"resourceType": "Patient", "id": "new1", "birthDate": "yesterday"}, {}),
    ("update: id does not match the URL", "PUT", "/fhir/Patient/new2", {"resourceType": "Patient", "id": "other"}, {}),
    ("create: X-Provenance names another target", "POST", "/fhir/Patient", {"resourceType": "Patient"},
     {"X-Provenance": PROV_OTHER_TARGET}),
    ("update: X-Provenance invalid", "PUT", "/fhir/Patient/p1", {"resourceType": "Patient", "id": "p1"},
     {"X-Provenance": PROV_INVALID}),
    ("patch: result invalid", "PATCH", "/fhir/Patient/p1",
     [{"op": "replace", "path": "/name", "value": "not a list"}], {"Content-Type": "application/json-patch+json"}),
    ("patch: test fails after a change", "PATCH", "/fhir/Patient/p1",
     [{"op": "add", "path": "/gender", "value": "male"}, {"op": "test", "path": "/id", "value": "nope"}],
     {"Content-Type": "application/json-patch+json"}),
    ("conditional create: criteria unknown", "POST", "/fhir/Patient", {"resourceType": "Patient"},
     {"If-None-Exist": "no-such-param=1"}),
    ("conditional update: creates with an invalid body", "PUT", "/fhir/Patient?identifier=urn:x|1",
     {"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": "1"}], "gender": "often"}, {}),
    ("conditional update: criteria unknown", "PUT", "/fhir/Patient?no-such-param=1", {"resourceType": "Patient"}, {}),
    ("conditional delete: criteria unknown", "DELETE", "/fhir/Patient?no-such-param=1", None, {}),
    ("$submit-data: report invalid after valid data", "POST", "/fhir/Measure/$submit-data",
     _submit(_report(status="nonsense"), [_obs("s1")]), {}),
    ("$submit-data: last data resource invalid", "POST", "/fhir/Measure/$submit-data",
     _submit(_report(), [_obs("s2"), {"resourceType": "Observation", "id": "s3", "status": 5}]), {}),
    ("$member-add: member unknown", "POST", "/fhir/Group/g1/$member-add", {"resourceType": "Parameters", "parameter": [
        {"name": "patientReference", "valueReference": {"reference": "Patient/missing"}},
        {"name": "providerReference", "valueReference": {"reference": "Organization/org1"}}]}, {}),
    ("$validate: invalid", "POST", "/fhir/Patient/$validate", {"resourceType": "Patient", "gender": 7}, {}),
    ("transaction: PATCH entry after a valid one", "POST", "/fhir", _tx(
        _put(_obs("t10")), {"resource": {"resourceType": "Binary", "contentType": "application/json-patch+json",
                                         "data": "W10="}, "request": {"method": "PATCH", "url": "Patient/p1"}}), {}),
    ("transaction: operation entry after a valid one", "POST", "/fhir", _tx(
        _put(_obs("t11")), {"resource": {"resourceType": "Parameters"},
                            "request": {"method": "POST", "url": "Group/g1/$member-add"}}), {}),
    ("$care-gaps asynchronous: bad period", "GET", "/fhir/Measure/$care-gaps?periodStart=nope&periodEnd=2025-12-31"
     "&status=open-gap&subject=Patient/p1", None, {"Prefer": "respond-async"}),
    ("transaction: last entry's number beyond the database's range", "POST", "/fhir", _tx(
        _put(_obs("t12")), _put(_obs("t13", valueQuantity={"value": 10 ** 400, "unit": "mg"}))), {}),
    ("$ingest: an empty file", "POST", "/fhir/$ingest/claims-csv?filename=notes.txt", b"",
     {"Content-Type": "text/csv"}),
    ("$ingest: every record rejected", "POST", "/fhir/$ingest/claims-csv?filename=notes.txt",
     b"minutes of the quality committee\nno claims here\n", {"Content-Type": "text/csv"}),
    ("$member-add: nothing to add", "POST", "/fhir/Group/g1/$member-add", {"resourceType": "Parameters"}, {}),
    ("$confirm-attribution-list: not a draft", "POST", "/fhir/Group/g1/$confirm-attribution-list", None, {}),
    ("Subscription: endpoint not allowed", "PUT", "/fhir/Subscription/sub1", {
        "resourceType": "Subscription", "id": "sub1", "status": "requested", "reason": "x",
        "criteria": "http://hl7.org/fhir/us/davinci-atr/SubscriptionTopic/group-change",
        "channel": {"type": "rest-hook", "endpoint": "http://169.254.169.254/", "payload": "application/fhir+json"}},
     {}),
]


@pytest.mark.parametrize("label, method, url, body, headers", CASES, ids=[c[0] for c in CASES])
def test_a_refused_write_stores_nothing(app: TestClient, store: SqlStore, label: str, method: str, url: str,
                                       body: Any, headers: dict[str, str]) -> None:
    before = _rows(store)
    content = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    r = app.request(method, url, content=content, headers={**FJ, **headers})
    if label.startswith("$validate"):  # answers 200 with the errors in its OperationOutcome (R4 $validate)
        assert r.status_code == 200 and r.json()["issue"][0]["severity"] == "error", r.text
    elif label == "$ingest: every record rejected":  # a run that read its input answers with its report
        assert r.status_code == 200 and any(i["severity"] == "error" for i in r.json()["issue"]), r.text
    else:
        assert 400 <= r.status_code < 500, (label, r.status_code, r.text)
    assert r.json()["resourceType"] == "OperationOutcome"
    assert "Traceback" not in r.text
    assert _rows(store) == before, (label, r.status_code, r.text)
    assert app.get("/fhir/Patient/p1").json()["name"] == [{"family": "Before"}]


def test_the_same_paths_write_when_the_input_is_good(app: TestClient, store: SqlStore) -> None:
    """The control: row counting sees writes, so an unchanged count above means nothing was written."""
    before = _rows(store)
    r = app.post("/fhir", content=json.dumps(_tx(_put(_obs("ok1")), _put(_obs("ok2")))).encode(), headers=FJ)
    assert r.status_code == 200, r.text
    r = app.post("/fhir/$ingest/claims-csv?filename=claims.csv", content=CSV, headers={"Content-Type": "text/csv"})
    assert r.status_code == 200, r.text
    after = _rows(store)
    assert after["resource"] > before["resource"] + 2 and after["history"] > before["history"] + 2
