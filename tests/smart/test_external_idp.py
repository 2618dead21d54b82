"""External identity provider mode: tokens from a configured issuer (respx stands in for its JWKS endpoint)
are accepted after signature, issuer, audience and expiry checks, and the same scope rules apply."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import respx
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import RSAKey

from gateway.auth.context import SYSTEM, acting_as
from gateway.store.sql.store import SqlStore

from .conftest import BASE, bearer, make_auth_client

ISSUER = "https://idp.example.org/realms/clinic"
JWKS = f"{ISSUER}/protocol/openid-connect/certs"


@pytest.fixture()
def idp_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": uuid.uuid4().hex, "alg": "RS256"})


@pytest.fixture()
def idp_client(sqlite_store: SqlStore, idp_key: RSAKey) -> Iterator[tuple[TestClient, respx.Route]]:
    with respx.mock(assert_all_called=False) as mock:
        route = mock.get(JWKS).mock(return_value=httpx.Response(200, json={"keys": [idp_key.as_dict(private=False)]}))
        with make_auth_client(sqlite_store, idp_issuer=ISSUER, idp_jwks_uri=JWKS) as c:
            with acting_as(SYSTEM):
                c.app.state.rest.update("Patient", "p1", {"resourceType": "Patient", "id": "p1"})
                c.app.state.rest.update("Patient", "p2", {"resourceType": "Patient", "id": "p2"})
            yield c, route


def idp_token(key: RSAKey, **claims: object) -> str:
    now = int(time.time())
    body: dict[str, object] = {"iss": ISSUER, "aud": BASE, "sub": "user-1", "azp": "portal", "iat": now,
                               "exp": now + 300, "scope": "patient/*.rs", "patient": "p1"}
    body.update(claims)
    return jwt.encode({"alg": "RS256", "kid": key.kid}, body, key)


def test_idp_tokens_accepted_and_confined(idp_client: tuple[TestClient, respx.Route], idp_key: RSAKey) -> None:
    c, route = idp_client
    t = bearer(idp_token(idp_key))
    r = c.get("/fhir/Patient", headers=t)
    assert r.status_code == 200 and [e["resource"]["id"] for e in r.json()["entry"]] == ["p1"]
    assert c.get("/fhir/Patient/p2", headers=t).status_code == 404
    assert c.get("/fhir/Observation", headers=bearer(idp_token(idp_key, scope="patient/Patient.rs"))).status_code == 403
    # scopes as a list claim (scp) work too
    assert c.get("/fhir/Patient/p1", headers=bearer(idp_token(idp_key, scope=None, scp=["patient/*.rs"]))).status_code == 200
    assert route.call_count == 1  # the JWKS is cached


@pytest.mark.parametrize("claims", [{"iss": "https://other-idp.example.org"}, {"aud": "https://elsewhere/fhir"},
                                    {"exp": int(time.time()) - 60}])
def test_idp_tokens_with_wrong_claims_refused(idp_client: tuple[TestClient, respx.Route], idp_key: RSAKey,
                                             claims: dict[str, object]) -> None:
    c, _ = idp_client
    r = c.get("/fhir/Patient", headers=bearer(idp_token(idp_key, **claims)))
    assert r.status_code == 401 and "invalid_token" in r.headers["www-authenticate"]


def test_idp_token_signed_by_another_key_refused(idp_client: tuple[TestClient, respx.Route], idp_key: RSAKey) -> None:
    c, route = idp_client
    rogue = RSAKey.generate_key(2048, parameters={"kid": idp_key.kid, "alg": "RS256"})
    assert c.get("/fhir/Patient", headers=bearer(idp_token(rogue))).status_code == 401
    # an unknown kid makes the gateway fetch the JWKS again (key rotation at the IdP), and still refuse
    before = route.call_count
    other = RSAKey.generate_key(2048, parameters={"kid": "new-kid", "alg": "RS256"})
    assert c.get("/fhir/Patient", headers=bearer(idp_token(other))).status_code == 401
    assert route.call_count == before + 1
