"""The Da Vinci ATR `atr-group` profile rules, checked on every write of an attribution list Group.

A Group is an attribution list when it claims the atr-group or davinci-patient-list profile or carries the
list status extension (the IG's own Group/fullexample declares no profile). fhir.resources checks the base
Group; this module checks what the profile adds (ATR 2.1 atr-group merged with davinci-patient-list).
"""

from __future__ import annotations

from typing import Any

from .atr_model import (
    CHANGE_TYPES,
    EXT_ASSOCIATED,
    EXT_CHANGE_TYPE,
    EXT_CONTRACT_PERIOD,
    EXT_COVERAGE,
    EXT_PROVIDER,
    EXT_RECIPIENT,
    EXT_STATUS,
    LIST_STATUSES,
    PROFILE_GROUP,
    PROFILE_PATIENT_LIST,
    is_atr_group,
)
from .errors import Issue


def claims(group: dict[str, Any], profile: str) -> bool:
    return any(p.split("|")[0] == profile for p in (group.get("meta") or {}).get("profile") or [])

PROVIDER_TYPES = ("Practitioner", "PractitionerRole", "Organization")


def _exts(node: dict[str, Any], url: str) -> list[dict[str, Any]]:
    return [e for e in node.get("extension") or [] if e.get("url") == url]


def _ref_type(value: Any) -> str | None:
    ref = (value or {}).get("reference") if isinstance(value, dict) else None
    if not isinstance(ref, str) or "/" not in ref:
        return None
    return ref.split("/")[-2]


def _single(node: dict[str, Any], url: str, key: str, where: str, name: str, errors: list[Issue]) -> Any:
    found = _exts(node, url)
    if len(found) > 1:
        errors.append(Issue("error", "structure", f"{where}: at most one {name} extension is allowed", [where]))
    if not found:
        return None
    if key not in found[0]:
        errors.append(Issue("error", "value", f"{where}: the {name} extension needs {key}", [where]))
        return None
    return found[0][key]


def group_issues(group: dict[str, Any]) -> tuple[list[Issue], list[Issue]]:
    """(errors, warnings) of an ATR attribution list Group; ([], []) for any other Group."""
    if group.get("resourceType") != "Group" or not is_atr_group(group):
        return [], []
    errors: list[Issue] = []
    warnings: list[Issue] = []
    statuses = _exts(group, EXT_STATUS)
    # the status is 1..1 in atr-group; the base davinci-patient-list profile (and its official example)
    # has none
    needs_status = claims(group, PROFILE_GROUP) or bool(statuses) or not claims(group, PROFILE_PATIENT_LIST)
    if needs_status and len(statuses) != 1:
        errors.append(Issue("error", "required", "An ATR Group needs exactly one attributionListStatus extension "
                            f"({EXT_STATUS})", ["Group.extension"]))
    status = statuses[0].get("valueCode") if statuses else None
    if statuses and status not in LIST_STATUSES:
        errors.append(Issue("error", "code-invalid", f"attributionListStatus {status!r} is not one of "
                            f"{', '.join(LIST_STATUSES)}", ["Group.extension"]))
    _single(group, EXT_CONTRACT_PERIOD, "valuePeriod", "Group", "contractValidityPeriod", errors)
    _single(group, EXT_RECIPIENT, "valueIdentifier", "Group", "intendedRecipientIdentifier", errors)
    if group.get("type") != "person":
        errors.append(Issue("error", "value", "An ATR Group has type 'person'", ["Group.type"]))
    if group.get("actual") is not True:
        errors.append(Issue("error", "value", "An ATR Group has actual = true", ["Group.actual"]))
    if _ref_type(group.get("managingEntity")) != "Organization":
        errors.append(Issue("error", "required", "An ATR Group needs managingEntity, a reference to the payer "
                            "Organization", ["Group.managingEntity"]))
    members = group.get("member") or []
    if status == "final" and not members:
        errors.append(Issue("error", "business-rule", "A final attribution list needs at least one member",
                            ["Group.member"]))
    for i, m in enumerate(members):
        where = f"Group.member[{i}]"
        if _ref_type(m.get("entity")) != "Patient":
            errors.append(Issue("error", "value", f"{where}.entity must reference a Patient", [f"{where}.entity"]))
        change = _single(m, EXT_CHANGE_TYPE, "valueCode", where, "changeType", errors)
        if change is not None and change not in CHANGE_TYPES:  # extensible binding: a warning
            warnings.append(Issue("warning", "code-invalid", f"{where}: changeType {change!r} is not in the ATR "
                                  f"change type codes ({', '.join(CHANGE_TYPES)})", [f"{where}.extension"]))
        cov = _single(m, EXT_COVERAGE, "valueReference", where, "coverageReference", errors)
        if cov is not None and _ref_type(cov) != "Coverage":
            errors.append(Issue("error", "value", f"{where}: coverageReference must reference a Coverage",
                                [f"{where}.extension"]))
        prov = _single(m, EXT_PROVIDER, "valueReference", where, "attributedProvider", errors)
        if prov is not None and _ref_type(prov) not in PROVIDER_TYPES:
            errors.append(Issue("error", "value", f"{where}: attributedProvider must reference a Practitioner, "
                                "PractitionerRole or Organization", [f"{where}.extension"]))
        _single(m, EXT_ASSOCIATED, "valueReference", where, "associatedData", errors)
    return errors, warnings
