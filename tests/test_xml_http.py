"""FHIR XML over HTTP (api/xmlformat.py) for every kind of interaction, on SQLite and PostgreSQL: XML bodies in,
XML answers out by Accept or ``_format``, OperationOutcome errors in XML, the CapabilityStatement's formats."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element, fromstring

import httpx
from fastapi.testclient import TestClient

from gateway.fhir.xml import FHIR_NS, from_xml, to_xml
from gateway.store.sql.store import SqlStore
from tests.smart.conftest import bearer, make_auth_client, register_backend

F = "{" + FHIR_NS + "}"
XML = {"Content-Type": "application/fhir+xml", "Accept": "application/fhir+xml"}


def xml_of(r: Any, status: int) -> Element:
    """The parsed FHIR XML answer of ``r``, asserting its status and media type."""
    assert r.status_code == status, r.text[:400]
    assert r.headers["content-type"].startswith("application/fhir+xml"), r.headers["content-type"]
    return fromstring(r.content)


def value(el: Element, path: str) -> str | None:
    found = el.find("/".join(F + p for p in path.split("/")))
    return None if found is None else found.get("value")


PATIENT = {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "X-1"}],
           "name": [{"family": "Okafor", "given": ["Ada"], "_given": [{"extension": [
               {"url": "http://example.org/nick", "valueString": "Addy"}]}]}],
           "gender": "female", "birthDate": "1970-02-03", "active": True}


def test_crud_search_history_in_xml(client: TestClient) -> None:
    r = client.post("/fhir/Patient", content=to_xml(PATIENT), headers=XML)
    created = xml_of(r, 201)
    pid = value(created, "id")
    assert pid and value(created, "name/family") == "Okafor" and value(created, "active") == "true"
    # the XML went in losslessly: the JSON read sees the primitive extension
    stored = client.get(f"/fhir/Patient/{pid}").json()
    assert stored["name"][0]["_given"][0]["extension"][0]["valueString"] == "Addy"
    assert stored["birthDate"] == "1970-02-03" and stored["active"] is True

    read = xml_of(client.get(f"/fhir/Patient/{pid}?_format=xml"), 200)
    assert read.tag == F + "Patient" and value(read, "meta/versionId") == "1"
    assert from_xml(client.get(f"/fhir/Patient/{pid}", headers={"Accept": "application/xml"}).content) == stored

    changed = {**stored, "gender": "other"}
    xml_of(client.put(f"/fhir/Patient/{pid}", content=to_xml(changed), headers=XML), 200)
    vread = xml_of(client.get(f"/fhir/Patient/{pid}/_history/1?_format=application/fhir+xml"), 200)
    assert value(vread, "gender") == "female"

    bundle = xml_of(client.get("/fhir/Patient?identifier=urn:mrn|X-1&_format=xml"), 200)
    assert bundle.tag == F + "Bundle" and value(bundle, "type") == "searchset" and value(bundle, "total") == "1"
    assert value(bundle, "entry/resource/Patient/gender") == "other"
    history = xml_of(client.get(f"/fhir/Patient/{pid}/_history", headers={"Accept": "text/xml"}), 200)
    assert value(history, "type") == "history" and len(history.findall(F + "entry")) == 2

    # FHIRPath Patch as XML Parameters; JSON Patch stays JSON in, answers in XML when asked
    params = {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "replace"}, {"name": "path", "valueString": "Patient.birthDate"},
        {"name": "value", "valueDate": "1971-01-01"}]}]}
    patched = xml_of(client.patch(f"/fhir/Patient/{pid}", content=to_xml(params), headers=XML), 200)
    assert value(patched, "birthDate") == "1971-01-01"
    r = client.patch(f"/fhir/Patient/{pid}?_format=xml", json=[{"op": "replace", "path": "/gender", "value": "male"}],
                     headers={"Content-Type": "application/json-patch+json"})
    assert value(xml_of(r, 200), "gender") == "male"

    assert client.delete(f"/fhir/Patient/{pid}").status_code in (200, 204)
    gone = xml_of(client.get(f"/fhir/Patient/{pid}", headers={"Accept": "application/fhir+xml"}), 410)
    assert gone.tag == F + "OperationOutcome"


def test_transaction_and_operation_in_xml(client: TestClient) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:0d4e5e1c-7b5e-4c1e-9a36-3f1d3b7f0a01", "resource": PATIENT,
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "weight"},
                      "subject": {"reference": "urn:uuid:0d4e5e1c-7b5e-4c1e-9a36-3f1d3b7f0a01"},
                      "valueQuantity": {"value": 72.50, "unit": "kg"}},
         "request": {"method": "POST", "url": "Observation"}}]}
    out = xml_of(client.post("/fhir", content=to_xml(bundle), headers=XML), 200)
    assert value(out, "type") == "transaction-response"
    statuses = [e.find(F + "response/" + F + "status").get("value") for e in out.findall(F + "entry")]  # type: ignore[union-attr]
    assert [s.split()[0] for s in statuses if s] == ["201", "201"]
    obs = client.get("/fhir/Observation").json()["entry"][0]["resource"]
    assert obs["valueQuantity"]["value"] == 72.5 and obs["subject"]["reference"].startswith("Patient/")

    # an operation taking a resource body and answering an OperationOutcome
    r = client.post("/fhir/Patient/$validate", content=to_xml(PATIENT), headers=XML)
    assert xml_of(r, 200).tag == F + "OperationOutcome"
    bad = {"resourceType": "Observation", "status": "final"}  # code is required
    r = client.post("/fhir/Observation", content=to_xml(bad), headers=XML)
    assert xml_of(r, 400).tag == F + "OperationOutcome"


def test_errors_and_negotiation(client: TestClient) -> None:
    # a bad XML body answers 400, in XML when XML was asked and in JSON otherwise
    r = client.post("/fhir/Patient", content=b"<Patient xmlns='http://hl7.org/fhir'><colour value='x'/></Patient>",
                    headers=XML)
    oo = xml_of(r, 400)
    assert oo.tag == F + "OperationOutcome" and "colour" in (value(oo, "issue/diagnostics") or "")
    r = client.post("/fhir/Patient", content=b"<Patient", headers={"Content-Type": "application/fhir+xml"})
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
    # an unknown route and a missing resource are OperationOutcomes in XML
    assert xml_of(client.get("/fhir/Patient/nope?_format=xml"), 404).tag == F + "OperationOutcome"
    # Accept with qualities: the higher one wins
    r = client.get("/fhir/metadata", headers={"Accept": "application/fhir+json;q=0.5, application/fhir+xml"})
    assert xml_of(r, 200).tag == F + "CapabilityStatement"
    r = client.get("/fhir/metadata", headers={"Accept": "application/fhir+xml;q=0.2, application/fhir+json"})
    assert r.headers["content-type"].startswith("application/fhir+json")
    pretty = client.get("/fhir/metadata?_format=xml&_pretty=true")
    assert b"\n  <status value=" in pretty.content and xml_of(pretty, 200).tag == F + "CapabilityStatement"
    # _format wins over Accept
    r = client.get("/fhir/metadata?_format=json", headers={"Accept": "application/fhir+xml"})
    assert r.headers["content-type"].startswith("application/fhir+json")


def test_capability_statement_lists_xml(client: TestClient) -> None:
    cs = client.get("/fhir/metadata").json()
    assert "application/fhir+xml" in cs["format"] and "application/fhir+json" in cs["format"]
    xml = xml_of(client.get("/fhir/metadata?_format=xml"), 200)
    formats = [f.get("value") for f in xml.findall(F + "format")]
    assert "application/fhir+xml" in formats


def test_xml_under_smart_authorization(store: SqlStore) -> None:
    """The auth middleware sees the converted JSON: a transaction in XML is judged entry by entry under the
    token's scopes, and the refusals are OperationOutcomes in XML."""
    with make_auth_client(store) as auth_client:
        _smart_flow(auth_client)


