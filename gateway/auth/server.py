"""The authorization server on authlib: client_credentials with private_key_jwt (Backend Services),
authorization code with PKCE S256 (App Launch) and refresh token rotation. authlib has no Starlette server
integration, so this module supplies the request adapter and the response hook; its core is synchronous and
runs in a worker thread."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from authlib.oauth2 import AuthorizationServer, OAuth2Request
from authlib.oauth2.rfc6749 import (
    AccessDeniedError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Payload,
    UnauthorizedClientError,
)
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant, ClientCredentialsGrant, RefreshTokenGrant
from authlib.oauth2.rfc7636 import CodeChallenge
from joserfc import jwt
from sqlalchemy import Engine, insert, select, update

from .assertions import JwksFetcher, PrivateKeyJwt
from .clients import Client, ClientStore
from .keys import ALG
from .launches import LAUNCH_TTL, create_launch
from .scopes import ScopeSet, narrow
from .tables import CODE, LAUNCH, TOKEN, USER
from .tokens import TokenService, digest
from .users import fhir_user_type, is_clinician

log = logging.getLogger("gateway.auth")
LAUNCH_OTHER_PATIENT = ("The launch names another patient than the signed-in user's own record; "
                        "a patient user can only share their own record")


# -- request adapter -------------------------------------------------------------------------------------
class FormPayload(OAuth2Payload):
    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._data: dict[str, str] = {}
        self._datalist: dict[str, list[str]] = {}
        for k, v in items:
            self._data.setdefault(k, v)
            self._datalist.setdefault(k, []).append(v)

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> Any:
        return self._datalist


class StarletteOAuth2Request(OAuth2Request):
    """Built from an already-read Starlette request: query items, form items, headers."""

    def __init__(self, method: str, uri: str, headers: Any, query: list[tuple[str, str]],
                 form: list[tuple[str, str]]) -> None:
        super().__init__(method, uri, headers=headers)
        self._args = dict(query)
        self._form = dict(form)
        self.payload = FormPayload(query + form)

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


@dataclass
class EndUser:
    """A signed-in user: ``patient`` is the one patient a Patient, RelatedPerson or Person user is confined
    to (None for clinicians, and for patient-bound users whose patient could not be found)."""
    username: str
    fhir_user: str | None = None
    patient: str | None = None

    def get_user_id(self) -> str:
        return self.username

    @property
    def clinician(self) -> bool:
        """Practitioner and PractitionerRole users only: the only users given user-level access."""
        return is_clinician(self.fhir_user)


@dataclass
class CodeRecord:
    code_hash: str
    client_id: str
    redirect_uri: str
    scope: str
    subject: str | None
    context: dict[str, Any]
    code_challenge: str
    code_challenge_method: str
    nonce: str | None
    family: str
    expires_at: int
    used: bool

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


@dataclass
class RefreshRecord:
    token_key: str
    client_id: str
    scope: str
    subject: str | None
    context: dict[str, Any]
    family: str
    extra: dict[str, Any] = field(default_factory=dict)

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope


# -- grants ----------------------------------------------------------------------------------------------
def _sends_client_credentials(request: OAuth2Request) -> bool:
    """Whether a token request names or authenticates its client (Basic header, client_id, client_assertion
    or client_secret)."""
    form = request.form
    return bool(request.headers.get("Authorization") or form.get("client_id") or form.get("client_assertion")
                or form.get("client_secret"))


class BackendServicesGrant(ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["private_key_jwt"]

    def validate_token_request(self) -> None:
        super().validate_token_request()
        requested = self.request.payload.scope
        if not requested:
            raise InvalidScopeError(description="Backend services must request system/ scopes")
        granted, refused = narrow(requested, self.request.client.scope)
        if refused:
            raise InvalidScopeError(description=f"Not pre-authorized for: {' '.join(refused)}")
        self.request.scope = granted


class SmartCodeChallenge(CodeChallenge):
    """PKCE as SMART wants it: S256 only, and required of every client."""
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("Missing 'code_challenge': PKCE with S256 is required",
                                      redirect_uri=redirect_uri)
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256", redirect_uri=redirect_uri)
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        if not grant.request.form.get("code_verifier"):
            raise InvalidRequestError("Missing 'code_verifier'")
        super().validate_code_verifier(grant, result)

    def get_authorization_code_challenge(self, authorization_code: CodeRecord) -> str:
        return authorization_code.code_challenge

    def get_authorization_code_challenge_method(self, authorization_code: CodeRecord) -> str:
        return authorization_code.code_challenge_method


class SmartCodeGrant(AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "private_key_jwt", "none"]

    def validate_authorization_request(self) -> str:
        redirect_uri = super().validate_authorization_request()
        auth: AuthServer = self.server
        data = self.request.payload.data
        if not data.get("state"):
            raise InvalidRequestError("Missing 'state'", redirect_uri=redirect_uri)
        aud = data.get("aud") or data.get("resource")
        if aud != auth.fhir_base:
            raise InvalidRequestError("'aud' must be this server's FHIR base URL", redirect_uri=redirect_uri,
                                      state=data.get("state"))
        for name, limit in (("nonce", 255), ("code_challenge", 128), ("launch", 255)):
            if len(data.get(name) or "") > limit:  # stored with the code: longer would fail the insert
                raise InvalidRequestError(f"'{name}' is longer than {limit} characters", redirect_uri=redirect_uri,
                                          state=data.get("state"))
        launch = data.get("launch")
        if launch is not None and auth.launch_context(launch, self.request.client.client_id) is None:
            raise InvalidRequestError("Unknown, expired or used 'launch'", redirect_uri=redirect_uri,
                                      state=data.get("state"))
        return redirect_uri

    def save_authorization_code(self, code: str, request: Any) -> None:
        auth: AuthServer = self.server
        data = request.payload.data
        user: EndUser = request.user
        ctx = dict(getattr(request, "smart_context", {}) or {})
        if not user.clinician and not user.patient:
            raise AccessDeniedError("This user is linked to no patient record: nothing can be shared")
        if data.get("launch"):
            launched = auth.consume_launch(data["launch"], request.client.client_id)
            if launched is None:
                raise InvalidRequestError("Unknown, expired or used 'launch'")
            if not user.clinician and launched.get("patient") not in (None, user.patient):
                raise AccessDeniedError(LAUNCH_OTHER_PATIENT)
            ctx.update(launched)
        if user.fhir_user:
            ctx.setdefault("fhirUser", user.fhir_user)
        scope = request.scope
        if not user.clinician:  # a patient (or their representative): only that record, never user/ or system/
            ctx["patient"] = user.patient
            parsed = ScopeSet.parse(scope)
            scope = " ".join([s.raw for s in parsed.resource if s.level == "patient"] + sorted(parsed.other))
        with auth.engine.begin() as conn:
            conn.execute(insert(CODE).values(
                code_hash=digest(code), client_id=request.client.client_id, redirect_uri=data["redirect_uri"],
                scope=scope, subject=user.username, context=json.dumps(ctx),
                code_challenge=data["code_challenge"], code_challenge_method=data.get("code_challenge_method", "S256"),
                nonce=data.get("nonce"), family=uuid.uuid4().hex, expires_at=int(time.time()) + auth.code_ttl))

    def query_authorization_code(self, code: str, client: Client) -> CodeRecord | None:
        auth: AuthServer = self.server
        with auth.engine.connect() as conn:
            row = conn.execute(select(CODE).where(CODE.c.code_hash == digest(code))).mappings().first()
        if row is None or row["client_id"] != client.client_id:
            return None
        if row["used"]:  # a code used twice: revoke what it produced
            auth.tokens.revoke_family(row["family"])
            return None
        if row["expires_at"] < time.time():
            return None
        return CodeRecord(**{**dict(row), "context": json.loads(row["context"])})

    def delete_authorization_code(self, authorization_code: CodeRecord) -> None:
        auth: AuthServer = self.server
        with auth.engine.begin() as conn:
            conn.execute(update(CODE).where(CODE.c.code_hash == authorization_code.code_hash).values(used=True))

    def authenticate_user(self, authorization_code: CodeRecord) -> EndUser | None:
        auth: AuthServer = self.server
        return auth.user(authorization_code.subject or "")

    def validate_token_request(self) -> None:
        super().validate_token_request()
        code: CodeRecord = self.request.authorization_code
        if self.request.payload.redirect_uri != code.redirect_uri:
            raise InvalidGrantError("'redirect_uri' differs from the authorization request")
        # a code is single-use even when the token response fails later
        with self.server.engine.begin() as conn:
            n = conn.execute(update(CODE).where(CODE.c.code_hash == code.code_hash, CODE.c.used.is_(False))
                             .values(used=True)).rowcount
        if n != 1:
            raise InvalidGrantError("The code has already been used")


class SmartRefreshGrant(RefreshTokenGrant):
    """Refresh with rotation. A refresh token is bound to the client it was issued to: a public client may
    refresh without sending ``client_id`` (SMART App Launch 2.2 lists only grant_type, refresh_token and
    scope), a confidential client must still authenticate, and a ``scope`` may only narrow the grant."""
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "private_key_jwt", "none"]
    INCLUDE_NEW_REFRESH_TOKEN = True

    def _validate_request_client(self) -> Client:
        """The client the refresh is for: the token's own public client when the request names none, else
        the client the request authenticates as (authlib's rules)."""
        if not _sends_client_credentials(self.request):
            owner = self._public_owner(self.request.form.get("refresh_token"))
            if owner is not None:
                if not owner.check_grant_type(self.GRANT_TYPE):
                    raise UnauthorizedClientError(
                        f"The client is not authorized to use 'grant_type={self.GRANT_TYPE}'")
                return owner
        client: Client = super()._validate_request_client()
        return client

    def _public_owner(self, refresh_token: str | None) -> Client | None:
        """The public client a refresh token was issued to; None when it belongs to a confidential client
        (which must then authenticate, and fails as invalid_client); an unknown token is invalid_grant."""
        if not refresh_token:
            raise InvalidRequestError("Missing 'refresh_token' in request.")
        auth: AuthServer = self.server
        with auth.engine.connect() as conn:
            owner = conn.execute(select(TOKEN.c.client_id).where(TOKEN.c.token_key == digest(refresh_token),
                                                                 TOKEN.c.kind == "refresh")).scalar()
        if owner is None:
            raise InvalidGrantError("Unknown refresh token")
        client = auth.query_client(owner)
        return client if client is not None and client.auth_method == "none" else None

    def _validate_token_scope(self, token: RefreshRecord) -> None:
        """A requested scope must be granted by the original one (SMART semantics, not string equality)."""
        requested = self.request.payload.scope
        if not requested:
            return
        _, refused = narrow(requested, token.get_scope())
        if refused:
            raise InvalidScopeError(description=f"A refresh may only narrow the grant; not granted: "
                                                f"{' '.join(refused)}")

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshRecord | None:
        auth: AuthServer = self.server
        with auth.engine.connect() as conn:
            row = conn.execute(select(TOKEN).where(TOKEN.c.token_key == digest(refresh_token),
                                                   TOKEN.c.kind == "refresh")).mappings().first()
        if row is None:
            return None
        if row["used"] or row["revoked"]:  # reuse of a rotated token: the whole grant goes
            auth.tokens.revoke_family(row["family"])
            return None
        if row["expires_at"] < time.time():
            return None
        return RefreshRecord(row["token_key"], row["client_id"], row["scope"], row["subject"],
                             json.loads(row["context"]), row["family"])

    def authenticate_user(self, refresh_token: RefreshRecord) -> EndUser | None:
        auth: AuthServer = self.server
        user = auth.user(refresh_token.subject or "") if refresh_token.subject else None
        if user is not None and not user.clinician and user.patient != refresh_token.context.get("patient"):
            return None  # a RelatedPerson or Person no longer linked to that patient: no new tokens for it
        return user

    def revoke_old_credential(self, refresh_token: RefreshRecord) -> None:
        auth: AuthServer = self.server
        with auth.engine.begin() as conn:
            conn.execute(update(TOKEN).where(TOKEN.c.token_key == refresh_token.token_key).values(used=True))


# -- the server ------------------------------------------------------------------------------------------
class AuthServer(AuthorizationServer):
    def __init__(self, engine: Engine, clients: ClientStore, tokens: TokenService, fhir_base: str,
                 token_url: str, fetcher: JwksFetcher, access_ttl: int = 900, backend_ttl: int = 300,
                 refresh_ttl: int = 86400, code_ttl: int = 60) -> None:
        super().__init__(scopes_supported=None)
        self.engine = engine
        self.clients = clients
        self.tokens = tokens
        self.fhir_base = fhir_base
        self.access_ttl = access_ttl
        self.backend_ttl = backend_ttl
        self.refresh_ttl = refresh_ttl
        self.code_ttl = code_ttl
        # fhirUser (RelatedPerson/<id>, Person/<id>) -> the patient it acts for; set by the Authority
        self.patient_of: Callable[[str], str | None] | None = None
        self.register_client_auth_method(PrivateKeyJwt.CLIENT_AUTH_METHOD, PrivateKeyJwt(token_url, engine, fetcher))
        self.register_grant(BackendServicesGrant)
        self.register_grant(SmartCodeGrant, [SmartCodeChallenge(required=True)])
        self.register_grant(SmartRefreshGrant)
        self.register_token_generator("default", self._skeleton)

    # authlib hooks
    def query_client(self, client_id: str) -> Client | None:
        return self.clients.get(client_id)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        return request

    def create_json_request(self, request: Any) -> Any:
        return request

    def handle_response(self, status: int, body: Any, headers: Any) -> tuple[int, Any, list[tuple[str, str]]]:
        return status, body, list(headers or [])

    def validate_requested_scope(self, scope: str) -> None:
        invalid = ScopeSet.parse(scope).invalid
        if invalid:
            raise InvalidScopeError(description=f"Malformed scope(s): {' '.join(invalid)}")

    def _skeleton(self, grant_type: str, client: Client, user: Any = None, scope: str | None = None,
                  expires_in: int | None = None, include_refresh_token: bool = True) -> dict[str, Any]:
        """authlib's token generator sees no request; the real tokens are made in save_token, which does."""
        return {"token_type": "Bearer", "scope": scope or "", "_grant_type": grant_type,
                "_refresh": include_refresh_token}

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        grant_type = token.pop("_grant_type")
        want_refresh = token.pop("_refresh")
        client: Client = request.client
        scope = token["scope"]
        scopes = ScopeSet.parse(scope)
        user: EndUser | None = request.user
        if grant_type == "client_credentials":
            ctx = {"fhirUser": client.fhir_user} if client.fhir_user else None
            issued = self.tokens.issue_access(client.client_id, scope, self.backend_ttl, uuid.uuid4().hex,
                                              context=ctx)
            token.update(access_token=issued.token, expires_in=self.backend_ttl)
            return
        if grant_type == "authorization_code":
            code: CodeRecord = request.authorization_code
            family, context, nonce = code.family, dict(code.context), code.nonce
        else:
            old: RefreshRecord = request.refresh_token
            family, context, nonce = old.family, dict(old.context), None
        issued = self.tokens.issue_access(client.client_id, scope, self.access_ttl, family,
                                          user.username if user else None, context)
        token.update(access_token=issued.token, expires_in=self.access_ttl)
        offline = scopes.other & {"offline_access", "online_access"}
        if want_refresh and offline:
            refresh = self.tokens.issue_refresh(client.client_id, scope, self.refresh_ttl, family,
                                                user.username if user else None, context)
            token["refresh_token"] = refresh.token
        for k in ("patient", "encounter", "fhirContext", "need_patient_banner", "smart_style_url"):
            if k in context:
                token[k] = context[k]
        if "openid" in scopes.other and user is not None:
            token["id_token"] = self.id_token(client.client_id, user, nonce)

    def id_token(self, client_id: str, user: EndUser, nonce: str | None) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {"iss": self.tokens.issuer, "sub": user.username, "aud": client_id, "iat": now,
                                  "exp": now + self.access_ttl}
        if user.fhir_user:
            claims["fhirUser"] = f"{self.fhir_base}/{user.fhir_user}"
        if nonce:
            claims["nonce"] = nonce
        key = self.tokens.keys.signing_key
        return jwt.encode({"alg": ALG, "kid": key.kid}, claims, key)

    # users and launches
    def user(self, username: str) -> EndUser | None:
        """The user of that name, with the patient a patient-bound user is confined to; None if unknown."""
        with self.engine.connect() as conn:
            row = conn.execute(select(USER).where(USER.c.username == username)).mappings().first()
        return self.end_user(row) if row else None

    def end_user(self, row: Any) -> EndUser:
        """An ``auth_user`` row as an EndUser: a RelatedPerson or Person user's patient is looked up in the
        store now (``RelatedPerson.patient``, ``Person.link``), so a changed link takes effect at once."""
        patient = row["patient"]
        if fhir_user_type(row["fhir_user"]) in ("RelatedPerson", "Person"):
            patient = self.patient_of(row["fhir_user"]) if self.patient_of is not None else None
        elif not is_clinician(row["fhir_user"]) and fhir_user_type(row["fhir_user"]) != "Patient":
            patient = None  # no FHIR identity: neither a clinician nor bound to a patient, so nothing
        return EndUser(row["username"], row["fhir_user"], patient)

    def launch_context(self, launch_id: str, client_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(LAUNCH).where(LAUNCH.c.launch_id == launch_id)).mappings().first()
        if row is None or row["used"] or row["client_id"] != client_id or row["expires_at"] < time.time():
            return None
        return json.loads(row["context"])

    def consume_launch(self, launch_id: str, client_id: str) -> dict[str, Any] | None:
        ctx = self.launch_context(launch_id, client_id)
        if ctx is None:
            return None
        with self.engine.begin() as conn:
            n = conn.execute(update(LAUNCH).where(LAUNCH.c.launch_id == launch_id, LAUNCH.c.used.is_(False))
                             .values(used=True)).rowcount
        return ctx if n == 1 else None

    def create_launch(self, client_id: str, context: dict[str, Any], ttl: int = LAUNCH_TTL) -> str:
        """A one-time EHR launch id for ``client_id`` standing for ``context`` (see launches.py)."""
        return create_launch(self.engine, client_id, context, ttl)
