"""The built-in user store (for sites without an identity provider), and what kind of access a user's FHIR
identity (fhirUser) allows: Practitioner and PractitionerRole users are clinicians (user-level access);
Patient, RelatedPerson and Person users are confined to the one patient their identity names."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Engine, insert, select

from .clients import hash_secret
from .tables import USER

CLINICIAN_TYPES = ("Practitioner", "PractitionerRole")
PATIENT_BOUND_TYPES = ("Patient", "RelatedPerson", "Person")


class UserError(ValueError):
    pass


def add_user(engine: Engine, username: str, password: str, fhir_user: str | None = None) -> None:
    """Add a sign-in user with a scrypt-hashed password. ``fhir_user`` is required: without a FHIR identity
    the gateway cannot tell a clinician from a patient, so such a user could never be granted anything."""
    if not username.strip() or len(password) < 8:
        raise UserError("a user needs a name and a password of at least 8 characters")
    rtype, _, rid = (fhir_user or "").partition("/")
    if rtype not in CLINICIAN_TYPES + PATIENT_BOUND_TYPES or not rid or "/" in rid:
        raise UserError("--fhir-user must be Patient/<id>, Practitioner/<id>, PractitionerRole/<id>, "
                        "RelatedPerson/<id> or Person/<id>")
    patient = rid if rtype == "Patient" else None
    with engine.begin() as conn:
        if conn.execute(select(USER.c.username).where(USER.c.username == username)).first():
            raise UserError(f"user {username} exists already")
        conn.execute(insert(USER).values(username=username, password_hash=hash_secret(password),
                                         fhir_user=fhir_user, patient=patient))


def fhir_user_type(fhir_user: str | None) -> str | None:
    """The resource type of a fhirUser reference (relative or absolute); None without one."""
    parts = (fhir_user or "").rstrip("/").split("/")
    return parts[-2] if len(parts) >= 2 and parts[-1] else None


def is_clinician(fhir_user: str | None) -> bool:
    """True only for Practitioner and PractitionerRole users: the only ones granted user-level access."""
    return fhir_user_type(fhir_user) in CLINICIAN_TYPES


def _patient_id(reference: Any) -> str | None:
    """The id of a Reference to a Patient (``Patient/1`` or an absolute URL ending in it), else None."""
    ref = reference.get("reference") if isinstance(reference, dict) else None
    if not isinstance(ref, str) or "/" not in ref:
        return None
    parts = ref.split("/_history/")[0].rstrip("/").split("/")
    return parts[-1] if len(parts) >= 2 and parts[-2] == "Patient" and parts[-1] else None


def linked_patient(store: Any, fhir_user: str | None) -> str | None:
    """The one patient a RelatedPerson or Person user acts for: ``RelatedPerson.patient``, or the single
    Patient among an active Person's ``link.target``. None when the resource is missing, inactive, links
    no patient or several (ambiguous): such a user is refused rather than given a wider view."""
    rtype = fhir_user_type(fhir_user)
    if rtype not in ("RelatedPerson", "Person"):
        return None
    rid = str(fhir_user).rstrip("/").split("/")[-1]
    stored = store.read(rtype, rid)
    if stored is None or stored.deleted or not stored.content:
        return None
    res = orjson.loads(stored.content)
    if res.get("active") is False:
        return None
    if rtype == "RelatedPerson":
        return _patient_id(res.get("patient"))
    links = res.get("link") if isinstance(res.get("link"), list) else []
    found = {p for p in (_patient_id(x.get("target")) for x in links if isinstance(x, dict)) if p}
    return found.pop() if len(found) == 1 else None
