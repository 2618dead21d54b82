"""External identity provider mode: access tokens issued by a configured issuer, checked with its JWKS
(fetched with httpx, cached, fetched again when a token names an unknown key), then held to the same scope
enforcement as the gateway's own tokens."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from .context import Grant
from .scopes import ScopeSet
from .tokens import invalid_token

ALGORITHMS = ["RS256", "RS384", "ES256", "ES384", "PS256"]


def _unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    def part(p: str) -> dict[str, Any]:
        out = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
        return out if isinstance(out, dict) else {}

    head, payload, _ = token.split(".")
    return part(head), part(payload)


class ExternalIssuer:
    def __init__(self, issuer: str, jwks_uri: str, audience: str, fetcher: Any) -> None:
        self.issuer = issuer
        self.jwks_uri = jwks_uri or issuer.rstrip("/") + "/.well-known/jwks.json"
        self.audience = audience
        self.fetcher = fetcher

    def claims_issuer(self, token: str) -> str | None:
        try:
            return _unverified(token)[1].get("iss")
        except (ValueError, TypeError):
            return None

    def _keys(self, kid: str | None) -> KeySet:
        try:
            keys = KeySet.import_key_set(self.fetcher.get(self.jwks_uri))
            if kid and kid not in {k.kid for k in keys.keys}:  # the IdP rotated its keys: look again
                self.fetcher.forget(self.jwks_uri)
                keys = KeySet.import_key_set(self.fetcher.get(self.jwks_uri))
            return keys
        except (httpx.HTTPError, ValueError, JoseError):
            raise invalid_token("the identity provider's keys could not be loaded") from None

    def validate(self, token: str) -> tuple[Grant, int]:
        try:
            header, _ = _unverified(token)
        except (ValueError, TypeError):
            raise invalid_token("not a signed JWT") from None
        if header.get("alg") not in ALGORITHMS:
            raise invalid_token("algorithm not accepted")
        try:
            tok = jwt.decode(token, self._keys(header.get("kid")), algorithms=ALGORITHMS)
            jwt.JWTClaimsRegistry(iss={"essential": True, "value": self.issuer},
                                  aud={"essential": True, "value": self.audience},
                                  exp={"essential": True}).validate(tok.claims)
        except (JoseError, ValueError) as exc:
            raise invalid_token(getattr(exc, "description", None) or type(exc).__name__) from None
        c = tok.claims
        scope = c.get("scope")
        if scope is None and isinstance(c.get("scp"), list):
            scope = " ".join(str(s) for s in c["scp"])
        client_id = c.get("client_id") or c.get("azp") or c.get("sub")
        grant = Grant(client_id=str(client_id), scopes=ScopeSet.parse(scope if isinstance(scope, str) else ""),
                      subject=c.get("sub"), patient=c.get("patient"), encounter=c.get("encounter"),
                      fhir_user=c.get("fhirUser"), jti=None, claims=c)
        return grant, int(c["exp"])
