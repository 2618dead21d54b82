"""Fixtures for the SMART on FHIR tests: an app with authorization on (its own fixture; the shared `client`
stays auth-off), registered clients with real keys, and tokens signed by the gateway."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.auth.assertion_client import generate_client_key, sign_assertion
from gateway.config import Settings
from gateway.store.sql.store import SqlStore
from tests.conftest import wipe

ORIGIN = "http://localhost"  # loopback: authlib accepts plain http there
BASE = f"{ORIGIN}/fhir"
TOKEN_URL = f"{ORIGIN}/auth/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def make_auth_client(store: SqlStore, **settings: Any) -> TestClient:
    settings.setdefault("subscription_notifier", False)  # as tests/conftest.py's make_client
    s = Settings(base_url=BASE, auth="smart", **settings)
    return TestClient(create_app(s, store=store, access_log=False), base_url=ORIGIN)


@pytest.fixture(scope="session")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqlStore]:
    s = SqlStore(f"sqlite:///{tmp_path_factory.mktemp('auth') / 'gateway.sqlite3'}")
    yield s
    s.close()


def wipe_auth(store: SqlStore, audit: Any = None) -> None:
    """Clients, users, tokens, codes, launches, sign-in failures and audit rows (also in the audit log's own database when
    ``audit``, an AuditLog, writes elsewhere); the signing keys stay."""
    from gateway.auth.tables import AUDIT, CLIENT, CODE, FAILURE, JTI, LAUNCH, TOKEN, USER

    with store.engine.begin() as conn:
        for t in (AUDIT, CLIENT, CODE, FAILURE, JTI, LAUNCH, TOKEN, USER):
            conn.execute(t.delete())
    if audit is not None and audit.engine is not store.engine:
        with audit.engine.begin() as conn:
            conn.execute(AUDIT.delete())


@pytest.fixture(scope="module")
def auth_app(sqlite_store: SqlStore) -> Any:
    """One app per module (building one costs most of a second); tests get a wiped database."""
    return create_app(Settings(base_url=BASE, auth="smart", subscription_notifier=False), store=sqlite_store,
                      access_log=False)


@pytest.fixture()
def auth_client(auth_app: Any, sqlite_store: SqlStore) -> Iterator[TestClient]:
    """Authorization on, SQLite (the auth logic is dialect-neutral; auth_client_any adds PostgreSQL)."""
    wipe(sqlite_store)
    wipe_auth(sqlite_store, auth_app.state.authority.audit)
    with TestClient(auth_app, base_url=ORIGIN) as c:
        yield c


@pytest.fixture()
def auth_client_any(store: SqlStore) -> Iterator[TestClient]:
    """Authorization on, on every backend of the shared `store` fixture."""
    with make_auth_client(store) as c:
        yield c


@dataclass
class Backend:
    client: TestClient
    client_id: str
    key: Any  # joserfc private key

    @property
    def jwk(self) -> dict[str, Any]:
        return self.key.as_dict(private=True)

    def assertion(self, **overrides: Any) -> str:
        return sign_assertion(self.jwk, self.client_id, TOKEN_URL, **overrides)

    def token_request(self, scope: str = "system/*.rs", assertion: str | None = None, **form: str) -> Any:
        data = {"grant_type": "client_credentials", "scope": scope, "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": assertion or self.assertion()}
        data.update(form)
        return self.client.post("/auth/token", data=data)

    def token(self, scope: str = "system/*.rs") -> str:
        r = self.token_request(scope)
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])


def register_backend(client: TestClient, scope: str = "system/*.cruds", alg: str = "ES384") -> Backend:
    key = generate_client_key(alg)
    authority = client.app.state.authority
    c, _ = authority.clients.register("test backend", scope, jwks={"keys": [key.as_dict(private=False)]})
    return Backend(client, c.client_id, key)


@pytest.fixture()
def backend(auth_client: TestClient) -> Backend:
    return register_backend(auth_client)


def issue(client: TestClient, scope: str, patient: str | None = None, client_id: str = "test-app",
          lifetime: int = 300) -> str:
    """A token signed by the gateway, as its token endpoint would issue after an app launch."""
    authority = client.app.state.authority
    ctx = {"patient": patient} if patient else {}
    return authority.tokens.issue_access(client_id, scope, lifetime, "family-" + client_id, "someone", ctx).token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def pkce() -> tuple[str, str]:
    """A PKCE code verifier and its S256 challenge (RFC 7636)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge
