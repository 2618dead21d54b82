"""SMART App Launch through the real authorize and token endpoints: login, patient picker and consent pages,
PKCE S256, EHR launch, refresh token rotation, id_token, introspection, revocation, and the security table's
checks on the authorization request and the code exchange."""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from sqlalchemy import update

from gateway.auth.context import SYSTEM, acting_as
from gateway.auth.tables import CODE
from gateway.auth.users import add_user

from .conftest import BASE, bearer, pkce

REDIRECT = "https://app.example.org/callback"
PASSWORD = "correct horse battery"


@dataclass
class App:
    client: TestClient
    client_id: str
    secret: str | None = None

    def params(self, **kw: str) -> dict[str, str]:
        verifier, challenge = pkce()
        self.verifier = verifier
        p = {"response_type": "code", "client_id": self.client_id, "redirect_uri": REDIRECT,
             "scope": "launch/patient patient/*.rs openid fhirUser offline_access", "state": secrets.token_urlsafe(16),
             "aud": BASE, "code_challenge": challenge, "code_challenge_method": "S256"}
        p.update(kw)
        return {k: v for k, v in p.items() if v is not None}


@pytest.fixture()
def app(auth_client: TestClient) -> App:
    auth = auth_client.app.state.authority
    c, _ = auth.clients.register("Chart viewer", "launch launch/patient openid fhirUser offline_access "
                                 "patient/*.rs user/*.rs", redirect_uris=[REDIRECT])
    add_user(auth.store.engine, "dr-who", PASSWORD, "Practitioner/dr")
    add_user(auth.store.engine, "pat", PASSWORD, "Patient/p2")
    rest = auth_client.app.state.rest
    with acting_as(SYSTEM):
        for pid in ("p1", "p2"):
            rest.update("Patient", pid, {"resourceType": "Patient", "id": pid, "name": [{"family": pid.upper()}]})
    return App(auth_client, c.client_id)


def hidden(html: str) -> dict[str, str]:
    return {m.group(1): m.group(2).replace("&amp;", "&") for m in
            re.finditer(r"<input type=hidden name='([^']+)' value='([^']*)'>", html)}


def login_and_consent(app: App, params: dict[str, str], user: str = "dr-who", patient: str | None = "p1",
                      decision: str = "allow") -> Any:
    c = app.client
    page = c.get("/auth/authorize", params=params)
    assert page.status_code == 200 and "Sign in" in page.text, page.text
    form = hidden(page.text)
    consent = c.post("/auth/authorize", data={**form, "username": user, "password": PASSWORD})
    assert consent.status_code == 200 and "Allow access?" in consent.text, consent.text
    form = hidden(consent.text)
    if patient is not None:
        assert "<fieldset id=patients>" in consent.text and " checked" not in consent.text
        form["patient"] = patient
    return c.post("/auth/authorize", data={**form, "decision": decision}, follow_redirects=False)


def redirected(r: Any) -> dict[str, str]:
    assert r.status_code == 302, r.text
    loc = r.headers["location"]
    assert loc.startswith(REDIRECT + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(loc).query).items()}


def exchange(app: App, code: str, verifier: str | None = None, redirect_uri: str = REDIRECT) -> Any:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "client_id": app.client_id}
    if verifier is not False:
        data["code_verifier"] = verifier or app.verifier
    return app.client.post("/auth/token", data=data)


