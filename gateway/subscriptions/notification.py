"""Notification bundles of the Subscriptions R5 Backport on R4: a `history` Bundle whose first entry is the
subscription status (a Parameters resource), followed, for `id-only` payloads, by one entry per focus with
its full URL and no resource."""

from __future__ import annotations

import uuid
from typing import Any

from ..fhir.dates import now_instant
from ..fhir.subscription_topic import NOTIFICATION_PROFILE, STATUS_PROFILE, TOPIC, Spec


def bundle(base: str, sub: Spec, kind: str, status: str, events_since_start: int,
           event: tuple[int, str, str, int] | None = None) -> dict[str, Any]:
    """``kind``: handshake | heartbeat | event-notification; ``event``: (number, focus type, focus id, focus
    version) for an event notification."""
    params: list[dict[str, Any]] = [
        {"name": "subscription", "valueReference": {"reference": f"{base}/Subscription/{sub.id}"}},
        {"name": "topic", "valueCanonical": TOPIC},
        {"name": "status", "valueCode": status},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(events_since_start)},
    ]
    entries: list[dict[str, Any]] = []
    if event is not None:
        number, rtype, rid, version = event
        parts: list[dict[str, Any]] = [{"name": "event-number", "valueString": str(number)},
                                       {"name": "timestamp", "valueInstant": now_instant()}]
        if sub.content == "id-only":
            parts.append({"name": "focus", "valueReference": {"reference": f"{base}/{rtype}/{rid}"}})
            entries.append({"fullUrl": f"{base}/{rtype}/{rid}",
                            "request": {"method": "PUT", "url": f"{rtype}/{rid}"},
                            "response": {"status": "200", "etag": f'W/"{version}"'}})
        params.append({"name": "notification-event", "part": parts})
    status_id = str(uuid.uuid4())
    first = {"fullUrl": f"urn:uuid:{status_id}",
             "resource": {"resourceType": "Parameters", "id": status_id, "meta": {"profile": [STATUS_PROFILE]},
                          "parameter": params},
             "request": {"method": "GET", "url": f"{base}/Subscription/{sub.id}/$status"},
             "response": {"status": "200"}}
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "meta": {"profile": [NOTIFICATION_PROFILE]},
            "type": "history", "timestamp": now_instant(), "entry": [first, *entries]}
