"""The CapabilityStatement is generated from what is implemented, and stays true."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from gateway.app import REGISTRY, create_app
from gateway.auth.routing import iter_routes
from gateway.config import Settings
from gateway.fhir.resource_types import RESOURCE_TYPES
from gateway.operations import ANY_TYPE
from gateway.rest.capability import TYPE_INTERACTIONS
from gateway.store.sql.store import memory_store

SAMPLE = {"token": "x|y", "string": "a", "date": "ge2020-01-01", "reference": "Patient/1", "number": "gt1",
          "quantity": "gt1|http://unitsofmeasure.org|mg", "uri": "http://example.org/x",
          "composite": "http://loinc.org|1$gt1"}
COMPOSITE_SECOND = {"token": "a|b", "quantity": "gt1", "date": "ge2020", "string": "a"}

# HTTP routes -> the CapabilityStatement interaction each one implements
ROUTE_INTERACTIONS = {
    ("GET", "/fhir/{rtype}/{rid}"): "read",
    ("GET", "/fhir/{rtype}/{rid}/_history/{vid}"): "vread",
    ("PUT", "/fhir/{rtype}/{rid}"): "update",
    ("DELETE", "/fhir/{rtype}/{rid}"): "delete",
    ("PATCH", "/fhir/{rtype}/{rid}"): "patch",
    ("GET", "/fhir/{rtype}/{rid}/_history"): "history-instance",
    ("GET", "/fhir/{rtype}/_history"): "history-type",
    ("POST", "/fhir/{rtype}"): "create",
    ("GET", "/fhir/{rtype}"): "search-type",
    ("POST", "/fhir/{rtype}/_search"): "search-type",
    ("PUT", "/fhir/{rtype}"): "update",  # conditional update
    ("DELETE", "/fhir/{rtype}"): "delete",  # conditional delete
    ("GET", "/fhir/Patient/{pid}/{rtype}"): "search-type",  # compartment search
    ("POST", "/fhir"): "transaction",
    ("POST", "/fhir/"): "transaction",
    ("GET", "/fhir/_history"): "history-system",
    ("GET", "/fhir/metadata"): "capabilities",
    ("GET", "/fhir/.well-known/smart-configuration"): "capabilities",  # SMART discovery
    ("GET", "/fhir/.well-known/openid-configuration"): "capabilities",
    # operation routes: from the registry (gateway/app.py collects the declarations), each mapped to the operation it serves
    **{(m, "/fhir" + p): f"operation:{r.operation.key}" for (m, p), r in REGISTRY.routes.items()},
}


@pytest.fixture(scope="module")
def app_client():  # type: ignore[no-untyped-def]
    app = create_app(Settings(base_url="http://testserver/fhir", auth="off"), store=memory_store(), access_log=False)
    with TestClient(app) as c:
        yield c


def test_metadata(app_client: TestClient) -> None:
    cs = app_client.get("/fhir/metadata").json()
    assert cs["resourceType"] == "CapabilityStatement"
    assert cs["fhirVersion"] == "4.0.1"
    assert cs["kind"] == "instance" and "application/fhir+json" in cs["format"]
    rest = cs["rest"][0]
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch", "history-system"}
    types = {r["type"] for r in rest["resource"]}
    assert types == set(RESOURCE_TYPES) and len(types) == 145
    for r in rest["resource"]:
        assert [i["code"] for i in r["interaction"]] == list(TYPE_INTERACTIONS)
    total = sum(len(r["searchParam"]) for r in rest["resource"])
    assert total > 1378  # every official parameter, expanded over the types it applies to


def test_every_route_is_claimed(app_client: TestClient) -> None:
    cs = app_client.get("/fhir/metadata").json()
    claimed = {i["code"] for r in cs["rest"][0]["resource"] for i in r["interaction"]}
    claimed |= {i["code"] for i in cs["rest"][0]["interaction"]} | {"capabilities"}
    system_ops = {op["definition"] for op in cs["rest"][0].get("operation", [])}
    type_ops = {(r["type"], op["definition"]) for r in cs["rest"][0]["resource"] for op in r.get("operation", [])}
    seen = 0
    for path, methods in iter_routes(app_client.app.router.routes):  # also sees into included routers
        if not path.startswith("/fhir"):
            continue
        for method in methods - {"HEAD", "OPTIONS"}:
            seen += 1
            interaction = ROUTE_INTERACTIONS.get((method, path))
            assert interaction is not None, f"route {method} {path} is not mapped to an interaction"
            if interaction.startswith("operation:"):
                # claimed at the route's own level: system operations in rest.operation, the others on
                # the rest.resource entry of every type the route serves
                route = REGISTRY.route(method, path[len("/fhir"):])
                assert route is not None
                canonical = REGISTRY.claimed(route.operation).canonical
                if route.endpoint.level == "system":
                    assert canonical in system_ops, f"{method} {path} is not claimed at system level"
                else:
                    types = RESOURCE_TYPES if ANY_TYPE in route.endpoint.types else route.endpoint.types
                    missing = [t for t in types if (t, canonical) not in type_ops]
                    assert not missing, f"{method} {path} is not claimed on {missing[:5]}"
                continue
            assert interaction in claimed, f"{method} {path} implements {interaction}, not in the CapabilityStatement"
    assert seen >= len(ROUTE_INTERACTIONS) - 2


def test_every_claimed_search_parameter_works(app_client: TestClient) -> None:
    cs = app_client.get("/fhir/metadata").json()
    failures = []
    for r in cs["rest"][0]["resource"]:
        for p in r["searchParam"]:
            value = SAMPLE.get(p["type"], "x")
            if p["name"] == "_id":
                value = "abc"
            resp = app_client.get(f"/fhir/{r['type']}", params={p["name"]: value}, headers={"Prefer": "handling=strict"})
            if resp.status_code == 400 and p["type"] == "composite":
                for second in COMPOSITE_SECOND.values():
                    resp = app_client.get(f"/fhir/{r['type']}", params={p["name"]: f"a|b${second}"},
                                          headers={"Prefer": "handling=strict"})
                    if resp.status_code == 200:
                        break
            if resp.status_code != 200:
                failures.append((r["type"], p["name"], resp.status_code, resp.text[:200]))
    assert failures == []


def test_deqm_capabilities(app_client: TestClient) -> None:
    cs = app_client.get("/fhir/metadata").json()
    deqm = "http://hl7.org/fhir/us/davinci-deqm/CapabilityStatement/"
    assert sorted(cs["instantiates"]) == [deqm + "consumer-server", deqm + "gic-server", deqm + "receiver-server",
                                          "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"]
    measure = next(r for r in cs["rest"][0]["resource"] if r["type"] == "Measure")
    ops = {op["name"]: op for op in measure["operation"]}
    # consumer-server: $data-requirements and $submit-data with the update types declared
    assert {"data-requirements", "submit-data", "care-gaps", "collect-data"} <= set(ops)
    declared = [e["valueCode"] for e in ops["submit-data"]["extension"]
                if e["url"].endswith("extension-submitDataUpdateType")]
    assert declared == ["incremental", "snapshot"]
    # receiver-server and gic-server: MeasureReport create, update, patch and search by DEQM's category
    mr = next(r for r in cs["rest"][0]["resource"] if r["type"] == "MeasureReport")
    assert {"create", "update", "patch", "search-type"} <= {i["code"] for i in mr["interaction"]}
    assert "category" in {p["name"] for p in mr["searchParam"]}
    assert len(mr["supportedProfile"]) == 4 and all("davinci-deqm" in p for p in mr["supportedProfile"])
    assert "application/fhir+json" in cs["patchFormat"]
