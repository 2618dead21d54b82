"""Terminology operations over HTTP on SQLite and PostgreSQL: ValueSet $expand and $validate-code,
CodeSystem $lookup and $subsumes, per the R4 OperationDefinitions; expansions computed from compose over
stored CodeSystems, cached and recomputed after a write; the CQL engine's value sets from compose."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.app import REGISTRY
from gateway.cql.terminology import UnknownValueSet, ValueSetIndex, in_valueset
from gateway.cql.values import Code
from gateway.terminology.service import CACHE
from tests.conftest import fixture_json

CS_URL = "http://example.org/fhir/CodeSystem/conditions"
SNOMED = "http://snomed.info/sct"

# disorder
# ├── diabetes
# │   ├── type-1 (status retired)
# │   └── type-2
# │       └── type-2-ckd (child via the parent property)
# └── hypertension (severity = high)
CODESYSTEM: dict[str, Any] = {
    "resourceType": "CodeSystem", "id": "conditions", "url": CS_URL, "version": "2024", "name": "Conditions",
    "status": "active", "content": "complete", "hierarchyMeaning": "is-a",
    "property": [{"code": "status", "type": "code"}, {"code": "severity", "type": "code"},
                 {"code": "parent", "type": "code"}],
    "concept": [
        {"code": "disorder", "display": "Disorder", "concept": [
            {"code": "diabetes", "display": "Diabetes mellitus",
             "designation": [{"language": "de", "value": "Zuckerkrankheit"}],
             "concept": [
                 {"code": "type-1", "display": "Type 1 diabetes",
                  "property": [{"code": "status", "valueCode": "retired"}]},
                 {"code": "type-2", "display": "Type 2 diabetes"}]},
            {"code": "hypertension", "display": "Hypertension",
             "property": [{"code": "severity", "valueCode": "high"}]}]},
        {"code": "type-2-ckd", "display": "Type 2 diabetes with CKD",
         "property": [{"code": "parent", "valueCode": "type-2"}, {"code": "severity", "valueCode": "high"}]},
    ],
}


def vs(rid: str, compose: dict[str, Any], version: str = "1") -> dict[str, Any]:
    return {"resourceType": "ValueSet", "id": rid, "url": f"http://example.org/fhir/ValueSet/{rid}",
            "version": version, "status": "active", "compose": compose}


VALUESETS = [
    vs("diabetes", {"include": [{"system": CS_URL, "filter": [{"property": "concept", "op": "is-a",
                                                                 "value": "diabetes"}]}]}),
    vs("diabetes-below", {"include": [{"system": CS_URL, "filter": [
        {"property": "concept", "op": "descendent-of", "value": "diabetes"}]}]}),
    vs("severe", {"include": [{"system": CS_URL, "filter": [{"property": "severity", "op": "=", "value": "high"}]}]}),
    vs("listed", {"include": [{"system": SNOMED, "concept": [{"code": "44054006", "display": "Diabetes type 2"},
                                                           {"code": "38341003", "display": "Hypertension"}]}]}),
    vs("combined", {"include": [{"valueSet": ["http://example.org/fhir/ValueSet/diabetes"]},
                                {"valueSet": ["http://example.org/fhir/ValueSet/listed"]}],
                    "exclude": [{"system": CS_URL, "concept": [{"code": "type-1"}]}]}),
    vs("snomed-filter", {"include": [{"system": SNOMED, "filter": [{"property": "concept", "op": "is-a",
                                                                     "value": "73211009"}]}]}),
    vs("versioned", {"include": [{"system": CS_URL, "concept": [{"code": "hypertension"}]}]}, version="1"),
]
V2 = vs("versioned-2", {"include": [{"system": CS_URL, "concept": [{"code": "diabetes"}, {"code": "type-2"}]}]},
        version="2")
V2["url"] = "http://example.org/fhir/ValueSet/versioned"


@pytest.fixture()
def tc(client: TestClient) -> TestClient:
    for res in [CODESYSTEM, *VALUESETS, V2]:
        r = client.put(f"/fhir/{res['resourceType']}/{res['id']}", json=res)
        assert r.status_code in (200, 201), r.text
    return client


def codes(valueset: dict[str, Any]) -> list[str]:
    return [c["code"] for c in valueset["expansion"].get("contains", [])]


def params(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in body["parameter"]:
        out.setdefault(p["name"], next((v for k, v in p.items() if k.startswith("value")), p.get("part")))
    return out


def outcome(r: Any, status: int) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    return " ".join(i.get("diagnostics", "") for i in body["issue"])


# -- $expand ---------------------------------------------------------------------------------------------------

def test_expand_is_a_follows_nested_concepts_and_the_parent_property(tc: TestClient) -> None:
    r = tc.get("/fhir/ValueSet/$expand", params={"url": "http://example.org/fhir/ValueSet/diabetes"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["resourceType"] == "ValueSet" and body["expansion"]["total"] == 4
    assert codes(body) == ["diabetes", "type-1", "type-2", "type-2-ckd"]
    first = body["expansion"]["contains"][0]
    assert first == {"system": CS_URL, "version": "2024", "code": "diabetes", "display": "Diabetes mellitus"}


def test_expand_descendent_of_excludes_the_root(tc: TestClient) -> None:
    body = tc.get("/fhir/ValueSet/diabetes-below/$expand").json()
    assert codes(body) == ["type-1", "type-2", "type-2-ckd"]


def test_expand_property_equals(tc: TestClient) -> None:
    assert codes(tc.get("/fhir/ValueSet/severe/$expand").json()) == ["hypertension", "type-2-ckd"]


def test_expand_other_value_sets_and_exclude(tc: TestClient) -> None:
    body = tc.get("/fhir/ValueSet/combined/$expand").json()
    assert codes(body) == ["diabetes", "type-2", "type-2-ckd", "44054006", "38341003"]


def test_expand_active_only_drops_retired_concepts(tc: TestClient) -> None:
    body = tc.get("/fhir/ValueSet/diabetes/$expand", params={"activeOnly": "true"}).json()
    assert "type-1" not in codes(body) and body["expansion"]["total"] == 3


def test_expand_filter_and_paging(tc: TestClient) -> None:
    body = tc.get("/fhir/ValueSet/diabetes/$expand", params={"filter": "type 2"}).json()
    assert codes(body) == ["type-2", "type-2-ckd"]
    page = tc.get("/fhir/ValueSet/diabetes/$expand", params={"offset": "1", "count": "2"}).json()
    assert page["expansion"]["total"] == 4 and page["expansion"]["offset"] == 1
    assert codes(page) == ["type-1", "type-2"]
    beyond = tc.get("/fhir/ValueSet/diabetes/$expand", params={"offset": "10"}).json()
    assert beyond["expansion"]["total"] == 4 and codes(beyond) == []


def test_expand_versioned_canonicals(tc: TestClient) -> None:
    url = "http://example.org/fhir/ValueSet/versioned"
    assert codes(tc.get("/fhir/ValueSet/$expand", params={"url": f"{url}|1"}).json()) == ["hypertension"]
    assert codes(tc.get("/fhir/ValueSet/$expand", params={"url": url, "valueSetVersion": "2"}).json()) == [
        "diabetes", "type-2"]
    assert "versioned|3" in outcome(tc.get("/fhir/ValueSet/$expand", params={"url": f"{url}|3"}), 404)


def test_expand_post_with_inline_value_set(tc: TestClient) -> None:
    inline = vs("inline", {"include": [{"system": CS_URL, "filter": [
        {"property": "concept", "op": "is-a", "value": "type-2"}]}]})
    body = {"resourceType": "Parameters", "parameter": [{"name": "valueSet", "resource": inline},
                                                        {"name": "count", "valueInteger": 1}]}
    r = tc.post("/fhir/ValueSet/$expand", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["expansion"]["total"] == 2 and codes(r.json()) == ["type-2"]


def test_expand_over_an_unstored_code_system_is_422_naming_it(tc: TestClient) -> None:
    msg = outcome(tc.get("/fhir/ValueSet/snomed-filter/$expand"), 422)
    assert SNOMED in msg and "not stored" in msg
    # an include that lists its concepts needs no code system
    assert codes(tc.get("/fhir/ValueSet/listed/$expand").json()) == ["44054006", "38341003"]


def test_expand_bad_input(tc: TestClient) -> None:
    assert "not known" in outcome(tc.get("/fhir/ValueSet/nope/$expand"), 404)
    assert "not known" in outcome(tc.get("/fhir/ValueSet/$expand", params={"url": "http://x/vs"}), 404)
    assert "count" in outcome(tc.get("/fhir/ValueSet/diabetes/$expand", params={"count": "-1"}), 400)
    assert "activeOnly" in outcome(tc.get("/fhir/ValueSet/diabetes/$expand", params={"activeOnly": "yes"}), 400)
    assert "bogus" in outcome(tc.get("/fhir/ValueSet/diabetes/$expand", params={"bogus": "1"}), 400)
    assert "exactly one" in outcome(tc.get("/fhir/ValueSet/$expand"), 400)
    assert "dateTime" in outcome(tc.get("/fhir/ValueSet/diabetes/$expand", params={"date": "soon"}), 400)
    assert "system-version" in outcome(tc.get("/fhir/ValueSet/diabetes/$expand",
                                              params={"system-version": f"{CS_URL}|2023"}), 400)
    assert "Parameters" in outcome(tc.post("/fhir/ValueSet/$expand", json={"resourceType": "Patient"}), 400)
    assert "ValueSet resource" in outcome(tc.post("/fhir/ValueSet/$expand", json={
        "resourceType": "Parameters", "parameter": [{"name": "valueSet", "resource": {"resourceType": "Patient"}}]}),
        400)
    bad_regex = vs("bad", {"include": [{"system": CS_URL, "filter": [{"property": "concept", "op": "regex",
                                                                      "value": "("}]}]})
    assert "regex" in outcome(tc.post("/fhir/ValueSet/$expand", json={
        "resourceType": "Parameters", "parameter": [{"name": "valueSet", "resource": bad_regex}]}), 400)
    loop = vs("loop", {"include": [{"valueSet": ["http://example.org/fhir/ValueSet/loop"]}]})
    assert tc.put("/fhir/ValueSet/loop", json=loop).status_code == 201
    assert "includes itself" in outcome(tc.get("/fhir/ValueSet/loop/$expand"), 422)


def test_expansion_is_cached_and_recomputed_after_a_code_system_write(tc: TestClient) -> None:
    first = codes(tc.get("/fhir/ValueSet/diabetes/$expand").json())
    hits = CACHE.hits
    assert codes(tc.get("/fhir/ValueSet/diabetes/$expand").json()) == first
    assert CACHE.hits == hits + 1
    cs = copy.deepcopy(CODESYSTEM)
    cs["concept"].append({"code": "gestational", "display": "Gestational diabetes",
                          "property": [{"code": "parent", "valueCode": "diabetes"}]})
    assert tc.put("/fhir/CodeSystem/conditions", json=cs).status_code == 200
    assert codes(tc.get("/fhir/ValueSet/diabetes/$expand").json()) == [*first, "gestational"]
    # an inline value set posing as the stored one (same id, url, version, meta) neither reads nor fills the cache
    fake = {**VALUESETS[0], "meta": {"versionId": "1"}, "compose": {"include": [
        {"system": CS_URL, "concept": [{"code": "hypertension"}]}]}}
    posed = tc.post("/fhir/ValueSet/$expand", json={"resourceType": "Parameters", "parameter": [
        {"name": "valueSet", "resource": fake}]}).json()
    assert codes(posed) == ["hypertension"]
    assert codes(tc.get("/fhir/ValueSet/diabetes/$expand").json()) == [*first, "gestational"]
    assert tc.delete("/fhir/ValueSet/listed").status_code in (200, 204)
    assert "listed" in outcome(tc.get("/fhir/ValueSet/combined/$expand"), 422)


# -- $validate-code ----------------------------------------------------------------------------------------------

def test_validate_code(tc: TestClient) -> None:
    r = tc.get("/fhir/ValueSet/diabetes/$validate-code", params={"code": "type-2", "system": CS_URL})
    assert params(r.json()) == {"result": True, "display": "Type 2 diabetes"}
    r = tc.get("/fhir/ValueSet/diabetes/$validate-code", params={"code": "hypertension", "system": CS_URL})
    p = params(r.json())
    assert p["result"] is False and "hypertension" in p["message"]
    r = tc.get("/fhir/ValueSet/$validate-code", params={
        "url": "http://example.org/fhir/ValueSet/diabetes", "code": "type-2", "system": CS_URL,
        "display": "Wrong"})
    p = params(r.json())
    assert p["result"] is False and "Wrong" in p["message"]
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "url", "valueUri": "http://example.org/fhir/ValueSet/combined"},
        {"name": "codeableConcept", "valueCodeableConcept": {"coding": [
            {"system": "http://other", "code": "x"}, {"system": SNOMED, "code": "38341003"}]}}]}
    assert params(tc.post("/fhir/ValueSet/$validate-code", json=body).json())["result"] is True
    coding = {"resourceType": "Parameters", "parameter": [
        {"name": "coding", "valueCoding": {"system": CS_URL, "code": "type-1"}}]}
    assert params(tc.post("/fhir/ValueSet/combined/$validate-code", json=coding).json())["result"] is False


def test_validate_code_bad_input(tc: TestClient) -> None:
    assert "needs code" in outcome(tc.get("/fhir/ValueSet/diabetes/$validate-code"), 400)
    assert "Coding" in outcome(tc.post("/fhir/ValueSet/diabetes/$validate-code", json={
        "resourceType": "Parameters", "parameter": [{"name": "coding", "valueString": "x"}]}), 400)
    assert "not known" in outcome(tc.get("/fhir/ValueSet/none/$validate-code",
                                         params={"code": "a", "system": CS_URL}), 404)


# -- $lookup and $subsumes ---------------------------------------------------------------------------------------

def test_lookup(tc: TestClient) -> None:
    r = tc.get("/fhir/CodeSystem/$lookup", params={"system": CS_URL, "code": "diabetes"})
    assert r.status_code == 200, r.text
    body = r.json()
    p = params(body)
    assert p["name"] == "Conditions" and p["version"] == "2024" and p["display"] == "Diabetes mellitus"
    props = {(x["part"][0]["valueCode"], next(v for k, v in x["part"][1].items() if k.startswith("value")))
             for x in body["parameter"] if x["name"] == "property"}
    assert {("parent", "disorder"), ("child", "type-1"), ("child", "type-2"), ("inactive", False)} <= props
    desig = next(x for x in body["parameter"] if x["name"] == "designation")
    assert {"name": "value", "valueString": "Zuckerkrankheit"} in desig["part"]
    only = tc.post("/fhir/CodeSystem/$lookup", json={"resourceType": "Parameters", "parameter": [
        {"name": "coding", "valueCoding": {"system": CS_URL, "code": "type-1"}},
        {"name": "property", "valueCode": "status"}]}).json()
    assert [x["part"] for x in only["parameter"] if x["name"] == "property"] == [
        [{"name": "code", "valueCode": "status"}, {"name": "value", "valueCode": "retired"}]]


def test_lookup_bad_input(tc: TestClient) -> None:
    assert "not defined" in outcome(tc.get("/fhir/CodeSystem/$lookup", params={"system": CS_URL, "code": "x"}), 404)
    assert SNOMED in outcome(tc.get("/fhir/CodeSystem/$lookup", params={"system": SNOMED, "code": "1"}), 404)
    assert "system" in outcome(tc.get("/fhir/CodeSystem/$lookup", params={"code": "x"}), 400)
    assert "code" in outcome(tc.get("/fhir/CodeSystem/$lookup"), 400)
    # R4 defines $lookup at the type level only
    assert tc.get("/fhir/CodeSystem/conditions/$lookup", params={"code": "x"}).status_code in (404, 405)


def test_subsumes(tc: TestClient) -> None:
    def outcome_of(**q: str) -> str:
        r = tc.get("/fhir/CodeSystem/$subsumes", params={"system": CS_URL, **q})
        assert r.status_code == 200, r.text
        return str(params(r.json())["outcome"])

    assert outcome_of(codeA="diabetes", codeB="type-2-ckd") == "subsumes"
    assert outcome_of(codeA="type-2-ckd", codeB="disorder") == "subsumed-by"
    assert outcome_of(codeA="type-1", codeB="hypertension") == "not-subsumed"
    assert outcome_of(codeA="type-2", codeB="type-2") == "equivalent"
    r = tc.post("/fhir/CodeSystem/conditions/$subsumes", json={"resourceType": "Parameters", "parameter": [
        {"name": "codingA", "valueCoding": {"system": CS_URL, "code": "disorder"}},
        {"name": "codingB", "valueCoding": {"system": CS_URL, "code": "type-1"}}]})
    assert params(r.json())["outcome"] == "subsumes"


def test_subsumes_bad_input(tc: TestClient) -> None:
    assert "not defined" in outcome(tc.get("/fhir/CodeSystem/$subsumes",
                                           params={"system": CS_URL, "codeA": "x", "codeB": "type-1"}), 404)
    assert "codeA" in outcome(tc.get("/fhir/CodeSystem/$subsumes", params={"system": CS_URL}), 400)
    assert "same code system" in outcome(tc.post("/fhir/CodeSystem/$subsumes", json={
        "resourceType": "Parameters", "parameter": [
            {"name": "codingA", "valueCoding": {"system": CS_URL, "code": "a"}},
            {"name": "codingB", "valueCoding": {"system": SNOMED, "code": "b"}}]}), 400)
    assert "not known" in outcome(tc.get("/fhir/CodeSystem/missing/$subsumes",
                                         params={"codeA": "a", "codeB": "b"}), 404)


def test_the_capability_statement_lists_the_operations_where_r4_defines_them(tc: TestClient) -> None:
    rest = tc.get("/fhir/metadata").json()["rest"][0]
    by_type = {r["type"]: {op["name"]: op["definition"] for op in r.get("operation", [])} for r in rest["resource"]}
    od = "http://hl7.org/fhir/OperationDefinition/"
    assert {by_type["ValueSet"][n] for n in ("expand", "validate-code")} == {
        od + "ValueSet-expand", od + "ValueSet-validate-code"}
    assert {by_type["CodeSystem"][n] for n in ("lookup", "subsumes")} == {
        od + "CodeSystem-lookup", od + "CodeSystem-subsumes"}
    assert not {"expand", "lookup", "subsumes"} & {op["name"] for op in rest.get("operation", [])}


# -- the CQL engine's value sets ---------------------------------------------------------------------------------

def _resolver(rtype: str, url: str, version: str | None) -> dict[str, Any] | None:
    pool = [CODESYSTEM, *VALUESETS, V2]
    found = [r for r in pool if r["resourceType"] == rtype and r["url"] == url
             and (version is None or r.get("version") == version)]
    return found[-1] if found else None


def test_engine_uses_the_stored_expansion_when_present_and_the_computed_one_otherwise() -> None:
    computed = VALUESETS[0]
    published = copy.deepcopy(computed)
    published["url"] = "http://example.org/fhir/ValueSet/published"
    published["expansion"] = {"contains": [{"system": CS_URL, "code": "hypertension"}]}
    idx = ValueSetIndex.from_resources([computed, published, VALUESETS[5]], resolver=_resolver)
    assert in_valueset(Code("type-2-ckd", CS_URL), computed["url"], idx) is True
    assert in_valueset(Code("hypertension", CS_URL), computed["url"], idx) is False
    assert in_valueset(Code("hypertension", CS_URL), published["url"], idx) is True  # the expansion wins
    assert in_valueset(Code("type-2", CS_URL), published["url"], idx) is False
    with pytest.raises(UnknownValueSet, match="not stored"):
        idx.codes(VALUESETS[5]["url"])
    # without a resolver a concept list still works; a filter over a code system it cannot see does not
    bare = ValueSetIndex.from_resources([VALUESETS[3], computed])
    assert in_valueset(Code("44054006", SNOMED), VALUESETS[3]["url"], bare) is True
    assert not bare.knows(computed["url"])


# -- the R4 OperationDefinitions ---------------------------------------------------------------------------------

R4_OPS = fixture_json("r4-terminology-operations.json")["operations"]


@pytest.mark.parametrize("od", R4_OPS, ids=[o["id"] for o in R4_OPS])
def test_declarations_follow_the_r4_operation_definitions(od: dict[str, Any]) -> None:
    op = next(o for o in REGISTRY if o.canonical == f"http://hl7.org/fhir/OperationDefinition/{od['id']}")
    assert op.code == od["code"]
    assert op.levels == {lvl for lvl in ("system", "type", "instance") if od[lvl]}
    assert all(e.types == (od["resource"],) for e in op.endpoints)
    official = {(p["name"], p["use"]): p for p in od["parameter"]}
    for p in op.parameters:  # every declared parameter is the official one: name, use, type, cardinality
        o = official[(p.name, p.use)]
        assert (p.type, p.min, p.max) == (o.get("type"), o["min"], o["max"]), p.name


@pytest.mark.parametrize("od", R4_OPS, ids=[o["id"] for o in R4_OPS])
def test_every_r4_input_is_taken_or_refused_by_name(tc: TestClient, od: dict[str, Any]) -> None:
    """No R4 input is answered as an unknown parameter: each is either read or refused naming it as not
    supported (the $expand inputs that pin code system versions)."""
    path = {"ValueSet": "/fhir/ValueSet/diabetes/", "CodeSystem": "/fhir/CodeSystem/"}[od["resource"]]
    base = {"expand": {}, "validate-code": {"code": "type-2", "system": CS_URL},
            "lookup": {"code": "type-2", "system": CS_URL}, "subsumes": {"system": CS_URL, "codeA": "diabetes",
                                                                         "codeB": "type-2"}}[od["code"]]
    for p in od["parameter"]:
        if p["use"] != "in" or p["name"] in base or p.get("type") in ("ValueSet", "Coding", "CodeableConcept"):
            continue
        value = {"boolean": "false", "integer": "1", "dateTime": "2024-01-01"}.get(p["type"], "x")
        r = tc.get(f"{path}${od['code']}", params={**base, p["name"]: value})
        text = r.text
        assert "does not take" not in text, (p["name"], text)
        if r.status_code >= 400:
            assert r.status_code in (400, 404) and r.json()["resourceType"] == "OperationOutcome", (p["name"], text)
            assert p["name"] in text or r.status_code == 404, (p["name"], text)
