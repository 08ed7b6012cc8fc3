"""Import rules: granted tiers and bounded amounts.

Revision ID: 0005_import_rules
Revises: 0004_money_identity
"""
from alembic import op
import sqlalchemy as sa


revision = '0005_import_rules'
down_revision = '0004_money_identity'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A tier granted by the members import: the member holds at least this tier through the
    # date, whatever the tier review finds.
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.add_column(sa.Column('granted_tier_code', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('granted_tier_until', sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.drop_column('granted_tier_until')
        batch_op.drop_column('granted_tier_code')