def test_standalone_launch_end_to_end(app: App) -> None:
    params = app.params(nonce="n-123")
    back = redirected(login_and_consent(app, params))
    assert back["state"] == params["state"]
    r = exchange(app, back["code"])
    assert r.status_code == 200, r.text
    tok = r.json()
    assert tok["patient"] == "p1" and tok["need_patient_banner"] is True and tok["token_type"] == "Bearer"
    assert tok["expires_in"] <= 3600 and tok["refresh_token"] and tok["scope"]
    auth = app.client.app.state.authority
    idt = jwt.decode(tok["id_token"], auth.keys.public).claims
    assert idt["aud"] == app.client_id and idt["fhirUser"] == f"{BASE}/Practitioner/dr" and idt["nonce"] == "n-123"
    h = bearer(tok["access_token"])
    assert app.client.get("/fhir/Patient/p1", headers=h).status_code == 200
    assert app.client.get("/fhir/Patient/p2", headers=h).status_code == 404
    # introspection with a bearer token
    info = app.client.post("/auth/introspect", data={"token": tok["access_token"]}, headers=h).json()
    assert info["active"] and info["patient"] == "p1" and info["client_id"] == app.client_id and info["exp"]
    assert app.client.post("/auth/introspect", data={"token": tok["access_token"]}).status_code == 401
    # refresh with rotation; the old refresh token used again revokes the whole grant
    r2 = app.client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": tok["refresh_token"],
                                              "client_id": app.client_id})
    assert r2.status_code == 200, r2.text
    tok2 = r2.json()
    assert tok2["refresh_token"] != tok["refresh_token"] and tok2["patient"] == "p1"
    narrower = app.client.post("/auth/token", data={"grant_type": "refresh_token", "client_id": app.client_id,
                                                    "refresh_token": tok2["refresh_token"], "scope": "user/*.rs"})
    assert narrower.status_code == 400 and narrower.json()["error"] == "invalid_scope"
    reuse = app.client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": tok["refresh_token"],
                                                 "client_id": app.client_id})
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    assert app.client.get("/fhir/Patient/p1", headers=bearer(tok2["access_token"])).status_code == 401
    info = app.client.post("/auth/introspect", data={"token": tok2["refresh_token"]},
                           headers=bearer(_backend_token(app))).json()
    assert info == {"active": False}


def _backend_token(app: App) -> str:
    from .conftest import issue

    return issue(app.client, "system/*.rs", client_id="introspector")


def test_revocation(app: App) -> None:
    tok = exchange(app, redirected(login_and_consent(app, app.params()))["code"]).json()
    r = app.client.post("/auth/revoke", data={"token": tok["access_token"], "client_id": app.client_id})
    assert r.status_code == 200
    assert app.client.get("/fhir/Patient/p1", headers=bearer(tok["access_token"])).status_code == 401
    # unknown tokens: 200 too (RFC 7009)
    assert app.client.post("/auth/revoke", data={"token": "nonsense", "client_id": app.client_id}).status_code == 200
    assert app.client.post("/auth/revoke", data={"token": "nonsense"}).status_code == 401


def test_patient_user_sees_only_their_record(app: App) -> None:
    c = app.client
    params = app.params(scope="patient/*.rs user/*.rs openid fhirUser")
    page = c.get("/auth/authorize", params=params)
    consent = c.post("/auth/authorize", data={**hidden(page.text), "username": "pat", "password": PASSWORD})
    assert "<fieldset id=patients>" not in consent.text  # no picker: a patient signs in for themself
    r = c.post("/auth/authorize", data={**hidden(consent.text), "decision": "allow"}, follow_redirects=False)
    tok = exchange(app, redirected(r)["code"]).json()
    assert tok["patient"] == "p2" and "user/" not in tok["scope"]


def test_ehr_launch(app: App) -> None:
    auth = app.client.app.state.authority
    launch = auth.server.create_launch(app.client_id, {"patient": "p2", "encounter": "e1"})
    params = app.params(scope="launch patient/*.rs openid fhirUser", launch=launch)
    back = redirected(login_and_consent(app, params, patient=None))
    tok = exchange(app, back["code"]).json()
    assert tok["patient"] == "p2" and tok["encounter"] == "e1" and "need_patient_banner" not in tok
    # a launch id is single-use, and bound to its client
    page = app.client.get("/auth/authorize", params=app.params(launch=launch), follow_redirects=False)
    assert redirected(page)["error"] == "invalid_request"
    other, _ = auth.clients.register("Other", "launch patient/*.rs", redirect_uris=[REDIRECT])
    launch2 = auth.server.create_launch(app.client_id, {"patient": "p1"})
    page = app.client.get("/auth/authorize", params={**app.params(launch=launch2), "client_id": other.client_id},
                          follow_redirects=False)
    assert redirected(page)["error"] == "invalid_request"


