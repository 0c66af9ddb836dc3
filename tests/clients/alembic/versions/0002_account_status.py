"""add account.status with an index, and fill it

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("account", sa.Column("status", sa.String(20), nullable=True))
    op.create_index("ix_account_status", "account", ["status"])
    op.execute("UPDATE account SET status = 'active' WHERE status IS NULL")


def downgrade() -> None:
    op.drop_index("ix_account_status", table_name="account")
    op.drop_column("account", "status")
