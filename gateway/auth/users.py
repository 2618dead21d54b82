"""The built-in user store (for sites without an identity provider)."""

from __future__ import annotations

from sqlalchemy import Engine, insert, select

from .clients import hash_secret
from .tables import USER


class UserError(ValueError):
    pass


def add_user(engine: Engine, username: str, password: str, fhir_user: str | None = None) -> None:
    if not username.strip() or len(password) < 8:
        raise UserError("a user needs a name and a password of at least 8 characters")
    patient = None
    if fhir_user:
        rtype, _, rid = fhir_user.partition("/")
        if rtype not in ("Patient", "Practitioner", "PractitionerRole", "RelatedPerson", "Person") or not rid:
            raise UserError("--fhir-user must be Patient/<id>, Practitioner/<id>, PractitionerRole/<id>, "
                            "RelatedPerson/<id> or Person/<id>")
        patient = rid if rtype == "Patient" else None
    with engine.begin() as conn:
        if conn.execute(select(USER.c.username).where(USER.c.username == username)).first():
            raise UserError(f"user {username} exists already")
        conn.execute(insert(USER).values(username=username, password_hash=hash_secret(password),
                                         fhir_user=fhir_user, patient=patient))
