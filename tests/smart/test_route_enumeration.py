"""Every FHIR route of the app, walked from FastAPI's router: without a token it answers 401, with a token
whose scopes do not cover it 403, both as OperationOutcome. A route added later is covered by the same walk,
and one without a stated policy is closed. The operation routes are exactly those the operation registry
declares (gateway/app.py collects it from the capability packages)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from gateway.app import REGISTRY
from gateway.auth import policy
from gateway.auth.routing import iter_routes
from gateway.store.sql.store import SqlStore

from .conftest import bearer, issue, make_auth_client

FILL = {"rtype": "Observation", "rid": "obs-1", "vid": "1", "pid": "pat-1", "measure_id": "m-1"}
BODY = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
BUNDLE = {"resourceType": "Bundle", "type": "transaction",
          "entry": [{"resource": BODY, "request": {"method": "POST", "url": "Observation"}}]}


def fhir_routes(client: TestClient) -> list[tuple[str, str]]:
    out = []
    for path, methods in iter_routes(client.app.router.routes):
        if path == "/fhir" or path.startswith("/fhir/"):
            out += [(m, path) for m in sorted(methods - {"HEAD", "OPTIONS"})]
    return out


def _call(client: TestClient, method: str, path: str, headers: dict[str, str]) -> object:
    url = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: FILL.get(m.group(1), "x"), path)
    h = dict(headers)
    body = None
    if method in ("POST", "PUT", "PATCH"):
        if path in ("/fhir", "/fhir/"):
            body = BUNDLE
        elif method == "PATCH":
            h["Content-Type"] = "application/json-patch+json"
            body = [{"op": "replace", "path": "/status", "value": "final"}]
        elif "$" in path:
            body = {"resourceType": "Parameters", "parameter": []}
        else:
            body = BODY
    if body is not None and "Content-Type" not in h:
        h["Content-Type"] = "application/fhir+json"
    return client.request(method, url, json=body, headers=h)


def test_the_walk_sees_the_whole_api(auth_client: TestClient) -> None:
    routes = fhir_routes(auth_client)
    templates = {p for _, p in routes}
    # the walk is not vacuous: the core interactions and the operations are all there
    assert {"/fhir/{rtype}/{rid}", "/fhir/{rtype}", "/fhir", "/fhir/_history", "/fhir/Patient/{pid}/{rtype}",
            "/fhir/Measure/$evaluate-measure"} <= templates
    assert len(routes) >= 25
    # operations: the walk finds exactly the registry's declarations, no more and no fewer
    assert {(m, p) for m, p in routes if "$" in p} == {(m, "/fhir" + p) for m, p in REGISTRY.routes}


def test_every_fhir_route_needs_a_token_and_the_right_scope(auth_client: TestClient) -> None:
    unrelated = issue(auth_client, "user/Substance.rs system/Substance.cruds patient/Substance.cruds", "pat-1")
    checked = 0
    for method, path in fhir_routes(auth_client):
        if policy.ROUTES.get((method, path)) == "public":
            r = _call(auth_client, method, path, {})
            assert r.status_code == 200, (method, path, r.status_code)
            continue
        r = _call(auth_client, method, path, {})
        assert r.status_code == 401, (method, path, r.status_code, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
        assert r.headers["www-authenticate"].startswith("Bearer"), (method, path)
        r = _call(auth_client, method, path, bearer(unrelated))
        declared = REGISTRY.route(method, path.removeprefix("/fhir"))
        if declared is not None and not declared.operation.needs and not declared.operation.scopes:
            # a job's endpoints need no particular scope, only some FHIR access at an allowed level: the job's
            # owner check decides, and a job this caller did not start is not there for it; the job listing
            # lists the caller's own jobs, here none
            if declared.operation.key == "jobs":
                assert r.status_code == 200 and not [p for p in r.json()["parameter"] if p["name"] == "job"]
            else:
                assert r.status_code == 404, (method, path, r.status_code, r.text)
            patient_only = issue(auth_client, "patient/Substance.cruds", "pat-1")
            r = _call(auth_client, method, path, bearer(patient_only))
        assert r.status_code == 403, (method, path, r.status_code, r.text)
        oo = r.json()
        assert oo["resourceType"] == "OperationOutcome" and oo["issue"][0]["code"] == "forbidden", (method, path)
        assert 'insufficient_scope' in r.headers["www-authenticate"]
        checked += 1
    assert checked >= 20


def test_a_route_added_later_is_closed_until_it_has_a_policy(sqlite_store: SqlStore) -> None:
    auth_client = make_auth_client(sqlite_store)  # an app of its own: this test adds routes to it

    async def brand_new() -> dict[str, str]:
        return {"secret": "patient data"}

    router = auth_client.app.router
    for path in ("/fhir/_brand-new/{a}/{b}/{c}", "/fhir/$brand-new-operation"):
        router.add_api_route(path, brand_new, methods=["GET"])
        router.routes.insert(0, router.routes.pop())  # ahead of the generic /fhir/{rtype} routes
    assert ("GET", "/fhir/_brand-new/{a}/{b}/{c}") in fhir_routes(auth_client)
    assert auth_client.get("/fhir/_brand-new/1/2/3").status_code == 401
    everything = issue(auth_client, "system/*.cruds user/*.cruds patient/*.cruds", "pat-1")
    r = auth_client.get("/fhir/_brand-new/1/2/3", headers=bearer(everything))
    assert r.status_code == 403 and "no access policy" in r.text
    # an operation missing from the OPERATIONS table: closed to patient/ and user/ scopes
    for scope in ("patient/*.cruds", "user/*.cruds", "system/*.rs"):
        r = auth_client.get("/fhir/$brand-new-operation", headers=bearer(issue(auth_client, scope, "pat-1")))
        assert r.status_code == 403, scope
    r = auth_client.get("/fhir/$brand-new-operation", headers=bearer(issue(auth_client, "system/*.cruds")))
    assert r.status_code == 200


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer not.a.jwt", "Bearer abc",
                                    "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."])
def test_malformed_authorization_headers(auth_client: TestClient, header: str) -> None:
    r = auth_client.get("/fhir/Patient", headers={"Authorization": header})
    assert r.status_code == 401 and r.json()["resourceType"] == "OperationOutcome"
