"""HTTP endpoints of the authorization server: discovery, JWKS, authorize (login, picker, consent), token,
introspection, revocation and the admin API. The FHIR API itself is guarded by ``middleware``."""

from __future__ import annotations

import base64
import logging
import time
from typing import Any
from urllib.parse import urlencode

import orjson
from authlib.oauth2.rfc6749 import OAuth2Error
from authlib.oauth2.rfc6749.errors import InsecureTransportError
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from joserfc import jwt
from joserfc.errors import JoseError

from ..fhir.errors import FhirError, Unauthorized
from . import discovery, pages
from .clients import RegistrationError, check_secret
from .keys import ALG
from .scopes import ScopeSet
from .server import EndUser, StarletteOAuth2Request
from .tables import USER

log = logging.getLogger("gateway.auth")
router = APIRouter(tags=["auth"])  # mounted at /auth
wellknown = APIRouter(tags=["auth"])  # mounted at /fhir, before the FHIR routes
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# the sign-in and consent pages: never cached, never framed (clickjacking), no scripts
PAGE = {**NO_STORE, "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                   "frame-ancestors 'none'"}
TICKET_AUD = "urn:fhir-gateway:consent"


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


async def _oauth_request(request: Request) -> StarletteOAuth2Request:
    form: list[tuple[str, str]] = []
    if request.method == "POST":
        data = await request.form()
        form = [(k, v) for k, v in data.multi_items() if isinstance(v, str)]
    return StarletteOAuth2Request(request.method, str(request.url), request.headers,  # case-insensitive
                                  list(request.query_params.multi_items()), form)


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
    status, body, headers = await run_in_threadpool(auth.server.create_token_response, req)
    if status >= 400:
        log.warning("token request refused", extra={"error": body.get("error"),
                                                    "description": body.get("error_description"),
                                                    "grant_type": req.form.get("grant_type"),
                                                    "client_id": req.form.get("client_id")})
        if body.get("error") == "invalid_client" and "authorization" in request.headers:
            status = 401
    return _json(body, status, headers)


# -- authorize -------------------------------------------------------------------------------------------
def _error_page(message: str, status: int = 400) -> HTMLResponse:
    return HTMLResponse(pages.error(message), status_code=status, headers=PAGE)


def _redirect_or_page(result: tuple[int, Any, list[tuple[str, str]]]) -> Response:
    status, body, headers = result
    location = dict(headers).get("Location")
    if status == 302 and location:
        return RedirectResponse(location, status_code=302, headers=NO_STORE)
    desc = body.get("error_description") or body.get("error") if isinstance(body, dict) else str(body)
    return _error_page(str(desc))


def _ticket(auth: Any, username: str, client_id: str) -> str:
    key = auth.keys.signing_key
    now = int(time.time())
    return jwt.encode({"alg": ALG, "kid": key.kid}, {"sub": username, "aud": TICKET_AUD, "client_id": client_id,
                                                      "iat": now, "exp": now + 600}, key)


def _check_ticket(auth: Any, ticket: str, client_id: str) -> str | None:
    try:
        tok = jwt.decode(ticket, auth.keys.public, algorithms=[ALG])
        jwt.JWTClaimsRegistry(aud={"essential": True, "value": TICKET_AUD}, exp={"essential": True}).validate(tok.claims)
    except (JoseError, ValueError):
        return None
    return tok.claims["sub"] if tok.claims.get("client_id") == client_id else None


def _needs_picker(auth: Any, req: StarletteOAuth2Request, user: EndUser) -> bool:
    if user.patient or req.payload.data.get("launch"):
        return False
    scopes = ScopeSet.parse(req.scope)
    return "launch/patient" in scopes.other or any(s.level == "patient" for s in scopes.resource)


def _patients(auth: Any) -> list[tuple[str, str]]:
    rest = auth.rest
    _, result = rest.search("Patient", [("_count", "100"), ("_sort", "family")])
    out = []
    for m in result.matches:
        p = orjson.loads(m.content)
        name = (p.get("name") or [{}])[0]
        label = " ".join(name.get("given", []) + [name.get("family", "")]).strip() or p["id"]
        out.append((p["id"], f"{label} ({p.get('birthDate', 'birth date unknown')})"))
    return out


@router.get("/authorize", summary="Authorization endpoint (GET)", response_class=HTMLResponse)
@router.post("/authorize", summary="Authorization endpoint (POST, authorize-post)", response_class=HTMLResponse)
async def authorize(request: Request) -> Response:
    auth = _auth(request)
    try:
        req = await _oauth_request(request)
    except InsecureTransportError:
        return _error_page("TLS is required")
    try:
        grant = await run_in_threadpool(auth.server.get_consent_grant, req)
    except OAuth2Error as exc:
        log.warning("authorization request refused", extra={"error": exc.error, "description": exc.description,
                                                            "client_id": req.payload.client_id})
        if exc.redirect_uri:
            exc.state = req.payload.state
            return _redirect_or_page(auth.server.handle_error_response(req, exc))
        return _error_page(exc.description or exc.error)
    client = req.client
    params = {k: v for k, v in req.payload.data.items() if k in pages.OAUTH_FIELDS}
    step = req.form.get("_step")
    if step is None:
        return HTMLResponse(pages.login(params, client.name), headers=PAGE)
    if step == "login":
        username = req.form.get("username", "")
        user = await run_in_threadpool(_login, auth, username, req.form.get("password", ""))
        if user is None:
            log.warning("login failed", extra={"client_id": client.client_id})
            return HTMLResponse(pages.login(params, client.name, "Unknown user name or wrong password"),
                                status_code=401, headers=PAGE)
        return await _consent_page(auth, req, params, client, user)
    signed_in = _check_ticket(auth, req.form.get("ticket", ""), client.client_id)
    user = auth.server.user(signed_in) if signed_in else None
    if user is None:
        return HTMLResponse(pages.login(params, client.name, "Your sign-in has expired; sign in again"),
                            status_code=401, headers=PAGE)
    if req.form.get("decision") != "allow":
        result = await run_in_threadpool(auth.server.create_authorization_response, req, None, grant)
        return _redirect_or_page(result)
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


async def _consent_page(auth: Any, req: StarletteOAuth2Request, params: dict[str, str], client: Any,
                        user: EndUser, error: str | None = None) -> HTMLResponse:
    patients = await run_in_threadpool(_patients, auth) if _needs_picker(auth, req, user) else None
    return HTMLResponse(pages.consent(params, client.name, _ticket(auth, user.username, client.client_id),
                                      (req.scope or "").split(), patients, error), headers=PAGE)


def _login(auth: Any, username: str, password: str) -> EndUser | None:
    from sqlalchemy import select

    with auth.store.engine.connect() as conn:
        row = conn.execute(select(USER).where(USER.c.username == username)).mappings().first()
    if row is None or not check_secret(password, row["password_hash"]):
        return None
    return EndUser(row["username"], row["fhir_user"], row["patient"])


# -- introspection and revocation ------------------------------------------------------------------------
def _bearer(request: Request, auth: Any) -> Any:
    header = request.headers.get("authorization", "")
    kind, _, value = header.partition(" ")
    if kind.lower() != "bearer" or not value:
        raise Unauthorized("Introspection needs an access token of this server (Authorization: Bearer)",
                           headers={"WWW-Authenticate": "Bearer"})
    return auth.tokens.validate(value.strip())


@router.post("/introspect", summary="Token introspection (RFC 7662)")
async def introspect(request: Request) -> Response:
    auth = _auth(request)
    form = await request.form()
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
    form = await request.form()
    client_id = None
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            cid, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            cid, secret = "", ""
        client = auth.clients.get(cid)
        if client is None or not client.check_client_secret(secret):
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
        from ..fhir.errors import Forbidden

        raise Forbidden("The admin API needs a token with the __admin scope")


@router.get("/admin/clients", summary="List registered clients (admin)")
def list_clients(request: Request) -> JSONResponse:
    auth = _auth(request)
    _admin(request, auth)
    return JSONResponse([c.public_view() for c in auth.clients.list()])


@router.post("/admin/clients", summary="Register a client (admin)")
async def add_client(request: Request) -> JSONResponse:
    auth = _auth(request)
    _admin(request, auth)
    body = await request.json()
    if not isinstance(body, dict):
        return JSONResponse({"error": "invalid_client_metadata"}, status_code=400)
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
    body = await request.json()
    client_id = body.get("client_id") if isinstance(body, dict) else None
    if auth.clients.get(client_id) is None:
        return JSONResponse({"error": "unknown client_id"}, status_code=400)
    ctx = {k: body[k] for k in ("patient", "encounter", "fhirContext", "smart_style_url", "need_patient_banner")
           if k in body}
    launch = await run_in_threadpool(auth.server.create_launch, client_id, ctx)
    return JSONResponse({"launch": launch, "iss": auth.fhir_base,
                         "query": urlencode({"iss": auth.fhir_base, "launch": launch})})


@router.get("/admin/audit", summary="Audit trail as a Bundle of AuditEvent (admin)")
def audit(request: Request) -> Response:
    auth = _auth(request)
    _admin(request, auth)
    events = auth.audit.events(request.query_params.get("patient"), request.query_params.get("since"),
                               min(int(request.query_params.get("_count", "100")), 1000))
    body = {"resourceType": "Bundle", "type": "collection", "total": len(events),
            "entry": [{"resource": e} for e in events]}
    return Response(orjson.dumps(body), media_type="application/fhir+json")


@router.get("/manage", summary="Registered applications", response_class=HTMLResponse)
def manage(request: Request) -> HTMLResponse:
    _auth(request)
    return HTMLResponse(pages.manage())
