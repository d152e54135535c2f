"""The database schema as SQLAlchemy Core tables; Alembic migrations must match it (a test checks)."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

metadata = sa.MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
})

Money = sa.BigInteger  # nanodollars


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Timestamps are stored in UTC and always come back time-zone aware, on SQLite (which keeps no
    offset) as on PostgreSQL."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


Timestamp = UtcDateTime()

users = sa.Table(
    "users", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False, server_default="user"),
    sa.Column("is_active", sa.Boolean(), nullable=False, server_default=sa.true()),
    sa.Column("balance_nanos", Money, nullable=False, server_default="0"),
    # Sum of open holds; only the database credit authority (several workers, no Redis) uses it.
    sa.Column("held_nanos", Money, nullable=False, server_default="0"),
    sa.Column("created_at", Timestamp, nullable=False),
    # argon2id (PHC string); null until the user sets a password (users made by an admin have none).
    sa.Column("password_hash", sa.String(255), nullable=True),
    # Plans and trials (gatewayz/plans): the allowance is this period's subscription allowance or trial
    # credit, spent before balance_nanos (purchased credits, which never expire). allowance_period names the
    # period it belongs to ("2025-06/pro", "trial/standard"); a new period resets it, lazily.
    sa.Column("plan", sa.String(32), nullable=False, server_default="free"),
    sa.Column("allowance_nanos", Money, sa.CheckConstraint("allowance_nanos >= 0", name="allowance_not_negative"),
              nullable=False, server_default="0"),
    sa.Column("allowance_period", sa.String(80), nullable=True),
    sa.Column("trial_source", sa.String(64), nullable=True),   # "standard" or "partner:CODE"; set once
    sa.Column("trial_started_at", Timestamp, nullable=True),
    sa.Column("trial_expires_at", Timestamp, nullable=True),
    sa.CheckConstraint("balance_nanos >= 0", name="balance_not_negative"),
    sa.CheckConstraint("held_nanos >= 0", name="held_not_negative"),
)

api_keys = sa.Table(
    "api_keys", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.BigInteger(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),  # HMAC-SHA256 hex: the lookup index
    sa.Column("encrypted_key", sa.Text(), nullable=False),              # Fernet ciphertext
    sa.Column("last4", sa.String(4), nullable=False),
    sa.Column("is_active", sa.Boolean(), nullable=False, server_default=sa.true()),
    sa.Column("expires_at", Timestamp, nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    # Restrictions (null = none): model ids, scopes, IPs / CIDR ranges, referrer hosts, per-key rate limits.
    sa.Column("allowed_models", sa.JSON(), nullable=True),
    sa.Column("scopes", sa.JSON(), nullable=True),
    sa.Column("allowed_ips", sa.JSON(), nullable=True),
    sa.Column("allowed_referrers", sa.JSON(), nullable=True),
    sa.Column("rpm_limit", sa.Integer(), nullable=True),
    sa.Column("tpm_limit", sa.Integer(), nullable=True),
    sa.Column("daily_spend_limit_nanos", Money, nullable=True),
)

credit_transactions = sa.Table(
    "credit_transactions", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.BigInteger(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("amount_nanos", Money, nullable=False),          # signed: usage is negative
    sa.Column("balance_after_nanos", Money, nullable=False),
    # The part paid from (or granted to) the allowance, signed; amount_nanos is the purchased-credit part.
    sa.Column("allowance_nanos", Money, nullable=False, server_default="0"),
    sa.Column("allowance_after_nanos", Money, nullable=True),
    sa.Column("request_id", sa.String(128), nullable=True),
    sa.Column("model", sa.String(200), nullable=True),
    sa.Column("prompt_tokens", sa.Integer(), nullable=True),
    sa.Column("completion_tokens", sa.Integer(), nullable=True),
    sa.Column("description", sa.String(500), nullable=True),
    sa.Column("actor", sa.String(100), nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    # Belt and braces for idempotency: one charge per (user, request id).
    sa.UniqueConstraint("user_id", "request_id", "type"),
    sa.Index(None, "user_id", "created_at"),
    sa.Index(None, "actor", "created_at"),   # an admin's changes of the last 24 hours (billing.admin caps)
)

credit_holds = sa.Table(
    "credit_holds", metadata,
    sa.Column("user_id", sa.BigInteger(), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("request_id", sa.String(128), primary_key=True),
    sa.Column("amount_nanos", Money, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False, index=True),
)

# Spend per UTC day of a capped user ("u:ID") or key ("k:ID"), requests in flight included: the daily caps'
# counter when several workers share the database without Redis.
daily_spend = sa.Table(
    "daily_spend", metadata,
    sa.Column("scope", sa.String(40), primary_key=True),
    sa.Column("day", sa.String(10), primary_key=True),        # YYYY-MM-DD (UTC)
    sa.Column("spent_nanos", Money, nullable=False),
)

usage_records = sa.Table(
    "usage_records", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("user_id", sa.BigInteger(), nullable=False),
    sa.Column("api_key_id", sa.BigInteger(), nullable=True),
    sa.Column("endpoint", sa.String(64), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("provider", sa.String(64), nullable=True),
    sa.Column("upstream_model", sa.String(200), nullable=True),
    sa.Column("stream", sa.Boolean(), nullable=False),
    sa.Column("status", sa.Integer(), nullable=False),
    sa.Column("error_code", sa.String(64), nullable=True),
    sa.Column("prompt_tokens", sa.Integer(), nullable=False),
    sa.Column("completion_tokens", sa.Integer(), nullable=False),
    sa.Column("cached_tokens", sa.Integer(), nullable=False),
    sa.Column("reasoning_tokens", sa.Integer(), nullable=False),
    sa.Column("cost_nanos", Money, nullable=False),
    sa.Column("latency_ms", sa.Float(), nullable=False),
    sa.Column("ttft_ms", sa.Float(), nullable=True),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.UniqueConstraint("user_id", "request_id"),
    sa.Index(None, "user_id", "created_at"),
    # Customer analytics (per key, per model over a date range), the retention purge and the operator views
    # (gatewayz/monitoring: time windows of every user).
    sa.Index(None, "user_id", "api_key_id", "created_at"),
    sa.Index(None, "user_id", "model", "created_at"),
    sa.Index(None, "created_at"),
)

# Append-only, hash-chained: each row carries the hash of the previous one, so editing or deleting any row
# breaks every hash after it (GET /admin/audit/verify finds where).
audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=False),
    sa.Column("at", Timestamp, nullable=False),
    sa.Column("actor", sa.String(100), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(200), nullable=True),
    sa.Column("details", sa.JSON(), nullable=True),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

# The chain's head, one row: updated in the same transaction as each append, which serializes appenders.
audit_head = sa.Table(
    "audit_head", metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Column("last_hash", sa.String(64), nullable=False),
)

# Admin-issued credit codes. `redemptions` only grows by a conditional UPDATE in the redeeming transaction.
coupons = sa.Table(
    "coupons", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("code", sa.String(40), nullable=False, unique=True),
    sa.Column("amount_nanos", Money, nullable=False),
    sa.Column("description", sa.String(500), nullable=True),
    # Set: only this user may redeem it, and only they see it.
    sa.Column("user_id", sa.BigInteger(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=True,
              index=True),
    sa.Column("max_redemptions", sa.Integer(), nullable=True),
    sa.Column("per_user_limit", sa.Integer(), nullable=False, server_default="1"),
    sa.Column("redemptions", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("listed", sa.Boolean(), nullable=False, server_default=sa.true()),
    sa.Column("is_active", sa.Boolean(), nullable=False, server_default=sa.true()),
    sa.Column("expires_at", Timestamp, nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.CheckConstraint("amount_nanos > 0", name="amount_positive"),
    sa.CheckConstraint("per_user_limit >= 1", name="per_user_limit_positive"),
    sa.CheckConstraint("max_redemptions IS NULL OR redemptions <= max_redemptions", name="within_max"),
)

# One row per redemption; `seq` is the user's n-th redemption of the coupon, so the per-user limit also
# holds in the database.
coupon_redemptions = sa.Table(
    "coupon_redemptions", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("coupon_id", sa.BigInteger(), sa.ForeignKey("coupons.id", ondelete="CASCADE"), nullable=False),
    sa.Column("user_id", sa.BigInteger(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("seq", sa.Integer(), nullable=False),
    sa.Column("amount_nanos", Money, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.UniqueConstraint("coupon_id", "user_id", "seq"),
    sa.Index(None, "user_id", "created_at"),
)

# Each user's referral code, created on first request; `uses` counts the users who applied it.
referral_codes = sa.Table(
    "referral_codes", metadata,
    sa.Column("user_id", sa.BigInteger(), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True,
              autoincrement=False),
    sa.Column("code", sa.String(16), nullable=False, unique=True),
    sa.Column("uses", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("created_at", Timestamp, nullable=False),
)

# Who referred whom: one row per referee (the primary key makes "only once" a database fact). The bonus
# is paid once, when `rewarded_at` goes from null to a time in the paying transaction.
referrals = sa.Table(
    "referrals", metadata,
    sa.Column("referee_id", sa.BigInteger(), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True,
              autoincrement=False),
    sa.Column("referrer_id", sa.BigInteger(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("code", sa.String(16), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("rewarded_at", Timestamp, nullable=True),
    sa.Column("purchase_nanos", Money, nullable=True),   # the purchase that paid the bonus
    sa.Column("bonus_nanos", Money, nullable=True),      # paid to each side
    sa.CheckConstraint("referee_id <> referrer_id", name="not_self"),
)

# Login sessions for the account routes: only the SHA-256 of each token is stored (tokens are 256 random bits,
# so a plain hash suffices and lookup is one index probe).
sessions = sa.Table(
    "sessions", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.BigInteger(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False, index=True),
    sa.Column("last_used_at", Timestamp, nullable=False),
)

# Client addresses allowed to run inference (GET/POST /api/admin/ip-whitelist). A row with a user_id applies to that
# user's requests, a row without one to every request; while any row applies to a request, its address must
# fall in one of them. `cidr` is normalized (ipaddress.ip_network, host bits cleared): "1.2.3.4/32", "10.0.0.0/24".
ip_allowlist = sa.Table(
    "ip_allowlist", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("cidr", sa.String(49), nullable=False),
    sa.Column("user_id", sa.BigInteger(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=True,
              index=True),
    sa.Column("description", sa.String(500), nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
)
