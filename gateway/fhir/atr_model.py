"""ATR canonical URLs and small accessors over Group JSON: list status, members and their extensions."""

from __future__ import annotations

from typing import Any

ATR = "http://hl7.org/fhir/us/davinci-atr"
SD = f"{ATR}/StructureDefinition"
OD = f"{ATR}/OperationDefinition/"  # the canonical base of the ATR operations
EXT_STATUS = f"{SD}/ext-attributionListStatus"
EXT_CONTRACT_PERIOD = f"{SD}/ext-contractValidityPeriod"
EXT_CHANGE_TYPE = f"{SD}/ext-changeType"
EXT_COVERAGE = f"{SD}/ext-coverageReference"
EXT_PROVIDER = f"{SD}/ext-attributedProvider"
EXT_ASSOCIATED = f"{SD}/atr-any-resource-extension"
EXT_RECIPIENT = f"{SD}/atr-intended-recipient-identifier-extension"
PROFILE_GROUP = f"{SD}/atr-group"
PROFILE_PATIENT_LIST = f"{SD}/davinci-patient-list"
STATUS_CS = f"{ATR}/CodeSystem/atr-attribution-list-status"
CHANGE_CS = f"{ATR}/CodeSystem/atr-changetype"
LIST_STATUSES = ("draft", "open", "final")
CHANGE_TYPES = ("new", "dropped", "changed", "nochange", "cancelled")
NPI = "http://hl7.org/fhir/sid/us-npi"
TIN = "urn:oid:2.16.840.1.113883.4.4"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
COVERAGE_CLASS = "http://terminology.hl7.org/CodeSystem/coverage-class"


def ext(node: dict[str, Any], url: str) -> dict[str, Any] | None:
    return next((e for e in node.get("extension") or [] if e.get("url") == url), None)


def set_ext(node: dict[str, Any], url: str, key: str, value: Any) -> None:
    exts = [e for e in node.get("extension") or [] if e.get("url") != url]
    exts.append({"url": url, key: value})
    node["extension"] = exts


def drop_ext(node: dict[str, Any], url: str) -> None:
    exts = [e for e in node.get("extension") or [] if e.get("url") != url]
    if exts:
        node["extension"] = exts
    else:
        node.pop("extension", None)


def is_atr_group(group: dict[str, Any]) -> bool:
    """An attribution list: it claims an ATR profile or carries the list status extension."""
    profiles = (group.get("meta") or {}).get("profile") or []
    return (any(p.split("|")[0] in (PROFILE_GROUP, PROFILE_PATIENT_LIST) for p in profiles)
            or ext(group, EXT_STATUS) is not None)


def list_status(group: dict[str, Any]) -> str | None:
    e = ext(group, EXT_STATUS)
    return e.get("valueCode") if e else None


def member_ref(member: dict[str, Any], url: str) -> str | None:
    e = ext(member, url)
    return ((e or {}).get("valueReference") or {}).get("reference")


def make_member(patient: str, coverage: str | None, provider: str | None, period: dict[str, Any] | None,
                change: str = "new") -> dict[str, Any]:
    exts: list[dict[str, Any]] = [{"url": EXT_CHANGE_TYPE, "valueCode": change}]
    if coverage:
        exts.append({"url": EXT_COVERAGE, "valueReference": {"reference": coverage}})
    if provider:
        exts.append({"url": EXT_PROVIDER, "valueReference": {"reference": provider}})
    m: dict[str, Any] = {"extension": exts, "entity": {"reference": patient}}
    if period:
        m["period"] = period
    return m


def make_group(group_id: str, name: str, payer: str, members: list[dict[str, Any]], status: str = "draft",
               npi: str | None = None, tin: str | None = None, contract: tuple[str, str] | None = None,
               contract_period: dict[str, str] | None = None) -> dict[str, Any]:
    exts: list[dict[str, Any]] = [{"url": EXT_STATUS, "valueCode": status}]
    if contract_period:
        exts.append({"url": EXT_CONTRACT_PERIOD, "valuePeriod": contract_period})
    idents = []
    if npi:
        idents.append({"system": NPI, "value": npi})
    if tin:
        idents.append({"system": TIN, "value": tin})
    if contract:
        idents.append({"system": contract[0], "value": contract[1]})
    g: dict[str, Any] = {"resourceType": "Group", "id": group_id, "meta": {"profile": [PROFILE_GROUP]},
                         "extension": exts, "active": True, "type": "person", "actual": True, "name": name,
                         "managingEntity": {"reference": payer}, "quantity": len(members)}
    if members:
        g["member"] = members
    if idents:
        g["identifier"] = idents
    return g
