"""Bulk Data export jobs.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "export_job",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("client_id", sa.String(length=255), nullable=True),
        sa.Column("request_url", sa.String(length=2048), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("transaction_time", sa.String(length=30), nullable=False),
        sa.Column("created", sa.String(length=30), nullable=False),
        sa.Column("heartbeat", sa.Float(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("progress", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("expires", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("export_job") as batch:
        batch.create_index("ix_export_job_status", ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("export_job") as batch:
        batch.drop_index("ix_export_job_status")
    op.drop_table("export_job")
