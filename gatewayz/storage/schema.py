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
    # Media units billed (image, transcription and speech models); NULL for requests that have none.
    sa.Column("images", sa.Integer(), nullable=True),
    sa.Column("audio_ms", sa.BigInteger(), nullable=True),
    sa.Column("characters", sa.BigInteger(), nullable=True),
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

# Stripe: one row per Checkout Session (credits or a subscription); credited once, whichever event comes first.
stripe_payments = sa.Table(
    "stripe_payments", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.BigInteger(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),            # credits | subscription
    sa.Column("package_id", sa.String(40), nullable=True),
    sa.Column("plan", sa.String(32), nullable=True),
    sa.Column("amount_cents", sa.BigInteger(), nullable=False),
    sa.Column("credit_nanos", Money, nullable=False),
    sa.Column("currency", sa.String(8), nullable=False),
    sa.Column("status", sa.String(24), nullable=False),          # pending | succeeded | refunded | ... | failed
    sa.Column("session_id", sa.String(255), nullable=True),
    sa.Column("payment_intent_id", sa.String(255), nullable=True),
    sa.Column("refunded_cents", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("refund_shortfall_nanos", Money, nullable=False, server_default="0"),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.UniqueConstraint("session_id"),
    sa.Index(None, "user_id", "id"),
    sa.Index(None, "payment_intent_id"),
)

# Stripe events applied: the id is inserted in the same transaction as the event's effect (replays do nothing).
stripe_events = sa.Table(
    "stripe_events", metadata,
    sa.Column("id", sa.String(255), primary_key=True),
    sa.Column("type", sa.String(100), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
)

# Each user's Stripe subscription (the latest one), to upgrade, downgrade or cancel it.
stripe_subscriptions = sa.Table(
    "stripe_subscriptions", metadata,
    sa.Column("user_id", sa.BigInteger(), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("subscription_id", sa.String(255), nullable=False),
    sa.Column("customer_id", sa.String(255), nullable=True),
    sa.Column("plan", sa.String(32), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.UniqueConstraint("subscription_id"),
)

# Failed inference requests and unexpected exceptions (gatewayz/error_monitor), written in batches by every
# worker; `fingerprint` groups an event with its row in error_patterns. Purged after `errors.retention_days`.
error_events = sa.Table(
    "error_events", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("at", Timestamp, nullable=False),
    sa.Column("request_id", sa.String(128), nullable=True),
    sa.Column("error_class", sa.String(16), nullable=False),    # client | upstream | gateway | exception
    sa.Column("critical", sa.Boolean(), nullable=False),
    sa.Column("status", sa.Integer(), nullable=False),
    sa.Column("code", sa.String(64), nullable=True),
    sa.Column("provider", sa.String(64), nullable=True),
    sa.Column("model", sa.String(200), nullable=True),
    sa.Column("endpoint", sa.String(200), nullable=True),
    sa.Column("user_id", sa.BigInteger(), nullable=True),
    sa.Column("message", sa.String(1000), nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Index(None, "at"),
    sa.Index(None, "critical", "at"),
    sa.Index(None, "fingerprint", "at"),
)

# Recurring errors: one row per fingerprint (code, provider, model and the message with numbers and ids
# stripped), its count growing by an upsert from every worker. A resolved pattern reopens on its next occurrence.
error_patterns = sa.Table(
    "error_patterns", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("fingerprint", sa.String(64), nullable=False, unique=True),
    sa.Column("error_class", sa.String(16), nullable=False),
    sa.Column("code", sa.String(64), nullable=True),
    sa.Column("provider", sa.String(64), nullable=True),
    sa.Column("model", sa.String(200), nullable=True),
    sa.Column("message", sa.String(1000), nullable=False),           # normalized
    sa.Column("sample_message", sa.String(1000), nullable=False),    # the latest occurrence, as it was
    sa.Column("count", sa.BigInteger(), nullable=False),
    sa.Column("first_seen", Timestamp, nullable=False),
    sa.Column("last_seen", Timestamp, nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False, server_default="open"),   # open | resolved
    sa.Column("reopened", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("resolved_at", Timestamp, nullable=True),
    sa.Column("resolved_by", sa.String(100), nullable=True),
    sa.Column("resolution_note", sa.String(2000), nullable=True),
)

# Downtime incidents (gatewayz/incidents): opened when a provider or a provider's model degrades, resolved on
# recovery (resolved_by "auto") or by an admin. At most one open incident per target, across every worker:
# the partial unique index makes opening a conditional insert that only one process can win.
incidents = sa.Table(
    "incidents", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),         # provider | model
    sa.Column("target", sa.String(300), nullable=False),      # "provider" or "provider|upstream model"
    sa.Column("severity", sa.String(16), nullable=False),     # critical | major
    sa.Column("status", sa.String(16), nullable=False),       # open | resolved
    sa.Column("opened_at", Timestamp, nullable=False),
    sa.Column("resolved_at", Timestamp, nullable=True),
    sa.Column("cause", sa.String(32), nullable=False),        # breaker_open | error_rate
    sa.Column("notes", sa.String(2000), nullable=True),       # what the gateway saw, in words
    sa.Column("events", sa.Integer(), nullable=False, server_default="1"),
    sa.Column("resolved_by", sa.String(100), nullable=True),  # "auto" or the admin actor
    sa.Column("resolution_note", sa.String(2000), nullable=True),
    sa.Column("resolution_note_by", sa.String(100), nullable=True),
    sa.Index("uq_incidents_open_target", "target", unique=True, sqlite_where=sa.text("status = 'open'"),
             postgresql_where=sa.text("status = 'open'")),
    sa.Index(None, "opened_at"),
    sa.Index(None, "target", "opened_at"),
)

# What happened during an incident, in order: breaker transitions, error-rate readings, resolution, notes.
incident_events = sa.Table(
    "incident_events", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("incident_id", sa.BigInteger(), sa.ForeignKey("incidents.id", ondelete="CASCADE"), nullable=False),
    sa.Column("at", Timestamp, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("detail", sa.String(1000), nullable=False),
    sa.Index(None, "incident_id", "at"),
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
