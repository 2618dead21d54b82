"""Who may subscribe to what, and the checks a Subscription write and `Subscription/$validate` share.

A list-change Subscription tells its subscriber every time the filtered Group changes, so subscribing is
reading the Group: the caller must be able to read that very Group. Refused with 403 before anything is
stored, so no handshake ever goes out:

* a caller with no scope giving read (`r`) on Group;
* a caller whose Group access comes only from `patient/` scopes: an attribution list's changes are about
  other patients (members added and removed), which a patient app may not learn;
* a caller acting for an organization or practitioner (fhirUser) when the Group is not one of its lists
  (`auth/groups.py`), or does not exist (same answer, so the refusal reveals nothing);
* a caller whose Group scopes carry a v2 query the Group does not match.

Without a grant (CLI, `--auth off`) the operator is acting and nothing is checked here."""

from __future__ import annotations

from typing import Any

import orjson

from ..fhir.errors import Issue
from ..fhir.subscription_topic import group_id, problems
from ..net.egress import EgressPolicy
from . import policy
from .context import current
from .groups import caller_identifiers, group_visible, restricted


def check_subscriber(sub: dict[str, Any], rest: Any) -> None:
    """Raise policy.Denied (403) unless the current caller may read the Group the Subscription filters on."""
    grant = current.get()
    gid = group_id(sub)
    if grant is None or gid is None:
        return  # no caller to check (operator), or no Group named: problems() reports that
    scopes = grant.scopes
    if not any(s.covers("Group", "r") for s in scopes.resource):
        raise policy.Denied(f"Subscribing to Group/{gid} needs read access to Groups ('r' on Group)")
    if policy.confined(scopes, "Group", "r"):
        raise policy.Denied("patient/ scopes cannot subscribe to attribution list changes: a list's "
                            "changes concern other patients")
    refused = policy.Denied(f"Group/{gid} is not readable by this client, so it cannot subscribe to it")
    if restricted(grant.fhir_user):
        stored = rest.store.read("Group", gid)
        if stored is None or stored.content is None or stored.deleted or not group_visible(
                orjson.loads(stored.content), str(grant.fhir_user), caller_identifiers(grant, rest.store)):
            raise refused
    filters = policy.scope_filters(scopes, "Group", "r")
    if filters:
        _, found = rest.search("Group", [("_id", gid), *filters, ("_count", "1")])
        if not found.matches:
            raise refused


def subscription_issues(sub: dict[str, Any], egress: EgressPolicy, rest: Any, level: str = "strict") -> list[Issue]:
    """Everything a Subscription write checks beyond the R4 model, for REST writes, Bundle entries and
    `$validate` alike: the caller's right to the Group (403, raised), then what makes the Subscription one
    the gateway cannot serve, endpoint rules included (errors, or warnings at the lenient level)."""
    check_subscriber(sub, rest)
    severity = "warning" if level == "lenient" else "error"
    return [Issue(severity, "not-supported", msg, ["Subscription"]) for msg in problems(sub, egress)]
