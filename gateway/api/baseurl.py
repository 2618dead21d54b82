"""The public FHIR base URL of a request: the one place absolute links get their scheme, host and prefix.

Rule (docs/operations.md, "Public base URL and proxies"):

- when ``base_url`` is configured, every absolute URL uses it, whatever the request says;
- otherwise the base is the request's own: scheme of the connection, host and port from the ``Host``
  header, then ``/fhir``. A client that reached the server as ``localhost`` gets ``localhost`` links, one
  that used ``127.0.0.1`` gets ``127.0.0.1`` links;
- ``Forwarded`` (RFC 7239: ``proto``, ``host``) or else ``X-Forwarded-Proto``/``-Host``, and
  ``X-Forwarded-Port`` and ``X-Forwarded-Prefix``, are honoured only when the connection comes from an address in
  ``trusted_proxies``; from anyone else they are ignored. The last value of each header counts (the one the
  nearest, trusted, proxy wrote).

The base derived here only shapes links in responses. Security decisions never read it: the SMART token
``aud`` check, the issuer and the authorization endpoints use the configured base (``Settings.fhir_base``).
Host values are checked for syntax, so a malformed Host cannot put markup or paths into links.

``BaseUrlMiddleware`` computes the base once per request and publishes it through
``config.set_request_base``; services read it with ``config.public_base``. ``serve`` runs uvicorn without
its own proxy-header handling, so nothing else rewrites the request from forwarding headers either: the
client address that throttling and audit use stays the socket's peer.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from ..config import reset_request_base, set_request_base

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]

FHIR_PATH = "/fhir"
_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
                   r"[A-Za-z0-9])?)*\.?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")
_PREFIX = re.compile(r"^(?:/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*/?$")
_DEFAULT_PORT = {"http": 80, "https": 443}
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """The addresses whose forwarding headers are believed: comma-separated IPs or networks, ``*`` for
    any, empty for none."""

    def __init__(self, spec: str) -> None:
        self.any = False
        self.networks: list[Network] = []
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            if part == "*":
                self.any = True
                continue
            try:
                self.networks.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ValueError(f"trusted_proxies: {part!r} is not an IP address or network") from None

    def trusts(self, address: str | None) -> bool:
        """Whether a connection from ``address`` may set forwarding headers."""
        if self.any:
            return True
        if not address:
            return False
        try:
            ip = ipaddress.ip_address(address.strip("[]"))
        except ValueError:
            return False
        return any(ip in n for n in self.networks)


def _last(value: str | None) -> str | None:
    """The last comma-separated element of a header value (what the nearest proxy added), trimmed."""
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    return items[-1] if items else None


def _forwarded(value: str | None) -> dict[str, str]:
    """The parameters of the last element of an RFC 7239 ``Forwarded`` header (lower-case names)."""
    element = _last(value)
    out: dict[str, str] = {}
    if not element:
        return out
    for pair in element.split(";"):
        name, sep, val = pair.partition("=")
        if sep:
            out[name.strip().lower()] = val.strip().strip('"')
    return out


def _host_ok(host: str | None) -> bool:
    return bool(host) and len(host or "") <= 300 and _HOST.match(host or "") is not None


def _with_port(host: str, port: str | None, scheme: str) -> str:
    """``host`` with its port replaced by ``port`` (dropped when it is the scheme's default)."""
    if port is not None and (not port.isdigit() or not 0 < int(port) < 65536):
        port = None
    if port is None:
        return host
    bare = host.rsplit(":", 1)[0] if not host.endswith("]") and host.count(":") == 1 else host
    return bare if int(port) == _DEFAULT_PORT.get(scheme) else f"{bare}:{port}"


def _strip_default_port(host: str, scheme: str) -> str:
    if host.endswith("]") or ":" not in host:
        return host
    name, port = host.rsplit(":", 1)
    return name if port.isdigit() and int(port) == _DEFAULT_PORT.get(scheme) else host


def request_base(scope: Scope, trusted: TrustedProxies) -> str:
    """The FHIR base URL (no trailing slash) as the client addressed this request: see the module rule."""
    headers: dict[str, str] = {}
    for k, v in scope.get("headers") or []:
        name = k.decode("latin-1").lower()
        value = v.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers and name != "host" else value
    scheme = scope.get("scheme") or "http"
    scheme = "https" if scheme in ("https", "wss") else "http"
    server = scope.get("server")
    host = headers.get("host")
    if not _host_ok(host):  # no Host (HTTP/1.0) or a malformed one: the address the server listens on
        if server:
            name = str(server[0])
            host = f"[{name}]:{server[1]}" if ":" in name else f"{name}:{server[1]}"
        else:
            host = "localhost"
    prefix = ""
    client = scope.get("client")
    if trusted.trusts(client[0] if client else None):
        fwd = _forwarded(headers.get("forwarded"))
        proto = (fwd.get("proto") or _last(headers.get("x-forwarded-proto")) or "").lower()
        if proto in ("http", "https"):
            scheme = proto
        fhost = fwd.get("host") or _last(headers.get("x-forwarded-host"))
        if _host_ok(fhost):
            host = fhost
        fport = _last(headers.get("x-forwarded-port"))
        if fport is not None:
            host = _with_port(host or "", fport, scheme)
        fprefix = _last(headers.get("x-forwarded-prefix"))
        if fprefix and _PREFIX.match(fprefix) and fprefix.startswith("/"):
            prefix = fprefix.rstrip("/")
    return f"{scheme}://{_strip_default_port(host or 'localhost', scheme)}{prefix}{FHIR_PATH}"


class BaseUrlMiddleware:
    """Publishes each request's public FHIR base (``config.set_request_base``) unless one is configured.
    The ASGI scope is left as the connection made it: the client address stays the socket's peer."""

    def __init__(self, app: ASGIApp, configured: str, trusted_proxies: str) -> None:
        self.app = app
        self.configured = configured.rstrip("/")
        self.trusted = TrustedProxies(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope.get("type") not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        base = None if self.configured else request_base(scope, self.trusted)
        token = set_request_base(base)
        try:
            await self.app(scope, receive, send)
        finally:
            reset_request_base(token)


def capability_for(cached: bytes, configured: str, base: str, memo: dict[str, bytes]) -> bytes:
    """The CapabilityStatement with ``implementation.url`` naming the request's base (``cached`` names the
    configured one); a few bases are remembered, the rest rebuilt per request."""
    if base == configured:
        return cached
    hit = memo.get(base)
    if hit is None:
        cs = orjson.loads(cached)
        cs.setdefault("implementation", {})["url"] = base
        hit = orjson.dumps(cs)
        if len(memo) < 16:
            memo[base] = hit
    return hit
