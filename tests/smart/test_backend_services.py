"""SMART Backend Services: client_credentials with private_key_jwt, and every attack on the assertion the
digest's security table lists, each refused with the OAuth error it names."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import httpx
import pytest
import respx
from fastapi.testclient import TestClient
from joserfc import jwt

from .conftest import ASSERTION_TYPE, TOKEN_URL, Backend, bearer, register_backend


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_client_credentials_token_and_read(auth_client: TestClient, alg: str) -> None:
    b = register_backend(auth_client, "system/*.rs", alg)
    r = b.token_request("system/Patient.rs system/Observation.rs")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer" and 0 < body["expires_in"] <= 300
    assert body["scope"] == "system/Patient.rs system/Observation.rs"
    assert "refresh_token" not in body
    assert r.headers["cache-control"] == "no-store" and r.headers["pragma"] == "no-cache"
    claims = jwt.decode(body["access_token"], auth_client.app.state.authority.keys.public).claims
    assert claims["aud"] == "http://localhost/fhir" and claims["client_id"] == b.client_id
    assert claims["exp"] - claims["iat"] <= 300
    ok = auth_client.get("/fhir/Patient", headers=bearer(body["access_token"]))
    assert ok.status_code == 200 and ok.json()["resourceType"] == "Bundle"
    assert auth_client.get("/fhir/Condition", headers=bearer(body["access_token"])).status_code == 403


def test_jwks_uri_is_fetched_and_cached(auth_client: TestClient) -> None:
    from gateway.auth.assertion_client import generate_client_key

    key = generate_client_key("RS384")
    url = "https://keys.example.org/backend/jwks.json"
    client, _ = auth_client.app.state.authority.clients.register("uri client", "system/*.rs", jwks_uri=url)
    b = Backend(auth_client, client.client_id, key)
    with respx.mock(assert_all_called=True) as mock:
        route = mock.get(url).mock(return_value=httpx.Response(
            200, json={"keys": [key.as_dict(private=False)]}, headers={"Cache-Control": "max-age=600"}))
        assert b.token_request().status_code == 200
        assert b.token_request().status_code == 200
        assert route.call_count == 1  # cached for its max-age
    # jku must be the registered URL
    header_jku = jwt.encode({"alg": "RS384", "kid": key.kid, "jku": "https://evil.example.org/jwks"},
                            _claims(b.client_id), key, algorithms=["RS384"])
    r = b.token_request(assertion=header_jku)
    assert r.status_code == 400 and r.json()["error"] == "invalid_client"


def test_unreachable_jwks_uri_is_invalid_client(auth_client: TestClient) -> None:
    from gateway.auth.assertion_client import generate_client_key

    key = generate_client_key("ES384")
    url = "https://down.example.org/jwks.json"
    client, _ = auth_client.app.state.authority.clients.register("down", "system/*.rs", jwks_uri=url)
    with respx.mock() as mock:
        mock.get(url).mock(return_value=httpx.Response(503))
        r = Backend(auth_client, client.client_id, key).token_request()
    assert r.status_code == 400 and r.json()["error"] == "invalid_client"


def _claims(client_id: str, **kw: object) -> dict[str, object]:
    now = int(time.time())
    c: dict[str, object] = {"iss": client_id, "sub": client_id, "aud": TOKEN_URL, "exp": now + 240,
                            "jti": uuid.uuid4().hex}
    c.update(kw)
    return c


def _b64(d: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()


def _refused(b: Backend, assertion: str, error: str = "invalid_client", caplog: pytest.LogCaptureFixture | None
             = None) -> dict[str, object]:
    r = b.token_request(assertion=assertion)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"] == error, body
    if caplog is not None:  # refused and logged, without the assertion itself
        assert any("token request refused" in rec.getMessage() for rec in caplog.records)
        assert all(assertion not in rec.getMessage() and assertion not in str(rec.__dict__)
                   for rec in caplog.records)
    return body


def test_alg_none_refused(backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    unsigned = f"{_b64({'alg': 'none', 'kid': backend.key.kid})}.{_b64(_claims(backend.client_id))}."
    _refused(backend, unsigned, caplog=caplog)


def test_hs256_with_public_key_refused(auth_client: TestClient) -> None:
    b = register_backend(auth_client, "system/*.rs", "RS384")
    public_pem = b.key.as_pem(private=False)
    signing_input = f"{_b64({'alg': 'HS256', 'kid': b.key.kid, 'typ': 'JWT'})}.{_b64(_claims(b.client_id))}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()  # the classic confusion attack
    forged = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    _refused(b, forged)


def test_rs256_not_in_the_allowed_list(auth_client: TestClient) -> None:
    b = register_backend(auth_client, "system/*.rs", "RS384")
    from joserfc.jwk import RSAKey

    same_key = RSAKey.import_key({k: v for k, v in b.jwk.items() if k != "alg"})
    weaker = jwt.encode({"alg": "RS256", "kid": b.key.kid}, _claims(b.client_id), same_key, algorithms=["RS256"])
    _refused(b, weaker)


def test_expired_assertion_refused(backend: Backend) -> None:
    _refused(backend, backend.assertion(exp=int(time.time()) - 120))


def test_future_dated_assertion_refused(backend: Backend) -> None:
    _refused(backend, backend.assertion(nbf=int(time.time()) + 600, exp=int(time.time()) + 290))


def test_assertion_living_more_than_five_minutes_refused(backend: Backend) -> None:
    _refused(backend, backend.assertion(exp=int(time.time()) + 3600))


def test_replayed_jti_refused(backend: Backend) -> None:
    a = backend.assertion()
    assert backend.token_request(assertion=a).status_code == 200
    _refused(backend, a)
    # the same jti in a freshly signed assertion is a replay too
    jti = uuid.uuid4().hex
    assert backend.token_request(assertion=backend.assertion(jti=jti)).status_code == 200
    _refused(backend, backend.assertion(jti=jti))


def test_missing_jti_refused(backend: Backend) -> None:
    claims = _claims(backend.client_id)
    del claims["jti"]
    _refused(backend, jwt.encode({"alg": "ES384", "kid": backend.key.kid}, claims, backend.key,
                                 algorithms=["ES384"]))


def test_wrong_audience_refused(backend: Backend) -> None:
    _refused(backend, backend.assertion(aud="http://localhost/fhir"))


def test_tampered_signature_refused(backend: Backend) -> None:
    a = backend.assertion()
    head, payload, sig = a.split(".")
    other = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    other["sub"] = other["sub"]  # same claims, altered signature
    flipped = sig[:-2] + ("AA" if sig[-2:] != "AA" else "BB")
    _refused(backend, f"{head}.{payload}.{flipped}")
    forged_payload = _b64({**other, "exp": other["exp"] + 10})
    _refused(backend, f"{head}.{forged_payload}.{sig}")


def test_key_of_another_client_refused(auth_client: TestClient) -> None:
    a = register_backend(auth_client, "system/*.rs")
    b = register_backend(auth_client, "system/*.rs")
    # signed with b's key but claiming to be a
    stolen = jwt.encode({"alg": "ES384", "kid": b.key.kid}, _claims(a.client_id), b.key, algorithms=["ES384"])
    _refused(a, stolen)


def test_unknown_client_refused(backend: Backend) -> None:
    _refused(backend, backend.assertion(iss="nobody", sub="nobody"))


def test_iss_differs_from_sub_refused(auth_client: TestClient) -> None:
    a = register_backend(auth_client, "system/*.rs")
    b = register_backend(auth_client, "system/*.rs")
    _refused(a, a.assertion(iss=b.client_id))


def test_form_client_id_must_match(backend: Backend) -> None:
    r = backend.token_request(client_id="someone-else")
    assert r.status_code == 400 and r.json()["error"] == "invalid_client"


def test_malformed_assertion_refused(backend: Backend) -> None:
    for junk in ("not-a-jwt", "a.b.c", "....", _b64({"alg": "ES384"}) + ".e30.sig"):
        _refused(backend, junk)


def test_over_broad_scope_refused(auth_client: TestClient) -> None:
    b = register_backend(auth_client, "system/Patient.rs system/Observation.rs")
    for scope in ("system/*.rs", "system/Patient.cruds", "system/Condition.rs", "user/Patient.rs"):
        r = b.token_request(scope)
        assert r.status_code == 400 and r.json()["error"] == "invalid_scope", (scope, r.text)
    assert b.token_request("system/Patient.r").status_code == 200


def test_missing_or_malformed_scope_refused(backend: Backend) -> None:
    r = backend.token_request("")
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    r = backend.token_request("system/Patient.sr")
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"


def test_grant_type_checks(auth_client: TestClient, backend: Backend) -> None:
    r = auth_client.post("/auth/token", data={"grant_type": "password", "username": "a", "password": "b"})
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    # a backend client cannot use the authorization code grant
    r = auth_client.post("/auth/token", data={"grant_type": "authorization_code", "code": "x",
                                              "redirect_uri": "https://app.example.org/cb",
                                              "client_assertion_type": ASSERTION_TYPE,
                                              "client_assertion": backend.assertion()})
    assert r.status_code == 400 and r.json()["error"] == "unauthorized_client"


def test_public_app_cannot_use_client_credentials(auth_client: TestClient) -> None:
    app, _ = auth_client.app.state.authority.clients.register("app", "patient/*.rs",
                                                              redirect_uris=["https://app.example.org/cb"])
    r = auth_client.post("/auth/token", data={"grant_type": "client_credentials", "client_id": app.client_id,
                                              "scope": "patient/*.rs"})
    assert r.status_code in (400, 401) and r.json()["error"] == "invalid_client"
