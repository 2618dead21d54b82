"""Attacks on the outbound paths of bulk submission that carry this gateway's own Backend Services identity
(authorization discovery, the token endpoint, the export kick-off and status polls of a dynamic DEQM
``$bulk-submit-data``, and files fetched with a token), on SQLite and PostgreSQL, with the real job worker,
real tokens, a second live gateway as the Data Provider and hostile servers on 127.0.0.1 (loopback opened to
outbound calls by explicit configuration, only listed prefixes on the allow-list):

- SSRF through ``oauthMetadataUrl``: a private, link-local or unlisted address is refused at the request (400,
  nothing stored or fetched), and a loopback address is refused when loopback is not configured;
- SSRF through the discovery document: a ``token_endpoint`` naming a private address or an unlisted port is
  never called, the submission fails saying why;
- redirects from the discovery document, the token endpoint or the kick-off are not followed; a status URL
  the provider names elsewhere is not polled, and a provider asking to wait a day is not waited for;
- the provider's token is sent only to files under ``fhirBaseUrl``: a manifest listing a file elsewhere gets
  that file refused, unfetched;
- a file holding resources the submitting client may not write loads nothing of itself (the provider's real
  export, its manifest and files fetched with a token).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.store.sql.store import SqlStore
from tests.conftest import wipe
from tests.jobs.harness import (
    FileServer,
    Provider,
    finished_export,
    manifest,
    ndjson,
    provider,
    submit_params,
    wait_for,
)
from tests.smart.conftest import bearer, make_auth_client

pytestmark = pytest.mark.live
JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Provider, FileServer, FileServer]]:
    """The live provider gateway, a hostile server whose ``/ok`` prefix is allowed (with a client of this
    gateway configured for ``/ok/fhir``), and another server on loopback that is not on the allow-list."""
    routes: dict[str, Any] = {}
    with FileServer(routes) as evil, FileServer({}) as other:
        ok = evil.url("/ok")
        routes.update({
            "/ok/fhir/.well-known/smart-configuration": (200, {}, json.dumps(
                {"token_endpoint": f"{ok}/auth/token"}).encode()),
            "/ok/auth/token": (200, {"Content-Type": "application/json"}, json.dumps(
                {"access_token": "provider-token", "token_type": "bearer", "expires_in": 300}).encode()),
            "/ok/meta-private.json": (200, {}, json.dumps({"token_endpoint": "http://10.1.2.3/token"}).encode()),
            "/ok/meta-link-local.json": (200, {}, json.dumps(
                {"token_endpoint": "http://169.254.169.254/latest/token"}).encode()),
            "/ok/meta-unlisted.json": (200, {}, json.dumps({"token_endpoint": other.url("/token")}).encode()),
            "/ok/meta-redirect.json": (302, {"Location": other.url("/meta.json")}, b""),
            "/ok/meta-token-redirect.json": (200, {}, json.dumps({"token_endpoint": f"{ok}/redirect-token"}).encode()),
            "/ok/redirect-token": (307, {"Location": other.url("/token")}, b""),
            "/ok/fhir/Patient.ndjson": (200, {}, ndjson([{"resourceType": "Patient", "id": "tok-1"}])),
            "/ok/elsewhere/Patient.ndjson": (200, {}, ndjson([{"resourceType": "Patient", "id": "tok-2"}])),
            "/ok/fhir/$export": (302, {"Location": other.url("/$export")}, b""),
            "/ok/fhir/Group/slow/$export": (202, {"Content-Location": f"{ok}/fhir/slow-status"}, b""),
            "/ok/fhir/slow-status": (202, {"Retry-After": "86400", "X-Progress": "1%"}, b""),
            "/ok/fhir/Group/away/$export": (202, {"Content-Location": other.url("/status")}, b""),
        })
        body = json.loads(manifest(f"{ok}/fhir", [("Patient", f"{ok}/fhir/Patient.ndjson"),
                                                  ("Patient", f"{ok}/elsewhere/Patient.ndjson")]))
        routes["/ok/fhir/manifest.json"] = (200, {}, json.dumps({**body, "requiresAccessToken": True}).encode())
        extra = [{"source": f"{ok}/fhir", "clientId": "consumer", "keyFile": "consumer.jwk"}]
        with provider(tmp_path_factory.mktemp("provider"), extra) as b:
            yield b, evil, other


@pytest.fixture()
def world(store: SqlStore, servers: tuple[Provider, FileServer, FileServer]) -> Iterator[TestClient]:
    b, evil, _ = servers
    wipe(store)
    evil.hits.clear()
    evil.authorization.clear()
    with make_auth_client(store, egress_allow_networks="loopback", egress_allow_http=True,
                          bulk_submit_sources=f"{b.root}/,{evil.url('/ok')}",
                          bulk_submit_credentials=str(b.credentials)) as client:
        yield client
    wipe(store)


def _token(client: TestClient, scope: str, client_id: str = "submitter-app") -> dict[str, str]:
    authority = client.app.state.authority  # type: ignore[attr-defined]
    return {**JSON, **bearer(authority.tokens.issue_access(client_id, scope, 300, f"j-{client_id}", client_id,
                                                          {}).token)}


def _count(client: TestClient, query: str) -> int:
    r = client.get(f"/fhir/{query}&_summary=count", headers=_token(client, "system/*.rs", "reader-app"))
    assert r.status_code == 200, r.text
    return int(r.json()["total"])


def _total(client: TestClient, rtype: str) -> int:
    r = client.get(f"/fhir/{rtype}?_summary=count", headers=_token(client, "system/*.rs", "reader-app"))
    assert r.status_code == 200, r.text
    return int(r.json()["total"])


def _dynamic(rid: str, export_url: str, **more: str) -> dict[str, Any]:
    report = {"resourceType": "MeasureReport", "id": rid, "status": "complete", "type": "data-collection",
              "measure": "http://example.org/Measure/m", "period": {"start": "2025-01-01", "end": "2025-12-31"}}
    return {"resourceType": "Parameters", "parameter": [
        {"name": "measureReport", "resource": report}, {"name": "exportType", "valueCode": "dynamic"},
        {"name": "exportUrl", "valueUrl": export_url}, *({"name": k, "valueUrl": v} for k, v in more.items())]}


def _status(client: TestClient, token: dict[str, str], location: str) -> dict[str, Any]:
    path = location.split("/fhir", 1)[1]

    def finished() -> Any:
        s = client.get(f"/fhir{path}", headers=token)
        return s if s.status_code != 202 else None

    result: dict[str, Any] = wait_for(finished, 60, "the submission to be processed", 0.2).json()
    return result


def test_oauth_metadata_url_ssrf_is_refused_before_anything_is_stored(
        world: TestClient, servers: tuple[Provider, FileServer, FileServer], store: SqlStore) -> None:
    _, evil, other = servers
    token = _token(world, "system/*.cu")
    ok = evil.url("/ok")
    targets = ["http://10.0.0.7/.well-known/smart-configuration", "http://169.254.169.254/latest/meta-data",
               "http://[::ffff:10.0.0.7]/smart", other.url("/.well-known/smart-configuration")]
    for n, target in enumerate(targets):
        body = submit_params("acme", f"ssrf-{n}", f"{ok}/fhir/manifest.json")
        body["parameter"] += [{"name": "fhirBaseUrl", "valueUrl": f"{ok}/fhir"},
                              {"name": "oauthMetadataUrl", "valueUrl": target}]
        r = world.post("/fhir/$bulk-submit", headers=token, json=body)
        assert r.status_code == 400, (target, r.text)
        assert r.json()["resourceType"] == "OperationOutcome" and "oauthMetadataUrl" in r.text
        assert world.post("/fhir/$bulk-submit-status", headers=token,
                          json=submit_params("acme", f"ssrf-{n}")).status_code == 404
        d = world.post("/fhir/Measure/$bulk-submit-data", headers=token,
                       json=_dynamic(f"ssrf-mr-{n}", f"{ok}/fhir/$export", oauthMetadataUrl=target))
        assert d.status_code == 400, (target, d.text)
        assert _count(world, f"MeasureReport?_id=ssrf-mr-{n}") == 0
    assert evil.hits == [] and other.hits == []

    # loopback is refused when the operator has not opened it to outbound calls
    with make_auth_client(store, bulk_submit_credentials=str(servers[0].credentials)) as closed:
        r = closed.post("/fhir/Measure/$bulk-submit-data", headers=_token(closed, "system/*.cu"),
                        json=_dynamic("loop-mr", f"{ok}/fhir/$export"))
        assert r.status_code == 400 and "loopback" in r.json()["issue"][0]["diagnostics"]
    assert evil.hits == []


@pytest.mark.parametrize("metadata, why", [
    ("meta-private.json", "private"), ("meta-link-local.json", "link-local"), ("meta-unlisted.json", "allow-list"),
    ("meta-redirect.json", "redirect"), ("meta-token-redirect.json", "redirect")])
def test_discovered_endpoints_cannot_point_the_gateway_elsewhere(
        world: TestClient, servers: tuple[Provider, FileServer, FileServer], metadata: str, why: str) -> None:
    _, evil, other = servers
    token = _token(world, "system/*.cu")
    ok = evil.url("/ok")
    r = world.post("/fhir/Measure/$bulk-submit-data", headers=token,
                   json=_dynamic("ep-mr", f"{ok}/fhir/$export", oauthMetadataUrl=f"{ok}/{metadata}"))
    assert r.status_code == 202, r.text
    report = _status(world, token, r.headers["Content-Location"])
    assert report["output"] == [] and len(report["error"]) == 1
    assert why in report["error"][0]["diagnostics"], report["error"][0]["diagnostics"]
    assert other.hits == []  # neither the private address nor the unlisted one was called
    assert "/ok/fhir/$export" not in evil.hits  # no kick-off without a token


def test_kickoff_redirect_is_not_followed(world: TestClient, servers: tuple[Provider, FileServer, FileServer]) -> None:
    _, evil, other = servers
    token = _token(world, "system/*.cu")
    r = world.post("/fhir/Measure/$bulk-submit-data", headers=token,
                   json=_dynamic("redir-mr", evil.url("/ok/fhir/$export")))
    assert r.status_code == 202, r.text
    report = _status(world, token, r.headers["Content-Location"])
    assert len(report["error"]) == 1 and "redirect" in report["error"][0]["diagnostics"]
    assert evil.authorization["/ok/fhir/$export"] == "Bearer provider-token"  # the kick-off carried the token
    assert other.hits == []


def test_token_goes_only_to_files_under_fhir_base(world: TestClient,
                                                  servers: tuple[Provider, FileServer, FileServer]) -> None:
    _, evil, _ = servers
    token = _token(world, "system/*.cu")
    ok = evil.url("/ok")
    body = submit_params("acme", "tok-1", f"{ok}/fhir/manifest.json", status="completed")
    body["parameter"] += [{"name": "fhirBaseUrl", "valueUrl": f"{ok}/fhir"}]
    r = world.post("/fhir/$bulk-submit", headers=token, json=body)
    assert r.status_code == 202, r.text
    report = _status(world, token, r.headers["Content-Location"])
    assert [(o["file"], o["count"]) for o in report["output"]] == [(f"{ok}/fhir/Patient.ndjson", 1)]
    assert len(report["error"]) == 1 and report["error"][0]["file"] == f"{ok}/elsewhere/Patient.ndjson"
    assert "not under the provider's FHIR base" in report["error"][0]["diagnostics"]
    assert evil.authorization["/ok/fhir/Patient.ndjson"] == "Bearer provider-token"
    assert "/ok/elsewhere/Patient.ndjson" not in evil.hits  # not fetched at all, so no token went there
    assert evil.authorization["/ok/fhir/manifest.json"] is None  # no oauthMetadataUrl: the manifest is open
    assert _count(world, "Patient?_id=tok-1") == 1 and _count(world, "Patient?_id=tok-2") == 0


def test_protected_export_file_outside_the_submitters_rights_loads_nothing(
        world: TestClient, servers: tuple[Provider, FileServer, FileServer]) -> None:
    b = servers[0]
    status_url, exported, _ = finished_export(b, "Patient,Condition")
    assert exported["requiresAccessToken"] is True
    token = _token(world, "system/Patient.cu")  # may write Patients only
    body = submit_params("acme", "rights-1", status_url, status="completed")
    body["parameter"] += [{"name": "fhirBaseUrl", "valueUrl": b.base},
                          {"name": "oauthMetadataUrl", "valueUrl": f"{b.base}/.well-known/smart-configuration"},
                          {"name": "types", "valueString": "Patient"}]
    r = world.post("/fhir/$bulk-submit", headers=token, json=body)
    assert r.status_code == 202, r.text
    report = _status(world, token, r.headers["Content-Location"] + "?types=Patient")
    patients = sum(o["count"] for o in report["output"] if o["type"] == "Patient")
    assert patients > 0 and {o["type"] for o in report["output"]} == {"Patient"}
    conditions = {o["url"] for o in exported["output"] if o["type"] == "Condition"}
    assert conditions and {e["file"] for e in report["error"]} == conditions
    assert all("nothing of this file was loaded" in e["diagnostics"] for e in report["error"])
    assert patients == sum(o["count"] for o in exported["output"] if o["type"] == "Patient")
    assert _total(world, "Patient") == patients
    assert _total(world, "Condition") == 0


def test_status_polls_stay_on_allowed_urls_and_within_the_bound(
        store: SqlStore, servers: tuple[Provider, FileServer, FileServer]) -> None:
    b, evil, other = servers
    wipe(store)
    evil.hits.clear()
    ok = evil.url("/ok")
    with make_auth_client(store, egress_allow_networks="loopback", egress_allow_http=True,
                          bulk_submit_sources=f"{b.root}/,{ok}", bulk_submit_credentials=str(b.credentials),
                          bulk_submit_export_timeout_seconds=30) as client:
        token = _token(client, "system/*.cu")
        slow = client.post("/fhir/Measure/$bulk-submit-data", headers=token,
                           json=_dynamic("slow-mr", f"{ok}/fhir/Group/slow/$export"))
        away = client.post("/fhir/Measure/$bulk-submit-data", headers=token,
                           json=_dynamic("away-mr", f"{ok}/fhir/Group/away/$export"))
        assert slow.status_code == away.status_code == 202
        slow_report = _status(client, token, slow.headers["Content-Location"])
        away_report = _status(client, token, away.headers["Content-Location"])
    # Retry-After of a day: the bound (30 s here) is not waited out, the submission fails at once, polled once
    assert "did not finish" in slow_report["error"][0]["diagnostics"]
    assert evil.hits.count("/ok/fhir/slow-status") == 1
    # a status URL elsewhere (here also outside the allow-list) is never polled: no token goes there
    assert "not under the provider's FHIR base" in away_report["error"][0]["diagnostics"]
    assert other.hits == []
    wipe(store)
