"""Wider resource id columns: lenient loads keep ids longer than R4's 64 characters (published eCQM content
has them).

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("resource", "resource_history"):
        with op.batch_alter_table(table) as batch:
            batch.alter_column("res_id", type_=sa.String(255), existing_type=sa.String(64), existing_nullable=False)
    with op.batch_alter_table("idx_ref") as batch:
        batch.alter_column("target_id", type_=sa.String(255), existing_type=sa.String(64), existing_nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("idx_ref") as batch:
        batch.alter_column("target_id", type_=sa.String(64), existing_type=sa.String(255), existing_nullable=True)
    for table in ("resource", "resource_history"):
        with op.batch_alter_table(table) as batch:
            batch.alter_column("res_id", type_=sa.String(64), existing_type=sa.String(255), existing_nullable=False)
