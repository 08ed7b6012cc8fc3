"""Jobs: an index for the voice warning dispatcher's "which calls are due" query.

The expiry-warning job records every warning (SMS ones too) in ``expiry_warnings``: about one
row per member and stage, so millions of rows a year. The dispatcher polls for due voice rows
every minute; this partial index keeps that poll independent of the SMS rows.

Revision ID: 0003_jobs
Revises: 0002_sms
"""
from alembic import op
import sqlalchemy as sa


revision = '0003_jobs'
down_revision = '0002_sms'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('expiry_warnings', schema=None) as batch_op:
        batch_op.create_index('ix_expiry_warnings_voice_due', ['state', 'updated_at'],
                              unique=False,
                              postgresql_where=sa.text("channel = 'voice'"),
                              sqlite_where=sa.text("channel = 'voice'"))


def downgrade() -> None:
    with op.batch_alter_table('expiry_warnings', schema=None) as batch_op:
        batch_op.drop_index('ix_expiry_warnings_voice_due')
