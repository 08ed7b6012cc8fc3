"""Line status, subscriber id and delivery address of members; the address on orders; the
accounts retired when a number was re-issued.

Revision ID: 0009_line_status
Revises: 0007_tickets
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401
import core.store.tables


revision = '0009_line_status'
down_revision = '0007_tickets'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.add_column(sa.Column('line_status', sa.String(length=10), nullable=False,
                                      server_default='active'))
        batch_op.add_column(sa.Column('subscriber_id', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('delivery_address', sa.Text(), nullable=True))
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('delivery_address', sa.Text(), nullable=True))
    id_type = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
    op.create_table(
        'archived_members',
        sa.Column('id', id_type, autoincrement=True, nullable=False),
        sa.Column('archive_key', sa.String(length=20), nullable=True),
        sa.Column('msisdn', sa.String(length=20), nullable=False),
        sa.Column('subscriber_id', sa.String(length=40), nullable=True),
        sa.Column('retired_at', core.store.tables.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_archived_members')),
        sa.UniqueConstraint('archive_key', name=op.f('uq_archived_members_archive_key')),
    )
    op.create_index(op.f('ix_archived_members_msisdn'), 'archived_members', ['msisdn'],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_archived_members_msisdn'), table_name='archived_members')
    op.drop_table('archived_members')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_column('delivery_address')
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.drop_column('delivery_address')
        batch_op.drop_column('subscriber_id')
        batch_op.drop_column('line_status')
