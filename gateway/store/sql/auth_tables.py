"""Tables of the authorization server (sqlmodel, migrated by alembic revision 0003 with the resource tables).

Secrets are never stored in clear: client secrets, refresh tokens and authorization codes are kept as
SHA-256 (secrets: scrypt) digests. Signing keys are stored as private JWKs (protect the database).
"""

from __future__ import annotations

from typing import Optional

from sqlalchemy import Index, Text, UniqueConstraint
from sqlmodel import Column, Field, SQLModel

from .tables import table_of


class AuthClient(SQLModel, table=True):
    __tablename__ = "auth_client"
    client_id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=255)
    auth_method: str = Field(max_length=32)  # none | client_secret_basic | private_key_jwt
    secret_hash: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045
    jwks: Optional[str] = Field(default=None, sa_column=Column(Text))  # noqa: UP045
    jwks_uri: Optional[str] = Field(default=None, max_length=1024)  # noqa: UP045
    redirect_uris: str = Field(default="[]", sa_column=Column(Text, nullable=False))  # JSON list
    grant_types: str = Field(default="[]", sa_column=Column(Text, nullable=False))  # JSON list
    scope: str = Field(sa_column=Column(Text, nullable=False))
    fhir_user: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045 - e.g. Organization/12 (ATR)
    created_at: int


class AuthKey(SQLModel, table=True):
    __tablename__ = "auth_key"
    kid: str = Field(primary_key=True, max_length=64)
    alg: str = Field(max_length=16)
    private_jwk: str = Field(sa_column=Column(Text, nullable=False))
    created_at: int
    retired_at: Optional[int] = None  # noqa: UP045 - published but no longer used to sign


class AuthToken(SQLModel, table=True):
    """Issued access tokens (by jti) and refresh tokens (by digest), for introspection and revocation."""
    __tablename__ = "auth_token"
    __table_args__ = (Index("ix_auth_token_family", "family"), Index("ix_auth_token_expires", "expires_at"))
    token_key: str = Field(primary_key=True, max_length=128)  # access: jti; refresh: sha256 hex
    kind: str = Field(max_length=16)  # access | refresh
    client_id: str = Field(max_length=64)
    family: str = Field(max_length=64)  # one authorization grant: revoked together
    scope: str = Field(sa_column=Column(Text, nullable=False))
    subject: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045
    context: str = Field(default="{}", sa_column=Column(Text, nullable=False))  # JSON: patient, encounter, ...
    expires_at: int
    revoked: bool = False
    used: bool = False  # refresh tokens: rotated away


class AuthJti(SQLModel, table=True):
    """Client assertion ids seen, per issuer, until the assertion would have expired (replay cache)."""
    __tablename__ = "auth_jti"
    __table_args__ = (UniqueConstraint("issuer", "jti", name="uq_auth_jti"),)
    pk: Optional[int] = Field(default=None, primary_key=True)  # noqa: UP045
    issuer: str = Field(max_length=64)
    jti: str = Field(max_length=255)
    expires_at: int


class AuthCode(SQLModel, table=True):
    __tablename__ = "auth_code"
    code_hash: str = Field(primary_key=True, max_length=64)
    client_id: str = Field(max_length=64)
    redirect_uri: str = Field(max_length=1024)
    scope: str = Field(sa_column=Column(Text, nullable=False))
    subject: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045
    context: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    code_challenge: str = Field(max_length=128)
    code_challenge_method: str = Field(max_length=16)
    nonce: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045
    family: str = Field(max_length=64)
    expires_at: int
    used: bool = False


class AuthLaunch(SQLModel, table=True):
    """EHR launch contexts: opaque single-use ids bound to a client."""
    __tablename__ = "auth_launch"
    launch_id: str = Field(primary_key=True, max_length=64)
    client_id: str = Field(max_length=64)
    context: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    expires_at: int
    used: bool = False


class AuthUser(SQLModel, table=True):
    """The built-in user store for the login page (sites without an identity provider)."""
    __tablename__ = "auth_user"
    username: str = Field(primary_key=True, max_length=128)
    password_hash: str = Field(max_length=255)
    fhir_user: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045 - e.g. Practitioner/123
    patient: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045 - a patient user's own record


class AuthFailure(SQLModel, table=True):
    """One failed sign-in or token request, per throttled key (a digest of the account or the client
    address), kept while it counts: the login page and the token endpoint refuse a key with too many
    recent failures, in every process alike."""
    __tablename__ = "auth_failure"
    __table_args__ = (Index("ix_auth_failure_key_at", "key", "at"),)
    pk: Optional[int] = Field(default=None, primary_key=True)  # noqa: UP045
    key: str = Field(max_length=64)  # sha256 hex of "<kind>:<value>"
    at: int  # epoch seconds


class AuditLog(SQLModel, table=True):
    """One row per access to patient data; exported as FHIR AuditEvent."""
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_recorded", "recorded"), Index("ix_audit_log_patient", "patient"))
    pk: Optional[int] = Field(default=None, primary_key=True)  # noqa: UP045
    recorded: str = Field(max_length=30)  # FHIR instant
    client_id: Optional[str] = Field(default=None, max_length=64)  # noqa: UP045
    subject: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045
    patient: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045
    action: str = Field(max_length=8)  # C R U D E (AuditEvent.action)
    interaction: str = Field(max_length=64)
    method: str = Field(max_length=8)
    path: str = Field(sa_column=Column(Text, nullable=False))
    status: int
    request_id: Optional[str] = Field(default=None, max_length=64)  # noqa: UP045


CLIENT = table_of(AuthClient)
KEY = table_of(AuthKey)
TOKEN = table_of(AuthToken)
JTI = table_of(AuthJti)
CODE = table_of(AuthCode)
LAUNCH = table_of(AuthLaunch)
USER = table_of(AuthUser)
AUDIT = table_of(AuditLog)
FAILURE = table_of(AuthFailure)
