"""CPG ``Library/$evaluate`` and ``$cql`` against a real ``fhir-gateway serve`` process over HTTP, on SQLite and
PostgreSQL: a Library written as ``text/cql`` only (the ELM is added on write) evaluated for patients whose
expected values are computed here from the data the test wrote (age from the birth date, condition counts),
expression selection, CQL parameters, a ``data`` Bundle with and without server data, the errors (unknown
library 404, bad subject 400, translation errors 400 with line and column), and the CapabilityStatement."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest

from tests.test_live_server import LiveServer, serving

pytestmark = pytest.mark.live

URL = "http://example.org/Library/EvalDemo"
DEMO_CQL = """library EvalDemo version '1.0.0'
using FHIR version '4.0.1'
parameter "Threshold" Integer default 3
context Patient
define "Age": AgeInYears()
define "Condition Count": Count([Condition])
define "Many Conditions": "Condition Count" >= "Threshold"
define "Conditions": [Condition]
define "Gender": Patient.gender
define "Summary": Tuple { conditions: "Condition Count", gender: "Gender" }
define "Unknown": null as Integer
define private "Hidden": 42
"""
PATIENTS = {"ev-p1": ("female", "1970-03-04", 2), "ev-p2": ("male", "2001-07-20", 0)}
DAR = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}


def cql_library(name: str, url: str, text: str) -> dict[str, Any]:
    return {"resourceType": "Library", "id": name.lower(), "url": url, "name": name, "version": "1.0.0",
            "status": "active",
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/library-type",
                                 "code": "logic-library"}]},
            "content": [{"contentType": "text/cql", "data": base64.b64encode(text.encode()).decode()}]}


def condition(cid: str, pid: str) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": cid, "subject": {"reference": f"Patient/{pid}"},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]}}


def age_today(birth: str) -> int:
    b, today = date.fromisoformat(birth), datetime.now(UTC).date()
    return today.year - b.year - ((today.month, today.day) < (b.month, b.day))


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp("library-evaluate")
    database = f"sqlite:///{workdir / 'ev.sqlite3'}" if request.param == "sqlite" \
        else request.getfixturevalue("pg_url")
    with serving(database, workdir, demo=False) as live:
        with httpx.Client(base_url=live.base, timeout=60.0) as http:
            r = http.put("/Library/evaldemo", json=cql_library("EvalDemo", URL, DEMO_CQL), headers=JSON)
            assert r.status_code == 201, r.text
            for pid, (gender, birth, n) in PATIENTS.items():
                r = http.put(f"/Patient/{pid}", json={"resourceType": "Patient", "id": pid, "gender": gender,
                                                      "birthDate": birth}, headers=JSON)
                assert r.status_code == 201, r.text
                for i in range(n):
                    r = http.put(f"/Condition/{pid}-c{i}", json=condition(f"{pid}-c{i}", pid), headers=JSON)
                    assert r.status_code == 201, r.text
        yield live


@pytest.fixture()
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base, timeout=60.0, headers={"Accept": "application/fhir+json"}) as c:
        yield c


def by_name(params: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    assert params["resourceType"] == "Parameters", params
    out: dict[str, list[dict[str, Any]]] = {}
    for p in params.get("parameter", []):
        out.setdefault(p["name"], []).append(p)
    return out


def post(http: httpx.Client, path: str, *params: dict[str, Any]) -> httpx.Response:
    return http.post(path, json={"resourceType": "Parameters", "parameter": list(params)}, headers=JSON)


def test_the_stored_library_got_its_elm_on_write(http: httpx.Client) -> None:
    lib = http.get("/Library/evaldemo").json()
    assert [a["contentType"] for a in lib["content"]] == ["text/cql", "application/elm+json"]


@pytest.mark.parametrize("pid", sorted(PATIENTS))
def test_every_public_definition_for_a_patient(http: httpx.Client, pid: str) -> None:
    gender, birth, n = PATIENTS[pid]
    r = http.get("/Library/evaldemo/$evaluate", params={"subject": f"Patient/{pid}"})
    assert r.status_code == 200, r.text
    got = by_name(r.json())
    assert set(got) == {"Patient", "Age", "Condition Count", "Many Conditions", "Conditions", "Gender", "Summary",
                        "Unknown"}  # the private definition is not answered
    assert got["Patient"][0]["resource"]["id"] == pid
    assert got["Age"] == [{"name": "Age", "valueInteger": age_today(birth)}]
    assert got["Condition Count"] == [{"name": "Condition Count", "valueInteger": n}]
    assert got["Many Conditions"][0]["valueBoolean"] is (n >= 3)
    assert got["Gender"] == [{"name": "Gender", "valueCode": gender}]
    # a list: one entry per item, each the stored resource; an empty list: one entry saying so
    if n:
        assert sorted(p["resource"]["id"] for p in got["Conditions"]) == [f"{pid}-c{i}" for i in range(n)]
    else:
        (empty,) = got["Conditions"]
        assert "resource" not in empty and empty["extension"][0]["valueBoolean"] is True
    # a tuple: its elements as parts; null: no value, the data-absent-reason extension
    assert got["Summary"][0]["part"] == [{"name": "conditions", "valueInteger": n},
                                         {"name": "gender", "valueCode": gender}]
    (unknown,) = got["Unknown"]
    assert not any(k.startswith("value") for k in unknown)
    assert unknown["extension"] == [{"url": DAR, "valueCode": "unknown"}]


def test_expression_selection_and_type_level_by_canonical(http: httpx.Client) -> None:
    r = http.get("/Library/$evaluate", params=[("url", f"{URL}|1.0.0"), ("subject", "Patient/ev-p1"),
                                               ("expression", "Age"), ("expression", "Condition Count")])
    assert r.status_code == 200, r.text
    assert [p["name"] for p in r.json()["parameter"]] == ["Age", "Condition Count"]
    assert r.json()["parameter"][1]["valueInteger"] == PATIENTS["ev-p1"][2]
    r = post(http, "/Library/$evaluate", {"name": "url", "valueCanonical": URL},
             {"name": "subject", "valueString": "Patient/ev-p1"}, {"name": "expression", "valueString": "Gender"})
    assert r.status_code == 200, r.text
    assert r.json()["parameter"] == [{"name": "Gender", "valueCode": "female"}]
    r = http.get("/Library/evaldemo/$evaluate", params={"subject": "Patient/ev-p1", "expression": "Nope"})
    assert r.status_code == 400 and "Nope" in r.text


def test_a_cql_parameter_changes_the_result(http: httpx.Client) -> None:
    n = PATIENTS["ev-p1"][2]
    results = {}
    for threshold in (n, n + 1):
        r = post(http, "/Library/evaldemo/$evaluate", {"name": "subject", "valueString": "Patient/ev-p1"},
                 {"name": "expression", "valueString": "Many Conditions"},
                 {"name": "parameters", "resource": {"resourceType": "Parameters", "parameter": [
                     {"name": "Threshold", "valueInteger": threshold}]}})
        assert r.status_code == 200, r.text
        results[threshold] = r.json()["parameter"][0]["valueBoolean"]
    assert results == {n: True, n + 1: False}
    r = post(http, "/Library/evaldemo/$evaluate", {"name": "subject", "valueString": "Patient/ev-p1"},
             {"name": "parameters", "resource": {"resourceType": "Parameters", "parameter": [
                 {"name": "NoSuchParameter", "valueInteger": 1}]}})
    assert r.status_code == 400 and "NoSuchParameter" in r.text


def test_data_bundle_instead_of_and_with_server_data(http: httpx.Client) -> None:
    extra = [{"resource": {"resourceType": "Patient", "id": "ev-bundled", "gender": "other",
                           "birthDate": "1990-01-01"}},
             *({"resource": condition(f"b{i}", "ev-bundled")} for i in range(3))]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": extra}
    r = post(http, "/Library/evaldemo/$evaluate", {"name": "subject", "valueString": "Patient/ev-bundled"},
             {"name": "useServerData", "valueBoolean": False}, {"name": "data", "resource": bundle})
    assert r.status_code == 200, r.text
    got = by_name(r.json())
    assert got["Condition Count"][0]["valueInteger"] == 3
    assert got["Age"][0]["valueInteger"] == age_today("1990-01-01")
    assert got["Gender"][0]["valueCode"] == "other"
    # the same patient is not in the server: with server data it is an unknown subject
    r = post(http, "/Library/evaldemo/$evaluate", {"name": "subject", "valueString": "Patient/ev-bundled"},
             {"name": "data", "resource": bundle})
    assert r.status_code == 404, r.text
    # with server data: the stored conditions and the given one together
    one = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": condition("b9", "ev-p1")}]}
    r = post(http, "/Library/evaldemo/$evaluate", {"name": "subject", "valueString": "Patient/ev-p1"},
             {"name": "expression", "valueString": "Condition Count"}, {"name": "data", "resource": one})
    assert r.status_code == 200, r.text
    assert r.json()["parameter"][0]["valueInteger"] == PATIENTS["ev-p1"][2] + 1


def test_unknown_library_and_bad_subjects(http: httpx.Client) -> None:
    r = http.get("/Library/no-such-library/$evaluate", params={"subject": "Patient/ev-p1"})
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"
    r = http.get("/Library/$evaluate", params={"url": "http://example.org/Library/Nowhere", "subject": "Patient/ev-p1"})
    assert r.status_code == 404
    for subject in ("Group/1", "ev-p1", "Patient/", "Patient/a b"):
        r = http.get("/Library/evaldemo/$evaluate", params={"subject": subject})
        assert r.status_code == 400, (subject, r.text)
        assert r.json()["issue"][0]["code"] == "invalid"
    r = http.get("/Library/evaldemo/$evaluate", params={"subject": "Patient/nobody-here"})
    assert r.status_code == 404
    r = http.get("/Library/evaldemo/$evaluate")  # every definition is in the Patient context
    assert r.status_code == 400 and "subject" in r.json()["issue"][0]["diagnostics"]


def test_cql_arithmetic(http: httpx.Client) -> None:
    r = http.get("/$cql", params={"expression": "1 + 1"})
    assert r.status_code == 200, r.text
    assert r.json()["parameter"] == [{"name": "return", "valueInteger": 2}]
    r = post(http, "/$cql", {"name": "expression", "valueString": "Interval[@2024-01-01, @2024-12-31]"})
    assert r.status_code == 200, r.text
    assert r.json()["parameter"] == [{"name": "return", "valuePeriod": {"start": "2024-01-01", "end": "2024-12-31"}}]


def test_cql_retrieve_for_a_subject_and_parameters(http: httpx.Client) -> None:
    for pid, (_, _birth, n) in PATIENTS.items():
        r = http.get("/$cql", params={"expression": "Count([Condition])", "subject": f"Patient/{pid}"})
        assert r.status_code == 200, r.text
        assert r.json()["parameter"] == [{"name": "return", "valueInteger": n}]
    r = post(http, "/$cql", {"name": "expression", "valueString": "AgeInYears() + Offset"},
             {"name": "subject", "valueString": "Patient/ev-p2"},
             {"name": "parameters", "resource": {"resourceType": "Parameters",
                                                 "parameter": [{"name": "Offset", "valueInteger": 100}]}})
    assert r.status_code == 200, r.text
    assert r.json()["parameter"][0]["valueInteger"] == age_today(PATIENTS["ev-p2"][1]) + 100


def test_cql_with_a_stored_library_by_alias(http: httpx.Client) -> None:
    r = post(http, "/$cql", {"name": "expression", "valueString": 'Demo."Condition Count" * 10'},
             {"name": "subject", "valueString": "Patient/ev-p1"},
             {"name": "library", "part": [{"name": "url", "valueCanonical": URL},
                                          {"name": "name", "valueString": "Demo"}]})
    assert r.status_code == 200, r.text
    assert r.json()["parameter"] == [{"name": "return", "valueInteger": PATIENTS["ev-p1"][2] * 10}]
    r = post(http, "/$cql", {"name": "expression", "valueString": "1"},
             {"name": "library", "part": [{"name": "url", "valueCanonical": "http://example.org/Library/None"},
                                          {"name": "name", "valueString": "N"}]})
    assert r.status_code == 404


def test_cql_list_result_and_translation_errors(http: httpx.Client) -> None:
    r = http.get("/$cql", params={"expression": "{ 3, 1, 2 }"})
    assert r.json()["parameter"] == [{"name": "return", "valueInteger": v} for v in (3, 1, 2)]
    r = http.get("/$cql", params={"expression": "1 +\n  (2 * )"})
    assert r.status_code == 400, r.text
    issue = r.json()["issue"][0]
    assert issue["severity"] == "error" and issue["diagnostics"].startswith("line 2, column 8:")
    r = http.get("/$cql", params={"expression": "'a' + 1"})
    assert r.status_code == 400 and r.json()["issue"][0]["diagnostics"].startswith("line 1, column ")
    r = http.get("/$cql", params={"expression": "1\ndefine Other: 2"})
    assert r.status_code == 400 and "one CQL expression" in r.text


def test_capability_statement_lists_both_operations(http: httpx.Client) -> None:
    cs = http.get("/metadata").json()
    system = {o["name"]: o["definition"] for o in cs["rest"][0].get("operation", [])}
    assert system["cql"] == "http://hl7.org/fhir/uv/cpg/OperationDefinition/cpg-cql"
    library = next(r for r in cs["rest"][0]["resource"] if r["type"] == "Library")
    ops = {o["definition"] for o in library.get("operation", [])}
    assert "http://hl7.org/fhir/uv/cpg/OperationDefinition/cpg-library-evaluate" in ops


UCUM = "http://unitsofmeasure.org"
SHAPES = [
    ("5 'mg'", {"valueQuantity": {"value": 5, "unit": "mg", "system": UCUM, "code": "mg"}}),
    ("1.5", {"valueDecimal": 1.5}),
    ("'text'", {"valueString": "text"}),
    ("@2024-01-02", {"valueDate": "2024-01-02"}),
    ("@2024-01-02T10:00:00.000Z", {"valueDateTime": "2024-01-02T10:00:00.000+00:00"}),
    ("@T10:30", {"valueTime": "10:30"}),
    ("Code { code: '1', system: 'http://x' }", {"valueCoding": {"system": "http://x", "code": "1"}}),
    ("Concept { codes: { Code { code: 'a', system: 's' } }, display: 'd' }",
     {"valueCodeableConcept": {"coding": [{"system": "s", "code": "a"}], "text": "d"}}),
    ("5 'mg' : 10 'mL'", {"valueRatio": {"numerator": {"value": 5, "unit": "mg", "system": UCUM, "code": "mg"},
                                         "denominator": {"value": 10, "unit": "mL", "system": UCUM, "code": "mL"}}}),
    ("Interval[5 'mg', 10 'mg']", {"valueRange": {"low": {"value": 5, "unit": "mg", "system": UCUM, "code": "mg"},
                                                  "high": {"value": 10, "unit": "mg", "system": UCUM, "code": "mg"}}}),
    ("Tuple { a: { 1, 2 }, b: null }", {"part": [
        {"name": "a", "valueInteger": 1}, {"name": "a", "valueInteger": 2},
        {"name": "b", "extension": [{"url": DAR, "valueCode": "unknown"}]}]}),
]


@pytest.mark.parametrize(("expression", "shape"), SHAPES, ids=[e for e, _ in SHAPES])
def test_cql_value_shapes(http: httpx.Client, expression: str, shape: dict[str, Any]) -> None:
    r = http.get("/$cql", params={"expression": expression})
    assert r.status_code == 200, r.text
    assert r.json()["parameter"] == [{"name": "return", **shape}]
