"""Coupons and referrals

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "coupons",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("amount_nanos", sa.BigInteger(), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("max_redemptions", sa.Integer(), nullable=True),
        sa.Column("per_user_limit", sa.Integer(), server_default="1", nullable=False),
        sa.Column("redemptions", sa.Integer(), server_default="0", nullable=False),
        sa.Column("listed", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_nanos > 0", name=op.f("ck_coupons_amount_positive")),
        sa.CheckConstraint("per_user_limit >= 1", name=op.f("ck_coupons_per_user_limit_positive")),
        sa.CheckConstraint("max_redemptions IS NULL OR redemptions <= max_redemptions",
                           name=op.f("ck_coupons_within_max")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_coupons_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coupons")),
        sa.UniqueConstraint("code", name=op.f("uq_coupons_code")),
    )
    op.create_index(op.f("ix_coupons_user_id"), "coupons", ["user_id"], unique=False)

    op.create_table(
        "coupon_redemptions",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("coupon_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("amount_nanos", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["coupon_id"], ["coupons.id"], name=op.f("fk_coupon_redemptions_coupon_id_coupons"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_coupon_redemptions_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coupon_redemptions")),
        sa.UniqueConstraint("coupon_id", "user_id", "seq", name=op.f("uq_coupon_redemptions_coupon_id_user_id_seq")),
    )
    op.create_index(op.f("ix_coupon_redemptions_user_id_created_at"), "coupon_redemptions",
                    ["user_id", "created_at"], unique=False)

    op.create_table(
        "referral_codes",
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("uses", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_referral_codes_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_referral_codes")),
        sa.UniqueConstraint("code", name=op.f("uq_referral_codes_code")),
    )

    op.create_table(
        "referrals",
        sa.Column("referee_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("referrer_id", sa.BigInteger(), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rewarded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("purchase_nanos", sa.BigInteger(), nullable=True),
        sa.Column("bonus_nanos", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("referee_id <> referrer_id", name=op.f("ck_referrals_not_self")),
        sa.ForeignKeyConstraint(["referee_id"], ["users.id"], name=op.f("fk_referrals_referee_id_users"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["referrer_id"], ["users.id"], name=op.f("fk_referrals_referrer_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("referee_id", name=op.f("pk_referrals")),
    )
    op.create_index(op.f("ix_referrals_referrer_id"), "referrals", ["referrer_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_referrals_referrer_id"), table_name="referrals")
    op.drop_table("referrals")
    op.drop_table("referral_codes")
    op.drop_index(op.f("ix_coupon_redemptions_user_id_created_at"), table_name="coupon_redemptions")
    op.drop_table("coupon_redemptions")
    op.drop_index(op.f("ix_coupons_user_id"), table_name="coupons")
    op.drop_table("coupons")
