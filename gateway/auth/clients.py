"""The client registry: registration (CLI and admin API) and the client model authlib works with."""

from __future__ import annotations

import builtins
import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, cast

from authlib.oauth2.rfc6749 import ClientMixin
from joserfc.jwk import KeySet, KeySetSerialization
from sqlalchemy import Engine, insert, select

from ..net.egress import EgressPolicy, EgressRefused
from .scopes import ScopeSet, narrow
from .tables import CLIENT

AUTH_METHODS = ("none", "client_secret_basic", "private_key_jwt")


class RegistrationError(ValueError):
    pass


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    dk = hashlib.scrypt(secret.encode(), salt=salt, n=2**14, r=8, p=1)
    return f"scrypt${salt.hex()}${dk.hex()}"


def check_secret(secret: str, stored: str | None) -> bool:
    if not stored or not stored.startswith("scrypt$"):
        return False
    _, salt, dk = stored.split("$")
    got = hashlib.scrypt(secret.encode(), salt=bytes.fromhex(salt), n=2**14, r=8, p=1)
    return hmac.compare_digest(got.hex(), dk)


@dataclass
class Client(ClientMixin):
    client_id: str
    name: str
    auth_method: str
    scope: str
    redirect_uris: list[str] = field(default_factory=list)
    grant_types: list[str] = field(default_factory=list)
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = None
    secret_hash: str | None = None
    fhir_user: str | None = None  # the organization or practitioner a backend client acts for

    # -- authlib ClientMixin -----------------------------------------------------------------------------
    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return None  # SMART: redirect_uri is always sent and must match exactly

    def get_allowed_scope(self, scope: str) -> str:
        return narrow(scope, self.scope)[0]

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return check_secret(client_secret, self.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if endpoint == "token":
            return method == self.auth_method
        return True

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types

    def public_view(self) -> dict[str, Any]:
        out: dict[str, Any] = {"client_id": self.client_id, "client_name": self.name,
                               "token_endpoint_auth_method": self.auth_method, "scope": self.scope,
                               "grant_types": self.grant_types}
        if self.redirect_uris:
            out["redirect_uris"] = self.redirect_uris
        if self.jwks_uri:
            out["jwks_uri"] = self.jwks_uri
        if self.jwks:
            out["jwks"] = self.jwks
        if self.fhir_user:
            out["fhir_user"] = self.fhir_user
        return out


def _row_to_client(row: Any) -> Client:
    return Client(client_id=row.client_id, name=row.name, auth_method=row.auth_method, scope=row.scope,
                  redirect_uris=json.loads(row.redirect_uris), grant_types=json.loads(row.grant_types),
                  jwks=json.loads(row.jwks) if row.jwks else None, jwks_uri=row.jwks_uri,
                  secret_hash=row.secret_hash, fhir_user=row.fhir_user)


def validate_jwks(jwks: Any) -> dict[str, Any]:
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise RegistrationError("a JWKS is a JSON object with a non-empty 'keys' list")
    for k in jwks["keys"]:
        if not isinstance(k, dict) or not k.get("kid"):
            raise RegistrationError("every key in the JWKS needs a 'kid'")
        if any(p in k for p in ("d", "p", "q", "dp", "dq", "qi")):
            raise RegistrationError("the JWKS holds a private key; register only the public keys")
    try:
        KeySet.import_key_set(cast(KeySetSerialization, jwks))
    except Exception as exc:  # noqa: BLE001 - joserfc raises several types for bad keys
        raise RegistrationError(f"the JWKS cannot be read: {exc}") from None
    return {"keys": jwks["keys"]}


def _check_redirect_uris(uris: list[str]) -> None:
    """Refuse redirect URIs that are not absolute https (or loopback http) URLs without a fragment."""
    for uri in uris:
        if "#" in uri or not uri.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise RegistrationError(f"redirect URI {uri!r} must be an absolute https (or loopback) URL "
                                    "without a fragment")


class ClientStore:
    def __init__(self, engine: Engine, egress: EgressPolicy | None = None) -> None:
        self.engine = engine
        self.egress = egress if egress is not None else EgressPolicy()  # what a jwks_uri may name
        self.changed_at = 0.0  # time.monotonic() of the last registration through this store

    def get(self, client_id: Any) -> Client | None:
        if not isinstance(client_id, str) or not client_id:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(select(CLIENT).where(CLIENT.c.client_id == client_id)).first()
        return _row_to_client(row) if row else None

    def list(self) -> list[Client]:
        with self.engine.connect() as conn:
            return [_row_to_client(r) for r in conn.execute(select(CLIENT).order_by(CLIENT.c.created_at))]

    def register(self, name: str, scope: str, *, jwks: Any = None, jwks_uri: str | None = None,
                 redirect_uris: builtins.list[str] | None = None, confidential: bool = False,
                 client_id: str | None = None, fhir_user: str | None = None) -> tuple[Client, str | None]:
        """Register a client; returns it and, for a confidential symmetric client, its secret (shown once)."""
        if not name.strip():
            raise RegistrationError("a client needs a name")
        parsed = ScopeSet.parse(scope)
        if parsed.invalid:
            raise RegistrationError(f"invalid scope(s): {' '.join(parsed.invalid)}")
        if not parsed.resource and not parsed.other:
            raise RegistrationError("a client needs at least one scope")
        secret = None
        secret_hash = None
        if fhir_user is not None and (fhir_user.count("/") != 1 or fhir_user.split("/")[0] not in
                                      ("Organization", "Practitioner", "PractitionerRole")):
            raise RegistrationError("fhir_user must be Organization/<id>, Practitioner/<id> or PractitionerRole/<id>")
        if jwks is not None or jwks_uri:
            if redirect_uris and confidential:
                raise RegistrationError("an app with keys authenticates with them (private_key_jwt): give keys "
                                        "or a client secret, not both")
            if jwks is not None and jwks_uri:
                raise RegistrationError("give either --jwks or --jwks-url")
            if jwks_uri:
                try:
                    self.egress.check_url(jwks_uri)  # the gateway will fetch it: the outbound-call rules
                except EgressRefused as exc:
                    raise RegistrationError(f"jwks_uri {exc}") from None
            jwks = validate_jwks(jwks) if jwks is not None else None
            method, grants = "private_key_jwt", ["client_credentials"]
            if redirect_uris:  # a confidential-asymmetric app (SMART App Launch): launches, signs its assertions
                _check_redirect_uris(redirect_uris)
                grants = ["authorization_code", "refresh_token"]
            elif any(s.level != "system" for s in parsed.resource):
                raise RegistrationError("backend services clients take system/ scopes only")
        elif redirect_uris:
            _check_redirect_uris(redirect_uris)
            grants = ["authorization_code", "refresh_token"]
            if confidential:
                secret = secrets.token_urlsafe(32)
                secret_hash = hash_secret(secret)
                method = "client_secret_basic"
            else:
                method = "none"
        else:
            raise RegistrationError("give --jwks, --jwks-url or --redirect-uri")
        client = Client(client_id=client_id or uuid.uuid4().hex, name=name.strip(), auth_method=method,
                        scope=" ".join(scope.split()), redirect_uris=redirect_uris or [], grant_types=grants,
                        jwks=jwks, jwks_uri=jwks_uri, secret_hash=secret_hash, fhir_user=fhir_user)
        with self.engine.begin() as conn:
            conn.execute(insert(CLIENT).values(
                client_id=client.client_id, name=client.name, auth_method=method, secret_hash=secret_hash,
                jwks=json.dumps(jwks) if jwks else None, jwks_uri=jwks_uri,
                redirect_uris=json.dumps(client.redirect_uris), grant_types=json.dumps(grants),
                scope=client.scope, fhir_user=fhir_user, created_at=int(time.time())))
        self.changed_at = time.monotonic()
        return client, secret
