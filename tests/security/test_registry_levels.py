"""The operation registry (gateway/app.py, from each capability package's declarations) is the one declaration of every operation: the app serves
exactly the declared routes, each claimed operation answers at exactly its claimed levels, and the
CapabilityStatement, the OpenAPI document and the authorization policy say what the registry says. Every case
here is generated from the registry, so a new operation is covered without new test code."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.app import REGISTRY
from gateway.auth import policy
from gateway.auth.routing import iter_routes
from gateway.operations import ANY_TYPE, Operation
from gateway.store.sql.store import SqlStore
from tests.conftest import make_client

FILL = {"rid": "m1", "pid": "x1", "measure_id": "m1", "group_id": "g1", "rtype": "Patient", "job_id": "no-such-job",
        "name": "x.ndjson", "fmt": "claims-csv", "run_id": "0" * 32}
ID_FOR = {"Measure": "m1", "Group": "g1"}
PROBE_TYPES = ("Patient", "Observation", "Measure", "Group", "Library")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
MEASURE = {"resourceType": "Measure", "id": "m1", "status": "active", "url": "http://example.org/Measure/m1",
           "scoring": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/measure-scoring",
                                   "code": "proportion"}]}}
GROUP = {"resourceType": "Group", "id": "g1", "type": "person", "actual": True}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    store = SqlStore(f"sqlite:///{tmp_path_factory.mktemp('registry') / 'gateway.sqlite3'}")
    with make_client(store) as c:
        for res in (MEASURE, GROUP):
            r = c.put(f"/fhir/{res['resourceType']}/{res['id']}", json=res)
            assert r.status_code in (200, 201), r.text
        yield c
    store.close()


def _fill(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: FILL[m.group(1)], path)


def _call(client: TestClient, method: str, path: str) -> Any:
    body = {"resourceType": "Parameters", "parameter": []} if method in ("POST", "PUT") else None
    if path.endswith("/$validate") and method == "POST":
        body = {"resourceType": "Patient"}
    return client.request(method, "/fhir" + path, json=body, headers={"Content-Type": "application/fhir+json"})


def _no_route(r: Any) -> bool:
    """True when routing itself refused: 405, or 404 for no route (not a handler's 404 for a missing id)."""
    if r.status_code == 405:
        return True
    return r.status_code == 404 and "No route for" in r.text


def _claimed_paths(op: Operation) -> set[tuple[str, str]]:
    """(method, concrete path) of every call the declaration claims, with sample ids filled in."""
    out: set[tuple[str, str]] = set()
    for e in op.endpoints:
        types = PROBE_TYPES if ANY_TYPE in e.types else e.types
        for t in types or (None,):
            path = e.path(op.code, t)
            if e.level == "instance":
                path = path.replace("{" + e.id_param + "}", ID_FOR.get(t or "", "x1"))
            out |= {(m, _fill(path)) for m in e.methods}
    return out


def _unclaimed_paths(op: Operation) -> set[str]:
    """Concrete paths at levels and types the declaration does not claim, for every probe type."""
    suffix = _fill(op.endpoints[0].suffix)
    candidates = {f"/${op.code}{suffix}"}
    for t in PROBE_TYPES:
        candidates |= {f"/{t}/${op.code}{suffix}", f"/{t}/{ID_FOR.get(t, 'x1')}/${op.code}{suffix}"}
    claimed = {p for _, p in _claimed_paths(op)}
    for other in REGISTRY:  # a path another declaration serves (the three $export levels share one code)
        if other.code == op.code:
            claimed |= {p for _, p in _claimed_paths(other)}
    return candidates - claimed


OPS = [pytest.param(op, id=op.key) for op in REGISTRY]


def test_the_app_serves_exactly_the_declared_operation_routes(client: TestClient) -> None:
    served = {(m, p) for p, ms in iter_routes(client.app.router.routes) if "$" in p
              for m in ms - {"HEAD", "OPTIONS"}}
    declared = {(m, "/fhir" + p) for m, p in REGISTRY.routes}
    assert served == declared
    assert len(declared) >= 40


@pytest.mark.parametrize("op", OPS)
def test_each_operation_answers_at_its_claimed_levels(client: TestClient, op: Operation) -> None:
    for method, path in sorted(_claimed_paths(op)):
        r = _call(client, method, path)
        assert not _no_route(r), (method, path, r.status_code, r.text)
        assert r.status_code < 500, (method, path, r.status_code, r.text)


@pytest.mark.parametrize("op", OPS)
def test_each_operation_is_absent_at_unclaimed_levels_and_methods(client: TestClient, op: Operation) -> None:
    unclaimed = _unclaimed_paths(op)
    for path in sorted(unclaimed):
        for method in ("GET", "POST"):
            r = _call(client, method, path)
            assert r.status_code in (404, 405), (method, path, r.status_code, r.text)
            assert r.json()["resourceType"] == "OperationOutcome"
    claimed = _claimed_paths(op)
    for path in {p for _, p in claimed}:
        for method in METHODS:
            if (method, path) in claimed:
                continue
            r = _call(client, method, path)
            assert r.status_code in (404, 405), (method, path, r.status_code, r.text)
            assert r.json()["resourceType"] == "OperationOutcome"


def test_system_level_lists_only_system_operations(client: TestClient) -> None:
    """Regression: the statement listed all 16 operations at system level, though [base]/$evaluate-measure
    answers 404; each operation now sits at the level and types where it is served."""
    rest = client.get("/fhir/metadata").json()["rest"][0]
    system = {op["name"] for op in rest["operation"]}
    assert system == {"export", "ingest", "bulk-submit", "bulk-submit-status", "cql", "ingest-runs", "jobs"}
    assert client.post("/fhir/$evaluate-measure", json={"resourceType": "Parameters"}).status_code == 404
    measure = next(r for r in rest["resource"] if r["type"] == "Measure")
    assert {"evaluate-measure", "evaluate", "care-gaps", "data-requirements", "submit-data", "collect-data", "bulk-submit-data",
            "validate"} == {op["name"] for op in measure["operation"]}
    group = next(r for r in rest["resource"] if r["type"] == "Group")
    assert {op["definition"].rsplit("/", 1)[1] for op in group["operation"]} == {
        "group-export", "davinci-data-export", "member-add", "member-remove", "confirm-attribution-list",
        "attribution-status", "Resource-validate", "ProviderMemberMatch"}
    library = next(r for r in rest["resource"] if r["type"] == "Library")
    assert {op["definition"].rsplit("/", 1)[1] for op in library["operation"]} == {
        "cpg-library-evaluate", "Resource-validate"}
    patient = next(r for r in rest["resource"] if r["type"] == "Patient")
    assert {op["definition"].rsplit("/", 1)[1] for op in patient["operation"]} == {
        "patient-export", "Patient-everything", "Resource-validate"}


def test_the_capability_statement_equals_the_registry(client: TestClient) -> None:
    rest = client.get("/fhir/metadata").json()["rest"][0]
    assert rest["operation"] == [op.capability_entry() for op in REGISTRY.system_operations()]
    for res in rest["resource"]:
        expected = [op.capability_entry() for op in REGISTRY.resource_operations(res["type"])]
        assert res.get("operation", []) == expected, res["type"]
    # every declared operation is claimed somewhere, at the level and types it is served
    listed = {(op["definition"], None) for op in rest["operation"]}
    listed |= {(op["definition"], res["type"]) for res in rest["resource"] for op in res.get("operation", [])}
    for op in REGISTRY:
        claimed = REGISTRY.claimed(op)
        for e in op.endpoints:
            if e.level == "system":
                assert (claimed.canonical, None) in listed, op.key
            else:
                types = PROBE_TYPES if ANY_TYPE in e.types else e.types
                assert all((claimed.canonical, t) in listed for t in types), op.key


def test_openapi_documents_each_declared_route(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    for (method, path), route in REGISTRY.routes.items():
        entry = doc["paths"]["/fhir" + path][method.lower()]
        assert entry["summary"].startswith(route.operation.summary), (method, path)
        assert entry["description"] == route.operation.description()
        for p in route.operation.parameters:
            assert f"`{p.name}`" in entry["description"]


@pytest.mark.parametrize("op", OPS)
def test_the_policy_is_the_declaration(op: Operation) -> None:
    assert policy.OPERATIONS[op.code] == policy.operation_policy(op)
    for e in op.endpoints:
        for path in e.paths(op.code):
            params = {k: FILL[k] for k in re.findall(r"\{(\w+)\}", path)}
            for method in e.methods:
                access = policy.classify(method, "/fhir" + path, params, [])
                assert access.interaction == "operation" and access.operation == op.code
                assert access.levels == op.scope_levels
                assert access.policy == policy.operation_policy(op)
                if e.level == "instance":
                    assert access.rid == FILL[e.id_param]
                path_type = params.get("rtype") or (e.types[0] if e.types else "*")
                assert access.needs == [policy.Need(path_type, n.letters) if n.rtype == policy.PATH_TYPE else n
                                        for n in op.needs]


def test_a_declaration_without_route_or_a_route_without_declaration_is_impossible(
        sqlite_store: SqlStore) -> None:
    """Operation routes come only from the registry; an undeclared $route added behind its back has no
    declared policy and is closed to every patient/ and user/ token."""
    from tests.smart.conftest import bearer, issue, make_auth_client

    c = make_auth_client(sqlite_store)

    async def sneaky() -> dict[str, str]:
        return {"secret": "patient data"}

    router = c.app.router
    router.add_api_route("/fhir/Patient/{rid}/$sneaky", sneaky, methods=["GET"])
    router.routes.insert(0, router.routes.pop())
    for scope in ("patient/*.cruds", "user/*.cruds", "system/*.rs"):
        r = c.get("/fhir/Patient/p1/$sneaky", headers=bearer(issue(c, scope, "p1")))
        assert r.status_code == 403 and "secret" not in r.text, scope
    assert not any("sneaky" in p for _, p in REGISTRY.routes)


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqlStore]:
    s = SqlStore(f"sqlite:///{tmp_path_factory.mktemp('registry-auth') / 'gateway.sqlite3'}")
    yield s
    s.close()
