"""DEQM ``Measure/$evaluate`` in its Universal-realm form, over HTTP on SQLite and PostgreSQL: two CMS130 test
patients (published expected MeasureReports) evaluated by ``subject``, by ``subjectGroup`` inline and by
reference, with several measures, at type and instance level, with CQL ``parameters``, ``productLine`` and
``reporter``; and the bad inputs, each a clear OperationOutcome that stores nothing."""

from __future__ import annotations

import base64
import json
from collections import Counter
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from gateway.store.sql.store import SqlStore
from gateway.store.sql.tables import HISTORY, RESOURCE
from tests.conftest import make_client, require_shared
from tests.test_evaluate_measure import ECQM, as_transaction, counts, load_measure, measure_id

JSON = {"Content-Type": "application/fhir+json"}
CASES = ("2292adf2-3232-43f8-9497-8448349c51a9", "007ec5f1-08cf-474a-a472-f6a92cca4b79")  # numerator; exclusion
PERIOD = {"periodStart": "2025-01-01", "periodEnd": "2025-12-31"}
PRODUCT_LINE = "http://hl7.org/fhir/us/cqframework/cqfmeasures/StructureDefinition/cqfm-productLine"

# a one-parameter library: "Initial Population" is the Boolean parameter "Include Everyone" (default true)
PARAM_ELM = {"library": {
    "identifier": {"id": "ParamCohort", "version": "1.0.0"},
    "schemaIdentifier": {"id": "urn:hl7-org:elm", "version": "r1"},
    "usings": {"def": [{"localIdentifier": "System", "uri": "urn:hl7-org:elm-types:r1"},
                       {"localIdentifier": "FHIR", "uri": "http://hl7.org/fhir", "version": "4.0.1"}]},
    "parameters": {"def": [
        {"name": "Measurement Period", "accessLevel": "Public"},
        {"name": "Include Everyone", "accessLevel": "Public",
         "default": {"type": "Literal", "valueType": "{urn:hl7-org:elm-types:r1}Boolean", "value": "true"}}]},
    "contexts": {"def": [{"name": "Patient"}]},
    "statements": {"def": [
        {"name": "Patient", "context": "Patient", "expression": {
            "type": "SingletonFrom", "operand": {"type": "Retrieve", "dataType": "{http://hl7.org/fhir}Patient"}}},
        {"name": "Initial Population", "context": "Patient", "accessLevel": "Public",
         "expression": {"type": "ParameterRef", "name": "Include Everyone"}}]}}}
PARAM_LIBRARY = {
    "resourceType": "Library", "id": "param-cohort", "url": "http://example.org/Library/ParamCohort",
    "name": "ParamCohort", "version": "1.0.0", "status": "active",
    "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/library-type", "code": "logic-library"}]},
    "content": [{"contentType": "application/elm+json",
                 "data": base64.b64encode(json.dumps(PARAM_ELM).encode()).decode()}]}
PARAM_MEASURE = {
    "resourceType": "Measure", "id": "param-cohort", "url": "http://example.org/Measure/ParamCohort",
    "version": "1.0.0", "status": "active", "library": ["http://example.org/Library/ParamCohort"],
    "identifier": [{"system": "http://example.org/measures", "value": "param-cohort"}],
    "scoring": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/measure-scoring", "code": "cohort"}]},
    "group": [{"population": [{
        "code": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/measure-population",
                             "code": "initial-population"}]},
        "criteria": {"language": "text/cql-identifier", "expression": "Initial Population"}}]}]}


@pytest.fixture()
def world(store: SqlStore) -> Any:
    """CMS130 and the parameter measure loaded, the two CMS130 cases stored; yields the client, the two
    patient ids and their expected counts (from the published MeasureReports)."""
    require_shared()
    with make_client(store, enforce_referential_integrity=False) as client:
        load_measure(client, "CMS130")
        pids, expected = [], []
        for case_id in CASES:
            case = json.loads((ECQM / "CMS130" / "tests" / f"{case_id}.json").read_text())
            assert client.post("/fhir", json=as_transaction(case), headers=JSON).status_code == 200
            pids.append(next(e["resource"]["id"] for e in case["entry"]
                             if e["resource"]["resourceType"] == "Patient"))
            expected.append(counts(case["entry"][-1]["resource"]))
        for res in (PARAM_LIBRARY, PARAM_MEASURE):
            r = client.put(f"/fhir/{res['resourceType']}/{res['id']}", json=res, headers=JSON)
            assert r.status_code == 201, r.text
        client.put("/fhir/Group/pair", headers=JSON, json=group(pids, "pair"))
        client.put("/fhir/Group/one", headers=JSON, json=group(pids[:1], "one"))
        yield client, pids, expected


