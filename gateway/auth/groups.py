"""Per-Group access for Da Vinci ATR attribution lists: a client or user acting for an organization or
practitioner (its fhirUser) sees a Group only when it is the Group's managing entity or an attributed
provider of one of its members. Callers without a fhirUser (the payer's own systems) see every Group."""

from __future__ import annotations

from typing import Any

ATTRIBUTED_PROVIDER = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-attributedProvider"
RESTRICTED_TYPES = ("Organization", "Practitioner", "PractitionerRole")


def restricted(fhir_user: str | None) -> bool:
    return bool(fhir_user) and str(fhir_user).rsplit("/", 2)[-2] in RESTRICTED_TYPES


def _same(reference: Any, fhir_user: str) -> bool:
    if not isinstance(reference, str):
        return False
    ref = reference.split("/_history/")[0]
    return ref == fhir_user or ref.endswith("/" + fhir_user)


def group_visible(group: dict[str, Any], fhir_user: str) -> bool:
    me = "/".join(fhir_user.split("/")[-2:])
    if _same((group.get("managingEntity") or {}).get("reference"), me):
        return True
    for member in group.get("member") or []:
        for ext in member.get("extension") or []:
            if ext.get("url") == ATTRIBUTED_PROVIDER and _same((ext.get("valueReference") or {}).get("reference"), me):
                return True
    return False
