"""IP allowlist entries, global or per user (/api/admin/ip-whitelist)

Revision ID: 0011
Revises: 0010
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ip_allowlist",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("cidr", sa.String(length=49), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_ip_allowlist_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ip_allowlist")),
    )
    with op.batch_alter_table("ip_allowlist", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ip_allowlist_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_table("ip_allowlist")