def group(pids: list[str], gid: str | None = None) -> dict[str, Any]:
    g: dict[str, Any] = {"resourceType": "Group", "type": "person", "actual": True,
                         "member": [{"entity": {"reference": f"Patient/{p}"}} for p in pids]}
    if gid:
        g["id"] = gid
    return g


def post(client: TestClient, params: list[dict[str, Any]], mid: str | None = None) -> Any:
    url = f"/fhir/Measure/{mid}/$evaluate" if mid else "/fhir/Measure/$evaluate"
    return client.post(url, headers=JSON, json={"resourceType": "Parameters", "parameter": [
        {"name": "periodStart", "valueDate": "2025-01-01"}, {"name": "periodEnd", "valueDate": "2025-12-31"},
        *params]})


def reports(response: Any) -> list[dict[str, Any]]:
    """The MeasureReports of an $evaluate response, after checking its shape (the v5 kit's response checks):
    Parameters whose every entry is a Bundle holding at least one complete MeasureReport with measure,
    period start and end, and an allowed type."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["resourceType"] == "Parameters" and body["parameter"]
    out = []
    for p in body["parameter"]:
        bundle = p["resource"]
        assert p["name"] == "return" and bundle["resourceType"] == "Bundle"
        mrs = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "MeasureReport"]
        assert mrs
        for mr in mrs:
            assert mr["status"] == "complete" and mr["measure"]
            assert mr["period"]["start"] and mr["period"]["end"]
            assert mr["type"] in ("individual", "summary", "subject-list")
        out.extend(mrs)
    return out


def summed(expected: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    total: Counter[str] = Counter()
    for e in expected:
        total.update(e[0])
    return [dict(total)]


def test_subject_patient_type_and_instance_level(world: Any) -> None:
    client, pids, expected = world
    mid = measure_id("CMS130")
    for i, pid in enumerate(pids):
        got = reports(client.get("/fhir/Measure/$evaluate", params={
            **PERIOD, "measureId": mid, "subject": f"Patient/{pid}"}))
        assert [r["type"] for r in got] == ["individual"] and counts(got[0]) == expected[i]
        assert got[0]["subject"]["reference"] == f"Patient/{pid}"
        inst = reports(client.get(f"/fhir/Measure/{mid}/$evaluate", params={**PERIOD, "subject": f"Patient/{pid}"}))
        assert counts(inst[0]) == expected[i]


def test_default_population_covers_every_patient(world: Any) -> None:
    client, _, expected = world
    got = reports(client.get(f"/fhir/Measure/{measure_id('CMS130')}/$evaluate", params=PERIOD))
    assert [r["type"] for r in got] == ["summary"] and counts(got[0]) == summed(expected)


@pytest.mark.parametrize("n", [1, 2])
def test_subject_group_inline_and_by_reference(world: Any, n: int) -> None:
    client, pids, expected = world
    mid = measure_id("CMS130")
    ref = "Group/one" if n == 1 else "Group/pair"
    inline = reports(post(client, [{"name": "measureId", "valueString": mid},
                                   {"name": "subjectGroup", "resource": group(pids[:n])}]))
    by_ref = reports(post(client, [{"name": "measureId", "valueString": mid},
                                   {"name": "subjectGroup", "valueReference": {"reference": ref}}]))
    by_get = reports(client.get("/fhir/Measure/$evaluate", params={**PERIOD, "measureId": mid, "subjectGroup": ref}))
    for got in (inline, by_ref, by_get):
        assert [r["type"] for r in got] == ["summary"] and counts(got[0]) == summed(expected[:n])
    individual = reports(post(client, [{"name": "measureId", "valueString": mid},
                                       {"name": "reportType", "valueCode": "subject"},
                                       {"name": "subjectGroup", "resource": group(pids[:n])}]))
    assert [r["subject"]["reference"] for r in individual] == [f"Patient/{p}" for p in pids[:n]]
    assert [counts(r) for r in individual] == expected[:n]
    listed = reports(post(client, [{"name": "measureId", "valueString": mid},
                                   {"name": "reportType", "valueCode": "subject-list"},
                                   {"name": "subjectGroup", "resource": group(pids[:n])}]))
    assert listed[0]["type"] == "subject-list" and counts(listed[0]) == summed(expected[:n])
    lists = {c["id"]: c for c in listed[0]["contained"] if c["resourceType"] == "List"}
    ip = next(p for p in listed[0]["group"][0]["population"] if p["code"]["coding"][0]["code"] == "initial-population")
    members = [e["item"]["reference"] for e in lists[ip["subjectResults"]["reference"][1:]]["entry"]]
    assert sorted(members) == sorted(f"Patient/{p}" for p in pids[:n])


def test_several_measures_by_id_url_and_identifier(world: Any) -> None:
    client, pids, expected = world
    mid = measure_id("CMS130")
    got = reports(post(client, [{"name": "measureId", "valueString": mid},
                                {"name": "measureUrl", "valueCanonical": PARAM_MEASURE["url"]},
                                {"name": "subject", "valueString": f"Patient/{pids[0]}"}]))
    assert [r["measure"].split("|")[0] for r in got][1] == PARAM_MEASURE["url"]
    assert counts(got[0]) == expected[0] and counts(got[1]) == [{"initial-population": 1}]
    by_ident = reports(client.get("/fhir/Measure/$evaluate", params=[
        *PERIOD.items(), ("measureIdentifier", "http://example.org/measures|param-cohort"), ("measureId", mid)]))
    assert sorted(counts(r)[0].get("numerator", -1) for r in by_ident) == [-1, summed(expected)[0]["numerator"]]


def test_cql_parameters_reach_the_library(world: Any) -> None:
    client, pids, _ = world
    base = [{"name": "measureId", "valueString": "param-cohort"}, {"name": "subjectGroup", "resource": group(pids)}]
    default = reports(post(client, base))
    assert counts(default[0]) == [{"initial-population": 2}]
    off = {"resourceType": "Parameters", "parameter": [{"name": "Include Everyone", "valueBoolean": False}]}
    got = reports(post(client, [*base, {"name": "parameters", "resource": off}]))
    assert counts(got[0]) == [{"initial-population": 0}]
    qualified = {"resourceType": "Parameters",
                 "parameter": [{"name": "ParamCohort.Include Everyone", "valueBoolean": False}]}
    assert counts(reports(post(client, [*base, {"name": "parameters", "resource": qualified}]))[0]) == \
        [{"initial-population": 0}]


def test_product_line_and_reporter_on_every_report(world: Any) -> None:
    client, pids, _ = world
    got = reports(post(client, [{"name": "measureId", "valueString": measure_id("CMS130")},
                                {"name": "measureId", "valueString": "param-cohort"},
                                {"name": "subjectGroup", "valueString": "Group/pair"},
                                {"name": "reportType", "valueCode": "subject"},
                                {"name": "productLine", "valueString": "Medicare"},
                                {"name": "reporter", "valueReference": {"reference": "Organization/acme"}}]))
    assert len(got) == 4 and {r["subject"]["reference"] for r in got} == {f"Patient/{p}" for p in pids}
    for r in got:
        assert r["reporter"]["reference"] == "Organization/acme"
        assert {"url": PRODUCT_LINE, "valueString": "Medicare"} in r["extension"]


def stored(store: SqlStore) -> tuple[int, int]:
    """Rows in the resource and history tables, whatever their type: what an error must leave unchanged."""
    with store.engine.connect() as conn:
        return (conn.execute(select(func.count()).select_from(RESOURCE)).scalar_one(),
                conn.execute(select(func.count()).select_from(HISTORY)).scalar_one())


@pytest.mark.parametrize(("params", "status", "words"), [
    ([{"name": "measureId", "valueString": "nope"}], 404, "Measure/nope"),
    ([{"name": "measureUrl", "valueCanonical": "http://example.org/Measure/None"}], 404, "No Measure"),
    ([{"name": "subject", "valueString": "Patient/P0"}, {"name": "subjectGroup", "valueString": "Group/pair"}],
     400, "not both"),
    ([{"name": "subject", "valueString": "Patient/P0"}, {"name": "subjectGroup", "resource": {
        "resourceType": "Group", "type": "person", "actual": True,
        "member": [{"entity": {"reference": "Patient/P1"}}]}}], 400, "not both"),
    ([{"name": "reportType", "valueCode": "everything"}], 400, "reportType"),
    ([{"name": "subjectGroup", "resource": {"resourceType": "Patient", "id": "x"}}], 400, "Group resource"),
    ([{"name": "subjectGroup", "resource": {"resourceType": "Group", "type": "person", "actual": True}}],
     400, "no active Patient"),
    ([{"name": "subjectGroup", "valueString": "Patient/P0"}], 400, "Group/[id]"),
    ([{"name": "subjectGroup", "resource": {"resourceType": "Group", "type": "person", "actual": True,
                                              "member": [{"entity": {"reference": "Patient/ghost"}}]}}],
     404, "Patient/ghost"),
    ([{"name": "subjectGroup", "valueString": "Group/ghost"}], 404, "Group/ghost"),
    ([{"name": "parameters", "resource": {"resourceType": "Bundle"}}], 400, "Parameters resource"),
    ([{"name": "parameters", "resource": {"resourceType": "Parameters", "parameter": [{"valueBoolean": True}]}}],
     400, "name"),
    ([{"name": "parameters", "resource": {"resourceType": "Parameters", "parameter": [
        {"name": "Include Everyone", "valueAttachment": {}}]}}], 400, "valueAttachment"),
    ([{"name": "parameters", "resource": {"resourceType": "Parameters", "parameter": [
        {"name": "Measurement Period", "valuePeriod": {"start": "2020-01-01"}}]}}], 400, "periodStart"),
    ([{"name": "parameters", "resource": {"resourceType": "Parameters", "parameter": [
        {"name": "Start", "valueDate": "2025-02-30"}]}}], 400, "Start"),
])
def test_bad_input_is_refused_and_stores_nothing(world: Any, store: SqlStore, params: list[dict[str, Any]],
                                                 status: int, words: str) -> None:
    client, _, _ = world
    before = stored(store)
    r = post(client, [{"name": "measureId", "valueString": "param-cohort"}, *params]
             if params[0]["name"] not in ("measureId", "measureUrl") else params)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome" and words in body["issue"][0]["diagnostics"]
    assert stored(store) == before


def test_bad_requests_without_body_parameters(world: Any, store: SqlStore) -> None:
    client, pids, _ = world
    before = stored(store)
    for url, params, status in [
            ("/fhir/Measure/param-cohort/$evaluate", {"periodStart": "2025-01-01"}, 400),
            ("/fhir/Measure/param-cohort/$evaluate", {"periodEnd": "2025-12-31"}, 400),
            ("/fhir/Measure/param-cohort/$evaluate", {**PERIOD, "parameters": "x"}, 400),
            ("/fhir/Measure/nope/$evaluate", PERIOD, 404),
            ("/fhir/Measure/param-cohort/$evaluate", {**PERIOD, "subject": f"Patient/{pids[0]}",
                                                      "subjectGroup": "Group/pair"}, 400)]:
        r = client.get(url, params=params)
        assert r.status_code == status and r.json()["resourceType"] == "OperationOutcome", (url, params, r.text)
    for body in (b"{not json", orjson.dumps({"resourceType": "Patient"}),
                 orjson.dumps({"resourceType": "Parameters", "parameter": "x"})):
        r = client.post("/fhir/Measure/param-cohort/$evaluate", content=body, headers=JSON)
        assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome", r.text
    assert stored(store) == before


def test_capability_statement_and_openapi_claim_the_uv_inputs(world: Any) -> None:
    client, _, _ = world
    cs = client.get("/fhir/metadata").json()
    ops = [o for r in cs["rest"][0]["resource"] if r["type"] == "Measure" for o in r.get("operation", [])]
    evaluate = next(o for o in ops if o["name"] == "evaluate")
    assert evaluate["definition"] == "http://hl7.org/fhir/us/davinci-deqm/OperationDefinition/evaluate"
    assert "subjectGroup" in evaluate["documentation"] and "productLine" in evaluate["documentation"]
    paths = client.get("/openapi.json").json()["paths"]
    text = json.dumps(paths["/fhir/Measure/$evaluate"])
    for name in ("subjectGroup` (Group", "parameters` (Parameters", "productLine` (string", "reporter` (string"):
        assert name in text, name


def test_parameter_values_become_cql_values() -> None:
    from decimal import Decimal

    from gateway.cql.interval import Interval
    from gateway.cql.quantity import Quantity
    from gateway.cql.values import Code
    from gateway.deqm.evaluate.uv import cql_parameters

    got = cql_parameters({"resourceType": "Parameters", "parameter": [
        {"name": "I", "valueInteger": 3}, {"name": "D", "valueDecimal": 2.5}, {"name": "S", "valueString": "x"},
        {"name": "B", "valueBoolean": False},
        {"name": "P", "valuePeriod": {"start": "2025-01-01T00:00:00Z", "end": "2025-06-30T00:00:00Z"}},
        {"name": "Q", "valueQuantity": {"value": 5, "code": "mg"}},
        {"name": "C", "valueCoding": {"system": "http://loinc.org", "code": "1234-5"}}]})
    assert got["I"] == 3 and got["D"] == Decimal("2.5") and got["S"] == "x" and got["B"] is False
    assert isinstance(got["P"], Interval) and str(got["P"].low).startswith("2025-01-01")
    assert got["Q"] == Quantity(Decimal(5), "mg") and got["C"] == Code("1234-5", "http://loinc.org")
    assert cql_parameters({"resourceType": "Parameters"}) == {}
