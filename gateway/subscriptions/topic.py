"""The one topic the gateway offers: Da Vinci ATR member-attribution list change, as an R4 Subscription
following the Subscriptions R5 Backport (`atr-list-change-subscription`): `criteria` is the topic's
canonical, the `backport-filter-criteria` extension on `criteria` names one Group (`Group/<id>`), the
channel is a rest-hook with `application/fhir+json` and `id-only` (or `empty`) payloads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

TOPIC = "http://hl7.org/fhir/us/davinci-atr/SubscriptionTopic/atr-list-change"
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
FILTER = f"{BACKPORT}/backport-filter-criteria"
CONTENT = f"{BACKPORT}/backport-payload-content"
HEARTBEAT = f"{BACKPORT}/backport-heartbeat-period"
TIMEOUT = f"{BACKPORT}/backport-timeout"
STATUS_PROFILE = f"{BACKPORT}/backport-subscription-status-r4"
NOTIFICATION_PROFILE = f"{BACKPORT}/backport-subscription-notification-r4"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


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


def problems(sub: dict[str, Any], allowed: tuple[str, ...] = ()) -> list[str]:
    """What makes this Subscription one the gateway cannot serve (empty when it can). ``allowed``: URL
    prefixes an endpoint must start with, when the operator has set any (the gateway POSTs to whatever
    endpoint a client names, so a list of partners' hook URLs keeps it from being pointed inwards)."""
    out: list[str] = []
    if sub.get("criteria") != TOPIC:
        return [f"Subscription.criteria must be the ATR list-change topic {TOPIC} (the only topic offered; "
                "R4 query-based criteria are not supported)"]
    group = _ext(sub.get("_criteria"), FILTER)
    if not isinstance(group, str) or not group.startswith("Group/") or len(group.split("/")) != 2 or \
            not group.split("/")[1]:
        out.append("the criteria's backport-filter-criteria extension must name one Group as 'Group/<id>'")
    channel = sub.get("channel") or {}
    if channel.get("type") != "rest-hook":
        out.append("channel.type must be 'rest-hook' (the only channel offered)")
    endpoint = channel.get("endpoint")
    parts = urlsplit(endpoint) if isinstance(endpoint, str) else None
    if parts is None or not parts.netloc or not (
            parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK)):
        out.append("channel.endpoint must be an https URL (http only on a loopback address)")
    elif allowed and not any(str(endpoint).startswith(a) for a in allowed):
        out.append("channel.endpoint is not one of the endpoints this gateway may notify "
                   "(GATEWAY_SUBSCRIPTION_ENDPOINTS)")
    if channel.get("payload") not in (None, "application/fhir+json"):
        out.append("channel.payload must be 'application/fhir+json'")
    content = _ext(channel.get("_payload"), CONTENT) or "id-only"
    if content not in ("id-only", "empty"):
        out.append(f"payload content '{content}' is not offered (id-only or empty)")
    for h in channel.get("header") or []:
        if not isinstance(h, str) or ":" not in h:
            out.append(f"channel.header {h!r} must be 'Name: value'")
    return out


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
                group_id=_ext(sub["_criteria"], FILTER).split("/")[1], endpoint=channel["endpoint"],
                content=_ext(channel.get("_payload"), CONTENT) or "id-only", headers=headers,
                heartbeat=int(heartbeat) if isinstance(heartbeat, int) and heartbeat > 0 else None,
                timeout=float(timeout) if isinstance(timeout, int) and timeout > 0 else 10.0)
