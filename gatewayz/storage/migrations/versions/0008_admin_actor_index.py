"""An index for an admin's ledger changes over the last 24 hours (the per-admin daily cap)

Revision ID: 0008
Revises: 0007
"""
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f("ix_credit_transactions_actor_created_at"), "credit_transactions",
                    ["actor", "created_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_credit_transactions_actor_created_at"), table_name="credit_transactions")
