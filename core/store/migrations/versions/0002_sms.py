"""SMS channel: concatenated MO parts, per-number MO rate windows, MT message ids per part
(normalised keys for receipt matching) and receipts waiting for their message id.

Revision ID: 0002_sms
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa
import core.store.tables


revision = '0002_sms'
down_revision = '0001'
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('mo_parts',
    sa.Column('id', Id, autoincrement=True, nullable=False),
    sa.Column('dedupe_key', sa.String(length=200), nullable=False),
    sa.Column('msisdn', sa.String(length=20), nullable=False),
    sa.Column('ref', sa.Integer(), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('mo_id', Id, nullable=True),
    sa.Column('received_at', core.store.tables.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mo_parts')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_mo_parts_dedupe_key'))
    )
    with op.batch_alter_table('mo_parts', schema=None) as batch_op:
        batch_op.create_index('ix_mo_parts_set', ['msisdn', 'ref', 'total'], unique=False)
        batch_op.create_index('ix_mo_parts_received', ['received_at'], unique=False)

    op.create_table('sms_rate',
    sa.Column('msisdn', sa.String(length=20), nullable=False),
    sa.Column('window_start', core.store.tables.UTCDateTime(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('warned', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('msisdn', name=op.f('pk_sms_rate'))
    )

    op.create_table('outbox_ids',
    sa.Column('id', Id, autoincrement=True, nullable=False),
    sa.Column('outbox_id', Id, nullable=False),
    sa.Column('part', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.String(length=80), nullable=False),
    sa.Column('id_key', sa.String(length=90), nullable=False),
    sa.Column('stat', sa.String(length=10), nullable=True),
    sa.Column('created_at', core.store.tables.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['outbox_id'], ['outbox.id'], name=op.f('fk_outbox_ids_outbox_id_outbox')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox_ids'))
    )
    with op.batch_alter_table('outbox_ids', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_ids_key', ['id_key'], unique=False)
        batch_op.create_index('ix_outbox_ids_outbox', ['outbox_id', 'part'], unique=False)

    op.create_table('sms_receipts',
    sa.Column('id', Id, autoincrement=True, nullable=False),
    sa.Column('id_key', sa.String(length=90), nullable=False),
    sa.Column('message_id', sa.String(length=80), nullable=False),
    sa.Column('stat', sa.String(length=10), nullable=True),
    sa.Column('err', sa.String(length=10), nullable=True),
    sa.Column('received_at', core.store.tables.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sms_receipts'))
    )
    with op.batch_alter_table('sms_receipts', schema=None) as batch_op:
        batch_op.create_index('ix_sms_receipts_key', ['id_key'], unique=False)
        batch_op.create_index('ix_sms_receipts_received', ['received_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('sms_receipts', schema=None) as batch_op:
        batch_op.drop_index('ix_sms_receipts_received')
        batch_op.drop_index('ix_sms_receipts_key')
    op.drop_table('sms_receipts')
    with op.batch_alter_table('outbox_ids', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_ids_outbox')
        batch_op.drop_index('ix_outbox_ids_key')
    op.drop_table('outbox_ids')
    op.drop_table('sms_rate')
    with op.batch_alter_table('mo_parts', schema=None) as batch_op:
        batch_op.drop_index('ix_mo_parts_received')
        batch_op.drop_index('ix_mo_parts_set')
    op.drop_table('mo_parts')
