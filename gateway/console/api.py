"""Sign-in and the FHIR API as the signed-in console user sees it.

The console is a SMART app that happens to be served by the gateway: it finds the authorization and token
endpoints in ``.well-known/smart-configuration``, sends the user to the authorization server with PKCE
(S256) and exchanges the code with authlib's OAuth 2 client. Tokens stay on the server, in a session the
browser holds only an opaque, HttpOnly cookie for (a database row, the tokens sealed: ``sessions.py``). Every
FHIR call carries the user's access token and goes through the whole application (authentication, scopes,
the store gate, audit) in process, over httpx's ASGI transport: no network hop, and no way around the API. authlib refreshes the access token when it expires.

Under ``--auth off`` there is no sign-in (the API is open on loopback) and the console calls it without a
token, as any other client there would.
"""

from __future__ import annotations

from typing import Any

import httpx
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.httpx_client import AsyncOAuth2Client

from ..config import public_base
from ..operations import FEEDS_SCOPE, JOBS_ALL_SCOPE
from .sessions import Session, Sessions

# what the console asks for: who the user is, reading what the user may read, changing attribution lists, and
# the ingest runs and everyone's jobs (granted only when the console client is registered with those scopes)
SCOPE = f"openid fhirUser online_access user/*.rs user/Group.u {FEEDS_SCOPE} {JOBS_ALL_SCOPE}"
SESSION_COOKIE = "console_session"
FHIR_JSON = "application/fhir+json"


class ApiError(Exception):
    """A FHIR API answer other than success: its status and the OperationOutcome's text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class SignInNeeded(Exception):
    """The session has no usable token (never signed in, signed out, or the grant ended)."""


__all__ = ["SESSION_COOKIE", "ApiError", "Fhir", "Session", "Sessions", "SignInNeeded", "auth_enabled", "client_id",
           "fhir_base", "oauth_client", "sessions", "smart_configuration", "transport"]


def sessions(app: Any) -> Sessions:
    """The console sessions of the app's database (made on first use)."""
    state = app.state
    if getattr(state, "console_sessions", None) is None:
        state.console_sessions = Sessions(state.store)
    return state.console_sessions


def fhir_base(app: Any) -> str:
    """The FHIR base of the request being served (or the configured one)."""
    return public_base(app.state.settings.fhir_base()).rstrip("/")


def root_of(base: str) -> str:
    return base[: -len("/fhir")] if base.endswith("/fhir") else base


def transport(app: Any) -> httpx.ASGITransport:
    """Requests to the gateway's own HTTP API, answered in process by the whole application."""
    return httpx.ASGITransport(app=app, client=("127.0.0.1", 0))


def auth_enabled(app: Any) -> bool:
    return getattr(app.state, "authority", None) is not None


def client_id(app: Any) -> str:
    return str(app.state.settings.console_client_id)


async def smart_configuration(app: Any) -> dict[str, Any]:
    """The authorization server's SMART configuration, read from the FHIR base like any SMART app does."""
    base = fhir_base(app)
    async with httpx.AsyncClient(transport=transport(app), base_url=base) as http:
        r = await http.get(f"{base}/.well-known/smart-configuration")
    if r.status_code != 200:
        raise ApiError(r.status_code, "the SMART configuration could not be read")
    return dict(r.json())


def oauth_client(app: Any, session: Session | None = None, token_endpoint: str | None = None) -> AsyncOAuth2Client:
    """authlib's OAuth 2 client for the console (a public client: PKCE, no secret), talking to the gateway in
    process; with a session, it carries the session's token and stores refreshed ones back into it."""
    redirect = f"{root_of(fhir_base(app))}/console/callback"

    async def update_token(token: dict[str, Any], refresh_token: str | None = None,
                           access_token: str | None = None) -> None:
        if session is not None:
            session.token = dict(token)
            sessions(app).save(session)  # the refreshed tokens, for every instance

    # a refresh asks for what was granted: the console asks for scopes the client may not be registered with
    scope = str(session.token.get("scope") or SCOPE) if session is not None and session.token else SCOPE
    return AsyncOAuth2Client(client_id=client_id(app), scope=scope, redirect_uri=redirect,
                             code_challenge_method="S256", token_endpoint_auth_method="none",
                             token=session.token if session else None, token_endpoint=token_endpoint,
                             update_token=update_token, transport=transport(app), timeout=600)


class Fhir:
    """The FHIR API with the console user's token (none under ``--auth off``)."""

    def __init__(self, app: Any, session: Session | None) -> None:
        self.app = app
        self.session = session
        self.base = fhir_base(app)
        self._token_endpoint: str | None = None

    async def _client(self) -> httpx.AsyncClient:
        if not auth_enabled(self.app):
            return httpx.AsyncClient(transport=transport(self.app), timeout=600)
        if self.session is None or not self.session.token:
            raise SignInNeeded()
        if self._token_endpoint is None:
            self._token_endpoint = str((await smart_configuration(self.app))["token_endpoint"])
        return oauth_client(self.app, self.session, self._token_endpoint)

    async def request(self, method: str, path: str, params: list[tuple[str, str]] | None = None,
                      body: Any = None) -> Any:
        """One API call; the JSON answer, or ApiError with the OperationOutcome's text."""
        url = f"{self.base}/{path.lstrip('/')}"
        headers = {"Accept": FHIR_JSON}
        if body is not None:
            headers["Content-Type"] = FHIR_JSON
        client = await self._client()
        try:
            async with client:
                r = await client.request(method, url, params=list(params or []), json=body, headers=headers)
        except AuthlibBaseError as exc:  # no token, or its refresh failed (grant revoked or expired)
            raise SignInNeeded() from exc
        if r.status_code == 401 and auth_enabled(self.app):
            raise SignInNeeded()
        if r.status_code >= 400:
            raise ApiError(r.status_code, outcome_text(r))
        return r.json() if r.content else None

    async def get(self, path: str, params: list[tuple[str, str]] | None = None) -> Any:
        return await self.request("GET", path, params)

    async def post(self, path: str, body: Any, params: list[tuple[str, str]] | None = None) -> Any:
        return await self.request("POST", path, params, body)

    async def search_all(self, rtype: str, params: list[tuple[str, str]], limit: int = 10_000) -> list[dict[str, Any]]:
        """Every match of a search, following the ``next`` links."""
        out: list[dict[str, Any]] = []
        page = await self.get(rtype, [*params, ("_count", "500")])
        while True:
            out.extend(e["resource"] for e in page.get("entry") or []
                       if (e.get("search") or {}).get("mode", "match") == "match" and e.get("resource"))
            nxt = next((link["url"] for link in page.get("link") or [] if link.get("relation") == "next"), None)
            if not nxt or len(out) >= limit:
                return out
            page = await self.get(nxt[len(self.base):] if nxt.startswith(self.base) else nxt)


def outcome_text(r: httpx.Response) -> str:
    """The diagnostics of an OperationOutcome answer (or the status line)."""
    try:
        body = r.json()
    except ValueError:
        return f"HTTP {r.status_code}"
    if isinstance(body, dict):
        texts = [str(i.get("diagnostics") or (i.get("details") or {}).get("text") or "")
                 for i in body.get("issue") or [] if isinstance(i, dict)]
        if any(texts):
            return "; ".join(t for t in texts if t)
        if body.get("error"):
            return str(body.get("error_description") or body["error"])
    return f"HTTP {r.status_code}"
