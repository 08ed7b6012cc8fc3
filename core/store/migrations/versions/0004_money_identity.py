"""Money and identity: order idempotency keyed on the member, call records that never collide.

Orders: the request id is unique per (member, channel), no longer per channel alone, so one
member's request id can never return another member's order.

Calls: a surrogate ``id`` is the primary key, so two calls with the same Asterisk uniqueid (two
boxes without ``systemname``) are both kept; ``uniqueid`` stays, indexed, for look-ups.

Downgrading fails while the tables hold rows that the old keys cannot tell apart (two
members' orders with one request id, two calls with one uniqueid).

Revision ID: 0004_money_identity
Revises: 0003_jobs
"""
from alembic import op
import sqlalchemy as sa


revision = '0004_money_identity'
down_revision = '0003_jobs'
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_constraint('uq_orders_request', type_='unique')
        batch_op.create_unique_constraint('uq_orders_member_request',
                                          ['msisdn', 'channel', 'request_id'])
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_constraint('pk_calls', type_='primary')
        # PostgreSQL numbers the existing rows from the identity; SQLite's table copy leaves
        # ``id`` out, so its INTEGER PRIMARY KEY (the rowid) numbers them.
        batch_op.add_column(sa.Column('id', Id, sa.Identity(), nullable=False))
        batch_op.create_primary_key('pk_calls', ['id'])
        batch_op.create_index('ix_calls_uniqueid', ['uniqueid'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_index('ix_calls_uniqueid')
        batch_op.drop_constraint('pk_calls', type_='primary')
        batch_op.drop_column('id')
        batch_op.create_primary_key('pk_calls', ['uniqueid'])
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_constraint('uq_orders_member_request', type_='unique')
        batch_op.create_unique_constraint('uq_orders_request', ['channel', 'request_id'])
