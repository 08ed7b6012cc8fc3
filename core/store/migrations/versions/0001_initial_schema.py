"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-22 13:56:22.559650
"""
from alembic import op
import sqlalchemy as sa
import core.store.tables


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('calls',
    sa.Column('uniqueid', sa.String(length=64), nullable=False),
    sa.Column('msisdn_masked', sa.String(length=20), nullable=False),
    sa.Column('script', sa.String(length=30), nullable=False),
    sa.Column('started_at', core.store.tables.UTCDateTime(), nullable=False),
    sa.Column('ended_at', core.store.tables.UTCDateTime(), nullable=True),
    sa.Column('menu_path', sa.String(length=500), nullable=False),
    sa.Column('outcome', sa.String(length=30), nullable=True),
    sa.PrimaryKeyConstraint('uniqueid', name=op.f('pk_calls'))
    )
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.create_index('ix_calls_started', ['started_at'], unique=False)

    op.create_table('expiry_warnings',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('msisdn', sa.String(length=20), nullable=False),
    sa.Column('expires_at', core.store.tables.UTCDateTime(), nullable=False),
    sa.Column('stage', sa.String(length=10), nullable=False),
    sa.Column('points', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=10), nullable=False),
    sa.Column('state', sa.String(length=15), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', core.store.tables.UTCDateTime(), nullable=False),
    sa.Column('updated_at', core.store.tables.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_expiry_warnings')),
    sa.UniqueConstraint('msisdn', 'expires_at', 'stage', name='uq_expiry_warnings_batch')
    )
    op.create_table('job_runs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('job', sa.String(length=40), nullable=False),
    sa.Column('run_key', sa.String(length=40), nullable=False),
    sa.Column('started_at', core.store.tables.UTCDateTime(), nullable=False),
    sa.Column('finished_at', core.store.tables.UTCDateTime(), nullable=True),
    sa.Column('state', sa.String(length=15), nullable=False),
    sa.Column('summary', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_runs')),
    sa.UniqueConstraint('job', 'run_key', name='uq_job_runs_key')
    )
    op.create_table('members',
    sa.Column('msisdn', sa.String(length=20), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('language', sa.String(length=5), nullable=False),
    sa.Column('tier_code', sa.String(length=20), nullable=False),
    sa.Column('tier_valid_until', sa.Date(), nullable=True),
    sa.Column('warning_opt_out', sa.Boolean(), nullable=False),
    sa.Column('warning_channel', sa.String(length=10), nullable=False),
    sa.Column('pin_hash', sa.String(length=200), nullable=True),
    sa.Column('pin_failures', sa.Integer(), nullable=False),
    sa.Column('pin_locked_until', core.store.tables.UTCDateTime(), nullable=True),
    sa.Column('created_at', core.store.tables.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('msisdn', name=op.f('pk_members'))
    )
    op.create_table('mo_messages',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('dedupe_key', sa.String(length=200), nullable=False),
    sa.Column('msisdn', sa.String(length=20), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=15), nullable=False),
    sa.Column('received_at', core.store.tables.UTCDateTime(), nullable=False),
    sa.Column('handled_at', core.store.tables.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mo_messages')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_mo_messages_dedupe_key'))
    )
    with op.batch_alter_table('mo_messages', schema=None) as batch_op:
        batch_op.create_index('ix_mo_state', ['state', 'id'], unique=False)

    op.create_table('order_seq',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('created_at', core.store.tables.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_order_seq'))
    )
    op.create_table('outbox',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('msisdn', sa.String(length=20), nullable=False),
    sa.Column('language', sa.String(length=5), nullable=False),
    sa.Column('template', sa.String(length=50), nullable=True),
    sa.Column('params', sa.Text(), nullable=False),
    sa.Column('body', sa.Text(), nullable=True),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('dedupe_key', sa.String(length=150), nullable=True),
    sa.Column('state', sa.String(length=15), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('not_before', core.store.tables.UTCDateTime(), nullable=False),
    sa.Column('claimed_until', core.store.tables.UTCDateTime(), nullable=True),
    sa.Column('message_ids', sa.Text(), nullable=True),
    sa.Column('error', sa.String(length=200), nullable=True),
    sa.Column('created_at', core.store.tables.UTCDateTime(), nullable=False),
    sa.Column('submitted_at', core.store.tables.UTCDateTime(), nullable=True),
    sa.Column('final_at', core.store.tables.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_outbox_dedupe_key'))
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_due', ['state', 'not_before'], unique=False)

    op.create_table('rewards',
    sa.Column('code', sa.String(length=20), nullable=False),
    sa.Column('name_zh', sa.String(length=100), nullable=False),
    sa.Column('name_en', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('points', sa.Integer(), nullable=False),
    sa.Column('stock', sa.Integer(), nullable=True),
    sa.Column('available_from', sa.Date(), nullable=True),
    sa.Column('available_until', sa.Date(), nullable=True),
    sa.Column('per_member_limit', sa.Integer(), nullable=True),
    sa.Column('sort_order', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_rewards'))
    )
    op.create_table('auto_redemptions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('msisdn', sa.String(length=20), nullable=False),
    sa.Column('reward_code', sa.String(length=20), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', core.store.tables.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['msisdn'], ['members.msisdn'], name=op.f('fk_auto_redemptions_msisdn_members')),
    sa.ForeignKeyConstraint(['reward_code'], ['rewards.code'], name=op.f('fk_auto_redemptions_reward_code_rewards')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_auto_redemptions')),
    sa.UniqueConstraint('msisdn', 'reward_code', name='uq_auto_redemptions_member')
    )
    op.create_table('confirmations',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('msisdn', sa.String(length=20), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('reward_code', sa.String(length=20), nullable=False),
    sa.Column('price', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=10), nullable=False),
    sa.Column('created_at', core.store.tables.UTCDateTime(), nullable=False),
    sa.Column('expires_at', core.store.tables.UTCDateTime(), nullable=False),
    sa.Column('used_at', core.store.tables.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['msisdn'], ['members.msisdn'], name=op.f('fk_confirmations_msisdn_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_confirmations'))
    )
    with op.batch_alter_table('confirmations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_confirmations_msisdn'), ['msisdn'], unique=False)

    op.create_table('ledger',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('msisdn', sa.String(length=20), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('amount', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=200), nullable=False),
    sa.Column('channel', sa.String(length=10), nullable=False),
    sa.Column('order_no', sa.String(length=30), nullable=True),
    sa.Column('reference', sa.String(length=100), nullable=True),
    sa.Column('created_at', core.store.tables.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['msisdn'], ['members.msisdn'], name=op.f('fk_ledger_msisdn_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger')),
    sa.UniqueConstraint('reference', name=op.f('uq_ledger_reference'))
    )
    with op.batch_alter_table('ledger', schema=None) as batch_op:
        batch_op.create_index('ix_ledger_member', ['msisdn', 'id'], unique=False)
        batch_op.create_index('ix_ledger_order', ['order_no'], unique=False)

    op.create_table('orders',
    sa.Column('order_no', sa.String(length=30), nullable=False),
    sa.Column('msisdn', sa.String(length=20), nullable=False),
    sa.Column('reward_code', sa.String(length=20), nullable=False),
    sa.Column('reward_kind', sa.String(length=10), nullable=False),
    sa.Column('points', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=15), nullable=False),
    sa.Column('channel', sa.String(length=10), nullable=False),
    sa.Column('request_id', sa.String(length=120), nullable=False),
    sa.Column('created_at', core.store.tables.UTCDateTime(), nullable=False),
    sa.Column('cancelled_at', core.store.tables.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['msisdn'], ['members.msisdn'], name=op.f('fk_orders_msisdn_members')),
    sa.ForeignKeyConstraint(['reward_code'], ['rewards.code'], name=op.f('fk_orders_reward_code_rewards')),
    sa.PrimaryKeyConstraint('order_no', name=op.f('pk_orders')),
    sa.UniqueConstraint('channel', 'request_id', name='uq_orders_request')
    )
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.create_index('ix_orders_member', ['msisdn', 'created_at'], unique=False)

    op.create_table('points_lots',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('msisdn', sa.String(length=20), nullable=False),
    sa.Column('amount', sa.Integer(), nullable=False),
    sa.Column('remaining', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('earned_on', sa.Date(), nullable=False),
    sa.Column('expires_at', core.store.tables.UTCDateTime(), nullable=False),
    sa.Column('reference', sa.String(length=100), nullable=True),
    sa.Column('expired', sa.Boolean(), nullable=False),
    sa.Column('created_at', core.store.tables.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['msisdn'], ['members.msisdn'], name=op.f('fk_points_lots_msisdn_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_points_lots')),
    sa.UniqueConstraint('reference', name=op.f('uq_points_lots_reference'))
    )
    with op.batch_alter_table('points_lots', schema=None) as batch_op:
        batch_op.create_index('ix_lots_expiry_open', ['expires_at', 'expired'], unique=False)
        batch_op.create_index('ix_lots_member_earned', ['msisdn', 'earned_on'], unique=False)
        batch_op.create_index('ix_lots_member_expiry', ['msisdn', 'expires_at'], unique=False)

    op.create_table('reward_prices',
    sa.Column('reward_code', sa.String(length=20), nullable=False),
    sa.Column('tier_code', sa.String(length=20), nullable=False),
    sa.Column('points', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['reward_code'], ['rewards.code'], name=op.f('fk_reward_prices_reward_code_rewards')),
    sa.PrimaryKeyConstraint('reward_code', 'tier_code', name=op.f('pk_reward_prices'))
    )
    op.create_table('tickets',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('ref', sa.String(length=30), nullable=True),
    sa.Column('msisdn', sa.String(length=20), nullable=False),
    sa.Column('kind', sa.String(length=15), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('channel', sa.String(length=10), nullable=False),
    sa.Column('status', sa.String(length=15), nullable=False),
    sa.Column('created_at', core.store.tables.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['msisdn'], ['members.msisdn'], name=op.f('fk_tickets_msisdn_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tickets')),
    sa.UniqueConstraint('ref', name=op.f('uq_tickets_ref'))
    )
    op.create_table('deliveries',
    sa.Column('order_no', sa.String(length=30), nullable=False),
    sa.Column('status', sa.String(length=15), nullable=False),
    sa.Column('courier', sa.String(length=50), nullable=True),
    sa.Column('tracking_no', sa.String(length=50), nullable=True),
    sa.Column('updated_at', core.store.tables.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['order_no'], ['orders.order_no'], name=op.f('fk_deliveries_order_no_orders')),
    sa.PrimaryKeyConstraint('order_no', name=op.f('pk_deliveries'))
    )
    op.create_table('delivery_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('order_no', sa.String(length=30), nullable=False),
    sa.Column('status', sa.String(length=15), nullable=False),
    sa.Column('courier', sa.String(length=50), nullable=True),
    sa.Column('tracking_no', sa.String(length=50), nullable=True),
    sa.Column('at', core.store.tables.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['order_no'], ['orders.order_no'], name=op.f('fk_delivery_events_order_no_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_delivery_events'))
    )
    with op.batch_alter_table('delivery_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_delivery_events_order_no'), ['order_no'], unique=False)

    op.create_table('lot_draws',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('ledger_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('lot_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('amount', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['ledger_id'], ['ledger.id'], name=op.f('fk_lot_draws_ledger_id_ledger')),
    sa.ForeignKeyConstraint(['lot_id'], ['points_lots.id'], name=op.f('fk_lot_draws_lot_id_points_lots')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lot_draws'))
    )
    with op.batch_alter_table('lot_draws', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lot_draws_ledger_id'), ['ledger_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_lot_draws_lot_id'), ['lot_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('lot_draws', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lot_draws_lot_id'))
        batch_op.drop_index(batch_op.f('ix_lot_draws_ledger_id'))

    op.drop_table('lot_draws')
    with op.batch_alter_table('delivery_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_delivery_events_order_no'))

    op.drop_table('delivery_events')
    op.drop_table('deliveries')
    op.drop_table('tickets')
    op.drop_table('reward_prices')
    with op.batch_alter_table('points_lots', schema=None) as batch_op:
        batch_op.drop_index('ix_lots_member_expiry')
        batch_op.drop_index('ix_lots_member_earned')
        batch_op.drop_index('ix_lots_expiry_open')

    op.drop_table('points_lots')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index('ix_orders_member')

    op.drop_table('orders')
    with op.batch_alter_table('ledger', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_order')
        batch_op.drop_index('ix_ledger_member')

    op.drop_table('ledger')
    with op.batch_alter_table('confirmations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_confirmations_msisdn'))

    op.drop_table('confirmations')
    op.drop_table('auto_redemptions')
    op.drop_table('rewards')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_due')

    op.drop_table('outbox')
    op.drop_table('order_seq')
    with op.batch_alter_table('mo_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_mo_state')

    op.drop_table('mo_messages')
    op.drop_table('members')
    op.drop_table('job_runs')
    op.drop_table('expiry_warnings')
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_index('ix_calls_started')

    op.drop_table('calls')
