"""CORS for browser apps: the token, introspection and revocation endpoints and the FHIR API answer
cross-origin requests from the origins of registered redirect URIs (SMART: "registered client origins"),
and nobody else. Discovery documents are open to any origin (set by their routes)."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

PATHS = ("/fhir", "/auth/token", "/auth/introspect", "/auth/revoke")
ALLOW_HEADERS = b"Authorization, Content-Type, Accept, Prefer, If-Match, If-None-Exist, If-None-Match, X-Request-ID"
EXPOSE_HEADERS = b"Location, Content-Location, ETag, Last-Modified, X-Request-ID, WWW-Authenticate"


def origin_of(uri: str) -> str | None:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


class CorsMiddleware:
    def __init__(self, app: Any, authority: Any, ttl: float = 30.0) -> None:
        self.app = app
        self.authority = authority
        self.ttl = ttl
        self._origins: set[str] = set()
        self._loaded = -1e9

    def origins(self) -> set[str]:
        clients = self.authority.clients
        if time.monotonic() - self._loaded > self.ttl or clients.changed_at > self._loaded:
            self._origins = {o for c in clients.list() for u in c.redirect_uris
                             if (o := origin_of(u))}
            self._loaded = time.monotonic()
        return self._origins

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PATHS):
            await self.app(scope, receive, send)
            return
        origin = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"origin"), None)
        if origin is None or origin not in self.origins():
            await self.app(scope, receive, send)
            return
        allow = [(b"access-control-allow-origin", origin.encode()), (b"vary", b"Origin"),
                 (b"access-control-expose-headers", EXPOSE_HEADERS)]
        if scope["method"] == "OPTIONS" and any(k == b"access-control-request-method" for k, _ in scope["headers"]):
            await send({"type": "http.response.start", "status": 204, "headers": allow + [
                (b"access-control-allow-methods", b"GET, POST, PUT, PATCH, DELETE"),
                (b"access-control-allow-headers", ALLOW_HEADERS), (b"access-control-max-age", b"600")]})
            await send({"type": "http.response.body", "body": b""})
            return

        async def with_cors(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *allow]}
            await send(message)

        await self.app(scope, receive, with_cors)
