"""Usage analytics indexes: per key and per model over a date range, and by age for the retention purge

Revision ID: 0004
Revises: 0003
"""
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

INDEXES = [("ix_usage_records_user_id_api_key_id_created_at", ["user_id", "api_key_id", "created_at"]),
           ("ix_usage_records_user_id_model_created_at", ["user_id", "model", "created_at"]),
           ("ix_usage_records_created_at", ["created_at"])]


def upgrade() -> None:
    for name, columns in INDEXES:
        op.create_index(op.f(name), "usage_records", columns, unique=False)


def downgrade() -> None:
    for name, _ in reversed(INDEXES):
        op.drop_index(op.f(name), table_name="usage_records")
