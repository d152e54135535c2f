"""Credits, billing caps, usage retention, coupons, referrals, Stripe, plans and trials."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import Field, field_validator

from gatewayz.config.base import Strict, exact_decimal, exact_usd


class CreditsConfig(Strict):
    # "auto": in-process holds for one worker; database holds when several workers share the database.
    authority: Literal["auto", "memory", "sql"] = "auto"
    low_balance_threshold_usd: Decimal = Decimal("1")
    settle_flush_ms: int = Field(default=20, ge=1, le=5000)
    # Database holds (several workers) left by a worker that died are released after this long; it must
    # exceed the longest request (a hold expiring under a live request lets it spend past its hold).
    hold_ttl_s: int = Field(default=3600, ge=2)
    # Every settlement is also appended to a local journal in data_dir before the answer ends; a restart
    # applies what a killed process had not written yet (see README, "Shutdown and crashes").
    journal: bool = True
    # How often the journal is fsynced: what a machine crash (not a process kill) can lose.
    journal_fsync_ms: int = Field(default=50, ge=1, le=10_000)


class BillingConfig(Strict):
    """Caps on admin balance changes (POST /credits/add, /credits/adjust, /refund): the most one change may
    move, and the most one admin (the admin key, or one user with the admin role) may move in 24 hours."""

    admin_max_transaction_usd: Decimal = Field(default=Decimal("1000"), gt=0, le=1_000_000, decimal_places=9)
    admin_daily_limit_usd: Decimal = Field(default=Decimal("5000"), gt=0, le=100_000_000, decimal_places=9)


class UsageConfig(Strict):
    # Usage records (GET /user/activity/*, /user/usage/export) older than this many days are deleted by a
    # periodic purge; 0 keeps them forever. The credit ledger is never purged.
    retention_days: int = Field(default=400, ge=0, le=36500)


class CouponsConfig(Strict):
    """Credit codes issued by an admin (POST /admin/coupons) and redeemed by users (POST /coupons/redeem)."""

    # The largest amount one coupon may grant.
    max_amount_usd: Decimal = Field(default=Decimal("1000"), gt=0, le=1_000_000, decimal_places=9)
    # Validate and redeem calls per user per minute (0: unlimited), so codes cannot be found by guessing.
    attempts_per_minute: int = Field(default=30, ge=0)


class ReferralsConfig(Strict):
    """Each user has a referral code; a new user who applies one, and the code's owner, both get `bonus_usd`
    when the new user's first purchase of at least `min_purchase_usd` is recorded."""

    bonus_usd: Decimal = Field(default=Decimal("10"), gt=0, le=1_000_000, decimal_places=9)
    min_purchase_usd: Decimal = Field(default=Decimal("10"), ge=0, le=1_000_000, decimal_places=9)
    max_uses: int = Field(default=10, ge=1)   # users who may apply one code


class CreditPackage(Strict):
    """A credit package sold through Stripe Checkout: `credits` at $0.01 each, for `price_usd`."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")
    credits: int = Field(ge=1, le=100_000_000)
    price_usd: Decimal = Field(gt=0, le=1_000_000, decimal_places=2)


def default_packages() -> list[CreditPackage]:
    return [CreditPackage(id="starter", credits=1000, price_usd=Decimal(10)),
            CreditPackage(id="pro", credits=5000, price_usd=Decimal(50)),
            CreditPackage(id="scale", credits=20000, price_usd=Decimal(200))]


class StripeConfig(Strict):
    """Stripe payments (routes under /api/stripe answer 503 until secret_key and webhook_secret are set; the
    environment's STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET fill them). `api_base` points the SDK elsewhere
    (a test double); `plan_prices` maps a plan id to its recurring Stripe price id."""

    secret_key: str | None = None
    webhook_secret: str | None = None
    api_base: str | None = None
    success_url: str = "http://localhost:8000/billing/success?session_id={CHECKOUT_SESSION_ID}"
    cancel_url: str = "http://localhost:8000/billing/cancel"
    currency: str = Field(default="usd", pattern=r"^[a-z]{3}$")
    credit_packages: list[CreditPackage] = Field(default_factory=default_packages)
    plan_prices: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=30.0, gt=0, le=300)

    @property
    def enabled(self) -> bool:
        return bool(self.secret_key and self.webhook_secret)


class PlanConfig(Strict):
    """A subscription tier. Its monthly allowance is spent before purchased credits and does not roll over;
    rpm/tpm are per-user limits across all of a user's keys (None: `limits.user_requests_per_minute`, no
    user tpm); daily_cap_usd caps what a user may spend per UTC day (None: no cap)."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    name: str = Field(min_length=1, max_length=100)
    price_usd_month: Decimal | None = Field(ge=0)   # None: priced by contract
    monthly_allowance_usd: Decimal = Field(default=Decimal(0), ge=0, le=Decimal(10_000_000))
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    daily_cap_usd: Decimal | None = Field(default=None, gt=0)

    _exact = field_validator("price_usd_month", "monthly_allowance_usd", "daily_cap_usd",
                             mode="before")(exact_decimal)
    _nanos = field_validator("price_usd_month", "monthly_allowance_usd", "daily_cap_usd")(exact_usd)


class TrialConfig(Strict):
    """The one source of the trial terms: credits spent first, gone when the trial ends after `days`."""

    credits_usd: Decimal = Field(default=Decimal(5), ge=0, le=Decimal(1_000_000))
    days: int = Field(default=14, ge=1, le=366)
    daily_cap_usd: Decimal | None = Field(default=Decimal(1), gt=0)

    _exact = field_validator("credits_usd", "daily_cap_usd", mode="before")(exact_decimal)
    _nanos = field_validator("credits_usd", "daily_cap_usd")(exact_usd)


class PartnerTrialConfig(TrialConfig):
    """A trial a user starts with a partner's code (POST /trial/partner), once per user."""

    code: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{1,31}$")
    rpm: int | None = Field(default=None, ge=1)   # per user while the trial runs; None: the plan's


def default_plans() -> list[PlanConfig]:
    d = Decimal
    return [
        PlanConfig(id="free", name="Free", price_usd_month=d(0)),
        PlanConfig(id="starter", name="Starter", price_usd_month=d(10), monthly_allowance_usd=d(10), rpm=600,
                   tpm=1_000_000, daily_cap_usd=d(25)),
        PlanConfig(id="pro", name="Pro", price_usd_month=d(50), monthly_allowance_usd=d(50), rpm=3000,
                   tpm=5_000_000, daily_cap_usd=d(200)),
        PlanConfig(id="enterprise", name="Enterprise", price_usd_month=None),
    ]
