"""HTTP endpoints of the authorization server: discovery, JWKS, authorize (login, picker, consent), token,
introspection, revocation and the admin API. The FHIR API itself is guarded by ``middleware``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
from authlib.oauth2.rfc6749 import AccessDeniedError, OAuth2Error
from authlib.oauth2.rfc6749.errors import InsecureTransportError
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from joserfc import jwt
from joserfc.errors import JoseError
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from ..fhir.errors import BadRequest, FhirError, Forbidden, Unauthorized
from . import discovery, pages
from .clients import RegistrationError, check_secret
from .context import SYSTEM, acting_as
from .keys import ALG
from .scopes import ScopeSet
from .server import LAUNCH_OTHER_PATIENT, EndUser, StarletteOAuth2Request
from .tables import JTI, TOKEN, USER

log = logging.getLogger("gateway.auth")
router = APIRouter(tags=["auth"])  # mounted at /auth
wellknown = APIRouter(tags=["auth"])  # mounted at /fhir, before the FHIR routes
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# the sign-in and consent pages: never cached, never framed (clickjacking), no scripts
PAGE = {**NO_STORE, "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
        # no form-action: the consent form's answer redirects to the app's origin, which it would block
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
                                   "frame-ancestors 'none'"}
TICKET_AUD = "urn:fhir-gateway:consent"
TICKET_ISSUER = "urn:fhir-gateway:consent-ticket"  # the auth_jti rows of spent consent tickets
TICKET_TTL = 300  # seconds between sign-in and the consent decision
MANAGE_AUD = "urn:fhir-gateway:manage"  # the signed proof of sign-in on the authorized-apps page
MANAGE_TTL = 900
LOGO_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}
_INSTANT = re.compile(r"\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})?)?)?)?")


def _auth(request: Request) -> Any:
    authority = request.app.state.authority
    if authority is None:
        raise FhirError("Authorization is switched off on this server (--auth off)", status=404, code="not-found")
    return authority


def _json(body: Any, status: int = 200, headers: Any = None) -> JSONResponse:
    h = dict(NO_STORE)
    h.update(dict(headers or []))
    h.pop("Content-Type", None)
    return JSONResponse(body, status_code=status, headers=h)


class BadInput(ValueError):
    """Malformed input to an auth endpoint: answered 400 with a clear message (OAuth JSON or a page)."""


# OAuth parameters that must not be sent twice (RFC 6749 section 3.1): a second value could make two
# readers of one request disagree about what was asked
SINGLE_VALUED = frozenset(pages.OAUTH_FIELDS) | {"grant_type", "code", "code_verifier", "refresh_token",
                                                 "client_assertion", "client_assertion_type", "token",
                                                 "username", "password", "ticket", "decision", "patient",
                                                 "_step"}


async def _oauth_request(request: Request) -> StarletteOAuth2Request:
    form: list[tuple[str, str]] = []
    try:
        if request.method == "POST":
            data = await request.form()
            form = [(k, v) for k, v in data.multi_items() if isinstance(v, str)]
        query = list(request.query_params.multi_items())
    except (ValueError, KeyError, AssertionError) as exc:  # multipart parsing errors, bad encodings
        raise BadInput("The request body could not be read as a form") from exc
    seen: set[str] = set()
    for k, v in query + form:
        if k in SINGLE_VALUED and k in seen:
            raise BadInput(f"The parameter {k!r} is given more than once")
        seen.add(k)
        if "\x00" in v:
            raise BadInput(f"The parameter {k!r} holds a NUL character")
    try:
        return StarletteOAuth2Request(request.method, str(request.url), request.headers,  # case-insensitive
                                      query, form)
    except ValueError as exc:
        raise BadInput("The request URL could not be parsed") from exc


def _address(request: Request) -> str | None:
    """The client's address as the socket shows it (behind a proxy: the proxy's)."""
    return request.client.host if request.client else None


# -- discovery -------------------------------------------------------------------------------------------
@wellknown.get("/.well-known/smart-configuration", summary="SMART configuration")
def smart_configuration(request: Request) -> JSONResponse:
    return JSONResponse(discovery.smart_configuration(_auth(request)), headers={"Access-Control-Allow-Origin": "*"})


@wellknown.get("/.well-known/openid-configuration", summary="OpenID Connect discovery")
def openid_configuration(request: Request) -> JSONResponse:
    return JSONResponse(discovery.openid_configuration(_auth(request)), headers={"Access-Control-Allow-Origin": "*"})


@router.get("/jwks", summary="The gateway's public signing keys")
def jwks(request: Request) -> JSONResponse:
    auth = _auth(request)
    auth.keys.refresh_if_stale()
    return JSONResponse(auth.keys.jwks(), headers={"Cache-Control": "max-age=300"})


# -- token -----------------------------------------------------------------------------------------------
@router.post("/token", summary="Token endpoint (authorization_code, refresh_token, client_credentials)")
async def token(request: Request) -> Response:
    auth = _auth(request)
    try:
        req = await _oauth_request(request)
    except InsecureTransportError:
        return _json({"error": "invalid_request", "error_description": "TLS is required"}, 400)
    except BadInput as exc:
        return _json({"error": "invalid_request", "error_description": str(exc)}, 400)
    keys = auth.throttle.keys("client", _basic_client_id(request), _address(request))
    wait = await run_in_threadpool(auth.throttle.retry_after, keys)
    if wait is not None:
        log.warning("token request throttled", extra={"client_id": req.form.get("client_id")})
        return _json({"error": "temporarily_unavailable",
                      "error_description": f"Too many failed token requests; retry after {wait} seconds"},
                     429, {"Retry-After": str(wait)})
    try:
        status, body, headers = await run_in_threadpool(auth.server.create_token_response, req)
    except ValueError:  # authlib's parsing of a malformed header or form value
        status, body, headers = 400, {"error": "invalid_request",
                                      "error_description": "The token request could not be parsed"}, []
    if status >= 400 and body.get("error") == "invalid_client":  # a wrong secret or assertion
        await run_in_threadpool(auth.throttle.failed, keys)
    elif status >= 400 and body.get("error") == "invalid_grant":  # a guessed code or refresh token
        await run_in_threadpool(auth.throttle.failed, [k for k in keys if k.kind == "address"])
    if status >= 400:
        log.warning("token request refused", extra={"error": body.get("error"),
                                                    "description": body.get("error_description"),
                                                    "grant_type": req.form.get("grant_type"),
                                                    "client_id": req.form.get("client_id")})
        if body.get("error") == "invalid_client" and "authorization" in request.headers:
            status = 401
    return _json(body, status, headers)


def _basic_client_id(request: Request) -> str | None:
    """The client id of an HTTP Basic header (unverified; for throttling only). Only a client with a secret
    is throttled per client: public clients have no secret to guess, and a private_key_jwt assertion
    cannot be guessed, so locking those out would only let anyone shut a client out."""
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        return base64.b64decode(header[6:], validate=True).decode().partition(":")[0] or None
    except ValueError:
        return None


# -- authorize -------------------------------------------------------------------------------------------
def brand(auth: Any) -> pages.Branding:
    """The organization name and logo configured for this deployment (GATEWAY_ORG_NAME, GATEWAY_ORG_LOGO)."""
    settings = getattr(auth, "settings", None)
    name = getattr(settings, "org_name", "") or pages.Branding.name
    logo = getattr(settings, "org_logo", "")
    return pages.Branding(name, f"{auth.auth_base}/logo" if logo else None)


def _error_page(message: str, status: int = 400, auth: Any = None) -> HTMLResponse:
    return HTMLResponse(pages.error(message, brand(auth) if auth is not None else None), status_code=status,
                        headers=PAGE)


def _redirect_or_page(result: tuple[int, Any, list[tuple[str, str]]]) -> Response:
    status, body, headers = result
    location = dict(headers).get("Location")
    if status == 302 and location:
        return RedirectResponse(location, status_code=302, headers=NO_STORE)
    desc = body.get("error_description") or body.get("error") if isinstance(body, dict) else str(body)
    return _error_page(str(desc))


def _request_digest(req: StarletteOAuth2Request) -> str:
    """A digest of the exact authorization request (client, redirect_uri, scope, state, aud, launch, PKCE
    challenge, nonce...): a consent ticket is good for this request only."""
    data = req.payload.data
    return hashlib.sha256(orjson.dumps([[k, data.get(k)] for k in pages.OAUTH_FIELDS])).hexdigest()


def _ticket(auth: Any, username: str, req: StarletteOAuth2Request) -> str:
    """The signed proof, carried by the consent form, that this user signed in for this very authorization
    request; single-use (its ``jti`` is recorded when spent) and short-lived."""
    key = auth.keys.signing_key
    now = int(time.time())
    return jwt.encode({"alg": ALG, "kid": key.kid},
                      {"sub": username, "aud": TICKET_AUD, "client_id": req.client.client_id,
                       "req": _request_digest(req), "jti": uuid.uuid4().hex, "iat": now, "exp": now + TICKET_TTL},
                      key)


def _check_ticket(auth: Any, ticket: str, req: StarletteOAuth2Request, spend: bool = True) -> str | None:
    """The user name of a valid ticket for this request, spending it (unless ``spend`` is False: a patient
    search on the consent page keeps it); None when it is forged, expired, issued for another request or
    client, or already spent (in any process: the spent ids are in the database, with the client assertion
    ids)."""
    try:
        tok = jwt.decode(ticket, auth.keys.public, algorithms=[ALG])
        jwt.JWTClaimsRegistry(aud={"essential": True, "value": TICKET_AUD}, exp={"essential": True},
                              jti={"essential": True}, sub={"essential": True}).validate(tok.claims)
    except (JoseError, ValueError):
        return None
    c = tok.claims
    if c.get("client_id") != req.client.client_id or not hmac.compare_digest(str(c.get("req")),
                                                                             _request_digest(req)):
        return None
    if not spend:
        with auth.store.engine.connect() as conn:
            spent = conn.execute(select(JTI.c.jti).where(JTI.c.issuer == TICKET_ISSUER,
                                                         JTI.c.jti == str(c["jti"])[:255])).first()
        return None if spent else str(c["sub"])
    try:
        with auth.store.engine.begin() as conn:
            conn.execute(insert(JTI).values(issuer=TICKET_ISSUER, jti=str(c["jti"])[:255],
                                            expires_at=int(c["exp"]) + 10))
    except IntegrityError:
        log.warning("consent ticket replayed", extra={"client_id": req.client.client_id})
        return None
    return str(c["sub"])


def _needs_picker(auth: Any, req: StarletteOAuth2Request, user: EndUser) -> bool:
    if user.patient or req.payload.data.get("launch"):
        return False
    scopes = ScopeSet.parse(req.scope)
    return "launch/patient" in scopes.other or any(s.level == "patient" for s in scopes.resource)


def patient_label(p: dict[str, Any]) -> str:
    """How the pages name a patient: given and family name, birth date and first identifier."""
    name = (p.get("name") or [{}])[0]
    label = " ".join([*name.get("given", []), name.get("family", "")]).strip() or str(p.get("id"))
    label += f", born {p['birthDate']}" if p.get("birthDate") else ", birth date unknown"
    ident = next((i.get("value") for i in p.get("identifier") or [] if i.get("value")), None)
    return label + (f", identifier {ident}" if ident else "")


def search_patients(rest: Any, name: str = "", birthdate: str = "", identifier: str = "",
                    offset: int = 0) -> pages.Picker:
    """One page of the patient picker: patients matching the name (any part, prefix), birth date and
    identifier typed, sorted by family and given name, with the total so nothing is cut off silently.
    The signed-in user has no grant yet (this page is where one is made): the authorization server reads
    for itself, explicitly as SYSTEM, through the application's gated services like every other reader."""
    params = [("_count", str(pages.PICKER_PAGE_SIZE)), ("_sort", "family,given,_id"), ("_total", "accurate"),
              ("_offset", str(max(0, offset)))]
    if name.strip():
        params.append(("name", name.strip()))
    if birthdate.strip():
        params.append(("birthdate", birthdate.strip()))
    if identifier.strip():
        params.append(("identifier", identifier.strip()))
    picker = pages.Picker(name, birthdate, identifier, offset=max(0, offset))
    try:
        with acting_as(SYSTEM):
            _, result = rest.search("Patient", params)
    except FhirError as exc:  # e.g. a birth date that is no date
        picker.total = 0
        picker.error = exc.diagnostics
        return picker
    picker.matches = [(p["id"], patient_label(p)) for p in (orjson.loads(m.content) for m in result.matches)]
    picker.total = result.total if result.total is not None else len(picker.matches)
    return picker


