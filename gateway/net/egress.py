"""The egress policy: which URLs the gateway may call out to, and an httpx client that keeps to it.

Every outbound call (rest-hook Subscription notifications, a Backend Services client's ``jwks_uri``, an
external identity provider's JWKS, bulk submission's manifests, files, provider discovery, token and export
requests) names a URL that somebody else chose: a client registering a
Subscription or a key URL could otherwise point the gateway's requests at hosts only the gateway can reach
(cloud metadata at 169.254.169.254, the database, an admin port on loopback). The rules:

* URLs are parsed, never compared as strings: no userinfo (``https://partner@169.254.169.254/``), no
  backslashes, control characters, fragments, zone ids or ambiguous numeric hosts (``2130706433``,
  ``0177.0.0.1``, ``127.1``); host names are lower-cased, IDNA-mapped and lose one trailing dot.
* ``https`` only, unless configured (``allow_http``) or named by an ``http`` allow-list entry.
* An allow-list entry is scheme + host [+ port] [+ path prefix], parsed the same way; a URL matches when
  scheme and host are equal, the port is equal (the scheme's default when the entry names none) and its
  path is the entry's path or lies below it on a ``/`` boundary.
* Addresses that are not public (loopback, link-local, private, unique-local, multicast, unspecified,
  reserved ranges, and IPv4-mapped, NAT64 or 6to4 IPv6 forms of those) are refused, as literals and as
  what a host name resolves to, unless configuration allows their class or network. Multicast and
  unspecified addresses are never allowed.
* The client from :func:`egress_client` checks the URL of every request, resolves the host when it
  connects, checks every address the name resolves to and connects to a checked address (so a name cannot
  resolve to a public address at the check and to an internal one at the connect), follows no redirects
  and ignores proxy environment variables.

This module depends on nothing else in the gateway, so every layer may use it."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote, urlsplit

import httpcore
import httpx
import idna

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

DEFAULT_PORTS = {"https": 443, "http": 80}
# address classes configuration may open; multicast and unspecified never are
CONFIGURABLE = ("loopback", "link-local", "private", "unique-local", "reserved")
LOOPBACK_NAMES = ("localhost", "localhost.localdomain")
_PRIVATE_V4 = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
_FORBIDDEN_CHARS = re.compile(r"[\x00-\x20\x7f\\]")
MAX_URL = 2048


class EgressRefused(ValueError):
    """A URL or address the egress policy does not allow; the message says why and may be shown to the
    client that named the URL (it names no internal detail beyond the URL's own parts)."""


class _RefusedAtConnect(httpcore.ConnectError):
    """Raised inside the connection pool, so that httpx reports it as a ConnectError (whose cause chain
    still holds the EgressRefused: see :func:`refusal`)."""


@dataclass(frozen=True)
class Target:
    """A parsed outbound URL (or allow-list entry): scheme, normalised host, effective port, path."""
    scheme: str
    host: str  # lower-case A-label name without trailing dot, or an IP address in canonical form
    port: int
    path: str  # percent-encoded as given, "/" when empty
    ip: IPAddress | None = None

    def label(self) -> str:
        host = f"[{self.host}]" if isinstance(self.ip, ipaddress.IPv6Address) else self.host
        return f"{self.scheme}://{host}:{self.port}{self.path}"


def parse_url(url: Any) -> Target:
    """Parse an absolute http(s) URL strictly (see the module docstring); EgressRefused when it is not one
    this gateway would call."""
    if not isinstance(url, str) or not url:
        raise EgressRefused("must be an absolute https URL")
    if len(url) > MAX_URL:
        raise EgressRefused(f"is longer than {MAX_URL} characters")
    if _FORBIDDEN_CHARS.search(url):
        raise EgressRefused("contains spaces, control characters or backslashes")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise EgressRefused("is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise EgressRefused("must be an absolute https URL")
    if parts.fragment or url.endswith("#"):
        raise EgressRefused("must not have a fragment")
    netloc = parts.netloc
    if not netloc:
        raise EgressRefused("has no host")
    if "@" in netloc:
        raise EgressRefused("must not carry a user name or password (userinfo)")
    host, port = _split_host_port(netloc)
    if port is None:
        port = DEFAULT_PORTS[scheme]
    path = parts.path or "/"
    if not path.isascii():
        raise EgressRefused("has characters outside ASCII in its path (percent-encode them)")
    decoded = unquote(path)
    if "\\" in decoded or any("/" in unquote(seg) for seg in path.split("/")) or \
            any(seg in (".", "..") for seg in decoded.split("/")):
        raise EgressRefused("has a path with dot segments or encoded slashes")
    if host.startswith("["):
        literal = host[1:-1]
        if "%" in literal:
            raise EgressRefused("must not carry an IPv6 zone id")
        try:
            ip6 = ipaddress.IPv6Address(literal)
        except ValueError:
            raise EgressRefused("has an invalid IPv6 address") from None
        return Target(scheme, ip6.compressed, port, path, ip6)
    name = _normalise_name(host)
    if _NUMERIC_LABEL.match(name.rsplit(".", 1)[-1]):
        try:
            ip4 = ipaddress.IPv4Address(name)  # strict dotted quad: no octal, hex, short or decimal forms
        except ValueError:
            raise EgressRefused("has an ambiguous numeric host (write IPv4 addresses as four decimal "
                                "numbers)") from None
        return Target(scheme, str(ip4), port, path, ip4)
    return Target(scheme, name, port, path, None)


def _split_host_port(netloc: str) -> tuple[str, int | None]:
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            raise EgressRefused("has an unterminated IPv6 address")
        host, rest = netloc[: end + 1], netloc[end + 1:]
        if rest and not rest.startswith(":"):
            raise EgressRefused("has text after its IPv6 address")
        port_text = rest[1:] if rest else None
    elif ":" in netloc:
        host, _, port_text = netloc.rpartition(":")
        if ":" in host:
            raise EgressRefused("has an IPv6 address without brackets")
    else:
        host, port_text = netloc, None
    if port_text is None:
        return host, None
    if not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5 or not 0 < int(port_text) < 65536:
        raise EgressRefused("has an invalid port")
    return host, int(port_text)


def _normalise_name(host: str) -> str:
    if "%" in host:
        raise EgressRefused("must not percent-encode its host")
    try:  # UTS 46 maps full-width digits and dots, upper case and other look-alikes first
        name = idna.encode(host, uts46=True, std3_rules=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        raise EgressRefused("has a host name that is not a valid (internationalised) domain name") from None
    name = name.lower()
    if name.endswith("."):
        name = name[:-1]
    if not name or any(not label for label in name.split(".")):
        raise EgressRefused("has an empty host name label")
    return name


def address_class(ip: IPAddress) -> str | None:
    """The class of a non-public address (loopback, link-local, private, unique-local, multicast,
    unspecified, reserved), None for a public one. IPv6 forms that embed an IPv4 address (mapped, NAT64,
    6to4, IPv4-compatible) take the class of the embedded address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(ip.compressed.split("%")[0])
        embedded: ipaddress.IPv4Address | None = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is None and ip in _V4_COMPATIBLE and int(ip) > 1:
            return address_class(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)) or "reserved"
        if embedded is not None:
            return address_class(embedded)
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, ipaddress.IPv4Address) and any(ip in n for n in _PRIVATE_V4):
        return "private"
    if isinstance(ip, ipaddress.IPv6Address) and ip in _UNIQUE_LOCAL:
        return "unique-local"
    if not ip.is_global or ip.is_reserved or ip.is_private:
        return "reserved"
    return None


def system_resolve(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host`` (TCP), in its order, without repeats."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class EgressPolicy:
    """What outbound calls may reach. The default refuses plain http and every non-public address."""
    allow_http: bool = False
    allow_classes: frozenset[str] = frozenset()
    allow_networks: tuple[IPNetwork, ...] = ()
    allowed: tuple[Target, ...] = ()  # destination allow-list; empty: any host that passes the rest
    resolver: Resolver = field(default=system_resolve, compare=False, repr=False)

    @classmethod
    def configure(cls, allow_networks: str = "", allow_http: bool = False, allowed: str = "") -> EgressPolicy:
        """A policy from the settings' strings: ``allow_networks`` comma-separated class names or CIDR
        networks, ``allowed`` comma-separated allow-list entries. ValueError names a bad item."""
        classes: set[str] = set()
        nets: list[IPNetwork] = []
        for item in (s.strip() for s in allow_networks.split(",")):
            if not item:
                continue
            if item in CONFIGURABLE:
                classes.add(item)
                continue
            try:
                nets.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"egress allowance {item!r} is neither an address class "
                                 f"({', '.join(CONFIGURABLE)}) nor a network") from None
        return cls(allow_http, frozenset(classes), tuple(nets)).restricted_to(allowed)

    def restricted_to(self, allowed: str | Iterable[str]) -> EgressPolicy:
        """This policy with a destination allow-list (comma-separated entries or a list of them)."""
        items = allowed.split(",") if isinstance(allowed, str) else list(allowed)
        entries = []
        for item in (s.strip() for s in items):
            if not item:
                continue
            try:
                entries.append(parse_url(item))
            except EgressRefused as exc:
                raise ValueError(f"allow-list entry {item!r} {exc}") from None
        return replace(self, allowed=tuple(entries))

    def with_resolver(self, resolver: Resolver) -> EgressPolicy:
        """This policy resolving host names with ``resolver`` (host, port) -> addresses."""
        return replace(self, resolver=resolver)

    # -- checks --------------------------------------------------------------------------------------------
    def address_allowed(self, ip: IPAddress) -> str | None:
        """None when outbound calls may reach ``ip``, else the class that keeps them from it."""
        cls = address_class(ip)
        if cls is None:
            return None
        if cls in ("unspecified", "multicast"):
            return cls
        if cls in self.allow_classes:
            return None
        plain = ip
        if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
            plain = ipaddress.IPv6Address(ip.compressed.split("%")[0])
        mapped = plain.ipv4_mapped if isinstance(plain, ipaddress.IPv6Address) else None
        for net in self.allow_networks:
            if plain in net or (mapped is not None and mapped in net):
                return None
        return cls

    def match(self, target: Target) -> Target | None:
        """The allow-list entry ``target`` falls under, if any."""
        for entry in self.allowed:
            if (entry.scheme, entry.host, entry.port) != (target.scheme, target.host, target.port):
                continue
            prefix = entry.path
            if prefix == "/" or target.path == prefix or target.path.startswith(prefix.rstrip("/") + "/"):
                return entry
        return None

    def check_url(self, url: Any) -> Target:
        """Every rule that needs no name resolution: syntax, scheme, allow-list, literal addresses and the
        names that always mean loopback. Returns the parsed target; EgressRefused says why not."""
        target = parse_url(url)
        if target.ip is not None:
            self.check_address(target.ip)
        elif target.host in LOOPBACK_NAMES or target.host.endswith(".localhost"):
            self.check_address(ipaddress.IPv4Address("127.0.0.1"))
        if self.allowed and self.match(target) is None:
            raise EgressRefused("is not one of the endpoints this gateway may call (allow-list)")
        if target.scheme == "http" and not self.allow_http and not (self.allowed and self.match(target)):
            raise EgressRefused("must be an https URL")
        return target

    def check_address(self, ip: IPAddress) -> None:
        """EgressRefused unless outbound calls may reach ``ip``."""
        cls = self.address_allowed(ip)
        if cls is not None:
            raise EgressRefused(f"points to a non-public address ({cls}), which outbound calls may not reach")

    def resolve_checked(self, host: str, port: int) -> list[str]:
        """Resolve ``host`` and check every address it gives: all must be allowed (one internal address
        among public ones refuses the name). Returns the addresses to connect to."""
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        if ip is not None:
            self.check_address(ip)
            return [str(ip)]
        try:
            found = self.resolver(host, port)
        except (OSError, UnicodeError):
            raise EgressRefused("has a host name that does not resolve") from None
        if not found:
            raise EgressRefused("has a host name that does not resolve")
        for text in found:
            try:
                addr = ipaddress.ip_address(text)
            except ValueError:
                raise EgressRefused("has a host name that resolves to something that is not an address") from None
            cls = self.address_allowed(addr)
            if cls is not None:
                raise EgressRefused(f"has a host name that resolves to a non-public address ({cls}), which outbound calls "
                                    "may not reach")
        return found


def refusal(exc: BaseException | None) -> EgressRefused | None:
    """The policy refusal behind an exception raised by an egress client's request, if that was the cause."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, EgressRefused):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


class _CheckedBackend(httpcore.SyncBackend):
    """Opens TCP connections only to addresses the policy allows: resolves the host itself, checks every
    address, then connects to a checked address (never resolving the name a second time)."""

    def __init__(self, policy: EgressPolicy) -> None:
        self.policy = policy

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        try:
            addresses = self.policy.resolve_checked(host, port)
        except EgressRefused as exc:
            raise _RefusedAtConnect(f"refused by the egress policy: {exc}") from exc
        last: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                           socket_options=socket_options)
            except httpcore.ConnectError as exc:  # try the next checked address
                last = exc
        assert last is not None
        raise last


class EgressTransport(httpx.HTTPTransport):
    """httpx transport that checks each request's URL against the policy and connects through
    :class:`_CheckedBackend`."""

    def __init__(self, policy: EgressPolicy) -> None:
        super().__init__(trust_env=False)
        self.policy = policy
        self._pool = httpcore.ConnectionPool(ssl_context=httpx.create_ssl_context(trust_env=False),
                                             network_backend=_CheckedBackend(policy), http1=True, http2=False)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            self.policy.check_url(str(request.url))
        except EgressRefused as exc:
            raise httpx.ConnectError(f"refused by the egress policy: {exc}", request=request) from exc
        return super().handle_request(request)


def egress_client(policy: EgressPolicy, timeout: float = 10.0) -> httpx.Client:
    """An httpx client for outbound calls under ``policy``: checked URLs, checked and pinned addresses, no
    redirects, no proxies from the environment."""
    return httpx.Client(transport=EgressTransport(policy), follow_redirects=False, trust_env=False, timeout=timeout)
