"""The client side of Backend Services, for the `fhir-gateway token` command, the demo and tests: sign a
client assertion with a private JWK and exchange it for an access token."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey, import_key


def generate_client_key(alg: str = "ES384") -> Any:
    kid = uuid.uuid4().hex
    if alg == "ES384":
        return ECKey.generate_key("P-384", parameters={"kid": kid, "alg": alg})
    return RSAKey.generate_key(2048, parameters={"kid": kid, "alg": alg})


def sign_assertion(private_jwk: dict[str, Any], client_id: str, token_url: str, lifetime: int = 240,
                   **overrides: Any) -> str:
    key = import_key(private_jwk)
    alg = private_jwk.get("alg") or ("ES384" if private_jwk.get("kty") == "EC" else "RS384")
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": token_url, "exp": now + lifetime, "jti": uuid.uuid4().hex}
    claims.update(overrides)
    return jwt.encode({"alg": alg, "kid": private_jwk["kid"], "typ": "JWT"}, claims, key,
                      algorithms=["RS384", "ES384"])


def token_form(private_jwk: dict[str, Any], client_id: str, token_url: str, scope: str) -> dict[str, str]:
    """The form of a Backend Services token request (client_credentials with a signed client assertion), for
    this gateway's own client at a remote server (bulk submission) as for the command line."""
    return {"grant_type": "client_credentials", "scope": scope,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": sign_assertion(private_jwk, client_id, token_url)}


def fetch_token(fhir_base: str, client_id: str, private_jwk: dict[str, Any], scope: str,
                http: httpx.Client | None = None) -> dict[str, Any]:
    h = http or httpx.Client(timeout=10.0)
    conf = h.get(f"{fhir_base.rstrip('/')}/.well-known/smart-configuration").json()
    token_url = conf["token_endpoint"]
    resp = h.post(token_url, data=token_form(private_jwk, client_id, token_url, scope))
    body = resp.json()
    if resp.status_code != 200:
        raise RuntimeError(f"{body.get('error')}: {body.get('error_description', '')}")
    return body