@pytest.mark.parametrize("change,error", [
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"state": None}, "invalid_request"),
    ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"aud": "https://other.example.org/fhir"}, "invalid_request"),
    ({"aud": None}, "invalid_request"),
    ({"launch": "made-up"}, "invalid_request"),
])
def test_authorize_request_errors_redirect_with_state(app: App, change: dict[str, str | None], error: str) -> None:
    params = app.params(**change)  # type: ignore[arg-type]
    r = app.client.get("/auth/authorize", params=params, follow_redirects=False)
    back = redirected(r)
    assert back["error"] == error, back
    assert back.get("state") == params.get("state")


@pytest.mark.parametrize("change", [{"client_id": "unknown"}, {"redirect_uri": "https://evil.example.org/cb"},
                                    {"redirect_uri": REDIRECT + "/x"}, {"redirect_uri": None}])
def test_bad_client_or_redirect_gets_an_error_page_not_a_redirect(app: App, change: dict[str, str | None]) -> None:
    r = app.client.get("/auth/authorize", params=app.params(**change), follow_redirects=False)  # type: ignore[arg-type]
    assert r.status_code == 400 and "location" not in r.headers and "<html" in r.text


def test_user_refuses(app: App) -> None:
    back = redirected(login_and_consent(app, app.params(), decision="deny"))
    assert back["error"] == "access_denied" and "code" not in back


def test_wrong_password(app: App) -> None:
    page = app.client.get("/auth/authorize", params=app.params())
    r = app.client.post("/auth/authorize", data={**hidden(page.text), "username": "dr-who", "password": "nope"})
    assert r.status_code == 401 and "wrong password" in r.text


def test_code_exchange_checks(app: App) -> None:
    def fresh() -> str:
        return redirected(login_and_consent(app, app.params()))["code"]

    code = fresh()
    r = exchange(app, code, verifier=False)  # type: ignore[arg-type]
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    code = fresh()
    r = exchange(app, code, verifier=pkce()[0])
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    code = fresh()
    r = exchange(app, code, redirect_uri=REDIRECT + "/other")
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    code = fresh()
    first = exchange(app, code)
    assert first.status_code == 200
    again = exchange(app, code)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    # reuse revoked what the code produced
    assert app.client.get("/fhir/Patient/p1", headers=bearer(first.json()["access_token"])).status_code == 401
    code = fresh()
    with app.client.app.state.store.engine.begin() as conn:
        conn.execute(update(CODE).values(expires_at=int(time.time()) - 1))
    assert exchange(app, code).json()["error"] == "invalid_grant"
    # a code is bound to its client
    other, _ = app.client.app.state.authority.clients.register("Other", "patient/*.rs", redirect_uris=[REDIRECT])
    code = fresh()
    r = app.client.post("/auth/token", data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                                             "client_id": other.client_id, "code_verifier": app.verifier})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_confidential_client_with_secret(auth_client: TestClient) -> None:
    auth = auth_client.app.state.authority
    c, secret = auth.clients.register("Confidential", "patient/*.rs launch/patient", redirect_uris=[REDIRECT],
                                      confidential=True)
    add_user(auth.store.engine, "nurse", PASSWORD, "Practitioner/n")
    with acting_as(SYSTEM):
        auth_client.app.state.rest.update("Patient", "p1", {"resourceType": "Patient", "id": "p1"})
    app = App(auth_client, c.client_id)
    code = redirected(login_and_consent(app, app.params(scope="patient/*.rs launch/patient"), user="nurse"))["code"]
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": app.verifier}
    r = auth_client.post("/auth/token", data=data, auth=(c.client_id, "wrong"))
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    r = auth_client.post("/auth/token", data=data, auth=(c.client_id, secret))
    assert r.status_code == 200 and r.json()["patient"] == "p1", r.text


def test_authorize_by_post(app: App) -> None:
    params = app.params()
    page = app.client.post("/auth/authorize", data=params)
    assert page.status_code == 200 and "Sign in" in page.text
    assert hidden(page.text)["state"] == params["state"]
