"""The PDex Provider Access member match, declared once (collected through gateway/atr/declarations.py)."""

from __future__ import annotations

from ...operations import Endpoint, Need, Operation, Param

PDEX_OD = "http://hl7.org/fhir/us/davinci-pdex/OperationDefinition/"

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "provider-member-match", "provider-member-match", "PDex Provider Access: match a provider's patients",
        "Da Vinci PDex Group/$provider-member-match (POST, Parameters): for a provider's Backend Services client "
        "(system/ scopes, fhirUser its Organization or Practitioner with an NPI). Each MemberBundle holds "
        "MemberPatient, CoverageToMatch and the provider's treatment attestation Consent; members match on name, "
        "birth date and subscriber or member id, opted-out members are left out, and the matched ones are stored "
        "as an ATR attribution list (status open) to export with $davinci-data-export; answers MatchedMembers, "
        "NonMatchedMembers and ConsentConstrainedMembers. No member listed: 422, nothing stored",
        (Endpoint("type", "atr.provider_match.handler:provider_member_match", ("Group",), ("POST",)),),
        (Need("Group", "r"),), PDEX_OD + "ProviderMemberMatch",
        (Param("MemberBundle", "Parameters", min=1, max="*",
               documentation="parts MemberPatient (Patient), CoverageToMatch (Coverage), Consent (treatment "
                             "attestation), CoverageToLink (Coverage, not used)"),
         Param("MatchedMembers", "Group", use="out", min=1),
         Param("NonMatchedMembers", "Group", use="out"),
         Param("ConsentConstrainedMembers", "Group", use="out")),
        scope_levels=frozenset({"system"}), tags=("atr", "provider-access"), affects_state=True),
)
