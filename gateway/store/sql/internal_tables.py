"""The internal relational schema FHIR data is extracted into (sqlmodel): members, coverage, claims, claim lines,
diagnoses, procedures, lab results, medications, providers. Which FHIR element fills which column is declared
in ``mappings/internal.outbound.yaml``; the tables live in the gateway database (migration 0004) or in a
separate database (created on first use). Every row keeps the FHIR id it came from, so an extract can be
repeated: a resource's rows are replaced, not duplicated."""

from __future__ import annotations

from typing import Optional

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from .tables import table_of

# noqa: UP045 throughout: sqlmodel needs Optional


class InternalMember(SQLModel, table=True):
    __tablename__ = "internal_member"
    fhir_id: str = Field(primary_key=True, max_length=255)
    member_id: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045
    id_system: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045
    family_name: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045
    given_name: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045
    birth_date: Optional[str] = Field(default=None, max_length=10)  # noqa: UP045
    sex: Optional[str] = Field(default=None, max_length=16)  # noqa: UP045
    death_date: Optional[str] = Field(default=None, max_length=32)  # noqa: UP045
    postal_code: Optional[str] = Field(default=None, max_length=16)  # noqa: UP045
    source: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045


class InternalCoverage(SQLModel, table=True):
    __tablename__ = "internal_coverage"
    fhir_id: str = Field(primary_key=True, max_length=255)
    member_fhir_id: Optional[str] = Field(default=None, max_length=255, index=True)  # noqa: UP045
    subscriber_id: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045
    payer_fhir_id: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045
    status: Optional[str] = Field(default=None, max_length=32)  # noqa: UP045
    period_start: Optional[str] = Field(default=None, max_length=32)  # noqa: UP045
    period_end: Optional[str] = Field(default=None, max_length=32)  # noqa: UP045


class InternalClaim(SQLModel, table=True):
    __tablename__ = "internal_claim"
    fhir_id: str = Field(primary_key=True, max_length=255)
    resource_type: str = Field(max_length=32)
    claim_id: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045
    member_fhir_id: Optional[str] = Field(default=None, max_length=255, index=True)  # noqa: UP045
    claim_type: Optional[str] = Field(default=None, max_length=32)  # noqa: UP045
    status: Optional[str] = Field(default=None, max_length=32)  # noqa: UP045
    billable_start: Optional[str] = Field(default=None, max_length=32)  # noqa: UP045
    billable_end: Optional[str] = Field(default=None, max_length=32)  # noqa: UP045
    provider_ref: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045
    paid_amount: Optional[float] = None  # noqa: UP045
    total_amount: Optional[float] = None  # noqa: UP045


class InternalClaimLine(SQLModel, table=True):
    __tablename__ = "internal_claim_line"
    __table_args__ = (Index("ix_internal_claim_line_claim", "claim_fhir_id"),)
    pk: Optional[int] = Field(default=None, primary_key=True)  # noqa: UP045
    claim_fhir_id: str = Field(max_length=255)
    line_no: Optional[int] = None  # noqa: UP045
    code_system: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045
    code: Optional[str] = Field(default=None, max_length=64)  # noqa: UP045
    revenue_code: Optional[str] = Field(default=None, max_length=16)  # noqa: UP045
    service_date: Optional[str] = Field(default=None, max_length=32)  # noqa: UP045
    quantity: Optional[float] = None  # noqa: UP045
    amount: Optional[float] = None  # noqa: UP045


class InternalDiagnosis(SQLModel, table=True):
    __tablename__ = "internal_diagnosis"
    __table_args__ = (Index("ix_internal_diagnosis_owner", "owner_fhir_id"),)
    pk: Optional[int] = Field(default=None, primary_key=True)  # noqa: UP045
    owner_fhir_id: str = Field(max_length=255)  # the claim or Condition the row came from
    member_fhir_id: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045
    seq: Optional[int] = None  # noqa: UP045
    code_system: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045
    code: Optional[str] = Field(default=None, max_length=64)  # noqa: UP045
    recorded: Optional[str] = Field(default=None, max_length=32)  # noqa: UP045
    status: Optional[str] = Field(default=None, max_length=32)  # noqa: UP045


class InternalProcedure(SQLModel, table=True):
    __tablename__ = "internal_procedure"
    fhir_id: str = Field(primary_key=True, max_length=255)
    member_fhir_id: Optional[str] = Field(default=None, max_length=255, index=True)  # noqa: UP045
    code_system: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045
    code: Optional[str] = Field(default=None, max_length=64)  # noqa: UP045
    performed: Optional[str] = Field(default=None, max_length=32)  # noqa: UP045
    status: Optional[str] = Field(default=None, max_length=32)  # noqa: UP045


class InternalLabResult(SQLModel, table=True):
    __tablename__ = "internal_lab_result"
    fhir_id: str = Field(primary_key=True, max_length=255)
    member_fhir_id: Optional[str] = Field(default=None, max_length=255, index=True)  # noqa: UP045
    code_system: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045
    code: Optional[str] = Field(default=None, max_length=64)  # noqa: UP045
    value_num: Optional[float] = None  # noqa: UP045
    value_text: Optional[str] = Field(default=None, max_length=1024)  # noqa: UP045
    unit: Optional[str] = Field(default=None, max_length=64)  # noqa: UP045
    effective: Optional[str] = Field(default=None, max_length=32)  # noqa: UP045
    status: Optional[str] = Field(default=None, max_length=32)  # noqa: UP045


class InternalMedication(SQLModel, table=True):
    __tablename__ = "internal_medication"
    fhir_id: str = Field(primary_key=True, max_length=255)
    resource_type: str = Field(max_length=32)
    member_fhir_id: Optional[str] = Field(default=None, max_length=255, index=True)  # noqa: UP045
    code_system: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045
    code: Optional[str] = Field(default=None, max_length=64)  # noqa: UP045
    event_date: Optional[str] = Field(default=None, max_length=32)  # noqa: UP045
    status: Optional[str] = Field(default=None, max_length=32)  # noqa: UP045
    quantity: Optional[float] = None  # noqa: UP045
    days_supply: Optional[float] = None  # noqa: UP045


class InternalProvider(SQLModel, table=True):
    __tablename__ = "internal_provider"
    fhir_id: str = Field(primary_key=True, max_length=255)
    resource_type: str = Field(max_length=32)
    npi: Optional[str] = Field(default=None, max_length=32)  # noqa: UP045
    name: Optional[str] = Field(default=None, max_length=255)  # noqa: UP045


INTERNAL_TABLES = {t.__tablename__: table_of(t) for t in (
    InternalMember, InternalCoverage, InternalClaim, InternalClaimLine, InternalDiagnosis, InternalProcedure,
    InternalLabResult, InternalMedication, InternalProvider)}
