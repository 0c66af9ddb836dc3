"""rename entry.memo to entry.note

Revision ID: 0003
Revises: 0002
"""
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column("entry", "memo", new_column_name="note")


def downgrade() -> None:
    op.alter_column("entry", "note", new_column_name="memo")
