"""private_key_jwt client authentication for SMART Backend Services (RFC 7523 §3 plus the SMART rules):
RS384 or ES384, keys from the registered JWKS or its jwks_uri (fetched with httpx and cached), ``exp`` at
most five minutes ahead, ``jti`` never seen before for that issuer, ``aud`` the token endpoint."""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any, cast

import httpx
from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, KeySetSerialization
from sqlalchemy import Engine, delete, insert
from sqlalchemy.exc import IntegrityError

from .tables import JTI

log = logging.getLogger("gateway.auth")
ALGORITHMS = ["RS384", "ES384"]
MAX_LIFETIME = 300  # seconds an assertion may live (SMART Backend Services)
SKEW = 10  # clock skew tolerated on exp


class JwksFetcher:
    """jwks_uri documents, cached for their Cache-Control max-age (default five minutes, at most an hour)."""

    def __init__(self, client: httpx.Client | None = None, default_ttl: int = 300) -> None:
        self.http = client or httpx.Client(timeout=5.0, follow_redirects=False)
        self.default_ttl = default_ttl
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def forget(self, url: str) -> None:
        with self._lock:
            self._cache.pop(url, None)

    def get(self, url: str) -> dict[str, Any]:
        hit = self._cache.get(url)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        resp = self.http.get(url, headers={"Accept": "application/json"})
        resp.raise_for_status()
        doc = resp.json()
        m = re.search(r"max-age=(\d+)", resp.headers.get("cache-control", ""))
        ttl = min(int(m.group(1)), 3600) if m else self.default_ttl
        if "no-store" in resp.headers.get("cache-control", ""):
            ttl = 0
        with self._lock:
            self._cache[url] = (time.monotonic() + ttl, doc)
        return doc


class PrivateKeyJwt(JWTBearerClientAssertion):
    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, token_url: str, engine: Engine, fetcher: JwksFetcher) -> None:
        super().__init__(validate_jti=True, leeway=SKEW)
        self.token_url = None  # authlib's deprecated argument stays unused
        self._audience = token_url
        self.engine = engine
        self.fetcher = fetcher

    def get_audiences(self) -> list[str]:
        return [self._audience]

    def __call__(self, query_client: Any, request: Any) -> Any:
        data = request.form
        assertion = data.get("client_assertion")
        if data.get("client_assertion_type") != self.CLIENT_ASSERTION_TYPE or not assertion:
            return None
        headers, claims = self.extract_assertion(assertion)
        if headers.get("alg") not in ALGORITHMS:
            raise InvalidClientError(description=f"Assertion algorithm must be one of {', '.join(ALGORITHMS)}")
        if not headers.get("kid"):
            raise InvalidClientError(description="Assertion header has no kid")
        form_id = data.get("client_id")
        if form_id is not None and form_id != claims.get("sub"):
            raise InvalidClientError(description="client_id does not match the assertion subject")
        client = query_client(claims.get("sub")) if isinstance(claims.get("sub"), str) else None
        if client is not None and headers.get("jku") and headers["jku"] != client.jwks_uri:
            raise InvalidClientError(description="Assertion jku is not the registered JWKS URL")
        return super().__call__(query_client, request)

    def resolve_client_public_key(self, client: Any) -> KeySet:
        if client.auth_method != self.CLIENT_AUTH_METHOD:
            raise InvalidClientError(description="The client is not registered for private_key_jwt")
        try:
            doc = client.jwks if client.jwks else self.fetcher.get(client.jwks_uri)
            return KeySet.import_key_set(cast(KeySetSerialization, doc))
        except (httpx.HTTPError, ValueError, JoseError) as exc:
            log.warning("client JWKS unavailable", extra={"client_id": client.client_id,
                                                          "error": type(exc).__name__})
            raise InvalidClientError(description="The client's public keys could not be loaded") from None

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> Any:
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=ALGORITHMS)
        except (JoseError, ValueError) as exc:
            desc = getattr(exc, "description", None) or type(exc).__name__
            raise InvalidClientError(description=f"Assertion refused: {desc}".replace('"', "'")) from None
        self.verify_claims(token.claims)
        return token.claims

    def verify_claims(self, claims: Any) -> None:
        exp = claims.get("exp")
        if isinstance(exp, int | float) and exp > time.time() + MAX_LIFETIME + SKEW:
            raise InvalidClientError(description="Assertion exp is more than five minutes ahead")
        super().verify_claims(claims)

    def validate_jti(self, claims: Any, jti: Any) -> bool:
        if not isinstance(jti, str) or not jti or len(jti) > 255:
            return False
        now = int(time.time())
        with self.engine.begin() as conn:
            conn.execute(delete(JTI).where(JTI.c.expires_at < now))
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(JTI).values(issuer=str(claims["iss"]), jti=jti,
                                                expires_at=int(claims["exp"]) + SKEW))
        except IntegrityError:
            log.warning("client assertion replayed", extra={"client_id": claims.get("iss")})
            return False
        return True
