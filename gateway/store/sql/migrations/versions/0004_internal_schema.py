"""The internal relational schema FHIR data is extracted into (members, coverage, claims, claim lines,
diagnoses, procedures, lab results, medications, providers): gateway/store/sql/internal_tables.py.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "internal_member",
        sa.Column("fhir_id", sa.String(255), primary_key=True),
        sa.Column("member_id", sa.String(255)),
        sa.Column("id_system", sa.String(255)),
        sa.Column("family_name", sa.String(255)),
        sa.Column("given_name", sa.String(255)),
        sa.Column("birth_date", sa.String(10)),
        sa.Column("sex", sa.String(16)),
        sa.Column("death_date", sa.String(32)),
        sa.Column("postal_code", sa.String(16)),
        sa.Column("source", sa.String(255)),
    )
    op.create_table(
        "internal_coverage",
        sa.Column("fhir_id", sa.String(255), primary_key=True),
        sa.Column("member_fhir_id", sa.String(255)),
        sa.Column("subscriber_id", sa.String(255)),
        sa.Column("payer_fhir_id", sa.String(255)),
        sa.Column("status", sa.String(32)),
        sa.Column("period_start", sa.String(32)),
        sa.Column("period_end", sa.String(32)),
    )
    op.create_index("ix_internal_coverage_member_fhir_id", "internal_coverage", ["member_fhir_id"])
    op.create_table(
        "internal_claim",
        sa.Column("fhir_id", sa.String(255), primary_key=True),
        sa.Column("resource_type", sa.String(32), nullable=False),
        sa.Column("claim_id", sa.String(255)),
        sa.Column("member_fhir_id", sa.String(255)),
        sa.Column("claim_type", sa.String(32)),
        sa.Column("status", sa.String(32)),
        sa.Column("billable_start", sa.String(32)),
        sa.Column("billable_end", sa.String(32)),
        sa.Column("provider_ref", sa.String(255)),
        sa.Column("paid_amount", sa.Float()),
        sa.Column("total_amount", sa.Float()),
    )
    op.create_index("ix_internal_claim_member_fhir_id", "internal_claim", ["member_fhir_id"])
    op.create_table(
        "internal_claim_line",
        sa.Column("pk", sa.Integer(), primary_key=True),
        sa.Column("claim_fhir_id", sa.String(255), nullable=False),
        sa.Column("line_no", sa.Integer()),
        sa.Column("code_system", sa.String(255)),
        sa.Column("code", sa.String(64)),
        sa.Column("revenue_code", sa.String(16)),
        sa.Column("service_date", sa.String(32)),
        sa.Column("quantity", sa.Float()),
        sa.Column("amount", sa.Float()),
    )
    op.create_index("ix_internal_claim_line_claim", "internal_claim_line", ["claim_fhir_id"])
    op.create_table(
        "internal_diagnosis",
        sa.Column("pk", sa.Integer(), primary_key=True),
        sa.Column("owner_fhir_id", sa.String(255), nullable=False),
        sa.Column("member_fhir_id", sa.String(255)),
        sa.Column("seq", sa.Integer()),
        sa.Column("code_system", sa.String(255)),
        sa.Column("code", sa.String(64)),
        sa.Column("recorded", sa.String(32)),
        sa.Column("status", sa.String(32)),
    )
    op.create_index("ix_internal_diagnosis_owner", "internal_diagnosis", ["owner_fhir_id"])
    op.create_table(
        "internal_procedure",
        sa.Column("fhir_id", sa.String(255), primary_key=True),
        sa.Column("member_fhir_id", sa.String(255)),
        sa.Column("code_system", sa.String(255)),
        sa.Column("code", sa.String(64)),
        sa.Column("performed", sa.String(32)),
        sa.Column("status", sa.String(32)),
    )
    op.create_index("ix_internal_procedure_member_fhir_id", "internal_procedure", ["member_fhir_id"])
    op.create_table(
        "internal_lab_result",
        sa.Column("fhir_id", sa.String(255), primary_key=True),
        sa.Column("member_fhir_id", sa.String(255)),
        sa.Column("code_system", sa.String(255)),
        sa.Column("code", sa.String(64)),
        sa.Column("value_num", sa.Float()),
        sa.Column("value_text", sa.String(1024)),
        sa.Column("unit", sa.String(64)),
        sa.Column("effective", sa.String(32)),
        sa.Column("status", sa.String(32)),
    )
    op.create_index("ix_internal_lab_result_member_fhir_id", "internal_lab_result", ["member_fhir_id"])
    op.create_table(
        "internal_medication",
        sa.Column("fhir_id", sa.String(255), primary_key=True),
        sa.Column("resource_type", sa.String(32), nullable=False),
        sa.Column("member_fhir_id", sa.String(255)),
        sa.Column("code_system", sa.String(255)),
        sa.Column("code", sa.String(64)),
        sa.Column("event_date", sa.String(32)),
        sa.Column("status", sa.String(32)),
        sa.Column("quantity", sa.Float()),
        sa.Column("days_supply", sa.Float()),
    )
    op.create_index("ix_internal_medication_member_fhir_id", "internal_medication", ["member_fhir_id"])
    op.create_table(
        "internal_provider",
        sa.Column("fhir_id", sa.String(255), primary_key=True),
        sa.Column("resource_type", sa.String(32), nullable=False),
        sa.Column("npi", sa.String(32)),
        sa.Column("name", sa.String(255)),
    )


def downgrade() -> None:
    op.drop_table("internal_provider")
    op.drop_table("internal_medication")
    op.drop_table("internal_lab_result")
    op.drop_table("internal_procedure")
    op.drop_table("internal_diagnosis")
    op.drop_table("internal_claim_line")
    op.drop_table("internal_claim")
    op.drop_table("internal_coverage")
    op.drop_table("internal_member")
