"""Malformed input to the authorization server's routes gets a clear 400, never a 500 or an exception name
(issue 13, defect 15: an authorize redirect_uri with ``%5C@``, ``/auth/admin/audit?_count=abc``, non-integer
numbers, missing fields, duplicate parameters, non-UTF-8), and ``--demo`` prints no password (defect 19)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.auth.demo import DEMO_USER, ensure_demo_access
from gateway.config import Settings
from gateway.store.sql.store import SqlStore
from tests.smart.conftest import BASE, register_backend

from .authsrv_support import App, fresh_client, redirected, register_app

FORM = {"content-type": "application/x-www-form-urlencoded"}
EXCEPTION_NAMES = ("ValueError", "KeyError", "TypeError", "Traceback", "Error:", "JSONDecodeError",
                   "UnicodeDecodeError", "OverflowError", "AttributeError", "IntegrityError")


@pytest.fixture()
def client(store: SqlStore) -> Iterator[TestClient]:
    with fresh_client(store) as c:
        yield c


@pytest.fixture()
def app(client: TestClient) -> App:
    return register_app(client)


@pytest.fixture()
def admin(client: TestClient) -> dict[str, str]:
    return {"Authorization": "Bearer " + register_backend(client, "system/*.rs __admin").token("system/*.rs __admin")}


def clean(r: Any, status: int = 400) -> None:
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert not any(name in r.text for name in EXCEPTION_NAMES), r.text[:300]


@pytest.mark.parametrize("redirect_uri", ["https://app.example.org%5C@evil.example/callback",
                                          "https://app.example.org\\@evil.example/callback", "http://[::1"])
def test_authorize_with_a_malformed_redirect_uri(app: App, redirect_uri: str) -> None:
    r = app.client.get("/auth/authorize", params=app.params(redirect_uri=redirect_uri), follow_redirects=False)
    clean(r)
    assert "location" not in r.headers and "<html" in r.text


def test_authorize_raw_percent_5c_at(app: App) -> None:
    r = app.client.get(f"/auth/authorize?response_type=code&client_id={app.client_id}&state=s"
                       "&redirect_uri=https://app.example.org%5C@evil.example/cb", follow_redirects=False)
    clean(r)


def test_authorize_with_a_duplicate_parameter(app: App) -> None:
    params = list(app.params().items()) + [("scope", "user/*.rs")]
    r = app.client.get("/auth/authorize", params=params, follow_redirects=False)
    clean(r)
    assert "more than once" in r.text and "location" not in r.headers


def test_authorize_post_with_non_utf8_and_nul(app: App) -> None:
    clean(app.client.post("/auth/authorize", content=b"client_id=%ff%fe&_step=login&username=\xff", headers=FORM))
    params = app.params()
    params["state"] = "a\x00b"
    clean(app.client.post("/auth/authorize", data=params))


def test_authorize_unknown_step(app: App) -> None:
    clean(app.client.post("/auth/authorize", data={**app.params(), "_step": "sideways"}))


@pytest.mark.parametrize("query", ["_count=abc", "_count=-1", "_count=0", "_count=1e3", "_count=1&_count=2",
                                   "since=yesterday"])
def test_admin_audit_bad_query(client: TestClient, admin: dict[str, str], query: str) -> None:
    r = client.get(f"/auth/admin/audit?{query}", headers=admin)
    clean(r)
    assert r.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("query", ["_count=5&since=2020-01-01T00:00:00Z", "_count=" + "9" * 5000])
def test_admin_audit_good_query(client: TestClient, admin: dict[str, str], query: str) -> None:
    r = client.get(f"/auth/admin/audit?{query}", headers=admin)  # a huge _count is capped at 1000
    assert r.status_code == 200 and r.json()["resourceType"] == "Bundle"


@pytest.mark.parametrize("path,body", [
    ("/auth/admin/clients", b"{not json"),
    ("/auth/admin/clients", b"\xff\xfe"),
    ("/auth/admin/clients", b"[1, 2]"),
    ("/auth/admin/clients", b'{"client_name": "x", "scope": "patient/*.rs", "redirect_uris": [1]}'),
    ("/auth/admin/clients", b'{"client_name": "x", "scope": "patient/*.rs", "redirect_uris": "https://a.example"}'),
    ("/auth/admin/clients", b'{"client_name": ["x"], "scope": "system/*.rs", "jwks_uri": 5}'),
    ("/auth/admin/launch", b"{not json"),
    ("/auth/admin/launch", b'"a string"'),
])
def test_admin_json_bodies(client: TestClient, admin: dict[str, str], path: str, body: bytes) -> None:
    clean(client.post(path, content=body, headers={**admin, "content-type": "application/json"}))


def test_admin_launch_with_a_non_string_patient(client: TestClient, app: App, admin: dict[str, str]) -> None:
    clean(client.post("/auth/admin/launch", json={"client_id": app.client_id, "patient": {"id": "p1"}}, headers=admin))


@pytest.mark.parametrize("body", [
    b"grant_type=authorization_code&grant_type=refresh_token&code=x",
    b"grant_type=%ff%fe&client_id=\xff",
    b"grant_type=refresh_token&refresh_token=x&scope=%00",
])
def test_token_endpoint_malformed_forms(client: TestClient, body: bytes) -> None:
    r = client.post("/auth/token", content=body, headers=FORM)
    clean(r)
    assert "error" in r.json()


def test_token_endpoint_backslash_redirect_uri(client: TestClient, app: App) -> None:
    r = client.post("/auth/token", data={"grant_type": "authorization_code", "code": "x", "client_id": app.client_id,
                                         "redirect_uri": "https://app.example.org%5C@evil/", "code_verifier": "v" * 43})
    assert r.status_code in (400, 401) and "error" in r.json()
    clean(r, r.status_code)


@pytest.mark.parametrize("path", ["/auth/introspect", "/auth/revoke"])
def test_introspect_and_revoke_duplicate_token(client: TestClient, admin: dict[str, str], path: str) -> None:
    r = client.post(path, content=b"token=a&token=b&client_id=x", headers={**admin, **FORM})
    clean(r)
    assert r.json()["error"] == "invalid_request"


def test_demo_does_not_print_the_password(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'gateway.sqlite3'}", base_url=BASE)
    store = SqlStore(settings.resolved_database_url())
    try:
        text = ensure_demo_access(store, settings)
        user_file = tmp_path / "demo-user.txt"
        name, password = user_file.read_text().split()
        assert name == DEMO_USER and len(password) >= 12
        assert password not in text and str(user_file) in text
        assert stat.S_IMODE(os.stat(user_file).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(tmp_path / "demo-backend-key.json").st_mode) == 0o600
    finally:
        store.close()


def test_an_overlong_nonce_is_refused_before_the_code_is_stored(app: App) -> None:
    """The nonce is stored with the code (255 characters at most): PostgreSQL refused the insert with a 500."""
    params = app.params(nonce="n" * 1000)
    r = app.client.get("/auth/authorize", params=params, follow_redirects=False)
    assert r.status_code == 302
    back = redirected(r)
    assert back["error"] == "invalid_request" and "nonce" in back["error_description"]
    assert back["state"] == params["state"]
