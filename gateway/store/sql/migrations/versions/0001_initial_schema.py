"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-24 19:03:18.013027
"""
import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('idx_composite',
    sa.Column('pk', sa.Integer(), nullable=False),
    sa.Column('res_pk', sa.Integer(), nullable=False),
    sa.Column('res_type', sa.String(length=64), nullable=False),
    sa.Column('param', sa.String(length=100), nullable=False),
    sa.Column('system', sa.String(length=255), nullable=True),
    sa.Column('code', sa.String(length=255), nullable=True),
    sa.Column('text', sa.String(length=512), nullable=True),
    sa.Column('num', sa.Float(), nullable=True),
    sa.Column('lo', sa.String(length=26), nullable=True),
    sa.Column('hi', sa.String(length=26), nullable=True),
    sa.PrimaryKeyConstraint('pk')
    )
    with op.batch_alter_table('idx_composite', schema=None) as batch_op:
        batch_op.create_index('ix_idx_composite_q', ['res_type', 'param', 'code', 'system'], unique=False)
        batch_op.create_index(batch_op.f('ix_idx_composite_res_pk'), ['res_pk'], unique=False)

    op.create_table('idx_date',
    sa.Column('pk', sa.Integer(), nullable=False),
    sa.Column('res_pk', sa.Integer(), nullable=False),
    sa.Column('res_type', sa.String(length=64), nullable=False),
    sa.Column('param', sa.String(length=100), nullable=False),
    sa.Column('lo', sa.String(length=26), nullable=False),
    sa.Column('hi', sa.String(length=26), nullable=False),
    sa.PrimaryKeyConstraint('pk')
    )
    with op.batch_alter_table('idx_date', schema=None) as batch_op:
        batch_op.create_index('ix_idx_date_q', ['res_type', 'param', 'lo', 'hi'], unique=False)
        batch_op.create_index(batch_op.f('ix_idx_date_res_pk'), ['res_pk'], unique=False)

    op.create_table('idx_number',
    sa.Column('pk', sa.Integer(), nullable=False),
    sa.Column('res_pk', sa.Integer(), nullable=False),
    sa.Column('res_type', sa.String(length=64), nullable=False),
    sa.Column('param', sa.String(length=100), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('system', sa.String(length=255), nullable=True),
    sa.Column('code', sa.String(length=255), nullable=True),
    sa.PrimaryKeyConstraint('pk')
    )
    with op.batch_alter_table('idx_number', schema=None) as batch_op:
        batch_op.create_index('ix_idx_number_q', ['res_type', 'param', 'value'], unique=False)
        batch_op.create_index(batch_op.f('ix_idx_number_res_pk'), ['res_pk'], unique=False)

    op.create_table('idx_ref',
    sa.Column('pk', sa.Integer(), nullable=False),
    sa.Column('res_pk', sa.Integer(), nullable=False),
    sa.Column('res_type', sa.String(length=64), nullable=False),
    sa.Column('param', sa.String(length=100), nullable=False),
    sa.Column('target_type', sa.String(length=64), nullable=True),
    sa.Column('target_id', sa.String(length=64), nullable=True),
    sa.Column('url', sa.String(length=512), nullable=True),
    sa.PrimaryKeyConstraint('pk')
    )
    with op.batch_alter_table('idx_ref', schema=None) as batch_op:
        batch_op.create_index('ix_idx_ref_q', ['res_type', 'param', 'target_id', 'target_type'], unique=False)
        batch_op.create_index(batch_op.f('ix_idx_ref_res_pk'), ['res_pk'], unique=False)
        batch_op.create_index('ix_idx_ref_target', ['target_type', 'target_id'], unique=False)

    op.create_table('idx_string',
    sa.Column('pk', sa.Integer(), nullable=False),
    sa.Column('res_pk', sa.Integer(), nullable=False),
    sa.Column('res_type', sa.String(length=64), nullable=False),
    sa.Column('param', sa.String(length=100), nullable=False),
    sa.Column('value', sa.String(length=255), nullable=False),
    sa.Column('exact', sa.String(length=255), nullable=False),
    sa.PrimaryKeyConstraint('pk')
    )
    with op.batch_alter_table('idx_string', schema=None) as batch_op:
        batch_op.create_index('ix_idx_string_q', ['res_type', 'param', 'value'], unique=False)
        batch_op.create_index(batch_op.f('ix_idx_string_res_pk'), ['res_pk'], unique=False)

    op.create_table('idx_token',
    sa.Column('pk', sa.Integer(), nullable=False),
    sa.Column('res_pk', sa.Integer(), nullable=False),
    sa.Column('res_type', sa.String(length=64), nullable=False),
    sa.Column('param', sa.String(length=100), nullable=False),
    sa.Column('system', sa.String(length=255), nullable=True),
    sa.Column('code', sa.String(length=255), nullable=True),
    sa.Column('text', sa.String(length=255), nullable=True),
    sa.PrimaryKeyConstraint('pk')
    )
    with op.batch_alter_table('idx_token', schema=None) as batch_op:
        batch_op.create_index('ix_idx_token_q', ['res_type', 'param', 'code', 'system'], unique=False)
        batch_op.create_index(batch_op.f('ix_idx_token_res_pk'), ['res_pk'], unique=False)

    op.create_table('idx_uri',
    sa.Column('pk', sa.Integer(), nullable=False),
    sa.Column('res_pk', sa.Integer(), nullable=False),
    sa.Column('res_type', sa.String(length=64), nullable=False),
    sa.Column('param', sa.String(length=100), nullable=False),
    sa.Column('value', sa.String(length=512), nullable=False),
    sa.PrimaryKeyConstraint('pk')
    )
    with op.batch_alter_table('idx_uri', schema=None) as batch_op:
        batch_op.create_index('ix_idx_uri_q', ['res_type', 'param', 'value'], unique=False)
        batch_op.create_index(batch_op.f('ix_idx_uri_res_pk'), ['res_pk'], unique=False)

    op.create_table('resource',
    sa.Column('pk', sa.Integer(), nullable=False),
    sa.Column('res_type', sa.String(length=64), nullable=False),
    sa.Column('res_id', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('last_updated', sa.String(length=30), nullable=False),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('pk'),
    sa.UniqueConstraint('res_type', 'res_id', name='uq_resource_type_id')
    )
    with op.batch_alter_table('resource', schema=None) as batch_op:
        batch_op.create_index('ix_resource_type_updated', ['res_type', 'last_updated'], unique=False)

    op.create_table('resource_history',
    sa.Column('pk', sa.Integer(), nullable=False),
    sa.Column('res_type', sa.String(length=64), nullable=False),
    sa.Column('res_id', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('last_updated', sa.String(length=30), nullable=False),
    sa.Column('method', sa.String(length=8), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=True),
    sa.PrimaryKeyConstraint('pk'),
    sa.UniqueConstraint('res_type', 'res_id', 'version', name='uq_history_version')
    )
    with op.batch_alter_table('resource_history', schema=None) as batch_op:
        batch_op.create_index('ix_history_type_updated', ['res_type', 'last_updated'], unique=False)
        batch_op.create_index('ix_history_updated', ['last_updated'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('resource_history', schema=None) as batch_op:
        batch_op.drop_index('ix_history_updated')
        batch_op.drop_index('ix_history_type_updated')

    op.drop_table('resource_history')
    with op.batch_alter_table('resource', schema=None) as batch_op:
        batch_op.drop_index('ix_resource_type_updated')

    op.drop_table('resource')
    with op.batch_alter_table('idx_uri', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_idx_uri_res_pk'))
        batch_op.drop_index('ix_idx_uri_q')

    op.drop_table('idx_uri')
    with op.batch_alter_table('idx_token', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_idx_token_res_pk'))
        batch_op.drop_index('ix_idx_token_q')

    op.drop_table('idx_token')
    with op.batch_alter_table('idx_string', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_idx_string_res_pk'))
        batch_op.drop_index('ix_idx_string_q')

    op.drop_table('idx_string')
    with op.batch_alter_table('idx_ref', schema=None) as batch_op:
        batch_op.drop_index('ix_idx_ref_target')
        batch_op.drop_index(batch_op.f('ix_idx_ref_res_pk'))
        batch_op.drop_index('ix_idx_ref_q')

    op.drop_table('idx_ref')
    with op.batch_alter_table('idx_number', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_idx_number_res_pk'))
        batch_op.drop_index('ix_idx_number_q')

    op.drop_table('idx_number')
    with op.batch_alter_table('idx_date', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_idx_date_res_pk'))
        batch_op.drop_index('ix_idx_date_q')

    op.drop_table('idx_date')
    with op.batch_alter_table('idx_composite', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_idx_composite_res_pk'))
        batch_op.drop_index('ix_idx_composite_q')

    op.drop_table('idx_composite')

