"""Discovery documents, the CapabilityStatement security section, and `fhir-gateway clients add`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from fastapi.testclient import TestClient

from gateway.auth.assertion_client import generate_client_key
from gateway.auth.discovery import CAPABILITIES
from tests.conftest import clean_env, gateway_exe

REQUIRED = ("issuer", "jwks_uri", "authorization_endpoint", "token_endpoint", "grant_types_supported",
            "capabilities", "code_challenge_methods_supported", "token_endpoint_auth_methods_supported",
            "token_endpoint_auth_signing_alg_values_supported")
NORMATIVE = {"launch-ehr", "launch-standalone", "authorize-post", "client-public", "client-confidential-symmetric",
             "client-confidential-asymmetric", "sso-openid-connect", "context-banner", "context-style",
             "context-ehr-patient", "context-ehr-encounter", "context-standalone-patient",
             "context-standalone-encounter", "permission-offline", "permission-online", "permission-patient",
             "permission-user", "permission-v1", "permission-v2", "smart-app-state"}


def test_smart_configuration(auth_client: TestClient) -> None:
    r = auth_client.get("/fhir/.well-known/smart-configuration", headers={"Accept": "text/html"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert r.headers["access-control-allow-origin"] == "*"
    conf = r.json()
    for field in REQUIRED:
        assert conf.get(field), field
    assert conf["code_challenge_methods_supported"] == ["S256"]
    assert {"authorization_code", "client_credentials"} <= set(conf["grant_types_supported"])
    assert set(conf["capabilities"]) <= NORMATIVE and set(CAPABILITIES) == set(conf["capabilities"])
    assert {"RS384", "ES384"} & set(conf["token_endpoint_auth_signing_alg_values_supported"])
    for key in ("jwks_uri", "authorization_endpoint", "token_endpoint", "introspection_endpoint",
                "revocation_endpoint"):
        assert conf[key].startswith("http://localhost/"), key
    # every advertised endpoint answers (not 404)
    assert auth_client.get(conf["jwks_uri"]).json()["keys"]
    assert auth_client.get(conf["authorization_endpoint"]).status_code == 400  # no parameters: error page
    oidc = auth_client.get("/fhir/.well-known/openid-configuration").json()
    assert oidc["issuer"] == conf["issuer"] and oidc["jwks_uri"] == conf["jwks_uri"]


def test_capability_statement_security(auth_client: TestClient) -> None:
    cs = auth_client.get("/fhir/metadata").json()
    sec = cs["rest"][0]["security"]
    assert sec["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    ext = sec["extension"][0]
    assert ext["url"] == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
    uris = {e["url"]: e["valueUri"] for e in ext["extension"]}
    conf = auth_client.get("/fhir/.well-known/smart-configuration").json()
    assert uris["authorize"] == conf["authorization_endpoint"] and uris["token"] == conf["token_endpoint"]


def test_only_working_endpoints_are_advertised(auth_client: TestClient) -> None:
    """The admin API is no RFC 7591 registration endpoint and the management page lists no apps: neither is
    advertised. Every URI that discovery or the CapabilityStatement names answers without 404."""
    conf = auth_client.get("/fhir/.well-known/smart-configuration").json()
    assert "management_endpoint" not in conf and "registration_endpoint" not in conf
    sec = auth_client.get("/fhir/metadata").json()["rest"][0]["security"]
    uris = {e["url"]: e["valueUri"] for e in sec["extension"][0]["extension"]}
    assert set(uris) == {"authorize", "token", "introspect", "revoke"}
    assert uris["introspect"] == conf["introspection_endpoint"] and uris["revoke"] == conf["revocation_endpoint"]
    for uri in [*uris.values(), *(v for k, v in conf.items() if k.endswith("_endpoint") or k == "jwks_uri")]:
        assert auth_client.post(uri.replace("http://localhost", "")).status_code != 404, uri


def test_clients_add_cli(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'gw.sqlite3'}"
    key = generate_client_key("ES384")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    cmd = [gateway_exe(), "clients", "add", "--database", db, "--name", "Payer sync", "--jwks", str(jwks),
           "--scope", "system/*.rs"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), timeout=60)
    assert out.returncode == 0, out.stderr
    client = json.loads(out.stdout)
    assert client["client_id"] and client["token_endpoint_auth_method"] == "private_key_jwt"
    assert client["grant_types"] == ["client_credentials"] and client["scope"] == "system/*.rs"
    app = subprocess.run([gateway_exe(), "clients", "add", "--database", db, "--name", "Chart app", "--confidential",
                          "--redirect-uri", "https://app.example.org/cb", "--scope", "launch patient/*.rs"],
                         capture_output=True, text=True, env=clean_env(), timeout=60)
    assert app.returncode == 0, app.stderr
    body = json.loads(app.stdout)
    assert body["client_secret"] and body["token_endpoint_auth_method"] == "client_secret_basic"
    # a private key is refused, without echoing it
    jwks.write_text(json.dumps({"keys": [key.as_dict(private=True)]}))
    bad = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), timeout=60)
    assert bad.returncode == 2 and "private" in bad.stderr and key.as_dict(private=True)["d"] not in bad.stderr
    from gateway.auth.clients import ClientStore
    from gateway.store.sql.store import SqlStore

    store = SqlStore(db)
    listed = [c.public_view() for c in ClientStore(store.engine).list()]
    store.close()
    assert [c["client_id"] for c in listed] == [client["client_id"], body["client_id"]]
    assert body["client_secret"] not in json.dumps(listed)


def test_registration_rules(auth_client: TestClient) -> None:
    import pytest

    from gateway.auth.clients import RegistrationError

    clients = auth_client.app.state.authority.clients
    key = {"keys": [generate_client_key("ES384").as_dict(private=False)]}
    for kwargs in ({"scope": "patient/*.rs", "jwks": key}, {"scope": "system/*.rs"},
                   {"scope": "system/Observation.sr", "jwks": key},
                   {"scope": "launch", "redirect_uris": ["http://app.example.org/cb"]},
                   {"scope": "launch", "redirect_uris": ["https://app.example.org/cb#x"]},
                   {"scope": "system/*.rs", "jwks": {"keys": []}}):
        with pytest.raises(RegistrationError):
            clients.register("x", **kwargs)


def test_key_rotation_keeps_old_tokens_valid(auth_client: TestClient) -> None:
    from .conftest import bearer, issue

    auth = auth_client.app.state.authority
    old = issue(auth_client, "user/*.rs")
    old_kid = auth.keys.signing_key.kid
    new_kid = auth.keys.rotate()
    assert new_kid != old_kid and auth.keys.signing_key.kid == new_kid
    kids = {k["kid"] for k in auth_client.get("/auth/jwks").json()["keys"]}
    assert {old_kid, new_kid} <= kids
    auth.tokens._cache.clear()
    assert auth_client.get("/fhir/Patient", headers=bearer(old)).status_code == 200
    fresh = issue(auth_client, "user/*.rs")
    from joserfc import jws

    assert jws.extract_compact(fresh.encode()).headers()["kid"] == new_kid


def test_admin_api(auth_client: TestClient) -> None:
    from .conftest import bearer, issue

    admin = bearer(issue(auth_client, "__admin"))
    key = {"keys": [generate_client_key("ES384").as_dict(private=False)]}
    assert auth_client.post("/auth/admin/clients", json={"client_name": "x", "scope": "system/*.rs", "jwks": key},
                            headers=bearer(issue(auth_client, "system/*.cruds"))).status_code == 403
    assert auth_client.get("/auth/admin/clients").status_code == 401
    r = auth_client.post("/auth/admin/clients", json={"client_name": "Sync", "scope": "system/*.rs", "jwks": key},
                         headers=admin)
    assert r.status_code == 201 and r.json()["token_endpoint_auth_method"] == "private_key_jwt"
    bad = auth_client.post("/auth/admin/clients", json={"client_name": "Bad", "scope": "patient/*.rs", "jwks": key},
                           headers=admin)
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_client_metadata"
    app = auth_client.post("/auth/admin/clients", headers=admin, json={
        "client_name": "App", "scope": "launch patient/*.rs", "redirect_uris": ["https://app.example.org/cb"],
        "token_endpoint_auth_method": "client_secret_basic"}).json()
    assert app["client_secret"]
    listed = auth_client.get("/auth/admin/clients", headers=admin).json()
    assert {c["client_name"] for c in listed} == {"Sync", "App"} and app["client_secret"] not in str(listed)
    assert all("client_secret" not in c for c in listed)
    launch = auth_client.post("/auth/admin/launch", headers=admin, json={"client_id": app["client_id"],
                                                                          "patient": "p1"}).json()
    assert launch["launch"] and launch["iss"] == "http://localhost/fhir"


def test_cors_for_registered_app_origins_only(auth_client: TestClient) -> None:
    from .conftest import bearer, issue

    auth_client.app.state.authority.clients.register("Web app", "patient/*.rs",
                                                     redirect_uris=["https://app.example.org/cb"])
    pre = auth_client.options("/auth/token", headers={"Origin": "https://app.example.org",
                                                      "Access-Control-Request-Method": "POST"})
    assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == "https://app.example.org"
    r = auth_client.get("/fhir/Patient", headers={**bearer(issue(auth_client, "user/*.rs")),
                                                  "Origin": "https://app.example.org"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example.org"
    assert "access-control-allow-origin" not in auth_client.get(
        "/fhir/Patient", headers={"Origin": "https://evil.example.org"}).headers
    evil = auth_client.options("/auth/token", headers={"Origin": "https://evil.example.org",
                                                       "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in evil.headers


def test_discovery_and_jwks_carry_exactly_one_cors_origin(auth_client: TestClient) -> None:
    """A browser rejects two Access-Control-Allow-Origin headers; a registered app's origin used to get both
    '*' (set by the route) and its own origin (set by the middleware), and the JWKS had none."""
    auth_client.app.state.authority.clients.register("Web app", "patient/*.rs",
                                                     redirect_uris=["https://app.example.org/cb"])
    for path in ("/fhir/.well-known/smart-configuration", "/fhir/.well-known/openid-configuration",
                 "/auth/jwks", "/fhir/metadata"):
        for origin in ("https://app.example.org", "https://unregistered.example.net"):
            r = auth_client.get(path, headers={"Origin": origin})
            assert r.status_code == 200, path
            values = r.headers.get_list("access-control-allow-origin")
            assert values == ["*"], (path, origin, values)
            pre = auth_client.options(path, headers={"Origin": origin, "Access-Control-Request-Method": "GET"})
            assert pre.status_code == 204 and pre.headers.get_list("access-control-allow-origin") == ["*"]
