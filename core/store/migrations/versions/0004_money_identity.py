"""Money and identity: order idempotency keyed on the member, call records that never collide.

Orders: the request id is unique per (member, channel), no longer per channel alone, so one
member's request id can never return another member's order.

Downgrading fails while the table holds rows that the old key cannot tell apart (two
members' orders with one request id).

Revision ID: 0004_money_identity
Revises: 0003_jobs
"""
from alembic import op
import sqlalchemy as sa  # noqa: F401


revision = '0004_money_identity'
down_revision = '0003_jobs'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_constraint('uq_orders_request', type_='unique')
        batch_op.create_unique_constraint('uq_orders_member_request',
                                          ['msisdn', 'channel', 'request_id'])


def downgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_constraint('uq_orders_member_request', type_='unique')
        batch_op.create_unique_constraint('uq_orders_request', ['channel', 'request_id'])
