"""A Bulk Data client as a partner would write one, with a standard JWT library (joserfc): register a
backend client with a JWKS, sign a client_assertion (RS384 and ES384), get a token, kick off
``Group/[id]/$export`` with ``Prefer: respond-async``, poll as ``Retry-After`` says, download every NDJSON file
with the token, and check every line and the counts per type against ordinary searches. Live server with
SMART authorization, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.clients.conftest import DEMO_GROUP, Server, register_backend

pytestmark = pytest.mark.live
POLL_DEADLINE = 300.0  # seconds; the export of the demo group takes a few on an idle machine
# Patient-compartment types of the demo data, each searched per member with its `patient` parameter
PER_PATIENT = ("Observation", "Condition", "Encounter", "Procedure", "MedicationRequest", "Coverage")


def _search_ids(http: httpx.Client, rtype: str, params: dict[str, str]) -> list[str]:
    """Every id a search returns, following `next` links."""
    ids: list[str] = []
    r = http.get(f"/{rtype}", params={**params, "_count": "500", "_elements": "id"})
    while True:
        assert r.status_code == 200, r.text
        bundle = r.json()
        ids += [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]
        nxt = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)
        if nxt is None:
            return ids
        r = http.get(nxt)


def _poll(http: httpx.Client, status_url: str) -> dict[str, Any]:
    """Poll until complete, waiting as long as each Retry-After asks; returns the manifest."""
    deadline = time.monotonic() + POLL_DEADLINE
    while True:
        r = http.get(status_url)
        if r.status_code == 200:
            return dict(r.json())
        assert r.status_code == 202, f"{r.status_code} {r.text}"  # never 429: we keep to Retry-After
        retry_after = float(r.headers["Retry-After"])
        assert 0 < retry_after <= 120, retry_after
        assert time.monotonic() + retry_after < deadline, "export did not finish"
        time.sleep(retry_after)


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_group_export_with_a_signed_assertion(smart_server: Server, alg: str, tmp_path: Path) -> None:
    backend = register_backend(smart_server, "system/*.rs", alg, tmp_path)
    token = backend.token("system/*.rs")
    # a second assertion works once; sent again (same jti) it is refused
    fresh = httpx.post(smart_server.token_url, data={
        "grant_type": "client_credentials", "scope": "system/*.rs",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": (assertion := backend.assertion())}, timeout=30.0)
    assert fresh.status_code == 200, fresh.text
    replayed = httpx.post(smart_server.token_url, data={
        "grant_type": "client_credentials", "scope": "system/*.rs",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion}, timeout=30.0)
    assert replayed.status_code == 400 and replayed.json()["error"] == "invalid_client", replayed.text

    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=smart_server.base, headers=auth, timeout=60.0) as http:
        anonymous = httpx.get(f"{smart_server.base}/Group/{DEMO_GROUP}/$export",
                              headers={"Prefer": "respond-async", "Accept": "application/fhir+json"})
        assert anonymous.status_code == 401
        kick = http.get(f"/Group/{DEMO_GROUP}/$export",
                        headers={"Prefer": "respond-async", "Accept": "application/fhir+json"})
        assert kick.status_code == 202, kick.text
        status_url = kick.headers["Content-Location"]
        assert status_url.startswith(f"{smart_server.base}/$export-status/")
        manifest = _poll(http, status_url)
        assert manifest["requiresAccessToken"] is True and manifest["error"] == []
        assert manifest["request"].endswith(f"/Group/{DEMO_GROUP}/$export")

        exported: dict[str, list[str]] = {}
        for out in manifest["output"]:
            assert httpx.get(out["url"]).status_code == 401  # files need the token too
            f = http.get(out["url"])
            assert f.status_code == 200, f.text
            assert f.headers["content-type"].startswith("application/fhir+ndjson")
            lines = [line for line in f.text.split("\n") if line.strip()]
            assert len(lines) == out["count"], out
            for line in lines:
                resource = json.loads(line)
                assert resource["resourceType"] == out["type"], (out["url"], resource.get("resourceType"))
                exported.setdefault(out["type"], []).append(resource["id"])

        group = http.get(f"/Group/{DEMO_GROUP}").json()
        members = sorted({m["entity"]["reference"].split("/")[1] for m in group["member"]})
        assert exported["Group"] == [DEMO_GROUP]
        by_has = _search_ids(http, "Patient", {"_has:Group:member:_id": DEMO_GROUP})
        assert sorted(exported["Patient"]) == sorted(by_has) == members
        for rtype in PER_PATIENT:
            expected = [i for pid in members for i in _search_ids(http, rtype, {"patient": f"Patient/{pid}"})]
            assert len(expected) == len(set(expected))
            assert sorted(exported.get(rtype, [])) == sorted(expected), rtype
        assert sum(len(v) for v in exported.values()) == sum(o["count"] for o in manifest["output"])
        assert exported["Observation"], "the demo members have Observations"
