"""Libraries stored with only CQL text (``text/cql``) are translated on write: the ELM is added as an
``application/elm+json`` content entry, includes resolve to the stored Libraries of that name, the
translator's diagnostics come back in the write's OperationOutcome, and ``$evaluate-measure`` runs a Measure
whose Libraries were sent as CQL text, unchanged."""

from __future__ import annotations

import base64
import json
from typing import Any

from fastapi.testclient import TestClient

from gateway.auth.context import SYSTEM, acting_as
from gateway.cql.library import ElmLibrary
from gateway.store.sql.store import SqlStore

OO = {"Content-Type": "application/fhir+json", "Prefer": "return=OperationOutcome"}
JSON = {"Content-Type": "application/fhir+json"}

COMMON = """library Common version '1.0.0'
using FHIR version '4.0.1'
define function IsFemale(p FHIR.Patient): p.gender = 'female'
"""
MAIN = """library Screening version '1.0.0'
using FHIR version '4.0.1'
include Common version '1.0.0' called Common
context Patient
define "Initial Population": exists [Condition]
define "Denominator": "Initial Population"
define "Numerator": Common.IsFemale(Patient)
"""


def library(name: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Library", "id": name.lower(), "url": f"http://example.org/Library/{name}",
            "name": name, "version": "1.0.0", "status": "active",
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/library-type",
                                 "code": "logic-library"}]},
            "content": [{"contentType": "text/cql", "data": base64.b64encode(text.encode()).decode()}], **extra}


def elm_of(lib: dict[str, Any]) -> dict[str, Any] | None:
    for a in lib.get("content") or []:
        if a["contentType"] == "application/elm+json":
            return json.loads(base64.b64decode(a["data"]))  # type: ignore[no-any-return]
    return None


def test_translated_on_write_with_diagnostics(client: TestClient) -> None:
    r = client.put("/fhir/Library/common", json=library("Common", COMMON), headers=OO)
    assert r.status_code == 201, r.text
    issues = r.json()["issue"]
    assert [i["severity"] for i in issues] == ["information"] and "translated to ELM" in issues[0]["diagnostics"]
    r = client.post("/fhir/Library", json=library("Screening", MAIN), headers=JSON)
    assert r.status_code == 201, r.text
    stored = r.json()
    assert [a["contentType"] for a in stored["content"]] == ["text/cql", "application/elm+json"]
    elm = elm_of(stored)
    assert elm is not None
    lib = ElmLibrary.from_elm(elm)
    assert lib.includes == {"Common": ("Common", "1.0.0")}
    assert {"Initial Population", "Denominator", "Numerator"} <= set(lib.defs)

    bad = library("Broken", "library Broken version '1.0.0'\ndefine A: 1 +\n")
    r = client.post("/fhir/Library", json=bad, headers=OO)
    assert r.status_code == 201, r.text
    (issue,) = r.json()["issue"]
    assert issue["severity"] == "warning" and issue["diagnostics"].startswith("CQL 3:1: expected an expression")
    assert issue["expression"] == ["Library.content"]
    loc = r.headers["Location"].split("/_history")[0].split("/fhir/")[1]
    assert elm_of(client.get(f"/fhir/{loc}").json()) is None  # nothing to run; the CQL itself is kept

    missing = library("Lonely", "library Lonely version '1.0.0'\ninclude Nowhere version '1' called N\n"
                                "define A: N.B\n")
    issues = client.post("/fhir/Library", json=missing, headers=OO).json()["issue"]
    assert any("could not load library Nowhere" in i["diagnostics"] for i in issues)


def test_library_with_elm_is_left_as_sent(client: TestClient) -> None:
    lib = library("Common", COMMON)
    lib["content"].append({"contentType": "application/elm+json",
                           "data": base64.b64encode(b'{"library": {"identifier": {"id": "Common"}}}').decode()})
    r = client.post("/fhir/Library", json=lib, headers=JSON)
    assert r.status_code == 201
    assert r.json()["content"] == lib["content"]


