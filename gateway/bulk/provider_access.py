"""Provider Access exports (PDex, CMS-0057-F): a ``$davinci-data-export`` with a PDex exportType, or on a
Group made by ``$provider-member-match``, leaves out the members who have opted out *when the job runs*
(also those who opted out after the Group was made), and says so in the manifest's ``error`` list: one
OperationOutcome (severity warning, code suppressed) with how many members were left out, never who.
docs/specs/pdex-provider-access.md gives the reasons for that choice.

The opt-out rule itself is ``auth/opt_out.py``, the one the member match and the store gate use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from ..auth.context import SYSTEM, acting_as
from ..auth.opt_out import OptOuts, is_provider_access_group
from ..fhir.errors import Issue, operation_outcome
from ..store.sql.export_sql import Scope
from .request import PDEX_EXPORT_TYPES, ExportRequest

if TYPE_CHECKING:
    from ..store.sql.store import SqlStore


def _member_ids(group: dict[str, Any]) -> list[str]:
    out = []
    for m in group.get("member") or []:
        ref = str(((m or {}).get("entity") or {}).get("reference") or "").split("/_history/")[0]
        parts = ref.split("/")
        if len(parts) >= 2 and parts[-2] == "Patient" and parts[-1] and parts[-1] not in out:
            out.append(parts[-1])
    return out


def exclude_opted_out(store: SqlStore, req: ExportRequest, scope: Scope, configured: str,
                      errors: list[dict[str, Any]]) -> set[str]:
    """For a Provider Access export: narrow ``scope`` to the Group's members who have not opted out, add the
    manifest's OperationOutcome to ``errors``, and return the opted-out member ids (empty otherwise)."""
    if req.level != "group" or not req.group_id:
        return set()
    with acting_as(SYSTEM):
        stored = store.read("Group", req.group_id)
    group = orjson.loads(stored.content) if stored is not None and stored.content is not None else {}
    if req.export_type not in PDEX_EXPORT_TYPES and not is_provider_access_group(group):
        return set()
    opted = OptOuts(store, configured).opted_out(_member_ids(group))
    if not opted:
        return set()
    scope.excluded = sorted(opted)  # a NOT IN over the few opted out, not an IN over every member
    errors.append(operation_outcome([Issue(
        "warning", "suppressed", f"{len(opted)} member(s) of Group/{req.group_id} are left out of this export: "
        "they opted out of sharing their data with providers through the Provider Access API")]))
    return opted


def without_members(content: bytes, opted: set[str]) -> dict[str, Any]:
    """The exported Group without the member entries (and their submitted demographics) of ``opted``."""
    group = orjson.loads(content)
    keep, dropped_keys = [], set()
    for m in group.get("member") or []:
        ref = str(((m or {}).get("entity") or {}).get("reference") or "").split("/_history/")[0]
        if ref.split("/")[-1] in opted and ref.split("/")[-2:-1] == ["Patient"]:
            for e in ((m or {}).get("entity") or {}).get("extension") or []:
                dropped_keys.add(str((e.get("valueReference") or {}).get("reference") or "").lstrip("#"))
            continue
        keep.append(m)
    group["member"] = keep
    if not keep:
        group.pop("member")
    if "quantity" in group:
        group["quantity"] = len(keep)
    if group.get("contained"):
        group["contained"] = [c for c in group["contained"] if c.get("id") not in dropped_keys]
        if not group["contained"]:
            group.pop("contained")
    return dict(group)
