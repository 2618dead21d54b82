"""Subscription/[id]/$notification-status declared once.

The app assembly (gateway/app.py) collects it into the operation registry."""

from __future__ import annotations

from ..operations import USER_SYSTEM, Endpoint, Need, Operation, Param

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "notification-status", "notification-status", "A Subscription's status and last notification",
        "Subscription/[id]/$notification-status (GET, gateway-specific): the Subscription's status and error "
        "(R4 Subscription.status, Subscription.error) and the last notification the gateway sent for it (time, "
        "handshake | heartbeat | event-notification, delivered | failed with the reason, how many were sent); "
        "answered only when the caller may read that Subscription",
        (Endpoint("instance", "subscriptions.status:notification_status", ("Subscription",), ("GET",)),),
        (Need("Subscription", "r"),), "http://fhir-vbc-gateway.example.org/OperationDefinition/notification-status",
        (Param("status", "code", use="out", min=1), Param("error", "string", use="out"),
         Param("lastNotification", "instant", use="out"), Param("lastKind", "code", use="out"),
         Param("lastOutcome", "code", use="out"), Param("lastError", "string", use="out"),
         Param("notificationsSent", "integer", use="out", min=1)),
        scope_levels=USER_SYSTEM, tags=("subscriptions",)),
)
