"""Import rules: granted tiers and bounded amounts.

Revision ID: 0005_import_rules
Revises: 0004_money_identity
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401


revision = '0005_import_rules'
down_revision = '0004_money_identity'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
