"""Access tokens (signed JWTs, RFC 9068 style), refresh tokens (opaque, stored as digests), validation,
introspection (RFC 7662) and revocation (RFC 7009)."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from sqlalchemy import Engine, insert, select, update

from ..fhir.errors import Unauthorized
from .context import Grant
from .keys import ALG, KeyRing
from .scopes import ScopeSet
from .tables import TOKEN

log = logging.getLogger("gateway.auth")
CONTEXT_KEYS = ("patient", "encounter", "fhirContext", "need_patient_banner", "smart_style_url", "fhirUser",
                "tenant", "intent")


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def invalid_token(description: str) -> Unauthorized:
    safe = description.replace('"', "'").replace("\\", "/")
    return Unauthorized(f"Access token refused: {description}",
                        headers={"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{safe}"'})


@dataclass
class Issued:
    token: str
    key: str  # jti or digest
    expires_at: int


class TokenService:
    def __init__(self, engine: Engine, keys: KeyRing, issuer: str, audience: str, revocation_poll: float = 2.0,
                 cache_size: int = 10000) -> None:
        self.engine = engine
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.revocation_poll = revocation_poll
        self._revoked: set[str] = set()
        self._revoked_at = 0.0
        self._cache: OrderedDict[str, tuple[int, Grant]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.external: Any = None  # an ExternalIssuer (idp.py) when tokens also come from an identity provider

    # -- issuing -----------------------------------------------------------------------------------------
    def issue_access(self, client_id: str, scope: str, lifetime: int, family: str, subject: str | None = None,
                     context: dict[str, Any] | None = None) -> Issued:
        now = int(time.time())
        jti = uuid.uuid4().hex
        claims: dict[str, Any] = {"iss": self.issuer, "aud": self.audience, "sub": subject or client_id,
                                  "client_id": client_id, "scope": scope, "iat": now, "exp": now + lifetime,
                                  "jti": jti}
        for k in ("patient", "encounter", "fhirUser"):
            if context and context.get(k):
                claims[k] = context[k]
        key = self.keys.signing_key
        token = jwt.encode({"alg": ALG, "kid": key.kid, "typ": "at+jwt"}, claims, key)
        self._store(jti, "access", client_id, family, scope, subject, context, now + lifetime)
        return Issued(token, jti, now + lifetime)

    def issue_refresh(self, client_id: str, scope: str, lifetime: int, family: str, subject: str | None,
                      context: dict[str, Any] | None) -> Issued:
        token = secrets.token_urlsafe(32)
        exp = int(time.time()) + lifetime
        self._store(digest(token), "refresh", client_id, family, scope, subject, context, exp)
        return Issued(token, digest(token), exp)

    def _store(self, key: str, kind: str, client_id: str, family: str, scope: str, subject: str | None,
               context: dict[str, Any] | None, exp: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(TOKEN).values(token_key=key, kind=kind, client_id=client_id, family=family,
                                              scope=scope, subject=subject, context=json.dumps(context or {}),
                                              expires_at=exp))

    # -- validation --------------------------------------------------------------------------------------
    def _revoked_set(self) -> set[str]:
        now = time.monotonic()
        if now - self._revoked_at > self.revocation_poll:
            with self.engine.connect() as conn:
                rows = conn.execute(select(TOKEN.c.token_key).where(
                    TOKEN.c.kind == "access", TOKEN.c.revoked.is_(True), TOKEN.c.expires_at > int(time.time())))
                self._revoked = {r[0] for r in rows}
            self._revoked_at = now
        return self._revoked

    def validate(self, token: str) -> Grant:
        """The grant a bearer token carries; raises Unauthorized (invalid_token) otherwise."""
        now = int(time.time())
        hit = self._cache.get(token)
        if hit is None:
            grant, exp = self._decode(token)
            with self._lock:
                self._cache[token] = (exp, grant)
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        else:
            exp, grant = hit
        if exp <= now:
            raise invalid_token("the token has expired")
        if grant.jti and grant.jti in self._revoked_set():
            raise invalid_token("the token has been revoked")
        return grant

    def _decode(self, token: str) -> tuple[Grant, int]:
        if token.count(".") != 2:
            raise invalid_token("not a signed JWT")
        if self.external is not None and self.external.claims_issuer(token) == self.external.issuer:
            return self.external.validate(token)
        self.keys.refresh_if_stale()
        self.keys.refresh_for(_header_kid(token))
        try:
            tok = jwt.decode(token, self.keys.public, algorithms=[ALG])
            jwt.JWTClaimsRegistry(iss={"essential": True, "value": self.issuer},
                                  aud={"essential": True, "value": self.audience},
                                  exp={"essential": True}, jti={"essential": True}).validate(tok.claims)
        except (JoseError, ValueError) as exc:
            raise invalid_token(getattr(exc, "description", None) or type(exc).__name__) from None
        c = tok.claims
        grant = Grant(client_id=str(c.get("client_id") or c.get("sub")), scopes=ScopeSet.parse(c.get("scope")),
                      subject=c.get("sub"), patient=c.get("patient"), encounter=c.get("encounter"),
                      fhir_user=c.get("fhirUser"), jti=c.get("jti"), claims=c)
        return grant, int(c["exp"])

    # -- introspection and revocation --------------------------------------------------------------------
    def lookup(self, token: str) -> dict[str, Any] | None:
        """The stored row for an access token (by jti) or refresh token (by digest), if any."""
        key = digest(token)
        if token.count(".") == 2:
            try:
                grant, _ = self._decode(token)
                key = grant.jti or key
            except Unauthorized:
                return None
        with self.engine.connect() as conn:
            row = conn.execute(select(TOKEN).where(TOKEN.c.token_key == key)).mappings().first()
        return dict(row) if row else None

    def introspect(self, token: str) -> dict[str, Any]:
        row = self.lookup(token)
        if row is None or row["revoked"] or row["used"] or row["expires_at"] <= int(time.time()):
            return {"active": False}
        out: dict[str, Any] = {"active": True, "scope": row["scope"], "client_id": row["client_id"],
                               "exp": row["expires_at"], "iss": self.issuer, "token_type": "Bearer",
                               "sub": row["subject"] or row["client_id"]}
        ctx = json.loads(row["context"] or "{}")
        out.update({k: v for k, v in ctx.items() if k in CONTEXT_KEYS})
        return out

    def revoke(self, token: str, client_id: str | None = None) -> None:
        row = self.lookup(token)
        if row is None or (client_id is not None and row["client_id"] != client_id):
            return
        if row["kind"] == "refresh":
            self.revoke_family(row["family"])
        else:
            with self.engine.begin() as conn:
                conn.execute(update(TOKEN).where(TOKEN.c.token_key == row["token_key"]).values(revoked=True))
            self._revoked_at = 0.0

    def revoke_user_client(self, subject: str, client_id: str) -> int:
        """Revoke every token ``client_id`` holds for the user ``subject`` (a user withdrawing an app's
        access on the authorized-apps page); returns how many rows were revoked. Its access tokens are
        refused from the next revocation poll on (at once in this process)."""
        with self.engine.begin() as conn:
            done = conn.execute(update(TOKEN).where(TOKEN.c.subject == subject, TOKEN.c.client_id == client_id,
                                                    TOKEN.c.revoked.is_(False)).values(revoked=True))
        self._revoked_at = 0.0
        return int(done.rowcount or 0)

    def revoke_family(self, family: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(TOKEN).where(TOKEN.c.family == family).values(revoked=True))
        self._revoked_at = 0.0
        log.warning("token family revoked", extra={"family": family})


def _header_kid(token: str) -> object:
    """The ``kid`` of a compact JWT's header, or None when the header cannot be read (the decode then
    refuses the token)."""
    import base64

    head = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, TypeError):
        return None
    return header.get("kid") if isinstance(header, dict) else None
