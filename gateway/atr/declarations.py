"""The Da Vinci ATR member-list operations declared once ($member-add, $member-remove,
$confirm-attribution-list, $attribution-status) and the PDex Provider Access $provider-member-match
(provider_match/), which creates ATR lists. $davinci-data-export runs on the Bulk export and is
declared in gateway/bulk/declarations.py.

The app assembly (gateway/app.py) collects them into the operation registry."""

from __future__ import annotations

from ..fhir.atr_model import OD
from ..operations import USER_SYSTEM, Need, Operation, Param, group_endpoint
from .provider_match.declaration import OPERATIONS as PROVIDER_MATCH

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "member-add", "member-add", "ATR: add a member attribution",
        "ATR Group/[id]/$member-add: memberId + providerNpi or patientReference + providerReference, optional "
        "attributionPeriod; draft and open lists only; each change is a new Group version",
        group_endpoint("atr.handlers", "member_add"), (Need("Group", "u"),), OD + "member-add",
        (Param("memberId", "Identifier"), Param("providerNpi", "Identifier"),
         Param("patientReference", "Reference"), Param("providerReference", "Reference"),
         Param("attributionPeriod", "Period")),
        scope_levels=USER_SYSTEM, tags=("atr",), affects_state=True),
    Operation(
        "member-remove", "member-remove", "ATR: remove member attributions",
        "ATR Group/[id]/$member-remove: memberId [+ providerNpi] or patientReference [+ providerReference [+ "
        "coverageReference]]; draft keeps the member inactive with changeType dropped, open deletes it, final "
        "refuses",
        group_endpoint("atr.handlers", "member_remove"), (Need("Group", "u"),), OD + "member-remove",
        (Param("memberId", "Identifier"), Param("providerNpi", "Identifier"),
         Param("patientReference", "Reference"), Param("providerReference", "Reference"),
         Param("coverageReference", "Reference")),
        scope_levels=USER_SYSTEM, tags=("atr",), affects_state=True),
    Operation(
        "confirm-attribution-list", "confirm-attribution-list", "ATR: confirm the list",
        "ATR Group/[id]/$confirm-attribution-list: the list becomes final (inactive members dropped); answers 201",
        group_endpoint("atr.handlers", "confirm_list"), (Need("Group", "u"),), OD + "confirm-attribution-list",
        scope_levels=USER_SYSTEM, tags=("atr",), affects_state=True),
    Operation(
        "attribution-status", "attribution-status", "ATR: one member's attribution data",
        "ATR Group/[id]/$attribution-status: memberId or patientReference; a Bundle of the member's Patient, "
        "Coverage and attributed providers",
        group_endpoint("atr.handlers", "attribution_status"),
        (Need("Group", "r"), Need("Patient", "r"), Need("Coverage", "r")), OD + "attribution-status",
        (Param("memberId", "Identifier"), Param("patientReference", "Reference"),
         Param("return", "Bundle", use="out", min=1)),
        scope_levels=USER_SYSTEM, tags=("atr",)),
    *PROVIDER_MATCH,
)
