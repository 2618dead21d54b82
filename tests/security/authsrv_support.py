"""Helpers for the authorization server's security tests: an app with authorization on over the shared
``store`` (SQLite and PostgreSQL), a registered SMART app, and the login and consent pages driven as a
browser would."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi.testclient import TestClient

from gateway.auth.context import SYSTEM, acting_as
from gateway.store.sql.store import SqlStore
from tests.smart.conftest import BASE, make_auth_client, pkce, wipe_auth

REDIRECT = "https://app.example.org/callback"
PASSWORD = "correct horse battery"


def fresh_client(store: SqlStore, **settings: Any) -> TestClient:
    """An app with authorization on over ``store``, its auth tables emptied first."""
    wipe_auth(store)
    return make_auth_client(store, **settings)


@dataclass
class App:
    """A registered public SMART app, and the PKCE verifier of its last authorization request."""
    client: TestClient
    client_id: str
    verifier: str = field(default="")

    def params(self, **kw: str | None) -> dict[str, str]:
        self.verifier, challenge = pkce()
        p: dict[str, str | None] = {
            "response_type": "code", "client_id": self.client_id, "redirect_uri": REDIRECT,
            "scope": "launch/patient patient/*.rs openid fhirUser", "state": secrets.token_urlsafe(16),
            "aud": BASE, "code_challenge": challenge, "code_challenge_method": "S256"}
        p.update(kw)
        return {k: v for k, v in p.items() if v is not None}


def register_app(client: TestClient, scope: str = "launch launch/patient openid fhirUser offline_access "
                 "patient/*.rs user/*.rs") -> App:
    auth = client.app.state.authority
    c, _ = auth.clients.register("Chart viewer", scope, redirect_uris=[REDIRECT])
    return App(client, c.client_id)


def put(client: TestClient, resource: dict[str, Any]) -> None:
    """Store a resource as test set-up, on behalf of the system (the services refuse to act for nobody)."""
    with acting_as(SYSTEM):
        client.app.state.rest.update(resource["resourceType"], resource["id"], resource)


def hidden(html: str) -> dict[str, str]:
    return {m.group(1): m.group(2).replace("&amp;", "&") for m in
            re.finditer(r"<input type=hidden name='([^']+)' value='([^']*)'>", html)}


def sign_in(app: App, params: dict[str, str], user: str, password: str = PASSWORD) -> Any:
    """The login page for ``params``, then the sign-in post; returns the response to the sign-in."""
    page = app.client.get("/auth/authorize", params=params)
    assert page.status_code == 200 and "Sign in" in page.text, page.text
    return app.client.post("/auth/authorize", data={**hidden(page.text), "username": user, "password": password},
                           follow_redirects=False)


def redirected(r: Any) -> dict[str, str]:
    assert r.status_code == 302, r.text
    loc = r.headers["location"]
    assert loc.startswith(REDIRECT + "?"), loc
    return {k: v[0] for k, v in parse_qs(urlsplit(loc).query).items()}


def exchange(app: App, code: str) -> Any:
    return app.client.post("/auth/token", data={"grant_type": "authorization_code", "code": code,
                                                "redirect_uri": REDIRECT, "client_id": app.client_id,
                                                "code_verifier": app.verifier})
