"""Tickets that get answered: a recording, an order, the outcome and the credit granted.

Revision ID: 0007_tickets
Revises: 0006_set_aside
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401
import core.store.tables


revision = '0007_tickets'
down_revision = '0006_set_aside'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('recording_path', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('order_no', sa.String(length=30), nullable=True))
        batch_op.add_column(sa.Column('outcome', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('credit_points', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('resolved_at', core.store.tables.UTCDateTime(),
                                      nullable=True))
        batch_op.create_index('ix_tickets_member', ['msisdn', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.drop_index('ix_tickets_member')
        batch_op.drop_column('resolved_at')
        batch_op.drop_column('credit_points')
        batch_op.drop_column('outcome')
        batch_op.drop_column('order_no')
        batch_op.drop_column('recording_path')
