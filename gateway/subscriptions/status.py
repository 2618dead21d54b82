"""``GET Subscription/[id]/$notification-status``: the Subscription read through the store gate under the
caller's grant (a Subscription it may not read is not found), then the last notification the notifier
recorded for it (``store/sql/feeds.py`` ``Deliveries``)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from ..api.deps import Rest
from ..api.http import fhir_response, pretty
from ..store.sql.feeds import Deliveries


async def notification_status(rid: str, request: Request, rest: Rest) -> Response:
    """The Subscription's status and error and its last notification, as Parameters."""

    def work() -> dict[str, Any]:
        stored = rest.read("Subscription", rid)  # the gate decides; NotFound when the caller may not see it
        resource = orjson.loads(stored.content or b"{}")
        delivery = Deliveries(request.app.state.store).get(rid)
        params: list[dict[str, Any]] = [{"name": "subscription", "valueReference": {"reference": f"Subscription/{rid}"}},
                                        {"name": "status", "valueCode": str(resource.get("status") or "requested")}]
        if resource.get("error"):
            params.append({"name": "error", "valueString": str(resource["error"])})
        if delivery is not None:
            params += [{"name": "lastNotification", "valueInstant": delivery.at},
                       {"name": "lastKind", "valueCode": delivery.kind},
                       {"name": "lastOutcome", "valueCode": delivery.outcome}]
            if delivery.error:
                params.append({"name": "lastError", "valueString": delivery.error})
        params.append({"name": "notificationsSent", "valueInteger": delivery.sent if delivery else 0})
        return {"resourceType": "Parameters", "parameter": params}

    return fhir_response(await run_in_threadpool(work), is_pretty=pretty(request))
