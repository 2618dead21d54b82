"""CORS for browser apps, in one place.

- Public documents (SMART and OpenID discovery, the JWKS, the CapabilityStatement) answer any origin with
  ``Access-Control-Allow-Origin: *``: they hold nothing private, and a browser SMART app must read them before
  it is known (SMART App Launch 2.2 "CORS" requirements).
- The token, introspection and revocation endpoints and the FHIR API answer cross-origin requests from the
  origins of registered redirect URIs ("registered client origins") and nobody else.

Every response gets exactly one ``Access-Control-Allow-Origin`` header: any such header a route set is
replaced here (two of them make a browser reject the response)."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

PATHS = ("/fhir", "/auth/token", "/auth/introspect", "/auth/revoke")
PUBLIC = ("/fhir/.well-known/", "/.well-known/", "/auth/jwks", "/fhir/metadata")
ALLOW_HEADERS = b"Authorization, Content-Type, Accept, Prefer, If-Match, If-None-Exist, If-None-Match, X-Request-ID"
EXPOSE_HEADERS = b"Location, Content-Location, ETag, Last-Modified, X-Request-ID, WWW-Authenticate"
_CORS_NAMES = {b"access-control-allow-origin", b"access-control-expose-headers", b"access-control-allow-methods",
               b"access-control-allow-headers", b"access-control-max-age"}


def origin_of(uri: str) -> str | None:
    """The origin (scheme://host[:port]) of an absolute URI, or None for a relative or malformed one."""
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def is_public(path: str) -> bool:
    """True for the documents any origin may read (discovery, JWKS, CapabilityStatement)."""
    return path.startswith(PUBLIC) or path == "/auth/jwks"


class CorsMiddleware:
    """Pure ASGI middleware answering preflights and adding the CORS response headers (see module text)."""

    def __init__(self, app: Any, authority: Any, ttl: float = 30.0) -> None:
        self.app = app
        self.authority = authority
        self.ttl = ttl
        self._origins: set[str] = set()
        self._loaded = -1e9

    def origins(self) -> set[str]:
        """The registered client origins, re-read at most every ``ttl`` seconds or after a client change."""
        clients = self.authority.clients
        if time.monotonic() - self._loaded > self.ttl or clients.changed_at > self._loaded:
            self._origins = {o for c in clients.list() for u in c.redirect_uris
                             if (o := origin_of(u))}
            self._loaded = time.monotonic()
        return self._origins

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        public = is_public(path)
        if not public and not path.startswith(PATHS):
            await self.app(scope, receive, send)
            return
        origin = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"origin"), None)
        if origin is None or (not public and origin not in self.origins()):
            await self.app(scope, receive, send)
            return
        allow = [(b"access-control-allow-origin", b"*" if public else origin.encode()),
                 (b"access-control-expose-headers", EXPOSE_HEADERS)]
        if not public:
            allow.append((b"vary", b"Origin"))
        if scope["method"] == "OPTIONS" and any(k == b"access-control-request-method" for k, _ in scope["headers"]):
            methods = b"GET, OPTIONS" if public else b"GET, POST, PUT, PATCH, DELETE"
            await send({"type": "http.response.start", "status": 204, "headers": allow + [
                (b"access-control-allow-methods", methods),
                (b"access-control-allow-headers", ALLOW_HEADERS), (b"access-control-max-age", b"600")]})
            await send({"type": "http.response.body", "body": b""})
            return

        async def with_cors(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _CORS_NAMES]
                message = {**message, "headers": [*kept, *allow]}
            await send(message)

        await self.app(scope, receive, with_cors)
