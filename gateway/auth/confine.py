"""What a grant may see of a response: resources of types its scopes cover, and under patient/ scopes only
those in the launch patient's compartment. Applied to every /fhir response body, whatever route made it,
so operation outputs, _include/_revinclude and history are confined like plain reads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import policy
from .compartment import compartment_types, in_compartment
from .context import Grant
from .groups import Identifiers, group_visible, restricted

CONTAINERS = {"searchset", "history", "batch-response", "transaction-response", "collection"}


class Confiner:
    def __init__(self, grant: Grant, need_read: bool = True, identifiers: Identifiers = frozenset(),
                 stored_group: Callable[[str], dict[str, Any] | None] | None = None) -> None:
        """``stored_group`` reads a Group as stored: a Group shown subsetted (``_summary``, ``_elements``)
        has lost the members the visibility rule reads, so it is judged on the stored version instead."""
        self.grant = grant
        self.need_read = need_read
        self.identifiers = identifiers  # the caller's own identifiers (ATR intended recipient)
        self.stored_group = stored_group
        self.removed = 0

    def _group_visible(self, res: dict[str, Any]) -> bool:
        shown = res
        subsetted = any(isinstance(t, dict) and t.get("code") == "SUBSETTED"
                        for t in (res.get("meta") or {}).get("tag") or [])
        if subsetted and "member" not in res and self.stored_group is not None and isinstance(res.get("id"), str):
            shown = self.stored_group(res["id"]) or res
        return group_visible(shown, str(self.grant.fhir_user), self.identifiers)

    def allowed(self, res: dict[str, Any]) -> bool:
        rtype = str(res.get("resourceType"))
        if rtype == "OperationOutcome":
            return True
        scopes = self.grant.scopes
        if rtype == "Group" and restricted(self.grant.fhir_user) and not self._group_visible(res):
            return False
        if self.need_read and not policy.readable(scopes, rtype):
            return False
        if policy.confined(scopes, rtype, "rs" if self.need_read else "cruds") and (
                rtype == "Patient" or rtype in compartment_types()):
            return self.grant.patient is not None and in_compartment(res, self.grant.patient)
        return True

    def _entry_type_confined(self, entry: dict[str, Any]) -> bool:
        url = str((entry.get("request") or {}).get("url") or (entry.get("response") or {}).get("location") or "")
        rtype = url.split("?")[0].split("/")[0] if url else ""
        return not rtype or policy.confined(self.grant.scopes, rtype, "rs")

    def filter(self, body: Any) -> Any:
        """The body with what the grant may not see removed; None when the body itself is not allowed."""
        if not isinstance(body, dict) or "resourceType" not in body:
            return body  # not a FHIR resource (e.g. a bulk data status manifest)
        rtype = body.get("resourceType")
        if rtype == "Bundle" and body.get("type") in CONTAINERS:
            kept = []
            for entry in body.get("entry") or []:
                res = entry.get("resource") if isinstance(entry, dict) else None
                if isinstance(res, dict):
                    inner = self.filter(res)
                    if inner is None:
                        self.removed += 1
                        continue
                    entry["resource"] = inner
                elif body.get("type") == "history" and self._entry_type_confined(entry):
                    self.removed += 1  # a deletion of a resource whose compartment cannot be told
                    continue
                kept.append(entry)
            if "entry" in body:
                body["entry"] = kept
            return body
        if rtype == "Parameters":
            params = []
            for p in body.get("parameter") or []:
                res = p.get("resource") if isinstance(p, dict) else None
                if isinstance(res, dict):
                    inner = self.filter(res)
                    if inner is None:
                        self.removed += 1
                        continue
                    p["resource"] = inner
                params.append(p)
            if "parameter" in body:
                body["parameter"] = params
            return body
        return body if self.allowed(body) else None
