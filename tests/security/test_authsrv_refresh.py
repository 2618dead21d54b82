"""Refresh of SMART apps (issue 14, defect 2): a refresh token is bound to the client it was issued to. A
public client refreshes with only grant_type, refresh_token and (optionally) scope, as SMART App Launch 2.2
sends them; if it sends a client_id, that must be its own; a confidential client must still authenticate;
a scope may only narrow the grant; refresh tokens rotate, and replaying a rotated one ends the grant."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.auth.users import add_user
from gateway.store.sql.store import SqlStore
from tests.smart.conftest import bearer

from .authsrv_support import PASSWORD, REDIRECT, App, exchange, fresh_client, hidden, put, redirected, sign_in

SCOPE = "launch/patient patient/*.rs openid fhirUser offline_access"


@pytest.fixture()
def client(store: SqlStore) -> Iterator[TestClient]:
    with fresh_client(store) as c:
        put(c, {"resourceType": "Patient", "id": "pa", "name": [{"family": "A"}]})
        put(c, {"resourceType": "Observation", "id": "oa", "status": "final", "code": {"text": "x"},
                "subject": {"reference": "Patient/pa"}})
        add_user(c.app.state.store.engine, "pat", PASSWORD, "Patient/pa")
        yield c


def _register(client: TestClient, confidential: bool = False) -> tuple[App, str | None]:
    auth = client.app.state.authority
    c, secret = auth.clients.register("Chart viewer", "launch launch/patient openid fhirUser offline_access "
                                      "patient/*.rs", redirect_uris=[REDIRECT], confidential=confidential)
    return App(client, c.client_id), secret


def _launch(app: App, secret: str | None = None) -> dict[str, Any]:
    """A patient user's standalone launch up to the token response."""
    params = app.params(scope=SCOPE)
    r = sign_in(app, params, "pat")
    if r.status_code == 200:  # a consent page
        r = app.client.post("/auth/authorize", data={**hidden(r.text), "decision": "allow"}, follow_redirects=False)
    code = redirected(r)["code"]
    if secret is None:
        tok = exchange(app, code)
    else:
        tok = app.client.post("/auth/token", auth=(app.client_id, secret), data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "code_verifier": app.verifier})
    assert tok.status_code == 200, tok.text
    body: dict[str, Any] = tok.json()
    assert body["refresh_token"] and body["patient"] == "pa"
    return body


def test_public_client_refreshes_without_client_id(client: TestClient) -> None:
    app, _ = _register(client)
    first = _launch(app)
    r = client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["access_token"] != first["access_token"] and body["patient"] == "pa"
    assert body["refresh_token"] != first["refresh_token"]  # rotated
    assert client.get("/fhir/Observation/oa", headers=bearer(body["access_token"])).status_code == 200
    # the rotated token refreshes the same way
    again = client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]})
    assert again.status_code == 200, again.text


def test_public_client_refresh_with_its_own_client_id_still_works(client: TestClient) -> None:
    app, _ = _register(client)
    first = _launch(app)
    r = client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"],
                                         "client_id": app.client_id})
    assert r.status_code == 200, r.text


def test_refresh_token_of_one_public_client_is_refused_to_another(client: TestClient) -> None:
    app, _ = _register(client)
    other, _ = _register(client)
    first = _launch(app)
    r = client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"],
                                         "client_id": other.client_id})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text
    assert "access_token" not in r.json()


def test_confidential_client_must_still_authenticate(client: TestClient) -> None:
    app, secret = _register(client, confidential=True)
    assert secret
    first = _launch(app, secret)
    bare = client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert bare.status_code == 401 and bare.json()["error"] == "invalid_client", bare.text
    named = client.post("/auth/token", data={"grant_type": "refresh_token", "client_id": app.client_id,
                                             "refresh_token": first["refresh_token"]})
    assert named.status_code == 401 and named.json()["error"] == "invalid_client", named.text
    ok = client.post("/auth/token", auth=(app.client_id, secret),
                     data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert ok.status_code == 200 and ok.json()["access_token"], ok.text


def test_unknown_refresh_token_without_client_is_invalid_grant(client: TestClient) -> None:
    r = client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": "not-a-token"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text
    missing = client.post("/auth/token", data={"grant_type": "refresh_token"})
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request", missing.text


def test_refresh_scope_may_only_narrow(client: TestClient) -> None:
    app, _ = _register(client)
    first = _launch(app)
    wider = client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"],
                                             "scope": "patient/*.rs user/*.rs offline_access"})
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope", wider.text
    narrower = client.post("/auth/token", data={"grant_type": "refresh_token",
                                                "refresh_token": first["refresh_token"],
                                                "scope": "patient/Observation.rs offline_access"})
    assert narrower.status_code == 200, narrower.text
    body = narrower.json()
    assert body["scope"] == "patient/Observation.rs offline_access"
    h = bearer(body["access_token"])
    assert client.get("/fhir/Observation/oa", headers=h).status_code == 200
    assert client.get("/fhir/Patient/pa", headers=h).status_code == 403


def test_replaying_a_rotated_refresh_token_ends_the_grant(client: TestClient) -> None:
    app, _ = _register(client)
    first = _launch(app)
    data = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    second = client.post("/auth/token", data=data)
    assert second.status_code == 200, second.text
    replay = client.post("/auth/token", data=data)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant", replay.text
    # the whole authorization is revoked: the token the second refresh gave stops working too
    later = client.post("/auth/token", data={"grant_type": "refresh_token",
                                             "refresh_token": second.json()["refresh_token"]})
    assert later.status_code == 400, later.text
