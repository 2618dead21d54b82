"""The one topic the gateway offers: Da Vinci ATR member-attribution list change, as an R4 Subscription
following the Subscriptions R5 Backport (`atr-list-change-subscription`): `criteria` is the topic's
canonical, the `backport-filter-criteria` extension on `criteria` names one Group (`Group/<id>`), the
channel is a rest-hook with `application/fhir+json` and `id-only` (or `empty`) payloads."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..net.egress import EgressPolicy, EgressRefused, parse_url

TOPIC = "http://hl7.org/fhir/us/davinci-atr/SubscriptionTopic/atr-list-change"
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
FILTER = f"{BACKPORT}/backport-filter-criteria"
CONTENT = f"{BACKPORT}/backport-payload-content"
HEARTBEAT = f"{BACKPORT}/backport-heartbeat-period"
TIMEOUT = f"{BACKPORT}/backport-timeout"
STATUS_PROFILE = f"{BACKPORT}/backport-subscription-status-r4"
NOTIFICATION_PROFILE = f"{BACKPORT}/backport-subscription-notification-r4"


@dataclass
class Spec:
    id: str
    status: str
    group_id: str
    endpoint: str
    content: str = "id-only"  # id-only | empty
    headers: dict[str, str] = field(default_factory=dict)
    heartbeat: int | None = None  # seconds
    timeout: float = 10.0


def _ext(element: Any, url: str) -> Any:
    for e in (element or {}).get("extension") or [] if isinstance(element, dict) else []:
        if isinstance(e, dict) and e.get("url") == url:
            return next((v for k, v in e.items() if k.startswith("value")), None)
    return None


# headers a subscriber may not set: they frame or route the request, or carry another party's credentials
# (Authorization stays allowed: rest-hook subscribers use it to authenticate the gateway's POSTs)
FORBIDDEN_HEADERS = frozenset({
    "host", "content-length", "content-type", "content-encoding", "transfer-encoding", "connection",
    "keep-alive", "proxy-connection", "proxy-authorization", "proxy-authenticate", "te", "trailer", "upgrade",
    "expect", "cookie", "set-cookie", "forwarded", "via", "x-real-ip", "x-http-method-override"})
HEADER = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([\x20-\x7e\t]*?)[ \t]*")  # whole string
MAX_HEADERS = 10
MAX_HEADER_CHARS = 4096


def header_problem(h: Any) -> str | None:
    """Why a ``channel.header`` entry cannot be sent (None when it can): it must be one well-formed
    ``Name: value`` line (token name, printable ASCII value, no CR, LF or NUL) and not name a header that
    frames, routes or authenticates the request on another party's behalf."""
    if not isinstance(h, str) or len(h) > MAX_HEADER_CHARS:
        return f"channel.header entries must be 'Name: value' strings of at most {MAX_HEADER_CHARS} characters"
    m = HEADER.fullmatch(h)
    if m is None:
        return ("channel.header entries must be one 'Name: value' line: a token name, printable ASCII, "
                "no CR, LF or NUL")
    name = m.group(1).lower()
    if name in FORBIDDEN_HEADERS or name.startswith(("x-forwarded-", "proxy-")):
        return f"channel.header may not set '{m.group(1)}' (the gateway sets framing and routing headers itself)"
    return None


def problems(sub: dict[str, Any], egress: EgressPolicy | None = None) -> list[str]:
    """What makes this Subscription one the gateway cannot serve (empty when it can). ``egress``: the
    outbound-call policy (scheme, addresses, the operator's endpoint allow-list) the endpoint must pass; the
    gateway POSTs to whatever endpoint a client names, so the endpoint must not point it inwards. None
    checks only the endpoint's form (the sending client checks the rest again at send time)."""
    out: list[str] = []
    if sub.get("criteria") != TOPIC:
        return [f"Subscription.criteria must be the ATR list-change topic {TOPIC} (the only topic offered; "
                "R4 query-based criteria are not supported)"]
    if group_id(sub) is None:
        out.append("the criteria's backport-filter-criteria extension must name one Group as 'Group/<id>'")
    channel = sub.get("channel") or {}
    if channel.get("type") != "rest-hook":
        out.append("channel.type must be 'rest-hook' (the only channel offered)")
    endpoint = channel.get("endpoint")
    try:
        if egress is None:
            parse_url(endpoint)
        else:
            egress.check_url(endpoint)
    except EgressRefused as exc:
        detail = " (GATEWAY_SUBSCRIPTION_ENDPOINTS)" if "allow-list" in str(exc) else ""
        out.append(f"channel.endpoint {exc}{detail}")
    if channel.get("payload") not in (None, "application/fhir+json"):
        out.append("channel.payload must be 'application/fhir+json'")
    content = _ext(channel.get("_payload"), CONTENT) or "id-only"
    if content not in ("id-only", "empty"):
        out.append(f"payload content '{content}' is not offered (id-only or empty)")
    headers = channel.get("header") or []
    if not isinstance(headers, list) or len(headers) > MAX_HEADERS:
        out.append(f"channel.header must be a list of at most {MAX_HEADERS} entries")
    else:
        out.extend(p for p in (header_problem(h) for h in headers) if p is not None)
    return out


def group_id(sub: dict[str, Any]) -> str | None:
    """The id of the Group the Subscription's filter names, None when it names none (or not exactly one)."""
    group = _ext(sub.get("_criteria"), FILTER)
    if not isinstance(group, str) or not group.startswith("Group/") or len(group.split("/")) != 2 or \
            not group.split("/")[1]:
        return None
    return group.split("/")[1]


def spec(sub: dict[str, Any]) -> Spec | None:
    """The serving view of a valid Subscription, None when it is not one of this topic's."""
    if problems(sub):
        return None
    channel = sub["channel"]
    headers = {}
    for h in channel.get("header") or []:
        name, _, value = h.partition(":")
        headers[name.strip()] = value.strip()
    heartbeat = _ext(channel, HEARTBEAT)
    timeout = _ext(channel, TIMEOUT)
    return Spec(id=str(sub.get("id")), status=str(sub.get("status")),
                group_id=str(group_id(sub)), endpoint=channel["endpoint"],
                content=_ext(channel.get("_payload"), CONTENT) or "id-only", headers=headers,
                heartbeat=int(heartbeat) if isinstance(heartbeat, int) and heartbeat > 0 else None,
                timeout=float(timeout) if isinstance(timeout, int) and timeout > 0 else 10.0)
