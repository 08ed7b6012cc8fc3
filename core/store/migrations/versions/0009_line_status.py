"""Line status, subscriber id and delivery address of members; the address on orders; the
accounts retired when a number was re-issued.

Revision ID: 0009_line_status
Revises: 0008_fulfilment
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401
import core.store.tables


revision = '0009_line_status'
down_revision = '0008_fulfilment'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE, not a batch copy: on SQLite, re-creating ``members`` (which every
    # member table points to) fails with foreign keys on as soon as there are rows.
    op.add_column('members', sa.Column('line_status', sa.String(length=10), nullable=False,
                                       server_default='active'))
    op.add_column('members', sa.Column('subscriber_id', sa.String(length=40), nullable=True))
    op.add_column('members', sa.Column('delivery_address', sa.Text(), nullable=True))
    op.add_column('orders', sa.Column('delivery_address', sa.Text(), nullable=True))
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
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35 and later), for the same reason as above.
    op.drop_column('orders', 'delivery_address')
    op.drop_column('members', 'delivery_address')
    op.drop_column('members', 'subscriber_id')
    op.drop_column('members', 'line_status')
