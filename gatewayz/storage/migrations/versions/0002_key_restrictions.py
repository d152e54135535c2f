"""API key restrictions: allowed models, scopes, IPs, referrers, per-key rate limits

Revision ID: 0002
Revises: 0001
"""
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

COLUMNS: list[tuple[str, Any]] = [("allowed_models", sa.JSON()), ("scopes", sa.JSON()), ("allowed_ips", sa.JSON()),
           ("allowed_referrers", sa.JSON()), ("rpm_limit", sa.Integer()), ("tpm_limit", sa.Integer())]


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        for name, kind in COLUMNS:
            batch_op.add_column(sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        for name, _ in reversed(COLUMNS):
            batch_op.drop_column(name)
