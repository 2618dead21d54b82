"""The job core: the export job table becomes the table of every asynchronous job (kind, lease, result).

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("export_job") as batch:
        batch.drop_index("ix_export_job_status")
    op.rename_table("export_job", "job")
    with op.batch_alter_table("job") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=32), nullable=False, server_default="export"))
        batch.add_column(sa.Column("lease_owner", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("lease_expires", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("result", sa.LargeBinary(), nullable=True))
        batch.create_index("ix_job_status", ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("job") as batch:
        batch.drop_index("ix_job_status")
        batch.drop_column("result")
        batch.drop_column("lease_expires")
        batch.drop_column("lease_owner")
        batch.drop_column("kind")
    op.rename_table("job", "export_job")
    with op.batch_alter_table("export_job") as batch:
        batch.create_index("ix_export_job_status", ["status"], unique=False)
