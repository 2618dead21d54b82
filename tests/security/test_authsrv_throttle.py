"""Throttling and constant-time refusal at the login page and the token endpoint (issue 13, defect 14):
failures are counted per account and per client address in the database (so every worker process counts
alike), a key over its limit gets 429 with Retry-After, and an unknown user name costs the same password
hashing as a known one."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.auth.users import add_user
from gateway.store.sql.store import SqlStore
from tests.smart.conftest import make_auth_client

from .authsrv_support import PASSWORD, App, fresh_client, hidden, register_app, sign_in

LIMITS = {"auth_account_failures": 3, "auth_address_failures": 6, "auth_failure_window": 600}


@pytest.fixture()
def client(store: SqlStore) -> Iterator[TestClient]:
    with fresh_client(store, **LIMITS) as c:
        yield c


@pytest.fixture()
def app(client: TestClient) -> App:
    add_user(client.app.state.store.engine, "doc", PASSWORD, "Practitioner/doc")
    add_user(client.app.state.store.engine, "nurse", PASSWORD, "Practitioner/nurse")
    return register_app(client)


def test_login_locks_an_account_after_repeated_failures(app: App) -> None:
    for _ in range(3):
        assert sign_in(app, app.params(), "doc", "wrong password").status_code == 401
    locked = sign_in(app, app.params(), "doc", PASSWORD)  # even the right password, while locked
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 500
    assert "Too many failed sign-ins" in locked.text and "Allow access?" not in locked.text
    # another account from the same address is not locked (its address count is under its own limit)
    assert sign_in(app, app.params(), "nurse", PASSWORD).status_code == 200


def test_unknown_user_names_are_throttled_like_known_ones(app: App) -> None:
    for _ in range(3):
        assert sign_in(app, app.params(), "nobody-here", "whatever1").status_code == 401
    assert sign_in(app, app.params(), "nobody-here", "whatever1").status_code == 429


def test_login_throttles_an_address_across_accounts(app: App) -> None:
    for i in range(6):
        assert sign_in(app, app.params(), f"guess-{i}", "wrong password").status_code == 401
    r = sign_in(app, app.params(), "doc", PASSWORD)
    assert r.status_code == 429 and r.headers["Retry-After"].isdigit()


def test_a_successful_sign_in_clears_the_account_count(app: App) -> None:
    for _ in range(2):
        assert sign_in(app, app.params(), "doc", "wrong password").status_code == 401
    assert sign_in(app, app.params(), "doc", PASSWORD).status_code == 200
    for _ in range(2):
        assert sign_in(app, app.params(), "doc", "wrong password").status_code == 401
    assert sign_in(app, app.params(), "doc", PASSWORD).status_code == 200


def test_failures_count_across_processes(store: SqlStore) -> None:
    """Two apps on one database stand for two worker processes: the count is in the database."""
    with fresh_client(store, **LIMITS) as one, make_auth_client(store, **LIMITS) as two:
        add_user(store.engine, "doc", PASSWORD, "Practitioner/doc")
        a1, a2 = register_app(one), register_app(two)
        for app in (a1, a2, a1):
            assert sign_in(app, app.params(), "doc", "wrong password").status_code == 401
        assert sign_in(a2, a2.params(), "doc", PASSWORD).status_code == 429


def _basic_token_request(c: TestClient, client_id: str, secret: str) -> Any:
    return c.post("/auth/token", data={"grant_type": "authorization_code", "code": "nope",
                                       "redirect_uri": "https://app.example.org/callback", "code_verifier": "v" * 43},
                  auth=(client_id, secret))


def test_token_endpoint_locks_a_client_secret_after_repeated_failures(client: TestClient) -> None:
    auth = client.app.state.authority
    c, secret = auth.clients.register("Confidential", "patient/*.rs", redirect_uris=["https://app.example.org/callback"],
                                      confidential=True)
    assert secret
    for _ in range(3):
        r = _basic_token_request(client, c.client_id, "wrong")
        assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    r = _basic_token_request(client, c.client_id, secret)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    body = r.json()
    assert body["error"] == "temporarily_unavailable" and "retry after" in body["error_description"]


def test_token_endpoint_throttles_an_address(client: TestClient) -> None:
    app = register_app(client)
    for _ in range(6):  # guessed codes: invalid_grant, counted for the address only
        r = client.post("/auth/token", data={"grant_type": "authorization_code", "code": "guess",
                                             "redirect_uri": "https://app.example.org/callback",
                                             "client_id": app.client_id, "code_verifier": "v" * 43})
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    r = client.post("/auth/token", data={"grant_type": "authorization_code", "code": "guess",
                                         "redirect_uri": "https://app.example.org/callback",
                                         "client_id": app.client_id, "code_verifier": "v" * 43})
    assert r.status_code == 429 and r.json()["error"] == "temporarily_unavailable" and r.headers["Retry-After"]


def test_unknown_user_costs_the_same_password_hashing(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    """Deterministic form of the timing check: one scrypt computation with the stored hash's parameters
    whether the user name exists or not (before: none at all for an unknown name)."""
    calls: list[tuple[int, int, int]] = []
    real = hashlib.scrypt

    def counting(password: bytes, *, salt: bytes, n: int, r: int, p: int, **kw: Any) -> bytes:
        calls.append((n, r, p))
        return real(password, salt=salt, n=n, r=r, p=p, **kw)

    page = app.client.get("/auth/authorize", params=app.params())
    form = hidden(page.text)
    monkeypatch.setattr(hashlib, "scrypt", counting)
    for user in ("doc", "nobody-at-all"):
        calls.clear()
        r = app.client.post("/auth/authorize", data={**form, "username": user, "password": "wrong password"})
        assert r.status_code == 401 and "Unknown user name or wrong password" in r.text
        assert calls == [(2**14, 8, 1)], (user, calls)


def test_revocation_endpoint_throttles_client_secret_guessing(client: TestClient) -> None:
    """Revocation with HTTP Basic checks a client secret too: the same lock as the token endpoint."""
    auth = client.app.state.authority
    c, secret = auth.clients.register("Confidential", "patient/*.rs", redirect_uris=["https://app.example.org/callback"],
                                      confidential=True)
    assert secret
    for _ in range(3):
        assert client.post("/auth/revoke", data={"token": "t"}, auth=(c.client_id, "wrong")).status_code == 401
    r = client.post("/auth/revoke", data={"token": "t"}, auth=(c.client_id, secret))
    assert r.status_code == 429 and r.json()["error"] == "temporarily_unavailable" and r.headers["Retry-After"]
