"""fhir-kit-client (the Node FHIR client on npm) against a live gateway, on SQLite and PostgreSQL.

Each flow is a script in tests/clients/node that drives the library and prints what it got as JSON; these
tests run it with ``node`` and check the answers against the server (read back over httpx) and against the
operation registry (gateway/operations.py), from which the expected operation levels are derived.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from gateway.app import REGISTRY
from gateway.operations import Level
from tests.clients.conftest import NODE_DIR, Server, run_node

pytestmark = pytest.mark.live
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def node_flow(server: Server, script: str, *args: str, token: str | None = None,
              extra_env: dict[str, str] | None = None) -> Any:
    env = {"FHIR_BASE": server.base, **({"FHIR_TOKEN": token} if token else {}), **(extra_env or {})}
    return run_node(NODE_DIR / script, *args, env=env)


def test_crud(open_server: Server) -> None:
    marker = uuid.uuid4().hex
    got = node_flow(open_server, "crud.mjs", marker)
    assert got["created"]["status"] == 201 and got["created"]["versionId"] == "1"
    pid = got["created"]["id"]
    assert got["read"] == {"id": pid, "family": "Kit"}
    assert got["updated"] == {"status": 200, "versionId": "2", "gender": "female"}
    assert got["vread"] == {"versionId": "1", "gender": None}
    assert got["deleted"]["status"] in (200, 204)
    assert got["afterDelete"] == {"status": 410, "outcome": "OperationOutcome"}
    history = httpx.get(f"{open_server.base}/Patient/{pid}/_history").json()
    assert history["total"] == 3  # create, update, delete


def _observations(server: Server, family: str, code: str, n: int) -> tuple[str, list[str]]:
    """A Patient named ``family`` with ``n`` Observations coded ``code``, plus one Observation of another
    patient with the same code (the chain must leave it out)."""
    with httpx.Client(base_url=server.base, timeout=30.0) as http:
        pid = http.post("/Patient", json={"resourceType": "Patient", "name": [{"family": family}]},
                        headers=FHIR_JSON).json()["id"]
        other = http.post("/Patient", json={"resourceType": "Patient", "name": [{"family": "Other" + family}]},
                          headers=FHIR_JSON).json()["id"]
        oids = []
        for subject in [pid] * n + [other]:
            r = http.post("/Observation", headers=FHIR_JSON, json={
                "resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": "urn:test:fkc", "code": code}]},
                "subject": {"reference": f"Patient/{subject}"}})
            assert r.status_code == 201, r.text
            if subject == pid:
                oids.append(r.json()["id"])
    return pid, oids


def test_chained_search_with_include_and_paging_both_ways(open_server: Server) -> None:
    family, code = f"Fkc{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    pid, oids = _observations(open_server, family, code, 5)
    got = node_flow(open_server, "search.mjs", family, code, "2")
    assert got["total"] == 5
    matches = {m["ref"] for m in got["matches"] if m["mode"] == "match"}
    assert matches == {f"Observation/{o}" for o in oids}
    assert [m["ref"] for m in got["matches"] if m["mode"] == "include"] == [f"Patient/{pid}"]

    # six Observations carry the code (five of the patient, one of the other), two a page, sorted by id
    every = sorted(oids + [o for o in _search_ids(open_server, code) if o not in oids])
    assert len(every) == 6
    want = [[f"Observation/{o}" for o in every[i:i + 2]] for i in range(0, 6, 2)]
    assert got["pages"] == want
    assert got["back"] == want[:-1][::-1]  # prevPage from the last page walks back to the first


def _search_ids(server: Server, code: str) -> list[str]:
    b = httpx.get(f"{server.base}/Observation", params={"code": f"urn:test:fkc|{code}", "_count": "100"}).json()
    return [e["resource"]["id"] for e in b.get("entry", [])]


def test_next_page_while_another_client_deletes_and_creates(open_server: Server) -> None:
    """Every Observation that existed throughout the paging is returned exactly once."""
    got = node_flow(open_server, "churn.mjs", uuid.uuid4().hex)
    assert 3 <= got["pages"] < 50
    returned = got["returned"]
    missing = [s for s in got["stable"] if s not in returned]
    doubled = [s for s in got["stable"] if returned.count(s) > 1]
    assert not missing and not doubled, f"missing {missing}, returned twice {doubled} over {got['pages']} pages"


def test_conditional_create_history_and_transaction(open_server: Server) -> None:
    marker = uuid.uuid4().hex
    got = node_flow(open_server, "writes.mjs", marker)
    assert got["first"]["status"] == 201
    assert got["second"] == {"status": 200, "id": got["first"]["id"]}  # If-None-Exist found the first
    assert got["searchTotal"] == 1
    assert got["history"] == {"type": "history", "versions": ["2", "1"]}
    tx = got["transaction"]
    assert tx["type"] == "transaction-response"
    assert [s.split()[0] for s in tx["statuses"]] == ["201", "201"]
    assert tx["observationSubject"] == tx["patient"]
    found = httpx.get(f"{open_server.base}/Patient", params={"identifier": f"urn:test:fkc-tx|{marker}"}).json()
    assert [f"Patient/{e['resource']['id']}" for e in found["entry"]] == [tx["patient"]]


def test_evaluate_measure_and_care_gaps(open_server: Server) -> None:
    measure, patient = "demo-breast-cancer-screening", "demo-pat-3"
    got = node_flow(open_server, "measures.mjs", measure, patient)
    report = got["report"]
    assert report["resourceType"] == "MeasureReport" and report["type"] == "individual"
    assert report["subject"]["reference"] == f"Patient/{patient}"
    direct = httpx.get(f"{open_server.base}/Measure/{measure}/$evaluate-measure", params={
        "periodStart": "2025-01-01", "periodEnd": "2025-12-31", "subject": f"Patient/{patient}"}).json()
    counts = {p["code"]["coding"][0]["code"]: p["count"] for p in report["group"][0]["population"]}
    assert counts == {p["code"]["coding"][0]["code"]: p["count"] for p in direct["group"][0]["population"]}
    assert counts["initial-population"] == 1

    gaps = got["gaps"]
    assert gaps["resourceType"] == "Parameters"
    bundles = [p["resource"] for p in gaps["parameter"] if p["name"] == "return"]
    assert len(bundles) == 1 and bundles[0]["type"] == "document"
    composition = bundles[0]["entry"][0]["resource"]
    assert composition["resourceType"] == "Composition"
    assert composition["subject"]["reference"] == f"Patient/{patient}"


def _claimed() -> dict[str, dict[Level, set[str]]]:
    """For each operation code the CapabilityStatement lists: its levels and, at type and instance level,
    the resource types ("*" for every type), from the registry."""
    out: dict[str, dict[Level, set[str]]] = {}
    for op in REGISTRY:
        if not op.canonical:
            continue
        for e in op.endpoints:
            out.setdefault(op.code, {}).setdefault(e.level, set()).update(e.types)
    return out


def _methods(code: str, level: str | None) -> set[str]:
    """The HTTP methods the registry binds for an operation code at a level."""
    return {m for op in REGISTRY if op.code == code for e in op.endpoints if e.level == level for m in e.methods}


def _probe_name(code: str) -> str:
    suffixes = {e.suffix for op in REGISTRY if op.code == code and op.canonical for e in op.endpoints}
    return f"${code}/probe" if "/{fmt}" in suffixes else f"${code}"


def test_capability_tool_finds_every_operation_at_its_level(open_server: Server) -> None:
    claimed = _claimed()
    assert {"evaluate-measure", "care-gaps", "export", "member-add", "validate"} <= set(claimed)
    probe_types = ["Measure", "Group", "Patient"]
    probes: list[dict[str, str | None]] = []
    for code in sorted(claimed):
        name = _probe_name(code)
        probes.append({"code": code, "name": name, "level": "system", "type": None, "id": None})
        for t in probe_types:
            probes.append({"code": code, "name": name, "level": "type", "type": t, "id": None})
            probes.append({"code": code, "name": name, "level": "instance", "type": t, "id": "probe-missing"})
    got = node_flow(open_server, "capability.mjs", extra_env={
        "CAPABILITY_INPUT": json.dumps({"codes": sorted(claimed), "probes": probes})})

    types = got["types"]
    assert len(types) == 145
    for code, levels in claimed.items():
        assert got["found"][code]["server"] is ("system" in levels), code
        served = levels.get("type", set()) | levels.get("instance", set())
        expected = set(types) if "*" in served else served
        assert set(got["found"][code]["types"]) == expected, code

    assert len(got["probed"]) == len(probes)
    for p in got["probed"]:
        levels = claimed[p["code"]]
        declared = p["level"] in levels and (p["level"] == "system" or bool({"*", p["type"]} & levels[p["level"]]))
        unrouted = p["status"] == 404 and p["diagnostics"].startswith("No route for")
        assert unrouted is not declared, p
        assert p["status"] < 500, p
        if declared and "POST" not in _methods(p["code"], p["level"]):  # read-only ($ingest-runs): the probe's POST
            assert p["status"] == 405, p
        elif declared:  # the route answered and refused the probe's bad input, changing nothing
            # ($provider-member-match answers only a provider organization's Backend Services client: 403 here)
            assert p["status"] in ((400, 403, 404) if p["code"] == "provider-member-match" else (400, 404)), p

    inter = got["interactions"]
    assert inter["transaction"] is True and inter["batch"] is True
    assert inter["patientRead"] is True and inter["patientSearch"] is True and inter["patientName"] is True
    assert {"read", "vread", "update", "create", "search-type"} <= set(inter["measureInteractions"])