def _smart_flow(auth_client: TestClient) -> None:
    unauth = xml_of(auth_client.get("/fhir/Patient?_format=xml"), 401)
    assert unauth.tag == F + "OperationOutcome"
    writer = bearer(register_backend(auth_client, "system/Patient.cruds").token("system/Patient.cruds"))
    ok = auth_client.post("/fhir/Patient", content=to_xml(PATIENT), headers={**XML, **writer})
    pid = value(xml_of(ok, 201), "id")
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {**PATIENT, "gender": "male"}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}},
         "request": {"method": "POST", "url": "Observation"}}]}
    refused = xml_of(auth_client.post("/fhir", content=to_xml(bundle), headers={**XML, **writer}), 403)
    assert refused.tag == F + "OperationOutcome"
    reader = bearer(register_backend(auth_client, "system/*.rs").token("system/*.rs"))
    found = auth_client.get("/fhir/Patient?_format=json", headers=reader).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [pid]  # the refused transaction stored nothing
    assert auth_client.get("/fhir/Observation", headers=reader).json().get("total") == 0


def test_xml_over_a_live_server(tmp_path: Path) -> None:
    """A real server process and socket: an XML body sent chunked (the middleware reads every part), the
    stored JSON, and the XML read back."""
    from tests.test_live_server import serving

    with serving(f"sqlite:///{tmp_path / 'xml.sqlite3'}", tmp_path, demo=False) as server, \
            httpx.Client(base_url=server.base, timeout=30.0) as http:
        body = to_xml({**PATIENT, "name": [{"family": "Chunked" * 2000}]})

        def parts() -> Iterator[bytes]:
            for i in range(0, len(body), 1000):
                yield body[i:i + 1000]

        r = http.post("/Patient", content=parts(), headers=XML)
        pid = value(xml_of(r, 201), "id")
        stored = http.get(f"/Patient/{pid}").json()
        assert stored["name"][0]["family"] == "Chunked" * 2000
        assert from_xml(http.get(f"/Patient/{pid}", params={"_format": "xml"}).content) == stored
        bad = http.post("/Patient", content=b"<!DOCTYPE x [<!ENTITY a 'b'>]><Patient xmlns='http://hl7.org/fhir'/>",
                        headers=XML)
        assert xml_of(bad, 400).tag == F + "OperationOutcome"
