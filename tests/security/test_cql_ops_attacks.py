"""Attacks on ``Library/$evaluate`` and ``$cql`` with real tokens signed by the gateway, on SQLite and PostgreSQL:
a patient token naming another patient as the subject (query, body, with and without server data), a token
without search on every type, an expression reaching for another patient's data (the store gate keeps it
out: only the launch patient's compartment, a shared Group reduced to the caller's own entry), and hostile
input (oversized and deeply nested expressions, bytes that are not UTF-8, wrong Parameters shapes, remote
endpoints, a runaway evaluation). Every refusal is an OperationOutcome without a traceback or the other
patient's data; the same requests under the rightful token are answered, so the refusals are the rules."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from gateway.store.sql.store import SqlStore
from tests.conftest import make_client, wipe
from tests.security.worlds import issued_token, loaded_world

PA, PB = "cq-pa", "cq-pb-MARKERSECRET"
MARKERS = ("MARKERSECRET", "Secretfamily", "1902-03-04")
CQL = """library Probe version '1'
using FHIR version '4.0.1'
context Patient
define "Conditions": Count([Condition])
define "Observations": Count([Observation])
define "Names": [Observation] O return O.code.text
"""


RECURSIVE = """library Recursive version '1'
define function Forever(x Integer) returns Integer: Forever(x + 1)
define "Loop": Forever(1)
define "Ping": "Pong"
define "Pong": "Ping"
"""


def _library(name: str = "Probe", text: str = CQL) -> dict[str, Any]:
    return {"resourceType": "Library", "id": name.lower(), "url": f"http://example.org/Library/{name}",
            "name": name, "version": "1", "status": "active",
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/library-type",
                                 "code": "logic-library"}]},
            "content": [{"contentType": "text/cql", "data": base64.b64encode(text.encode()).decode()}]}


def _obs(oid: str, pid: str, text: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final", "code": {"text": text},
            "subject": {"reference": f"Patient/{pid}"}}


DATA: list[dict[str, Any]] = [
    _library(), _library("Recursive", RECURSIVE),
    {"resourceType": "Patient", "id": PA, "name": [{"family": "Ownfamily"}], "birthDate": "1980-01-01"},
    {"resourceType": "Patient", "id": PB, "name": [{"family": "Secretfamily"}], "birthDate": "1902-03-04"},
    {"resourceType": "Condition", "id": "cq-c1", "subject": {"reference": f"Patient/{PA}"}},
    {"resourceType": "Condition", "id": "cq-c2", "subject": {"reference": f"Patient/{PB}"}},
    {"resourceType": "Condition", "id": "cq-c3", "subject": {"reference": f"Patient/{PB}"}},
    _obs("cq-o1", PA, "own"), _obs("cq-o2", PB, "MARKERSECRET-observation"),
    {"resourceType": "Group", "id": "cq-shared", "type": "person", "actual": True,
     "member": [{"entity": {"reference": f"Patient/{PA}"}}, {"entity": {"reference": f"Patient/{PB}"}}]},
]


@pytest.fixture(scope="module")
def world(session_store: SqlStore) -> Iterator[TestClient]:
    with loaded_world(session_store, DATA) as client:
        yield client


token = issued_token


def params(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(entries)}


def subject(pid: str) -> dict[str, Any]:
    return {"name": "subject", "valueString": f"Patient/{pid}"}


def expression(text: str) -> dict[str, Any]:
    return {"name": "expression", "valueString": text}


def refused(r: Any, statuses: set[int]) -> None:
    assert r.status_code in statuses, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    assert "Traceback" not in r.text and 'File "' not in r.text
    leaked = [m for m in MARKERS if m in r.text]
    assert not leaked, leaked


def values(r: Any) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    return {p["name"]: next((v for k, v in p.items() if k.startswith("value")), None) for p in r.json()["parameter"]}


def test_no_token_is_401(world: TestClient) -> None:
    assert world.get("/fhir/$cql", params={"expression": "1"}).status_code == 401
    assert world.get("/fhir/Library/probe/$evaluate", params={"subject": f"Patient/{PA}"}).status_code == 401


@pytest.mark.parametrize("scope", ["patient/*.rs", "patient/*.read"])
def test_patient_token_evaluates_for_its_own_patient_only(world: TestClient, scope: str) -> None:
    h = token(world, scope, PA)
    got = values(world.get("/fhir/Library/probe/$evaluate", headers=h, params={"subject": f"Patient/{PA}",
                                                                                "expression": "Conditions"}))
    assert got == {"Conditions": 1}
    assert values(world.get("/fhir/$cql", headers=h, params={"expression": "Count([Condition])",
                                                             "subject": f"Patient/{PA}"})) == {"return": 1}
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": []}
    for r in (
        world.get("/fhir/Library/probe/$evaluate", headers=h, params={"subject": f"Patient/{PB}"}),
        world.post("/fhir/Library/probe/$evaluate", headers=h, json=params(subject(PB))),
        world.post("/fhir/Library/$evaluate", headers=h, json=params(
            {"name": "url", "valueCanonical": "http://example.org/Library/Probe"}, subject(PB))),
        world.post("/fhir/Library/probe/$evaluate", headers=h, json=params(
            subject(PB), {"name": "useServerData", "valueBoolean": False}, {"name": "data", "resource": bundle})),
        world.get("/fhir/Library/probe/$evaluate", headers=h),  # a patient token must name its subject
        world.get("/fhir/$cql", headers=h, params={"expression": "Count([Condition])", "subject": f"Patient/{PB}"}),
        world.post("/fhir/$cql", headers=h, json=params(expression("Count([Condition])"), subject(PB))),
        world.post("/fhir/$cql", headers=h, json=params(expression("1 + 1"))),
        world.post("/fhir/$cql", headers=h, json=params(expression("1"), subject(PA), subject(PB))),
    ):
        refused(r, {403})


def test_an_expression_sees_only_what_the_grant_may_read(world: TestClient) -> None:
    # the launch patient's compartment only, whatever the expression asks for; a Group both patients are in
    # comes back with the caller's own entry only
    probe = "Sum([Group] G return Count(G.member))"
    everyone = token(world, "system/*.rs")
    assert values(world.get("/fhir/$cql", headers=everyone, params={"expression": probe,
                                                                    "subject": f"Patient/{PA}"})) == {"return": 2}
    h = token(world, "patient/*.rs", PA)
    assert values(world.get("/fhir/$cql", headers=h, params={"expression": probe,
                                                             "subject": f"Patient/{PA}"})) == {"return": 1}
    r = world.get("/fhir/Library/probe/$evaluate", headers=h, params={"subject": f"Patient/{PA}"})
    got = {p["name"]: p for p in r.json()["parameter"]}
    assert got["Observations"]["valueInteger"] == 1 and got["Names"]["valueString"] == "own"
    assert not any(m in r.text for m in MARKERS)


@pytest.mark.parametrize("scope", ["system/Library.rs system/Patient.rs system/Condition.rs",
                                   "user/Library.rs user/Patient.rs user/Condition.rs",
                                   "system/*.s"])
def test_a_token_without_search_on_every_type_or_library_read_is_refused(world: TestClient, scope: str) -> None:
    # what an expression retrieves is known only while it runs: like $evaluate-measure, both operations
    # need search on every type (and $cql read on Library), so no retrieve reaches a type the token lacks
    h = token(world, scope)
    refused(world.get("/fhir/$cql", headers=h, params={"expression": "Count([Observation])",
                                                       "subject": f"Patient/{PA}"}), {403})
    if scope != "system/*.s":
        refused(world.get("/fhir/Library/probe/$evaluate", headers=h, params={"subject": f"Patient/{PA}"}), {403})
    ok = token(world, "system/*.rs")
    assert values(world.get("/fhir/$cql", headers=ok, params={"expression": "Count([Observation])",
                                                              "subject": f"Patient/{PA}"})) == {"return": 1}


HOSTILE: list[tuple[str, Any]] = [
    ("huge expression", params(expression("1 + " * 5000 + "1"))),
    ("deep nesting", params(expression("(" * 5000 + "1" + ")" * 5000))),
    ("deep list nesting", params(expression("{" * 3000 + "1" + "}" * 3000))),
    ("parameter not a list", {"resourceType": "Parameters", "parameter": {"name": "expression"}}),
    ("entry a string", {"resourceType": "Parameters", "parameter": ["expression"]}),
    ("expression an integer", params({"name": "expression", "valueInteger": 7})),
    ("expression twice", params(expression("1"), expression("2"))),
    ("no expression", params(subject(PA))),
    ("subject a boolean", params(expression("1"), {"name": "subject", "valueBoolean": True})),
    ("subject not a patient", params(expression("1"), {"name": "subject", "valueString": "Group/cq-shared"})),
    ("subject with a path", params(expression("1"), {"name": "subject", "valueString": "Patient/../Group/x"})),
    ("parameters not a resource", params(expression("1"), {"name": "parameters", "valueString": "x"})),
    ("parameters a Bundle", params(expression("1"), {"name": "parameters", "resource": {"resourceType": "Bundle"}})),
    ("parameter value an array", params(expression("1"), {"name": "parameters", "resource": params(
        {"name": "X", "valueInteger": [1, 2]})})),
    ("parameter name quoting", params(expression("1"), {"name": "parameters", "resource": params(
        {"name": 'X" Integer\ndefine Y: 1 //', "valueInteger": 1})})),
    ("data not a Bundle", params(expression("1"), {"name": "data", "resource": {"resourceType": "Patient"}})),
    ("data entries not a list", params(expression("1"), {"name": "data", "resource": {
        "resourceType": "Bundle", "entry": {"resource": {}}}})),
    ("data entry without resource", params(expression("1"), {"name": "data", "resource": {
        "resourceType": "Bundle", "entry": [{"fullUrl": "x"}]}})),
    ("data ValueSet malformed", params(expression("1"), {"name": "data", "resource": {
        "resourceType": "Bundle", "entry": [{"resource": {"resourceType": "ValueSet", "url": "urn:x:vs", "expansion": {
            "contains": [1, "x"]}}}]}})),
    ("useServerData not boolean", params(expression("1"), {"name": "useServerData", "valueString": "yes"})),
    ("library without parts", params(expression("1"), {"name": "library", "valueString": "x"})),
    ("library alias injection", params(expression("1"), {"name": "library", "part": [
        {"name": "url", "valueCanonical": "http://example.org/Library/Probe"},
        {"name": "name", "valueString": "P\ndefine X: 1"}]})),
    ("unknown parameter", params(expression("1"), {"name": "evil", "valueString": "x"})),
    ("prefetchData", params(expression("1"), {"name": "prefetchData", "part": []})),
    ("remote data endpoint", params(expression("1"), {"name": "dataEndpoint", "resource": {
        "resourceType": "Endpoint", "address": "http://169.254.169.254/"}})),
    ("remote terminology endpoint", params(expression("1"), {"name": "terminologyEndpoint", "resource": {
        "resourceType": "Endpoint", "address": "http://127.0.0.1:1/"}})),
    ("statement injection", params(expression("1\ncontext Unfiltered\ndefine X: [Condition]"))),
    ("not Parameters", {"resourceType": "Patient"}),
    ("JSON array", []),
]


@pytest.mark.parametrize("path", ["/fhir/$cql", "/fhir/Library/probe/$evaluate"])
def test_hostile_input_gets_a_clear_4xx(world: TestClient, path: str) -> None:
    h = {**token(world, "system/*.rs"), "Content-Type": "application/fhir+json"}
    for label, body in HOSTILE:
        if path.endswith("$evaluate") and label in ("no expression", "expression twice", "expression an integer"):
            continue  # $evaluate's expression is optional and repeatable
        r = world.post(path, headers=h, content=orjson.dumps(body))
        assert 400 <= r.status_code < 500 or r.status_code == 501, (label, r.status_code, r.text[:300])
        refused(r, {r.status_code})
    for raw in (b'{"resourceType":"Parameters","parameter":[{"name":"expression","valueString":"\xff\xfe"}]}',
                b"\xff\xfe\x00garbage", b""):
        refused(world.post(path, headers=h, content=raw), {400})
    refused(world.get(path, headers=h, params={"expression": "1", "subject": "Patient/%00"}), {400})


def test_recursion_without_end_is_a_422_not_a_crash(world: TestClient) -> None:
    h = token(world, "system/*.rs")
    for name in ("Loop", "Ping"):
        r = world.get("/fhir/Library/recursive/$evaluate", headers=h, params={"expression": name})
        refused(r, {422})
        assert "nested too deeply" in r.json()["issue"][0]["diagnostics"]
    assert values(world.get("/fhir/$cql", headers=h, params={"expression": "6 * 7"})) == {"return": 42}


def test_the_expression_length_is_bounded(world: TestClient) -> None:
    h = token(world, "system/*.rs")
    r = world.post("/fhir/$cql", headers=h, json=params(expression("1" + " " * 20000)))
    refused(r, {400})
    assert r.json()["issue"][0]["code"] == "too-costly"


@pytest.fixture()
def slow_client(session_store: SqlStore) -> Iterator[TestClient]:
    wipe(session_store)
    with make_client(session_store, cql_timeout_seconds=0.5) as client:
        yield client
    wipe(session_store)


def test_a_runaway_evaluation_is_stopped(slow_client: TestClient) -> None:
    # nine million comparisons: minutes of CPU without the limit; stopped at the limit with 422 too-costly
    heavy = ("Sum((expand { Interval[1, 3000] }) X return "
             "Count((expand { Interval[1, 3000] }) Y where start of Y < start of X))")
    r = slow_client.get("/fhir/$cql", params={"expression": heavy})
    refused(r, {422})
    assert r.json()["issue"][0]["code"] == "too-costly"
    # the worker thread is clean afterwards: the next evaluations are answered
    for _ in range(3):
        assert values(slow_client.get("/fhir/$cql", params={"expression": "2 * 21"})) == {"return": 42}
