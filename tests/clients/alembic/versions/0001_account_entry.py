"""create account and entry

Revision ID: 0001
Revises:
"""
from alembic import op
import sqlalchemy as sa

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    account = op.create_table(
        "account",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(50), nullable=False),
    )
    op.create_table(
        "entry",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("account_id", sa.Integer, sa.ForeignKey("account.id"), nullable=False),
        sa.Column("amount", sa.Integer, nullable=False),
        sa.Column("memo", sa.String(100)),
    )
    op.bulk_insert(account, [{"name": "alice"}, {"name": "bob"}])
    op.execute(
        "INSERT INTO entry (account_id, amount, memo) "
        "SELECT id, 10, 'opening ' || name FROM account"
    )


def downgrade() -> None:
    op.drop_table("entry")
    op.drop_table("account")
