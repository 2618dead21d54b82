"""Patient/$everything from real clients against a live ``fhir-gateway serve --demo``, on SQLite and PostgreSQL:
fhirpy's ``execute`` on a demo patient, the pages walked over HTTP and checked against the Patient compartment
searches (an independent path to the same data), links that follow the base the client used, and a SMART
Backend Services token with per-type scopes."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhirpy import SyncFHIRClient

from gateway.search.params import patient_compartment
from tests.clients.conftest import Server, register_backend

pytestmark = pytest.mark.live


def demo_patient(base: str) -> str:
    """A demo patient with clinical data (an Observation names it)."""
    obs = httpx.get(f"{base}/Observation", params={"_count": "1", "_sort": "_id"}, timeout=60).json()
    ref = obs["entry"][0]["resource"]["subject"]["reference"]
    return str(ref.split("/")[-1])


def walk(url: str, headers: dict[str, str] | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """Every entry of every page and every link URL met."""
    entries: list[dict[str, Any]] = []
    links: list[str] = []
    next_url: str | None = url
    while next_url:
        r = httpx.get(next_url, headers=headers, timeout=60)
        assert r.status_code == 200, r.text
        body = r.json()
        entries += body.get("entry") or []
        links += [link["url"] for link in body["link"]]
        next_url = next((link["url"] for link in body["link"] if link["relation"] == "next"), None)
    return entries, links


def test_fhirpy_everything_matches_the_compartment_searches(open_server: Server) -> None:
    base = open_server.base
    pid = demo_patient(base)
    client = SyncFHIRClient(base, requests_config={"timeout": 60})
    bundle = client.execute(f"Patient/{pid}/$everything", method="get", params={"_count": "1000"})
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    matches = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "match"]
    assert matches[0] == client.reference("Patient", pid).to_resource().serialize()
    by_type = Counter(r["resourceType"] for r in matches[1:])
    assert by_type["Observation"] >= 1
    for rtype in sorted(by_type):
        assert rtype in patient_compartment()
        found = httpx.get(f"{base}/Patient/{pid}/{rtype}", params={"_count": "0", "_total": "accurate"},
                          timeout=60).json()
        assert found["total"] == by_type[rtype], rtype
    assert bundle["total"] == len(matches)
    # small pages walk the same record, once
    entries, _ = walk(f"{base}/Patient/{pid}/$everything?_count=7")
    urls = [e["fullUrl"] for e in entries]
    assert len(urls) == len(set(urls)) and urls == [e["fullUrl"] for e in bundle["entry"]]
    # POST with Parameters through fhirpy, filtered by type
    posted = client.execute(f"Patient/{pid}/$everything", method="post", data={
        "resourceType": "Parameters", "parameter": [{"name": "_type", "valueString": "Observation"}]})
    assert {e["resource"]["resourceType"] for e in posted["entry"]} == {"Observation"}
    assert posted["total"] == by_type["Observation"]


def test_links_follow_the_base_the_client_used(open_server: Server) -> None:
    pid = demo_patient(open_server.base)
    for host in ("127.0.0.1", "localhost"):
        base = open_server.base.replace("127.0.0.1", host)
        entries, links = walk(f"{base}/Patient/{pid}/$everything?_count=5")
        assert entries and all(e["fullUrl"].startswith(f"{base}/") for e in entries if "fullUrl" in e)
        assert links and all(link.startswith(f"{base}/Patient/{pid}/$everything?") for link in links)


def test_backend_services_token_with_per_type_scopes(smart_server: Server, tmp_path: Path) -> None:
    backend = register_backend(smart_server, "system/*.rs", "ES384", tmp_path)
    token = backend.token("system/Patient.rs system/Observation.rs")
    headers = {"Authorization": f"Bearer {token}"}
    open_pid = demo_patient_with(smart_server, backend.token("system/Observation.rs"))
    entries, _ = walk(f"{smart_server.base}/Patient/{open_pid}/$everything", headers)
    types = {e["resource"]["resourceType"] for e in entries}
    assert types == {"Patient", "Observation", "OperationOutcome"}
    note = next(e["resource"] for e in entries if e["resource"]["resourceType"] == "OperationOutcome")
    assert "left out" in note["issue"][0]["diagnostics"] and "Condition" in note["issue"][0]["diagnostics"]
    r = httpx.get(f"{smart_server.base}/Patient/{open_pid}/$everything", timeout=60)
    assert r.status_code == 401 and r.json()["resourceType"] == "OperationOutcome"
    r = httpx.get(f"{smart_server.base}/Patient/{open_pid}/$everything", timeout=60,
                  headers={"Authorization": f"Bearer {backend.token('system/Observation.rs')}"})
    assert r.status_code == 403 and r.json()["resourceType"] == "OperationOutcome" and "entry" not in r.json()


def demo_patient_with(server: Server, token: str) -> str:
    obs = httpx.get(f"{server.base}/Observation", params={"_count": "1", "_sort": "_id"},
                    headers={"Authorization": f"Bearer {token}"}, timeout=60).json()
    return str(obs["entry"][0]["resource"]["subject"]["reference"].split("/")[-1])
