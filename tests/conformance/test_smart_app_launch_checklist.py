"""The SMART App Launch STU2.2 server checklist of ``../shared/spec/conformance-checklists.md``, one test per
line, against a real ``fhir-gateway serve`` over https (authorization on, SQLite). Each test's docstring
quotes its line; ``CHECKLIST`` maps line to test and ``test_smart_checklist_every_line_has_one_test`` keeps
the two in step. The Backend Services tests sign real assertions (joserfc, as the gateway's own client);
the launches go through the real authorize, sign-in and consent pages."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from gateway.auth.assertion_client import generate_client_key, sign_assertion
from tests.conformance.checklist import assert_tls12_plus_only, check_mapping, smart_line
from tests.conformance.conftest import (
    APP_ORIGIN,
    APP_SCOPE,
    ASSERTION_TYPE,
    CLINICIAN,
    PATIENTS,
    Gateway,
    Launch,
    authorize,
    browser_authorize,
    discover,
    exchange,
)

pytestmark = pytest.mark.live

CHECKLIST = {
    "`GET /.well-known/smart-configuration` returns 200 JSON": "test_smart_discovery_01_returns_200_json",
    "It has `authorization_endpoint`, `token_endpoint`, `capabilities`":
        "test_smart_discovery_02_required_fields_and_pkce_methods",
    "If `capabilities` includes `sso-openid-connect`": "test_smart_discovery_03_issuer_and_jwks_uri_with_openid",
    "CORS: `.well-known` and `/metadata` answer requests from any origin": "test_smart_discovery_04_cors",
    "The authorize endpoint and token endpoint are TLS": "test_smart_standalone_01_authorize_and_token_are_tls12",
    "The authorize request may be GET or POST": "test_smart_standalone_02_authorize_get_or_post_with_pkce",
    "The redirect returns `code` and echoes `state`": "test_smart_standalone_03_redirect_code_state_and_errors",
    "The token exchange with `code_verifier` succeeds": "test_smart_standalone_04_code_exchange_for_every_client_type",
    "Token response: `access_token`, `token_type` = Bearer": "test_smart_standalone_05_token_response_fields",
    "Token responses carry `Cache-Control: no-store`": "test_smart_standalone_06_token_responses_no_store",
    "The launch URL receives `iss` and `launch`": "test_smart_ehr_01_launch_iss_and_launch_scope",
    "`id_token` decodes; the header `alg` is RS256": "test_smart_openid_01_id_token_rs256_with_kid",
    "`/.well-known/openid-configuration` is retrievable": "test_smart_openid_02_configuration_and_jwks",
    "Claims `iss` (matches issuer), `sub`": "test_smart_openid_03_claims_and_signature",
    "The `fhirUser` resource can be read": "test_smart_openid_04_fhir_user_is_readable",
    "A refresh with and without `scope` returns 200": "test_smart_refresh_01_with_and_without_scope",
    "The token endpoint is TLS.": "test_smart_backend_01_token_endpoint_is_tls",
    "`grant_type` ≠ `client_credentials` → 400": "test_smart_backend_02_wrong_grant_type_is_400",
    "Invalid `client_assertion_type` → 400 or 401": "test_smart_backend_03_invalid_assertion_type",
    "Invalid JWT → 400 or 401": "test_smart_backend_04_invalid_jwt",
    "A valid `private_key_jwt` assertion": "test_smart_backend_05_valid_assertion_rs384_and_es384",
    "The body has `access_token`, `token_type` = bearer": "test_smart_backend_06_token_body_fields",
    "An active token returns `active: true`": "test_smart_introspection_01_active_token",
    "An invalid token returns `active: false`": "test_smart_introspection_02_invalid_token_inactive",
}


def test_smart_checklist_every_line_has_one_test() -> None:
    """Every SMART App Launch line of the checklist maps to exactly one test of this module."""
    check_mapping(CHECKLIST, smart_line, globals())


def _b64(part: str) -> dict[str, Any]:
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


def _launch_tokens(gateway: Gateway, kind: str = "public", **extra: str) -> tuple[Launch, dict[str, Any],
                                                                                    httpx.Response]:
    launch = authorize(gateway, gateway.clients[kind][0], **extra)
    r = exchange(gateway, kind, launch)
    assert r.status_code == 200, r.text
    return launch, r.json(), r


def _backend_request(gateway: Gateway, **form: str) -> httpx.Response:
    data = {"grant_type": "client_credentials", "scope": "system/*.rs", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": sign_assertion(gateway.backend.jwk, gateway.backend.client_id, gateway.token_url)}
    data.update(form)
    with gateway.http() as c:
        return c.post(gateway.token_url, data=data)


# -- Discovery -----------------------------------------------------------------------------------------------


def test_smart_discovery_01_returns_200_json(gateway: Gateway) -> None:
    """`GET /.well-known/smart-configuration` returns 200 JSON."""
    with gateway.http() as c:
        r = c.get(f"{gateway.base}/.well-known/smart-configuration", headers={"Accept": "application/json"})
    assert r.status_code == 200
    assert r.headers["content-type"].split(";")[0] == "application/json"
    assert isinstance(r.json(), dict)


def test_smart_discovery_02_required_fields_and_pkce_methods(gateway: Gateway) -> None:
    """It has `authorization_endpoint`, `token_endpoint`, `capabilities` (array of strings),
    `grant_types_supported` (must include `authorization_code`) and `code_challenge_methods_supported` (must
    include `S256` and must **not** include `plain`)."""
    conf = discover(gateway)
    for key in ("authorization_endpoint", "token_endpoint"):
        assert isinstance(conf[key], str) and conf[key].startswith("https://127.0.0.1:"), conf[key]
    assert isinstance(conf["capabilities"], list) and conf["capabilities"]
    assert all(isinstance(c, str) for c in conf["capabilities"])
    assert "authorization_code" in conf["grant_types_supported"]
    assert "S256" in conf["code_challenge_methods_supported"]
    assert "plain" not in conf["code_challenge_methods_supported"]


def test_smart_discovery_03_issuer_and_jwks_uri_with_openid(gateway: Gateway) -> None:
    """If `capabilities` includes `sso-openid-connect`, then `issuer` and `jwks_uri` are present; otherwise
    `issuer` is absent."""
    conf = discover(gateway)
    if "sso-openid-connect" in conf["capabilities"]:
        assert conf["issuer"] == gateway.base
        with gateway.http() as c:
            keys = c.get(conf["jwks_uri"])
        assert keys.status_code == 200 and keys.json()["keys"]
    else:
        assert "issuer" not in conf


def test_smart_discovery_04_cors(gateway: Gateway) -> None:
    """CORS: `.well-known` and `/metadata` answer requests from any origin; the token endpoint and FHIR API
    answer the registered origin (STU2.2 requirement 16/17; tests 1.1.03/04, 1.2.08, …). Stricter: an
    origin no client registered gets no CORS header from the token endpoint or the FHIR API."""
    stranger = "https://stranger.example.net"
    token = gateway.backend_token("system/*.rs")
    with gateway.http() as c:
        for url in (f"{gateway.base}/.well-known/smart-configuration", f"{gateway.base}/metadata"):
            r = c.get(url, headers={"Origin": stranger})
            assert r.status_code == 200 and r.headers["access-control-allow-origin"] in ("*", stranger), url
        pre = c.options(gateway.token_url, headers={"Origin": APP_ORIGIN, "Access-Control-Request-Method": "POST"})
        assert pre.status_code in (200, 204) and pre.headers["access-control-allow-origin"] == APP_ORIGIN
        assert "POST" in pre.headers["access-control-allow-methods"]
        tok = c.post(gateway.token_url, data={"grant_type": "refresh_token", "refresh_token": "nope"},
                     headers={"Origin": APP_ORIGIN})
        assert tok.headers["access-control-allow-origin"] == APP_ORIGIN
        api = c.get(f"{gateway.base}/Patient/{PATIENTS[0]}",
                    headers={"Origin": APP_ORIGIN, "Authorization": f"Bearer {token}"})
        assert api.status_code == 200 and api.headers["access-control-allow-origin"] == APP_ORIGIN
        refused = c.post(gateway.token_url, data={"grant_type": "refresh_token", "refresh_token": "x"},
                         headers={"Origin": stranger})
        assert "access-control-allow-origin" not in refused.headers
        other = c.get(f"{gateway.base}/Patient/{PATIENTS[0]}",
                      headers={"Origin": stranger, "Authorization": f"Bearer {token}"})
        assert "access-control-allow-origin" not in other.headers


# -- Standalone launch ---------------------------------------------------------------------------------------


def test_smart_standalone_01_authorize_and_token_are_tls12(gateway: Gateway) -> None:
    """The authorize endpoint and token endpoint are TLS ≥1.2. Both are https URLs on the gateway's port;
    a TLS 1.2 (and 1.3) handshake succeeds there and a client offering only TLS 1.0/1.1 is refused."""
    conf = discover(gateway)
    for url in (conf["authorization_endpoint"], conf["token_endpoint"]):
        assert url.startswith(f"https://127.0.0.1:{gateway.port}/"), url
    assert_tls12_plus_only(gateway.port, str(gateway.cert))


@pytest.mark.parametrize("method", ["GET", "POST", "browser"])
def test_smart_standalone_02_authorize_get_or_post_with_pkce(gateway: Gateway, method: str) -> None:
    """The authorize request may be GET or POST and includes `response_type=code`, `client_id`,
    `redirect_uri`, `scope`, `state`, `aud` (the FHIR base URL) and PKCE `code_challenge` + `S256`.
    GET and POST driven over HTTP, and the GET typed into a real headless chromium (which trusts only the
    server's certificate); the code then buys a token. Stricter: the same request without PKCE, with
    `plain`, or with another `aud` is refused."""
    if method == "browser":
        launch = browser_authorize(gateway, gateway.clients["public"][0])
        method = "GET"
    else:
        launch = authorize(gateway, gateway.clients["public"][0], method=method)
    assert launch.redirect["code"] and launch.redirect["state"] == launch.params["state"]
    token = exchange(gateway, "public", launch)
    assert token.status_code == 200 and token.json()["patient"] == PATIENTS[0], token.text
    cid = gateway.clients["public"][0]
    base = {**launch.params, "state": "refuse-me"}
    bad = [{k: v for k, v in base.items() if not k.startswith("code_challenge")},
           {**base, "code_challenge_method": "plain"}, {**base, "aud": "https://other.example.org/fhir"}]
    with gateway.http() as c:
        for params in bad:
            params["client_id"] = cid
            r = (c.get(discover(gateway)["authorization_endpoint"], params=params, follow_redirects=False)
                 if method == "GET" else
                 c.post(discover(gateway)["authorization_endpoint"], data=params, follow_redirects=False))
            assert r.status_code == 302 and "error=invalid_request" in r.headers["location"], r.text


def test_smart_standalone_03_redirect_code_state_and_errors(gateway: Gateway) -> None:
    """The redirect returns `code` and echoes `state`; errors come back as `error` / `error_description`
    (with the `state` echoed too)."""
    launch = authorize(gateway, gateway.clients["public"][0])
    assert launch.redirect["code"] and launch.redirect["state"] == launch.params["state"]
    params = {**launch.params, "state": "err-state", "response_type": "token"}
    with gateway.http() as c:
        r = c.get(discover(gateway)["authorization_endpoint"], params=params, follow_redirects=False)
    assert r.status_code == 302, r.text
    back = {k: v[0] for k, v in parse_qs(urlsplit(r.headers["location"]).query).items()}
    assert back["error"] == "unsupported_response_type" and back["state"] == "err-state"
    assert back["error_description"]
    assert "code" not in back


@pytest.mark.parametrize("kind", ["public", "symmetric", "asymmetric-RS384", "asymmetric-ES384"])
def test_smart_standalone_04_code_exchange_for_every_client_type(gateway: Gateway, kind: str) -> None:
    """The token exchange with `code_verifier` succeeds (200) for public, confidential-symmetric (Basic) and
    confidential-asymmetric (`private_key_jwt`, RS384/ES384) clients. Stricter: a wrong verifier is refused
    (400 invalid_grant), and the code is single-use."""
    launch = authorize(gateway, gateway.clients[kind][0])
    wrong = Launch(launch.params, launch.verifier[:-4] + "AAAA", launch.redirect)
    refused = exchange(gateway, kind, wrong)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant", refused.text
    launch = authorize(gateway, gateway.clients[kind][0])
    r = exchange(gateway, kind, launch)
    assert r.status_code == 200, r.text
    assert r.json()["access_token"] and r.json()["patient"] == PATIENTS[0]
    again = exchange(gateway, kind, launch)
    assert again.status_code == 400


def test_smart_standalone_05_token_response_fields(gateway: Gateway) -> None:
    """Token response: `access_token`, `token_type` = Bearer (case-insensitive), `scope`, `expires_in`
    (numeric), optional `refresh_token`, `id_token`, `patient` and `encounter`. If `fhirContext` is present it
    is an array of objects, each with at least one of `reference`, `canonical` or `identifier`; `type` is
    recommended when using `canonical` or `identifier` (new in 2.2). The fhirContext half runs through an
    EHR launch whose context carries a reference and a canonical."""
    _, tok, _ = _launch_tokens(gateway)
    assert isinstance(tok["access_token"], str) and tok["access_token"]
    assert tok["token_type"].lower() == "bearer"
    assert set(tok["scope"].split()) <= set(APP_SCOPE.split()) and "patient/*.rs" in tok["scope"].split()
    assert isinstance(tok["expires_in"], int) and 0 < tok["expires_in"] <= 3600
    assert isinstance(tok["refresh_token"], str) and isinstance(tok["id_token"], str)
    assert tok["patient"] == PATIENTS[0]
    context = [{"reference": f"Encounter/{PATIENTS[1]}-enc"},
               {"canonical": "http://example.org/Questionnaire/intake|1", "type": "Questionnaire"}]
    launch_id = _admin_launch(gateway, {"patient": PATIENTS[1], "encounter": f"{PATIENTS[1]}-enc",
                                        "fhirContext": context})
    launch = authorize(gateway, gateway.clients["public"][0], scope="launch openid fhirUser patient/*.rs",
                       patient=None, launch=launch_id)
    ehr = exchange(gateway, "public", launch)
    assert ehr.status_code == 200, ehr.text
    body = ehr.json()
    assert body["encounter"] == f"{PATIENTS[1]}-enc" and body["patient"] == PATIENTS[1]
    assert isinstance(body["fhirContext"], list) and body["fhirContext"]
    for item in body["fhirContext"]:
        assert isinstance(item, dict) and {"reference", "canonical", "identifier"} & item.keys()
        if {"canonical", "identifier"} & item.keys():
            assert item.get("type")


def test_smart_standalone_06_token_responses_no_store(gateway: Gateway) -> None:
    """Token responses carry `Cache-Control: no-store` and `Pragma: no-cache`. Stricter: error responses of
    the token endpoint and Backend Services tokens carry them too."""
    _, _, ok = _launch_tokens(gateway, "symmetric")
    backend = _backend_request(gateway)
    with gateway.http() as c:
        error = c.post(gateway.token_url, data={"grant_type": "authorization_code", "code": "made-up",
                                                "client_id": gateway.clients["public"][0]})
    assert error.status_code == 400
    for r in (ok, backend, error):
        assert "no-store" in r.headers["cache-control"], r.headers
        assert r.headers["pragma"] == "no-cache"


# -- EHR launch ----------------------------------------------------------------------------------------------


def _admin_launch(gateway: Gateway, context: dict[str, Any], client: str = "public") -> str:
    """An EHR launch id made through the admin API (what the EHR does before opening the launch URL)."""
    with gateway.http() as c:
        r = c.post(f"{gateway.root}/auth/admin/launch", json={"client_id": gateway.clients[client][0], **context},
                   headers={"Authorization": f"Bearer {gateway.backend_token()}"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["iss"] == gateway.base
    return str(body["launch"])


def test_smart_ehr_01_launch_iss_and_launch_scope(gateway: Gateway) -> None:
    """The launch URL receives `iss` and `launch`; the authorize request includes `launch` and the `launch`
    scope; the rest is as for standalone launch. The EHR side's launch query carries both; the launch is
    single-use."""
    with gateway.http() as c:
        r = c.post(f"{gateway.root}/auth/admin/launch",
                   json={"client_id": gateway.clients["symmetric"][0], "patient": PATIENTS[2],
                         "encounter": f"{PATIENTS[2]}-enc"},
                   headers={"Authorization": f"Bearer {gateway.backend_token()}"})
    assert r.status_code == 200, r.text
    query = {k: v[0] for k, v in parse_qs(r.json()["query"]).items()}
    assert query["iss"] == gateway.base and query["launch"]
    launch = authorize(gateway, gateway.clients["symmetric"][0], scope="launch openid fhirUser patient/*.rs",
                       patient=None, launch=query["launch"])
    tok = exchange(gateway, "symmetric", launch)
    assert tok.status_code == 200, tok.text
    body = tok.json()
    assert body["patient"] == PATIENTS[2] and body["encounter"] == f"{PATIENTS[2]}-enc"
    assert "launch" in body["scope"].split()
    h = {"Authorization": f"Bearer {body['access_token']}"}
    with gateway.http() as c:
        assert c.get(f"{gateway.base}/Patient/{PATIENTS[2]}", headers=h).status_code == 200
        assert c.get(f"{gateway.base}/Patient/{PATIENTS[0]}", headers=h).status_code == 404
        reuse = c.get(discover(gateway)["authorization_endpoint"], follow_redirects=False,
                      params={**launch.params, "launch": query["launch"]})
    assert reuse.status_code == 302 and "error=invalid_request" in reuse.headers["location"]


# -- OpenID Connect ------------------------------------------------------------------------------------------


def _id_token(gateway: Gateway, kind: str = "public") -> tuple[str, dict[str, Any]]:
    _, tok, _ = _launch_tokens(gateway, kind)
    return tok["id_token"], tok


def test_smart_openid_01_id_token_rs256_with_kid(gateway: Gateway) -> None:
    """`id_token` decodes; the header `alg` is RS256; `kid` is required if the JWKS has multiple keys.
    Stricter: `kid` is always present and names a key of the JWKS."""
    idt, _ = _id_token(gateway)
    header = _b64(idt.split(".")[0])
    assert header["alg"] == "RS256" and header["kid"]
    with gateway.http() as c:
        keys = c.get(discover(gateway)["jwks_uri"]).json()["keys"]
    assert header["kid"] in {k["kid"] for k in keys}
    assert isinstance(_b64(idt.split(".")[1]), dict)


def test_smart_openid_02_configuration_and_jwks(gateway: Gateway) -> None:
    """`/.well-known/openid-configuration` is retrievable, has the required fields, and its `jwks_uri` is
    retrievable (OpenID Connect Discovery 1.0 §3 required fields)."""
    with gateway.http() as c:
        r = c.get(f"{gateway.base}/.well-known/openid-configuration")
        assert r.status_code == 200
        conf = r.json()
        for key in ("issuer", "authorization_endpoint", "jwks_uri", "response_types_supported",
                    "subject_types_supported", "id_token_signing_alg_values_supported", "token_endpoint"):
            assert conf[key], key
        assert conf["issuer"] == gateway.base and "RS256" in conf["id_token_signing_alg_values_supported"]
        jwks = c.get(conf["jwks_uri"])
    assert jwks.status_code == 200 and jwks.json()["keys"]
    assert all("d" not in k for k in jwks.json()["keys"])  # public halves only


def test_smart_openid_03_claims_and_signature(gateway: Gateway) -> None:
    """Claims `iss` (matches issuer), `sub` (<256 characters), `aud` (= client_id), `exp` (future) and `iat`
    are present, and the signature verifies (against the published JWKS)."""
    idt, _ = _id_token(gateway, "symmetric")
    with gateway.http() as c:
        conf = c.get(f"{gateway.base}/.well-known/openid-configuration").json()
        keys = KeySet.import_key_set(c.get(conf["jwks_uri"]).json())
    claims = jwt.decode(idt, keys, algorithms=["RS256"]).claims
    now = time.time()
    assert claims["iss"] == conf["issuer"]
    assert isinstance(claims["sub"], str) and 0 < len(claims["sub"]) < 256
    assert claims["aud"] == gateway.clients["symmetric"][0]
    assert claims["exp"] > now and claims["iat"] <= now + 5
    tampered = idt[:-6] + ("AAAAAA" if not idt.endswith("AAAAAA") else "BBBBBB")
    with pytest.raises(Exception):  # noqa: B017 - any joserfc verification error
        jwt.decode(tampered, keys, algorithms=["RS256"])


def test_smart_openid_04_fhir_user_is_readable(gateway: Gateway) -> None:
    """The `fhirUser` resource can be read with the access token."""
    idt, tok = _id_token(gateway)
    fhir_user = _b64(idt.split(".")[1])["fhirUser"]
    assert fhir_user == f"{gateway.base}/{CLINICIAN}"
    with gateway.http() as c:
        r = c.get(fhir_user, headers={"Authorization": f"Bearer {tok['access_token']}"})
    assert r.status_code == 200, r.text
    assert f"{r.json()['resourceType']}/{r.json()['id']}" == CLINICIAN


# -- Token refresh -------------------------------------------------------------------------------------------


def test_smart_refresh_01_with_and_without_scope(gateway: Gateway) -> None:
    """A refresh with and without `scope` returns 200 with `access_token`, `token_type`, `expires_in` and
    `scope`, plus the no-store headers. Uses the confidential-symmetric client (Basic): a public client's
    refresh without `client_id` is another branch's fix. With `scope`, a narrower set is granted as asked."""
    client_id, secret = gateway.clients["symmetric"]
    _, tok, _ = _launch_tokens(gateway, "symmetric")
    narrower = "patient/*.rs openid fhirUser offline_access"
    with gateway.http() as c:
        plain = c.post(gateway.token_url, data={"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]},
                       auth=(client_id, secret))
        assert plain.status_code == 200, plain.text
        scoped = c.post(gateway.token_url, auth=(client_id, secret),
                        data={"grant_type": "refresh_token", "refresh_token": plain.json()["refresh_token"],
                              "scope": narrower})
        assert scoped.status_code == 200, scoped.text
    for r in (plain, scoped):
        body = r.json()
        assert body["access_token"] and body["token_type"].lower() == "bearer"
        assert isinstance(body["expires_in"], int) and body["expires_in"] > 0 and body["scope"]
        assert "no-store" in r.headers["cache-control"] and r.headers["pragma"] == "no-cache"
    assert set(plain.json()["scope"].split()) == set(tok["scope"].split())
    assert set(scoped.json()["scope"].split()) == set(narrower.split())


# -- Backend Services ----------------------------------------------------------------------------------------


def test_smart_backend_01_token_endpoint_is_tls(gateway: Gateway) -> None:
    """The token endpoint is TLS. Its discovered URL is https; TLS 1.2+ only; plain http on the same port
    gets no token response."""
    assert discover(gateway)["token_endpoint"] == gateway.token_url
    assert gateway.token_url.startswith("https://")
    assert_tls12_plus_only(gateway.port, str(gateway.cert))
    plain = gateway.token_url.replace("https://", "http://")
    try:
        r = httpx.post(plain, data={"grant_type": "client_credentials"}, timeout=10)
    except httpx.TransportError:
        return
    assert r.status_code >= 400 and "access_token" not in r.text


@pytest.mark.parametrize("grant", ["password", "authorization_code", "urn:ietf:params:oauth:grant-type:jwt-bearer",
                                   ""])
def test_smart_backend_02_wrong_grant_type_is_400(gateway: Gateway, grant: str) -> None:
    """`grant_type` ≠ `client_credentials` → 400 (with an otherwise valid assertion)."""
    r = _backend_request(gateway, grant_type=grant)
    assert r.status_code == 400, r.text
    assert r.json()["error"] in ("unsupported_grant_type", "invalid_request", "invalid_grant", "unauthorized_client")


@pytest.mark.parametrize("assertion_type", ["urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
                                            "not-a-type", ""])
def test_smart_backend_03_invalid_assertion_type(gateway: Gateway, assertion_type: str) -> None:
    """Invalid `client_assertion_type` → 400 or 401."""
    r = _backend_request(gateway, client_assertion_type=assertion_type)
    assert r.status_code in (400, 401), r.text
    assert "access_token" not in r.json()


def _assertion(gateway: Gateway, **claims: Any) -> str:
    return sign_assertion(gateway.backend.jwk, gateway.backend.client_id, gateway.token_url, **claims)


def test_smart_backend_04_invalid_jwt(gateway: Gateway) -> None:
    """Invalid JWT → 400 or 401. Stricter than the kit (which only sends a bad assertion type): a garbage
    string, a bad signature (another key under the registered kid), a wrong `aud`, `exp` more than 5 minutes
    ahead, `iss` ≠ `sub`, and a replayed `jti` (the first use succeeds, the second is refused)."""
    other = generate_client_key("ES384").as_dict(private=True)
    other["kid"] = gateway.backend.jwk["kid"]
    now = int(time.time())
    bad = {
        "garbage": "not.a.jwt",
        "bad signature": sign_assertion(other, gateway.backend.client_id, gateway.token_url),
        "wrong aud": _assertion(gateway, aud=f"{gateway.root}/elsewhere/token"),
        "exp too far ahead": _assertion(gateway, exp=now + 600),
        "iss differs from sub": _assertion(gateway, iss="someone-else"),
        "expired": _assertion(gateway, exp=now - 60),
    }
    for what, assertion in bad.items():
        r = _backend_request(gateway, client_assertion=assertion)
        assert r.status_code in (400, 401), (what, r.text)
        assert "access_token" not in r.json(), what
    jti = uuid.uuid4().hex
    once = _assertion(gateway, jti=jti)
    first = _backend_request(gateway, client_assertion=once)
    assert first.status_code == 200, first.text
    replay = _backend_request(gateway, client_assertion=once)
    assert replay.status_code in (400, 401), replay.text
    fresh_same_jti = _backend_request(gateway, client_assertion=_assertion(gateway, jti=jti))
    assert fresh_same_jti.status_code in (400, 401), fresh_same_jti.text


@pytest.mark.parametrize("kind", ["backend-ES384", "backend-RS384"])
def test_smart_backend_05_valid_assertion_rs384_and_es384(gateway: Gateway, kind: str) -> None:
    """A valid `private_key_jwt` assertion (`iss` = `sub` = client_id, `aud` = token URL, `exp` ≤5 min,
    `jti`; RS384 or ES384; JWKS by URL **or** inline) → 200/201. Both algorithms, keys registered inline; the
    token then reads data."""
    if kind == "backend-ES384":
        client_id, jwk, scope = gateway.backend.client_id, gateway.backend.jwk, "system/*.rs"
    else:
        client_id, jwk = gateway.clients[kind]
        scope = "system/*.rs"
    assertion = sign_assertion(jwk, client_id, gateway.token_url, lifetime=300)
    claims = _b64(assertion.split(".")[1])
    assert claims["iss"] == claims["sub"] == client_id and claims["aud"] == gateway.token_url and claims["jti"]
    assert _b64(assertion.split(".")[0])["alg"] == kind.split("-")[1]
    with gateway.http() as c:
        r = c.post(gateway.token_url, data={"grant_type": "client_credentials", "scope": scope,
                                            "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion})
        assert r.status_code in (200, 201), r.text
        read = c.get(f"{gateway.base}/Patient/{PATIENTS[0]}",
                     headers={"Authorization": f"Bearer {r.json()['access_token']}"})
    assert read.status_code == 200


def test_smart_backend_06_token_body_fields(gateway: Gateway) -> None:
    """The body has `access_token`, `token_type` = bearer, numeric `expires_in` and `scope`."""
    r = _backend_request(gateway)
    assert r.status_code == 200, r.text
    body = r.json()
    assert isinstance(body["access_token"], str) and body["access_token"]
    assert body["token_type"].lower() == "bearer"
    assert isinstance(body["expires_in"], int) and 0 < body["expires_in"] <= 300
    assert set(body["scope"].split()) == {"system/*.rs"}


# -- Token introspection -------------------------------------------------------------------------------------


def _introspect(gateway: Gateway, token: str) -> httpx.Response:
    with gateway.http() as c:
        return c.post(f"{gateway.root}/auth/introspect", data={"token": token},
                      headers={"Authorization": f"Bearer {gateway.backend_token('system/*.rs')}"})


def test_smart_introspection_01_active_token(gateway: Gateway) -> None:
    """An active token returns `active: true` with matching `client_id`, `scope` (same set) and `exp`; `iss`
    and `sub` if an id_token was issued; `patient` / `encounter` context if granted."""
    launch_id = _admin_launch(gateway, {"patient": PATIENTS[1], "encounter": f"{PATIENTS[1]}-enc"})
    launch = authorize(gateway, gateway.clients["public"][0], scope="launch openid fhirUser patient/*.rs",
                       patient=None, launch=launch_id)
    r = exchange(gateway, "public", launch)
    assert r.status_code == 200, r.text
    tok = r.json()
    idt = _b64(tok["id_token"].split(".")[1])
    info = _introspect(gateway, tok["access_token"])
    assert info.status_code == 200, info.text
    body = info.json()
    assert body["active"] is True
    assert body["client_id"] == gateway.clients["public"][0]
    assert set(body["scope"].split()) == set(tok["scope"].split())
    assert isinstance(body["exp"], int) and abs(body["exp"] - (time.time() + tok["expires_in"])) < 120
    assert body["iss"] == idt["iss"] and body["sub"] == idt["sub"]
    assert body["patient"] == PATIENTS[1] and body["encounter"] == f"{PATIENTS[1]}-enc"


def test_smart_introspection_02_invalid_token_inactive(gateway: Gateway) -> None:
    """An invalid token returns `active: false` (a made-up string, a revoked token, a token of another
    issuer's shape); the response says nothing else."""
    _, tok, _ = _launch_tokens(gateway, "symmetric")
    client_id, secret = gateway.clients["symmetric"]
    with gateway.http() as c:
        assert c.post(f"{gateway.root}/auth/revoke", data={"token": tok["access_token"]},
                      auth=(client_id, secret)).status_code == 200
    fake = ".".join(base64.urlsafe_b64encode(json.dumps(p).encode()).rstrip(b"=").decode()
                    for p in ({"alg": "RS256"}, {"sub": "x"})) + ".c2ln"
    for value in ("made-up-token", tok["access_token"], fake):
        r = _introspect(gateway, value)
        assert r.status_code == 200 and r.json() == {"active": False}, (value, r.text)
