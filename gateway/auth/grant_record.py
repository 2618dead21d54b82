"""A grant written down with the work it authorizes, and read back when that work runs later.

Background work acts for the caller that started it, not for the server: a Bulk export job reads the store
under the grant of the client and user that kicked it off, and a Subscription's notifications go out only
when the grant of the caller that wrote the Subscription may read what they are about. Both are decided by
the one store gate (auth/gate.py), so the grant must survive until then: as JSON in the job row, and as an
extension in the Subscription's ``meta`` (set by the gated store on every Subscription write, so a client
cannot supply someone else's).

The record keeps what the gate reads (client, subject, scopes, launch patient, fhirUser) and nothing a
caller could use to act: no token, no jti."""

from __future__ import annotations

from typing import Any

from . import policy
from .context import SYSTEM, Grant
from .groups import restricted
from .scopes import ScopeSet

# the Subscription extension holding its owner's grant (one valueString part per field)
OWNER_EXTENSION = "http://fhir-vbc-gateway.example.org/StructureDefinition/subscription-owner"
FIELDS = ("client_id", "subject", "scope", "patient", "fhir_user")


def record(grant: Grant) -> dict[str, Any]:
    """The grant as plain JSON; the SYSTEM grant as ``{"system": true}``."""
    if grant.system:
        return {"system": True}
    return {"client_id": grant.client_id, "subject": grant.subject, "scope": grant.scopes.to_string(),
            "patient": grant.patient, "fhir_user": grant.fhir_user}


def restore(data: Any) -> Grant | None:
    """The grant a record describes, or None when there is no usable record (the caller then refuses:
    work with no recorded owner runs for nobody)."""
    if not isinstance(data, dict):
        return None
    if data.get("system") is True:
        return SYSTEM
    client_id, scope = data.get("client_id"), data.get("scope")
    if not isinstance(client_id, str) or not isinstance(scope, str):
        return None

    def text(key: str) -> str | None:
        value = data.get(key)
        return value if isinstance(value, str) and value else None

    return Grant(client_id=client_id, scopes=ScopeSet.parse(scope), subject=text("subject"),
                 patient=text("patient"), fhir_user=text("fhir_user"))


def stamp_owner(resource: dict[str, Any], grant: Grant) -> None:
    """Set the owner extension of a Subscription (in ``meta``, which the server manages) to ``grant``,
    replacing any the client sent."""
    rec = record(grant)
    parts = [{"url": k, "valueString": str(v).lower() if isinstance(v, bool) else str(v)}
             for k, v in rec.items() if v not in (None, "")]
    meta = resource.get("meta")
    meta = dict(meta) if isinstance(meta, dict) else {}
    others = [e for e in meta.get("extension") or [] if not (isinstance(e, dict) and e.get("url") == OWNER_EXTENSION)]
    meta["extension"] = [*others, {"url": OWNER_EXTENSION, "extension": parts}]
    resource["meta"] = meta


def owner_of(resource: dict[str, Any]) -> Grant | None:
    """The grant a stored Subscription was written under, or None when it carries no (valid) record."""
    meta = resource.get("meta")
    for ext in (meta.get("extension") if isinstance(meta, dict) else None) or []:
        if isinstance(ext, dict) and ext.get("url") == OWNER_EXTENSION:
            data: dict[str, Any] = {}
            for part in ext.get("extension") or []:
                if isinstance(part, dict) and part.get("url") in (*FIELDS, "system"):
                    data[str(part["url"])] = part.get("valueString")
            if data.get("system") == "true":
                data["system"] = True
            return restore(data)
    return None


def still_allows(now: Grant, then: Grant, types: list[str]) -> bool:
    """Whether the grant of a later request (``now``) still allows reading ``types`` as the recorded grant
    (``then``) did: same client, user, launch patient and fhirUser, every type readable, and the same
    narrowing (patient/ confinement, v2 scope filters) on each. A reduced or revoked grant answers False."""
    if then.system:
        return now.system
    if now.system:
        return True
    if (now.client_id, now.subject, now.patient, now.fhir_user) != (then.client_id, then.subject, then.patient,
                                                                     then.fhir_user):
        return False
    if restricted(now.fhir_user) != restricted(then.fhir_user):
        return False
    for t in types:
        if not policy.readable(now.scopes, t):
            return False
        if policy.confined(now.scopes, t) != policy.confined(then.scopes, t):
            return False
        for letter in ("r", "s"):
            if sorted(policy.scope_filters(now.scopes, t, letter) or []) != sorted(
                    policy.scope_filters(then.scopes, t, letter) or []):
                return False
    return True
