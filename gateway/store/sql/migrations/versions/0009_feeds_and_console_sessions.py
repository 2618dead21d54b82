"""Ingest runs, the last notification of each Subscription, and console sessions shared by every instance.

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ingest_run",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("format", sa.String(length=32), nullable=False),
        sa.Column("via", sa.String(length=8), nullable=False),
        sa.Column("client_id", sa.String(length=255), nullable=True),
        sa.Column("subject", sa.String(length=255), nullable=True),
        sa.Column("files", sa.Text(), nullable=False),
        sa.Column("strictness", sa.String(length=16), nullable=True),
        sa.Column("mapping_version", sa.String(length=64), nullable=True),
        sa.Column("started", sa.String(length=30), nullable=False),
        sa.Column("ended", sa.String(length=30), nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("created", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("warned", sa.Integer(), nullable=False),
        sa.Column("rejects", sa.Text(), nullable=False),
        sa.Column("report", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_ingest_run_started", "ingest_run", ["started"], unique=False)
    op.create_table(
        "subscription_delivery",
        sa.Column("subscription_id", sa.String(length=255), nullable=False),
        sa.Column("at", sa.String(length=30), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("subscription_id"),
    )
    op.create_table(
        "console_session",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=255), nullable=True),
        sa.Column("fhir_user", sa.String(length=255), nullable=True),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("used", sa.Float(), nullable=False),
        sa.Column("expires", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id_hash"),
    )
    op.create_index("ix_console_session_expires", "console_session", ["expires"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_console_session_expires", table_name="console_session")
    op.drop_table("console_session")
    op.drop_table("subscription_delivery")
    op.drop_index("ix_ingest_run_started", table_name="ingest_run")
    op.drop_table("ingest_run")
