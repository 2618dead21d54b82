"""Sign-in and token failures for throttling; the user who started an export job.

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "auth_failure",
        sa.Column("pk", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("at", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("pk"),
    )
    with op.batch_alter_table("auth_failure") as batch:
        batch.create_index("ix_auth_failure_key_at", ["key", "at"], unique=False)
    with op.batch_alter_table("export_job") as batch:
        batch.add_column(sa.Column("subject", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("export_job") as batch:
        batch.drop_column("subject")
    with op.batch_alter_table("auth_failure") as batch:
        batch.drop_index("ix_auth_failure_key_at")
    op.drop_table("auth_failure")
