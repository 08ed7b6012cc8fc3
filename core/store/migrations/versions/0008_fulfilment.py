"""Fulfilment of service and voucher orders through the provisioning API: the queue columns.

Orders placed before this revision are not queued (their due time stays NULL): they were
handled by hand, and POSTing them now could apply a reward twice.

Revision ID: 0008_fulfilment
Revises: 0007_tickets
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401
import core.store.tables


revision = '0008_fulfilment'
down_revision = '0007_tickets'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fulfil_due_at', core.store.tables.UTCDateTime(),
                                      nullable=True))
        batch_op.add_column(sa.Column('fulfil_claimed_until', core.store.tables.UTCDateTime(),
                                      nullable=True))
        batch_op.add_column(sa.Column('fulfil_attempts', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.add_column(sa.Column('fulfil_reference', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('fulfil_error', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('fulfilled_at', core.store.tables.UTCDateTime(),
                                      nullable=True))
        batch_op.create_index('ix_orders_fulfil', ['status', 'fulfil_due_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index('ix_orders_fulfil')
        batch_op.drop_column('fulfilled_at')
        batch_op.drop_column('fulfil_error')
        batch_op.drop_column('fulfil_reference')
        batch_op.drop_column('fulfil_attempts')
        batch_op.drop_column('fulfil_claimed_until')
        batch_op.drop_column('fulfil_due_at')
