"""Per-Group access for Da Vinci ATR attribution lists: a client or user acting for an organization or
practitioner (its fhirUser) sees a Group only when it is the Group's managing entity, an attributed provider
of one of its members, or the list's intended recipient (the Group's `intendedRecipientIdentifier`, an
NPI or TIN, equal to one of the identifiers of the fhirUser's own resource). Callers without a fhirUser
(the payer's own systems) see every Group."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from ..store.base import ResourceStore

ATTRIBUTED_PROVIDER = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-attributedProvider"
INTENDED_RECIPIENT = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/atr-intended-recipient-identifier-extension"
RESTRICTED_TYPES = ("Organization", "Practitioner", "PractitionerRole")
Identifiers = frozenset[tuple[str, str]]


def restricted(fhir_user: str | None) -> bool:
    return bool(fhir_user) and str(fhir_user).rsplit("/", 2)[-2] in RESTRICTED_TYPES


def caller_identifiers(grant: Any, store: ResourceStore) -> Identifiers:
    """(system, value) of every identifier of the grant's fhirUser resource, read once per grant (grants are
    cached with their token)."""
    if grant.identifiers is not None:
        return grant.identifiers
    ids: set[tuple[str, str]] = set()
    rtype, _, rid = "/".join(str(grant.fhir_user).split("/")[-2:]).partition("/")
    stored = store.read(rtype, rid) if rtype in RESTRICTED_TYPES and rid else None
    if stored is not None and stored.content is not None:
        for ident in orjson.loads(stored.content).get("identifier") or []:
            if isinstance(ident, dict) and ident.get("system") and ident.get("value"):
                ids.add((str(ident["system"]), str(ident["value"])))
    grant.identifiers = frozenset(ids)
    return grant.identifiers


def _same(reference: Any, fhir_user: str) -> bool:
    if not isinstance(reference, str):
        return False
    ref = reference.split("/_history/")[0]
    return ref == fhir_user or ref.endswith("/" + fhir_user)


def group_visible(group: dict[str, Any], fhir_user: str, identifiers: Identifiers = frozenset()) -> bool:
    me = "/".join(fhir_user.split("/")[-2:])
    if _same((group.get("managingEntity") or {}).get("reference"), me):
        return True
    if identifiers:
        for ext in group.get("extension") or []:
            ident = ext.get("valueIdentifier") if isinstance(ext, dict) and ext.get("url") == INTENDED_RECIPIENT else None
            if isinstance(ident, dict) and (ident.get("system"), ident.get("value")) in identifiers:
                return True
    for member in group.get("member") or []:
        for ext in member.get("extension") or []:
            if ext.get("url") == ATTRIBUTED_PROVIDER and _same((ext.get("valueReference") or {}).get("reference"), me):
                return True
    return False
