"""One reading of a FHIR RESTful request line (method and URL), shared by every part that must agree on it.

A batch or transaction entry carries ``request.method`` and ``request.url``; the authorization middleware and
the Bundle processor both need to know which interaction that is. Reading the URL twice, in two ways, is how an
entry came to be authorized as one thing and executed as another, so both call :func:`parse_request` here.

The grammar is the REST routes' own: the same resource-type and id patterns as the HTTP path convertors
(``api/paths.py`` takes them from here), the same templates as the authorization policy's route table, and a URL
the HTTP API would answer with 404 (no route) or 405 (a route exists for another method) raises that error here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from .errors import BadRequest, MethodNotAllowed, NotFound
from .resource_types import RESOURCE_TYPES

TYPE_PATTERN = "[A-Z][A-Za-z]{1,63}"
ID_PATTERN = r"[A-Za-z0-9\-.]{1,255}"  # R4 ids are 1..64 of these; lenient loads keep longer ones
_TYPE = re.compile(TYPE_PATTERN + r"\Z")
_ID = re.compile(ID_PATTERN + r"\Z")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"})

# (path pattern, method) -> (interaction, route template as the HTTP API and the policy name it).
# Pattern letters: T a resource type, I an id, literal segments as they are, $ an operation.
_ROUTES: dict[tuple[str, str], tuple[str, str]] = {
    ("T", "GET"): ("search-type", "/fhir/{rtype}"),
    ("T", "POST"): ("create", "/fhir/{rtype}"),
    ("T", "PUT"): ("conditional-update", "/fhir/{rtype}"),
    ("T", "DELETE"): ("conditional-delete", "/fhir/{rtype}"),
    ("T/I", "GET"): ("read", "/fhir/{rtype}/{rid}"),
    ("T/I", "PUT"): ("update", "/fhir/{rtype}/{rid}"),
    ("T/I", "PATCH"): ("patch", "/fhir/{rtype}/{rid}"),
    ("T/I", "DELETE"): ("delete", "/fhir/{rtype}/{rid}"),
    ("T/I/_history", "GET"): ("history-instance", "/fhir/{rtype}/{rid}/_history"),
    ("T/I/_history/I", "GET"): ("vread", "/fhir/{rtype}/{rid}/_history/{vid}"),
    ("T/_history", "GET"): ("history-type", "/fhir/{rtype}/_history"),
    ("T/_search", "POST"): ("search-type", "/fhir/{rtype}/_search"),
    ("Patient/I/T", "GET"): ("search-compartment", "/fhir/Patient/{pid}/{rtype}"),
    ("_history", "GET"): ("history-system", "/fhir/_history"),
    ("metadata", "GET"): ("capabilities", "/fhir/metadata"),
    ("", "POST"): ("transaction", "/fhir"),
}


@dataclass
class RestRequest:
    """What one request line asks for: the interaction (a key of the policy's permission table, or
    ``operation``, ``transaction``, ``capabilities``), its resource type, id, version, operation name, query,
    and the route template and path parameters the HTTP API would have matched."""

    method: str
    interaction: str
    template: str
    params: dict[str, str] = field(default_factory=dict)
    rtype: str | None = None
    rid: str | None = None
    vid: str | None = None
    operation: str | None = None
    query: str = ""

    @property
    def query_pairs(self) -> list[tuple[str, str]]:
        """The query string as (name, value) pairs, blank values kept."""
        return parse_qsl(self.query, keep_blank_values=True)


def _kind(seg: str, position: int) -> str:
    """The pattern letter of one path segment (see ``_ROUTES``): a literal, T, I or ? (matches nothing)."""
    if seg in ("_history", "_search", "metadata"):
        return seg
    if position in (0, 2) and _TYPE.match(seg):
        return "T"
    if position in (1, 3) and _ID.match(seg):
        return "I"
    return "?"


def parse_request(method: str, url: str, base: str) -> RestRequest:
    """Read ``method url`` (``url`` relative to ``base``, or absolute under it) the way the HTTP API routes it.

    Raises BadRequest for a missing method or URL and for a URL outside ``base``, NotFound (404) for a path
    no route serves or an unknown resource type, and a 405 FhirError for a path served for other methods only.
    """
    method = method.upper() if isinstance(method, str) else ""
    if method not in METHODS:
        raise BadRequest(f"request.method must be one of {', '.join(sorted(METHODS))}, got {method or None!r}")
    if not isinstance(url, str) or not url.strip():
        raise BadRequest("request.url is required")
    prefix = base.rstrip("/") + "/"
    if url.startswith(prefix):
        url = url[len(prefix):]
    elif url == base.rstrip("/"):
        url = ""
    parts = urlsplit(url)
    if parts.scheme or parts.netloc:
        raise BadRequest(f"request.url {url!r} is not on this server (base {base})")
    path = parts.path.strip("/") if parts.path not in ("", "/") else ""
    segs = path.split("/") if path else []
    if any(not s for s in segs):
        raise NotFound(f"No route for {method} {url}")
    verb = "GET" if method == "HEAD" else method
    op = next((i for i, s in enumerate(segs) if s.startswith("$")), None)
    if op is not None:
        return _operation(verb, url, segs, op, parts.query)
    kinds = [_kind(s, i) for i, s in enumerate(segs)]
    pattern = "/".join(kinds)
    if pattern == "T/I/T" and segs[0] == "Patient":  # the Patient compartment: Patient/[id]/[type]
        pattern = "Patient/I/T"
    hit = _ROUTES.get((pattern, verb))
    if hit is None:
        allowed = sorted(m for p, m in _ROUTES if p == pattern)
        if allowed:
            raise MethodNotAllowed(f"{method} is not allowed on {url} (allowed: {', '.join(allowed)})",
                                   headers={"Allow": ", ".join(allowed)})
        raise NotFound(f"No route for {method} {url}")
    interaction, template = hit
    req = RestRequest(method, interaction, template, query=parts.query)
    if "T" in kinds:
        rtype = segs[2] if pattern == "Patient/I/T" else segs[0]
        if rtype not in RESOURCE_TYPES:
            raise NotFound(f"Unknown resource type '{rtype}'", code="not-supported")
        req.rtype = req.params["rtype"] = rtype
    if pattern == "Patient/I/T":
        req.rid = req.params["pid"] = segs[1]
    elif pattern.startswith("T/I"):
        req.rid = req.params["rid"] = segs[1]
    if interaction == "vread":
        req.vid = req.params["vid"] = segs[3]
    return req


def _operation(verb: str, url: str, segs: list[str], op: int, query: str) -> RestRequest:
    """``[type]/[id]/$name``, ``[type]/$name`` or ``$name``, with whatever follows the name."""
    before = segs[:op]
    name = segs[op][1:]
    if not name or len(before) > 2:
        raise NotFound(f"No route for {verb} {url}")
    req = RestRequest(verb, "operation", "", operation=name, query=query)
    tpl = []
    if before:
        if not _TYPE.match(before[0]) or before[0] not in RESOURCE_TYPES:
            raise NotFound(f"Unknown resource type '{before[0]}'", code="not-supported")
        req.rtype = before[0]
        tpl.append(before[0])
    if len(before) == 2:
        if not _ID.match(before[1]):
            raise NotFound(f"No route for {verb} {url}")
        req.rid = req.params["rid"] = before[1]
        tpl.append("{rid}")
    req.template = "/fhir/" + "/".join([*tpl, *segs[op:]])
    return req