def screening_measure(library_name: str = "Screening") -> dict[str, Any]:
    """A proportion Measure on the named Library's three definitions."""
    return {"resourceType": "Measure", "id": "screening", "url": "http://example.org/Measure/screening",
            "status": "active", "library": [f"http://example.org/Library/{library_name}"],
            "scoring": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/measure-scoring",
                                    "code": "proportion"}]},
            "group": [{"population": [
                {"code": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/measure-population",
                                      "code": code}]},
                 "criteria": {"language": "text/cql-identifier", "expression": expr}}
                for code, expr in (("initial-population", "Initial Population"),
                                   ("denominator", "Denominator"), ("numerator", "Numerator"))]}]}


def counts_for(client: TestClient) -> dict[str, dict[str, int]]:
    """The populations of Patient f1 (female) and m1 (male), each with one Condition, stored here."""
    for pid, gender in (("f1", "female"), ("m1", "male")):
        client.put(f"/fhir/Patient/{pid}", json={"resourceType": "Patient", "id": pid, "gender": gender},
                   headers=JSON)
        client.put(f"/fhir/Condition/c-{pid}", json={"resourceType": "Condition", "id": f"c-{pid}",
                                                     "subject": {"reference": f"Patient/{pid}"}}, headers=JSON)
    counts = {}
    for pid in ("f1", "m1"):
        r = client.get("/fhir/Measure/screening/$evaluate-measure",
                       params={"subject": f"Patient/{pid}", "periodStart": "2025-01-01", "periodEnd": "2025-12-31"})
        assert r.status_code == 200, r.text
        counts[pid] = {p["code"]["coding"][0]["code"]: p["count"] for p in r.json()["group"][0]["population"]}
    return counts


def test_evaluate_measure_on_libraries_sent_as_cql(client: TestClient) -> None:
    for lib in (library("Common", COMMON), library("Screening", MAIN)):
        assert client.put(f"/fhir/Library/{lib['id']}", json=lib, headers=JSON).status_code == 201
    assert client.put("/fhir/Measure/screening", json=screening_measure(), headers=JSON).status_code == 201
    counts = counts_for(client)
    assert counts["f1"] == {"initial-population": 1, "denominator": 1, "numerator": 1}
    assert counts["m1"] == {"initial-population": 1, "denominator": 1, "numerator": 0}


def test_cql_only_library_is_translated_when_evaluated(store: SqlStore, client: TestClient) -> None:
    """Older content: Libraries written before the translator existed (stored here through the store kernel,
    as a database of that time holds them) keep only their CQL; a measure on them runs, translated on demand
    with the Libraries they include. CQL that does not translate is a 422 naming the diagnostic."""
    with acting_as(SYSTEM), store.session() as s:
        for lib in (library("Common", COMMON), library("Screening", MAIN)):
            s.write(lib, "PUT")
    assert elm_of(client.get("/fhir/Library/screening").json()) is None
    assert client.put("/fhir/Measure/screening", json=screening_measure(), headers=JSON).status_code == 201
    counts = counts_for(client)
    assert counts["f1"] == {"initial-population": 1, "denominator": 1, "numerator": 1}
    assert counts["m1"] == {"initial-population": 1, "denominator": 1, "numerator": 0}
    assert elm_of(client.get("/fhir/Library/screening").json()) is None  # translated for the run, not stored

    broken = library("Broken", "library Broken version '1.0.0'\ndefine A: 1 +\n")
    assert client.put("/fhir/Library/broken", json=broken, headers=JSON).status_code == 201
    measure = {**screening_measure("Broken"), "id": "broken", "url": "http://example.org/Measure/broken"}
    assert client.put("/fhir/Measure/broken", json=measure, headers=JSON).status_code == 201
    r = client.get("/fhir/Measure/broken/$evaluate-measure",
                   params={"subject": "Patient/f1", "periodStart": "2025-01-01", "periodEnd": "2025-12-31"})
    assert r.status_code == 422, r.text
    assert "does not translate" in r.text and "3:1" in r.text
