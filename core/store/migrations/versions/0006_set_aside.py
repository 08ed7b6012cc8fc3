"""Set aside what keeps failing: attempts, backoff and error on MO messages and queues.

MO messages get their handling attempts, when the next may start, the last error and, for a
repeat of a message inside the redelivery window, the message it repeats. ``job_set_aside``
records the members a job run could not process.

Revision ID: 0006_set_aside
Revises: 0005_import_rules
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401
import core.store.tables


revision = '0006_set_aside'
down_revision = '0005_import_rules'
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('mo_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attempts', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.add_column(sa.Column('next_attempt_at', core.store.tables.UTCDateTime(),
                                      nullable=True))
        batch_op.add_column(sa.Column('last_error', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('repeat_of', Id, nullable=True))
    op.create_table('job_set_aside',
    sa.Column('id', Id, autoincrement=True, nullable=False),
    sa.Column('job', sa.String(length=40), nullable=False),
    sa.Column('run_key', sa.String(length=40), nullable=False),
    sa.Column('item', sa.String(length=60), nullable=False),
    sa.Column('error', sa.String(length=200), nullable=True),
    sa.Column('created_at', core.store.tables.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_set_aside')),
    sa.UniqueConstraint('job', 'run_key', 'item', name='uq_job_set_aside_item')
    )


def downgrade() -> None:
    op.drop_table('job_set_aside')
    with op.batch_alter_table('mo_messages', schema=None) as batch_op:
        batch_op.drop_column('repeat_of')
        batch_op.drop_column('last_error')
        batch_op.drop_column('next_attempt_at')
        batch_op.drop_column('attempts')
