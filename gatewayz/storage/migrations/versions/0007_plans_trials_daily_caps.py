"""Plans, subscription allowance, trials, daily spend caps

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("plan", sa.String(length=32), server_default="free", nullable=False))
        if pg:
            batch_op.add_column(sa.Column("allowance_nanos", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("allowance_period", sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column("trial_source", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("trial_started_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("trial_expires_at", sa.DateTime(timezone=True), nullable=True))
    if pg:
        op.create_check_constraint("ck_users_allowance_not_negative", "users", "allowance_nanos >= 0")
    else:
        # SQLite takes a CHECK on an added column (no table rebuild); Alembic's add_column would drop it.
        op.execute("ALTER TABLE users ADD COLUMN allowance_nanos BIGINT DEFAULT '0' NOT NULL "
                   "CONSTRAINT ck_users_allowance_not_negative CHECK (allowance_nanos >= 0)")
    with op.batch_alter_table("credit_transactions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("allowance_nanos", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("allowance_after_nanos", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("daily_spend_limit_nanos", sa.BigInteger(), nullable=True))
    op.create_table(
        "daily_spend",
        sa.Column("scope", sa.String(length=40), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("spent_nanos", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "day", name=op.f("pk_daily_spend")),
    )


def downgrade() -> None:
    op.drop_table("daily_spend")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("daily_spend_limit_nanos")
    with op.batch_alter_table("credit_transactions", schema=None) as batch_op:
        batch_op.drop_column("allowance_after_nanos")
        batch_op.drop_column("allowance_nanos")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("ck_users_allowance_not_negative", "users", type_="check")
    with op.batch_alter_table("users", schema=None) as batch_op:
        for name in ("trial_expires_at", "trial_started_at", "trial_source", "allowance_period",
                     "allowance_nanos", "plan"):
            batch_op.drop_column(name)