def _read_patient_label(auth: Any, pid: str | None) -> str | None:
    if not pid:
        return None
    with acting_as(SYSTEM):
        stored = auth.store.read("Patient", pid)
    if stored is None or stored.deleted or not stored.content:
        return None
    return patient_label(orjson.loads(stored.content))


@router.get("/authorize", summary="Authorization endpoint (GET)", response_class=HTMLResponse)
@router.post("/authorize", summary="Authorization endpoint (POST, authorize-post)", response_class=HTMLResponse)
async def authorize(request: Request) -> Response:
    auth = _auth(request)
    try:
        req = await _oauth_request(request)
    except InsecureTransportError:
        return _error_page("TLS is required")
    except BadInput as exc:
        return _error_page(str(exc))
    try:
        grant = await run_in_threadpool(auth.server.get_consent_grant, req)
    except OAuth2Error as exc:
        log.warning("authorization request refused", extra={"error": exc.error, "description": exc.description,
                                                            "client_id": req.payload.client_id})
        if exc.redirect_uri:
            exc.state = req.payload.state
            return _redirect_or_page(auth.server.handle_error_response(req, exc))
        return _error_page(exc.description or exc.error, auth=auth)
    except ValueError:  # a value authlib could not parse (e.g. a redirect_uri that is no valid URL)
        return _error_page("The authorization request could not be parsed: check redirect_uri and the other "
                           "parameters")
    client = req.client
    params = {k: v for k, v in req.payload.data.items() if k in pages.OAUTH_FIELDS}
    step = req.form.get("_step")
    if step is None:
        return HTMLResponse(pages.login(params, client.name, brand=brand(auth)), headers=PAGE)
    if step == "login":
        username = req.form.get("username", "")
        keys = auth.throttle.keys("user", username, _address(request))
        wait = await run_in_threadpool(auth.throttle.retry_after, keys)
        if wait is not None:
            log.warning("sign-in throttled", extra={"client_id": client.client_id})
            minutes = max(1, -(-wait // 60))
            return HTMLResponse(pages.login(params, client.name, "Too many failed sign-ins. Try again in "
                                            f"{minutes} minute{'s' if minutes > 1 else ''}.", brand(auth)),
                                status_code=429, headers={**PAGE, "Retry-After": str(wait)})
        user = await run_in_threadpool(_login, auth, username, req.form.get("password", ""))
        if user is None:
            await run_in_threadpool(auth.throttle.failed, keys)
            log.warning("login failed", extra={"client_id": client.client_id})
            return HTMLResponse(pages.login(params, client.name, "Unknown user name or wrong password", brand(auth)),
                                status_code=401, headers=PAGE)
        await run_in_threadpool(auth.throttle.succeeded, keys[0] if keys and keys[0].kind == "user" else None)
        refused = await run_in_threadpool(_refusal, auth, req, user)
        if refused:
            return _deny(auth, req, refused)
        return await _consent_page(auth, req, params, client, user)
    if step != "consent":
        return _error_page("Unknown step of the authorization flow")
    ticket = str(req.form.get("ticket", ""))
    searching = req.form.get("decision") == "search" or "page" in req.form
    signed_in: str | None = await run_in_threadpool(_check_ticket, auth, ticket, req, not searching)
    user = await run_in_threadpool(auth.server.user, signed_in) if signed_in else None
    if user is None:
        return HTMLResponse(pages.login(params, client.name, "Your sign-in has expired; sign in again",
                                        brand(auth)), status_code=401, headers=PAGE)
    if searching:  # a patient search or another page of matches: the same consent page, the ticket kept
        return await _consent_page(auth, req, params, client, user, ticket=ticket)
    if req.form.get("decision") != "allow":
        result = await run_in_threadpool(auth.server.create_authorization_response, req, None, grant)
        return _redirect_or_page(result)
    refused = await run_in_threadpool(_refusal, auth, req, user)
    if refused:
        return _deny(auth, req, refused)
    ctx: dict[str, Any] = {}
    if not req.payload.data.get("launch"):
        ctx["need_patient_banner"] = True
    if user.patient:
        ctx["patient"] = user.patient
    elif _needs_picker(auth, req, user):
        pid = req.form.get("patient", "")
        if not pid or auth.store.read("Patient", pid) is None:
            return await _consent_page(auth, req, params, client, user, "Choose a patient")
        ctx["patient"] = pid
    req.smart_context = ctx
    result = await run_in_threadpool(auth.server.create_authorization_response, req, user, grant)
    return _redirect_or_page(result)


def _refusal(auth: Any, req: StarletteOAuth2Request, user: EndUser) -> str | None:
    """Why this signed-in user may not go on with this request, or None: a patient-bound user (Patient,
    RelatedPerson, Person) without a patient record, or with an EHR launch made for another patient."""
    if user.clinician:
        return None
    if not user.patient:
        return "Your account is linked to no patient record, so nothing can be shared. Ask the administrator."
    launch = req.payload.data.get("launch")
    if launch:
        launched = auth.server.launch_context(launch, req.client.client_id) or {}
        if launched.get("patient") not in (None, user.patient):
            return LAUNCH_OTHER_PATIENT
    return None


def _deny(auth: Any, req: StarletteOAuth2Request, reason: str) -> Response:
    """Refuse the request back to the app (``access_denied`` with the reason), logged."""
    log.warning("authorization refused for the signed-in user", extra={"client_id": req.client.client_id,
                                                                       "description": reason})
    exc = AccessDeniedError(reason, redirect_uri=req.payload.redirect_uri, state=req.payload.state)
    return _redirect_or_page(auth.server.handle_error_response(req, exc))


def _int(value: Any) -> int:
    text = str(value or "0")
    return int(text) if text.isascii() and text.isdigit() and len(text) < 10 else 0


async def _consent_page(auth: Any, req: StarletteOAuth2Request, params: dict[str, str], client: Any,
                        user: EndUser, error: str | None = None, ticket: str | None = None) -> HTMLResponse:
    """The consent page for this user: the patient picker (with the search typed and the page asked for)
    when the user must choose a patient, else the patient named (the launch patient, or a patient user's
    own record); a new ticket unless a search keeps the current one."""
    picker = None
    label = None
    if _needs_picker(auth, req, user):
        form = req.form
        picker = await run_in_threadpool(search_patients, auth.rest, str(form.get("q_name", "")),
                                         str(form.get("q_birthdate", "")), str(form.get("q_identifier", "")),
                                         _int(form.get("page")))
        error = error or picker.error
    else:
        launch = req.payload.data.get("launch")
        pid = user.patient
        if launch and not pid:
            pid = (auth.server.launch_context(launch, req.client.client_id) or {}).get("patient")
        label = await run_in_threadpool(_read_patient_label, auth, pid)
    scope = req.scope
    if not user.clinician:  # what a patient user will get: patient/ scopes only (server.save_authorization_code)
        parsed = ScopeSet.parse(scope)
        scope = " ".join([s.raw for s in parsed.resource if s.level == "patient"] + sorted(parsed.other))
    return HTMLResponse(pages.consent(params, client.name, ticket or _ticket(auth, user.username, req), scope,
                                      clinician=user.clinician, picker=picker, patient_label=label, error=error,
                                      brand=brand(auth)), headers=PAGE)


# a real scrypt hash (same parameters as every stored one) of a random password nobody kept: checking an
# unknown user name against it costs the same work as checking a known user's password
DUMMY_HASH = ("scrypt$e3d179130289a6fcfa02d125855ad336$"
              "748ccb99e728ed21c53d5c9f058e7f1c3ce30ad1e95a89da91c941f0e95aeb63"
              "d0e96ffd959d31a2b8d1ebe5fbcbac039c41ce4973b3953dd5f26d539c96adcf")


def _login(auth: Any, username: str, password: str) -> EndUser | None:
    """The user when the password is right; None otherwise. An unknown user name is checked against a
    dummy hash, so a refusal takes the same time whether the name exists or not."""
    with auth.store.engine.connect() as conn:
        row = conn.execute(select(USER).where(USER.c.username == username)).mappings().first()
    stored = row["password_hash"] if row is not None else DUMMY_HASH
    ok = check_secret(password, stored)
    if row is None or not ok:
        return None
    return auth.server.end_user(row)


# -- introspection and revocation ------------------------------------------------------------------------
def _bearer(request: Request, auth: Any) -> Any:
    header = request.headers.get("authorization", "")
    kind, _, value = header.partition(" ")
    if kind.lower() != "bearer" or not value:
        raise Unauthorized("Introspection needs an access token of this server (Authorization: Bearer)",
                           headers={"WWW-Authenticate": "Bearer"})
    return auth.tokens.validate(value.strip())


async def _simple_form(request: Request) -> dict[str, str]:
    """The form of an introspection or revocation request, each parameter once; raises BadInput."""
    req = await _oauth_request(request)
    return dict(req.form)


@router.post("/introspect", summary="Token introspection (RFC 7662)")
async def introspect(request: Request) -> Response:
    auth = _auth(request)
    try:
        form = await _simple_form(request)
    except BadInput as exc:
        return _json({"error": "invalid_request", "error_description": str(exc)}, 400)
    try:
        await run_in_threadpool(_bearer, request, auth)
    except FhirError as exc:
        return _json({"error": "invalid_token", "error_description": exc.diagnostics}, 401, exc.headers)
    value = form.get("token")
    if not isinstance(value, str) or not value:
        return _json({"error": "invalid_request", "error_description": "token is required"}, 400)
    return _json(await run_in_threadpool(auth.tokens.introspect, value))


@router.post("/revoke", summary="Token revocation (RFC 7009)")
async def revoke(request: Request) -> Response:
    auth = _auth(request)
    try:
        form = await _simple_form(request)
    except BadInput as exc:
        return _json({"error": "invalid_request", "error_description": str(exc)}, 400)
    client_id = None
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            cid, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            cid, secret = "", ""
        keys = auth.throttle.keys("client", cid, _address(request))  # a secret check: throttled as at /token
        wait = await run_in_threadpool(auth.throttle.retry_after, keys)
        if wait is not None:
            return _json({"error": "temporarily_unavailable",
                          "error_description": f"Too many failed requests; retry after {wait} seconds"},
                         429, {"Retry-After": str(wait)})
        client = auth.clients.get(cid)
        if client is None or not await run_in_threadpool(client.check_client_secret, secret):
            await run_in_threadpool(auth.throttle.failed, keys)
            return _json({"error": "invalid_client"}, 401, {"WWW-Authenticate": "Basic"})
        client_id = cid
    elif isinstance(form.get("client_id"), str):
        client = auth.clients.get(form["client_id"])
        if client is None or client.auth_method != "none":
            return _json({"error": "invalid_client", "error_description": "authenticate the client"}, 401)
        client_id = client.client_id
    else:
        return _json({"error": "invalid_client", "error_description": "client authentication is required"}, 401)
    value = form.get("token")
    if not isinstance(value, str) or not value:
        return _json({"error": "invalid_request", "error_description": "token is required"}, 400)
    await run_in_threadpool(auth.tokens.revoke, value, client_id)
    return _json({})


# -- admin API -------------------------------------------------------------------------------------------
def _admin(request: Request, auth: Any) -> None:
    grant = _bearer(request, auth)
    if "__admin" not in grant.scopes.other:
        raise Forbidden("The admin API needs a token with the __admin scope")


async def _json_object(request: Request) -> dict[str, Any] | None:
    """The request body as a JSON object; None when it is not valid JSON, not UTF-8 or not an object."""
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


@router.get("/admin/clients", summary="List registered clients (admin)")
def list_clients(request: Request) -> JSONResponse:
    auth = _auth(request)
    _admin(request, auth)
    return JSONResponse([c.public_view() for c in auth.clients.list()])


@router.post("/admin/clients", summary="Register a client (admin)")
async def add_client(request: Request) -> JSONResponse:
    auth = _auth(request)
    _admin(request, auth)
    body = await _json_object(request)
    if body is None:
        return JSONResponse({"error": "invalid_client_metadata",
                             "error_description": "The body must be a JSON object"}, status_code=400)
    wrong = [k for k, ok in (("client_name", isinstance(body.get("client_name", ""), str)),
                             ("scope", isinstance(body.get("scope", ""), str)),
                             ("jwks_uri", isinstance(body.get("jwks_uri"), str | None)),
                             ("jwks", isinstance(body.get("jwks"), dict | None)),
                             ("redirect_uris", body.get("redirect_uris") is None or (
                                 isinstance(body["redirect_uris"], list)
                                 and all(isinstance(u, str) for u in body["redirect_uris"]))))
             if not ok]
    if wrong:
        return JSONResponse({"error": "invalid_client_metadata",
                             "error_description": f"Wrong JSON type for: {', '.join(wrong)}"}, status_code=400)
    try:
        client, secret = await run_in_threadpool(
            lambda: auth.clients.register(str(body.get("client_name", "")), str(body.get("scope", "")),
                                          jwks=body.get("jwks"), jwks_uri=body.get("jwks_uri"),
                                          redirect_uris=body.get("redirect_uris"),
                                          confidential=body.get("token_endpoint_auth_method") == "client_secret_basic"))
    except RegistrationError as exc:
        return JSONResponse({"error": "invalid_client_metadata", "error_description": str(exc)}, status_code=400)
    out = client.public_view()
    if secret:
        out["client_secret"] = secret
    return JSONResponse(out, status_code=201, headers=NO_STORE)


@router.post("/admin/launch", summary="Create an EHR launch context (admin)")
async def create_launch(request: Request) -> JSONResponse:
    auth = _auth(request)
    _admin(request, auth)
    body = await _json_object(request)
    if body is None:
        return JSONResponse({"error": "invalid_request", "error_description": "The body must be a JSON object"},
                            status_code=400)
    client_id = body.get("client_id")
    if auth.clients.get(client_id) is None:
        return JSONResponse({"error": "unknown client_id"}, status_code=400)
    wrong = [k for k in ("patient", "encounter", "smart_style_url") if not isinstance(body.get(k, ""), str)]
    if wrong:
        return JSONResponse({"error": "invalid_request",
                             "error_description": f"Must be strings: {', '.join(wrong)}"}, status_code=400)
    ctx = {k: body[k] for k in ("patient", "encounter", "fhirContext", "smart_style_url", "need_patient_banner")
           if k in body}
    launch = await run_in_threadpool(auth.server.create_launch, client_id, ctx)
    return JSONResponse({"launch": launch, "iss": auth.fhir_base,
                         "query": urlencode({"iss": auth.fhir_base, "launch": launch})})


@router.get("/admin/audit", summary="Audit trail as a Bundle of AuditEvent (admin)")
def audit(request: Request) -> Response:
    auth = _auth(request)
    _admin(request, auth)
    q = request.query_params
    for name in ("patient", "since", "_count"):
        if len(q.getlist(name)) > 1:
            raise BadRequest(f"The parameter {name} is given more than once")
    count = q.get("_count", "100")
    if not count.isascii() or not count.isdigit() or not count.strip("0"):
        raise BadRequest(f"_count must be a positive whole number, not {count[:40]!r}")
    since = q.get("since")
    if since is not None and not _INSTANT.fullmatch(since):
        raise BadRequest("since must be a FHIR date or instant, e.g. 2025-01-31 or 2025-01-31T12:00:00Z")
    events = auth.audit.events(q.get("patient"), since, min(int(count) if len(count) <= 12 else 1000, 1000))
    body = {"resourceType": "Bundle", "type": "collection", "total": len(events),
            "entry": [{"resource": e} for e in events]}
    return Response(orjson.dumps(body), media_type="application/fhir+json")


@router.get("/logo", summary="The deployment's logo (GATEWAY_ORG_LOGO)")
def logo(request: Request) -> Response:
    auth = _auth(request)
    path = Path(getattr(auth.settings, "org_logo", "") or "")
    media = LOGO_TYPES.get(path.suffix.lower())
    if not str(path) or media is None or not path.is_file():
        return _error_page("No logo is configured on this server (GATEWAY_ORG_LOGO)", 404, auth)
    return Response(path.read_bytes(), media_type=media, headers={"Cache-Control": "max-age=3600",
                                                                  "Content-Security-Policy": "default-src 'none'"})


def user_ticket(auth: Any, username: str, audience: str = MANAGE_AUD, ttl: int = MANAGE_TTL) -> str:
    """A signed, short-lived proof that ``username`` signed in on one of the server's own pages (the
    authorized-apps page, the demo EHR launcher); carried in their forms, never in a cookie."""
    key = auth.keys.signing_key
    now = int(time.time())
    return jwt.encode({"alg": ALG, "kid": key.kid}, {"sub": username, "aud": audience, "iat": now,
                                                     "exp": now + ttl, "jti": uuid.uuid4().hex}, key)


def ticket_user(auth: Any, ticket: str, audience: str = MANAGE_AUD) -> str | None:
    """The user name a valid ``user_ticket`` for ``audience`` was issued to (signed here, not expired)."""
    try:
        tok = jwt.decode(ticket, auth.keys.public, algorithms=[ALG])
        jwt.JWTClaimsRegistry(aud={"essential": True, "value": audience}, exp={"essential": True},
                              sub={"essential": True}).validate(tok.claims)
    except (JoseError, ValueError):
        return None
    return str(tok.claims["sub"])


def sign_in(auth: Any, username: str, password: str) -> EndUser | None:
    """The user when the password is right (constant work whether the name exists or not), else None."""
    return _login(auth, username, password)


def authorized_apps(auth: Any, username: str) -> list[pages.AuthorizedApp]:
    """The apps holding a live (unrevoked, unexpired, not rotated away) token issued to this user, with
    how long their access lasts, longest first."""
    now = int(time.time())
    with auth.store.engine.connect() as conn:
        rows = conn.execute(select(TOKEN.c.client_id, TOKEN.c.scope, TOKEN.c.expires_at).where(
            TOKEN.c.subject == username, TOKEN.c.revoked.is_(False), TOKEN.c.used.is_(False),
            TOKEN.c.expires_at > now)).all()
    latest: dict[str, tuple[int, str]] = {}
    for cid, scope, exp in rows:
        if cid not in latest or exp > latest[cid][0]:
            latest[cid] = (exp, scope)
    out = []
    for cid, (exp, scope) in sorted(latest.items(), key=lambda kv: -kv[1][0]):
        client = auth.clients.get(cid)
        out.append(pages.AuthorizedApp(cid, client.name if client else cid, scope,
                                       time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(exp))))
    return out


@router.get("/manage", summary="Apps you have authorized (sign-in)", response_class=HTMLResponse)
def manage(request: Request) -> HTMLResponse:
    auth = _auth(request)
    return HTMLResponse(pages.manage_login(brand=brand(auth)), headers=PAGE)


@router.post("/manage", summary="Apps you have authorized: list, withdraw access", response_class=HTMLResponse)
async def manage_post(request: Request) -> HTMLResponse:
    """Sign in (``_step=login``) to list the apps holding tokens of this user; ``_step=revoke`` with the
    page's ticket and a ``client_id`` revokes every token that app holds for this user (access and
    refresh tokens: its next request is refused)."""
    auth = _auth(request)
    try:
        form = await _simple_form(request)
    except BadInput as exc:
        return _error_page(str(exc), auth=auth)
    b = brand(auth)
    if form.get("_step") == "login":
        username = form.get("username", "")
        keys = auth.throttle.keys("user", username, _address(request))
        wait = await run_in_threadpool(auth.throttle.retry_after, keys)
        if wait is not None:
            return HTMLResponse(pages.manage_login("Too many failed sign-ins. Try again later.", b),
                                status_code=429, headers={**PAGE, "Retry-After": str(wait)})
        user = await run_in_threadpool(_login, auth, username, form.get("password", ""))
        if user is None:
            await run_in_threadpool(auth.throttle.failed, keys)
            return HTMLResponse(pages.manage_login("Unknown user name or wrong password", b), status_code=401,
                                headers=PAGE)
        apps = await run_in_threadpool(authorized_apps, auth, user.username)
        return HTMLResponse(pages.manage(apps, user_ticket(auth, user.username), user.clinician, brand=b),
                            headers=PAGE)
    if form.get("_step") != "revoke":
        return _error_page("Unknown step", auth=auth)
    holder = ticket_user(auth, form.get("ticket", ""))
    user = await run_in_threadpool(auth.server.user, holder) if holder else None
    if user is None:
        return HTMLResponse(pages.manage_login("Your sign-in has expired; sign in again", b), status_code=401,
                            headers=PAGE)
    client_id = form.get("client_id", "")
    client = auth.clients.get(client_id)
    await run_in_threadpool(auth.tokens.revoke_user_client, user.username, client_id)
    log.warning("user withdrew an app's access", extra={"client_id": client_id})
    apps = await run_in_threadpool(authorized_apps, auth, user.username)
    notice = f"Access withdrawn: {client.name if client else client_id} can no longer use your account."
    return HTMLResponse(pages.manage(apps, user_ticket(auth, user.username), user.clinician, notice, b),
                        headers=PAGE)
