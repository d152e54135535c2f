"""Typed settings: the YAML config file plus environment overrides. The only module that reads os.environ."""

from __future__ import annotations

import ipaddress
import os
import re
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gatewayz.providers.registry import BUILTIN, BY_NAME, env_names

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./data/gatewayz.db"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}$")


class ConfigError(Exception):
    """The configuration is invalid; the message names the bad field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderConfig(_Strict):
    """An upstream. Naming a built-in provider (see gatewayz/providers/registry.py) fills in its type and
    base URL, so `- {name: groq, api_key: ...}` is enough; any field given here overrides the built-in."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    # Request parameters this upstream does not accept; `provider.require_parameters` skips it for them.
    unsupported_params: list[str] = Field(default_factory=list)
    # The wire format: "openai" (and every OpenAI-compatible server), or a native adapter.
    type: Literal["openai", "azure", "anthropic", "gemini", "vertex", "bedrock", "cohere"] = "openai"
    base_url: str = ""
    api_key: str | None = None
    # Adapter settings, e.g. azure {api_version}, vertex {project, location, credentials_file},
    # bedrock {region, access_key_id, secret_access_key, session_token}.
    options: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=60.0, gt=0, le=3600)
    connect_timeout_s: float = Field(default=10.0, gt=0, le=600)
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _builtin_defaults(self) -> ProviderConfig:
        builtin = BY_NAME.get(self.name)
        if builtin is not None and "type" not in self.model_fields_set:
            object.__setattr__(self, "type", builtin.wire)
        if not self.base_url:
            if builtin is None:
                raise ValueError(f"base_url is required (no built-in provider is named {self.name!r})")
            object.__setattr__(self, "base_url", builtin.base_url)
        return self


class Pricing(_Strict):
    """USD per million tokens (and, for media models, per image, per second of audio, per million characters),
    kept as Decimal so no float ever touches money."""

    input: Decimal = Field(default=Decimal(0), ge=0)
    output: Decimal = Field(default=Decimal(0), ge=0)
    image: Decimal = Field(default=Decimal(0), ge=0)          # USD per generated image
    audio_minute: Decimal = Field(default=Decimal(0), ge=0)   # USD per minute of audio transcribed (per ms)
    characters: Decimal = Field(default=Decimal(0), ge=0)     # USD per million characters spoken

    @field_validator("input", "output", "image", "audio_minute", "characters", mode="before")
    @classmethod
    def _exact(cls, v: Any) -> Any:
        # YAML gives floats; str() of a float is its shortest round-trip form, so 0.15 stays 0.15.
        return Decimal(str(v)) if isinstance(v, float) else v

    @field_validator("input", "output", "characters")
    @classmethod
    def _picodollar_precision(cls, v: Decimal) -> Decimal:
        # Prices are applied in picodollars per token: 1e-6 USD per million tokens is the finest unit.
        if v != v.quantize(Decimal("0.000001")):
            raise ValueError("at most 6 decimal places (USD per million tokens)")
        return v

    @field_validator("image", "audio_minute")
    @classmethod
    def _nanodollar_precision(cls, v: Decimal) -> Decimal:
        if v != v.quantize(Decimal("0.000000001")):
            raise ValueError("at most 9 decimal places (USD)")
        return v

    def is_zero(self) -> bool:
        return not (self.input or self.output or self.image or self.audio_minute or self.characters)


class ModelRoute(_Strict):
    provider: str
    model: str = Field(min_length=1, max_length=200)
    # Share of first attempts when the model routes by weight (e.g. 70 and 30).
    weight: float | None = Field(default=None, gt=0)
    # What the user pays when this provider serves the model; the model's pricing otherwise.
    pricing: Pricing | None = None


class RouterPriors(_Strict):
    """Benchmark priors for router:general:* and router:code:* (override the built-in data file)."""

    quality: float = Field(ge=0, le=100)
    swe_bench: float | None = Field(default=None, ge=0, le=100)
    humaneval: float | None = Field(default=None, ge=0, le=100)
    agentic: float | None = Field(default=None, ge=0, le=100)


class ModelConfig(_Strict):
    id: str
    aliases: list[str] = Field(default_factory=list)
    pricing: Pricing | None = None
    free: bool = False
    context_length: int = Field(default=8192, ge=1, le=100_000_000)
    max_output_tokens: int | None = Field(default=None, ge=1)
    # How the first provider is chosen: the listed order, the lowest live latency, the lowest price,
    # or at random by `weight`. Failover then follows the rest of the list.
    routing: Literal["ordered", "latency", "price", "throughput", "weighted"] | None = None
    priors: RouterPriors | None = None
    # How often active probes check this model's providers (see routing.probes).
    tier: Literal["critical", "popular", "standard"] = "standard"
    # What the model does, which decides the endpoints that serve it: chat (/v1/chat/completions,
    # /v1/messages, /v1/responses, /v1/completions), embedding, image, transcription, speech.
    mode: Literal["chat", "embedding", "image", "transcription", "speech"] = "chat"
    providers: list[ModelRoute] = Field(min_length=1)

    @field_validator("id")
    @classmethod
    def _id_shape(cls, v: str) -> str:
        if not _MODEL_ID.match(v):
            raise ValueError("model ids use letters, digits and ._:/@+- (at most 200 characters)")
        return v

    @model_validator(mode="after")
    def _zero_price_needs_free(self) -> ModelConfig:
        p = self.pricing
        if p is not None and p.is_zero() and not self.free:
            raise ValueError("pricing is zero for input and output: set `free: true` to serve it at no charge")
        return self


class BreakerConfig(_Strict):
    """One documented default everywhere: 5 consecutive failures open a breaker for 60 s; then one
    successful trial request closes it (a failed one reopens it for another 60 s)."""

    failure_threshold: int = Field(default=5, ge=1, le=1000)
    cooldown_s: float = Field(default=60.0, gt=0, le=86400)
    half_open_successes: int = Field(default=1, ge=1, le=100)


class ProbeConfig(_Strict):
    """Active health probes: a one-token request to every provider of every model, at the model's tier
    interval. They cost provider tokens (the operator's, never a user's), so they are off until enabled
    here or started at POST /health/monitoring/start."""

    enabled: bool = False
    critical_s: float = Field(default=300, ge=1)
    popular_s: float = Field(default=1800, ge=1)
    standard_s: float = Field(default=14400, ge=1)
    timeout_s: float = Field(default=30, gt=0, le=600)


class RoutingConfig(_Strict):
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    probes: ProbeConfig = Field(default_factory=ProbeConfig)
    # An upstream 429 that asks to wait at most this long is retried on the same provider once.
    retry_429_max_wait_s: float = Field(default=2.0, ge=0, le=60)
    # Weight of the newest sample in the latency and throughput averages (EWMA).
    ewma_alpha: float = Field(default=0.2, gt=0, le=1)


class VelocityConfig(_Strict):
    """Velocity mode: while more than `error_rate_threshold` of the gateway's inference answers (POST /v1/...;
    4xx and 5xx count as errors, bar its own 429s) over the last `window_s` seconds are errors, with at least
    `min_requests` in the window, every layer 1, 2 and 3 limit is applied at `multiplier`; it ends after
    `cooldown_s` at or below the threshold."""

    enabled: bool = True
    error_rate_threshold: float = Field(default=0.25, gt=0, lt=1)
    window_s: int = Field(default=60, ge=1, le=3600)
    min_requests: int = Field(default=50, ge=1)
    multiplier: float = Field(default=0.5, gt=0, le=1)
    cooldown_s: int = Field(default=180, ge=1, le=86400)


class LimitsConfig(_Strict):
    """Rate limits per minute; 0 turns one off. Enforced once across every worker and instance when Redis is
    configured (one atomic script per check), in process otherwise; Redis failing falls back to in process."""

    requests_per_minute: int = Field(default=1200, ge=0)         # per API key
    tokens_per_minute: int = Field(default=2_000_000, ge=0)      # per API key, prompt + completion
    user_requests_per_minute: int = Field(default=0, ge=0)       # per user, across all their keys
    ip_requests_per_minute: int = Field(default=300, ge=0)       # requests that fail authentication, per IP
    key_creations_per_hour: int = Field(default=10, ge=0)        # API keys a user may create, per user
    velocity: VelocityConfig = Field(default_factory=VelocityConfig)


class AnonymousConfig(_Strict):
    """Layer 3: POST /v1/chat/completions without any credential, for the listed free models only (catalog
    entries with `free: true`), limited per client address more strictly than a key; never charged."""

    enabled: bool = False
    models: list[str] = Field(default_factory=list)
    requests_per_minute_per_ip: int = Field(default=10, ge=1)
    tokens_per_minute_per_ip: int = Field(default=20_000, ge=1)


class CorsConfig(_Strict):
    """Browsers calling the gateway from other origins (the inference routes too). No origin is allowed until
    listed; "*" allows any (without credentials: browsers refuse a wildcard with credentials)."""

    allow_origins: list[str] = Field(default_factory=list)
    allow_credentials: bool = False
    allow_methods: list[str] = Field(default_factory=lambda: ["GET", "POST", "PUT", "PATCH", "DELETE"])
    allow_headers: list[str] = Field(default_factory=lambda: [
        "authorization", "content-type", "x-api-key", "x-request-id", "x-session-id", "anthropic-version",
        "anthropic-beta"])
    expose_headers: list[str] = Field(default_factory=lambda: [
        "x-request-id", "retry-after", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset",
        "x-ratelimit-reason", "x-ratelimit-mode", "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests", "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-tokens", "x-gateway-provider", "x-gateway-cost", "x-credits-remaining"])
    max_age: int = Field(default=600, ge=0, le=86400)

    @model_validator(mode="after")
    def _no_wildcard_credentials(self) -> CorsConfig:
        if self.allow_credentials and "*" in self.allow_origins:
            raise ValueError("allow_credentials needs the origins listed: browsers refuse a wildcard with them")
        return self


class SecurityHeadersConfig(_Strict):
    """Headers on the management and dashboard routes (nosniff, frame denial, no referrer, a CSP that loads
    nothing on non-HTML answers). HSTS only when `hsts_max_age_s` > 0: serve over HTTPS first."""

    enabled: bool = True
    hsts_max_age_s: int = Field(default=0, ge=0, le=2 * 365 * 86400)
    hsts_include_subdomains: bool = False


class Argon2Config(_Strict):
    """Password hashing cost (argon2id). Raising it rehashes each stored password at its owner's next login."""

    time_cost: int = Field(default=3, ge=1, le=20)
    memory_cost_kib: int = Field(default=65536, ge=8, le=4 * 1024 * 1024)
    parallelism: int = Field(default=4, ge=1, le=64)

    @model_validator(mode="after")
    def _memory_per_lane(self) -> Argon2Config:
        if self.memory_cost_kib < 8 * self.parallelism:
            raise ValueError("memory_cost_kib must be at least 8 x parallelism")
        return self


class AuthConfig(_Strict):
    """Self-service accounts: passwords, login sessions, and per-address limits on login and registration
    (0 turns a limit off; enforced across workers with Redis, like every rate limit)."""

    registration_open: bool = True              # POST /auth/register; false: only admins create users
    session_ttl_s: int = Field(default=7 * 86400, ge=300, le=366 * 86400)
    login_attempts: int = Field(default=10, ge=0)                # per client address and window
    login_window_s: int = Field(default=900, ge=1, le=86400)
    registrations: int = Field(default=3, ge=0)                  # per client address and window
    registration_window_s: int = Field(default=3600, ge=1, le=7 * 86400)
    password_min_length: int = Field(default=10, ge=8, le=128)
    # Added to the bundled list of disposable e-mail domains (gatewayz/auth/data/disposable_domains.txt).
    disposable_domains: list[str] = Field(default_factory=list)
    argon2: Argon2Config = Field(default_factory=Argon2Config)

    @field_validator("disposable_domains")
    @classmethod
    def _domains(cls, v: list[str]) -> list[str]:
        out = [d.strip().lower().lstrip("@").rstrip(".") for d in v]
        bad = [d for d in out if not re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+", d)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a domain name")
        return out


class CreditsConfig(_Strict):
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


class BillingConfig(_Strict):
    """Caps on admin balance changes (POST /credits/add, /credits/adjust, /refund): the most one change may
    move, and the most one admin (the admin key, or one user with the admin role) may move in 24 hours."""

    admin_max_transaction_usd: Decimal = Field(default=Decimal("1000"), gt=0, le=1_000_000, decimal_places=9)
    admin_daily_limit_usd: Decimal = Field(default=Decimal("5000"), gt=0, le=100_000_000, decimal_places=9)


class UsageConfig(_Strict):
    # Usage records (GET /user/activity/*, /user/usage/export) older than this many days are deleted by a
    # periodic purge; 0 keeps them forever. The credit ledger is never purged.
    retention_days: int = Field(default=400, ge=0, le=36500)


class CouponsConfig(_Strict):
    """Credit codes issued by an admin (POST /admin/coupons) and redeemed by users (POST /coupons/redeem)."""

    # The largest amount one coupon may grant.
    max_amount_usd: Decimal = Field(default=Decimal("1000"), gt=0, le=1_000_000, decimal_places=9)
    # Validate and redeem calls per user per minute (0: unlimited), so codes cannot be found by guessing.
    attempts_per_minute: int = Field(default=30, ge=0)


class ReferralsConfig(_Strict):
    """Each user has a referral code; a new user who applies one, and the code's owner, both get `bonus_usd`
    when the new user's first purchase of at least `min_purchase_usd` is recorded."""

    bonus_usd: Decimal = Field(default=Decimal("10"), gt=0, le=1_000_000, decimal_places=9)
    min_purchase_usd: Decimal = Field(default=Decimal("10"), ge=0, le=1_000_000, decimal_places=9)
    max_uses: int = Field(default=10, ge=1)   # users who may apply one code


class CreditPackage(_Strict):
    """A credit package sold through Stripe Checkout: `credits` at $0.01 each, for `price_usd`."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")
    credits: int = Field(ge=1, le=100_000_000)
    price_usd: Decimal = Field(gt=0, le=1_000_000, decimal_places=2)


def default_packages() -> list[CreditPackage]:
    return [CreditPackage(id="starter", credits=1000, price_usd=Decimal(10)),
            CreditPackage(id="pro", credits=5000, price_usd=Decimal(50)),
            CreditPackage(id="scale", credits=20000, price_usd=Decimal(200))]


class StripeConfig(_Strict):
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


def _exact_decimal(v: Any) -> Any:
    """YAML gives floats; str() of a float is its shortest round-trip form, so 0.15 stays 0.15."""
    return Decimal(str(v)) if isinstance(v, float) else v


def _usd(v: Decimal | None) -> Decimal | None:
    if v is not None and v != v.quantize(Decimal("0.000000001")):
        raise ValueError("at most 9 decimal places (nanodollars)")
    return v


class PlanConfig(_Strict):
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
                             mode="before")(_exact_decimal)
    _nanos = field_validator("price_usd_month", "monthly_allowance_usd", "daily_cap_usd")(_usd)


class TrialConfig(_Strict):
    """The one source of the trial terms: credits spent first, gone when the trial ends after `days`."""

    credits_usd: Decimal = Field(default=Decimal(5), ge=0, le=Decimal(1_000_000))
    days: int = Field(default=14, ge=1, le=366)
    daily_cap_usd: Decimal | None = Field(default=Decimal(1), gt=0)

    _exact = field_validator("credits_usd", "daily_cap_usd", mode="before")(_exact_decimal)
    _nanos = field_validator("credits_usd", "daily_cap_usd")(_usd)


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


class ErrorMonitorConfig(_Strict):
    """Failed inference requests and unexpected exceptions (GET /error-monitor/*): kept in a ring per worker
    and written to the database in batches by a background task, never on the request's path."""

    flush_interval_s: float = Field(default=1.0, gt=0, le=60)
    recent_per_worker: int = Field(default=500, ge=10, le=100_000)   # the in-memory ring of each worker
    # Events waiting for the database (it is down): beyond this the oldest are dropped, and counted.
    max_buffer: int = Field(default=20_000, ge=100, le=10_000_000)
    # Rows kept per pattern in each batch written (up to 1,000 events, normally one batch a flush): a flood of
    # one error (a client retrying a bad key in a loop) is stored as a sample; its pattern counts every one.
    events_per_pattern_per_batch: int = Field(default=100, ge=1, le=1_000_000)
    # Error events older than this many days are deleted (patterns keep their counts); 0 keeps them forever.
    retention_days: int = Field(default=30, ge=0, le=36500)


class IncidentsConfig(_Strict):
    """Downtime incidents (GET /admin/downtime/*). A circuit breaker opening opens one for its provider (or
    provider + model); its closing resolves it. The error-rate rule opens one for a provider whose attempts
    failed at `error_rate_threshold` or more over `error_rate_window_s` (at least `error_rate_min_requests`
    attempts seen by one worker), and resolves it when the rate falls below the threshold again."""

    check_interval_s: float = Field(default=5.0, gt=0, le=3600)
    error_rate: bool = True
    error_rate_threshold: float = Field(default=0.5, gt=0, le=1)
    error_rate_min_requests: int = Field(default=10, ge=1)
    error_rate_window_s: float = Field(default=300.0, gt=0, le=86400)


class TracingConfig(_Strict):
    """OpenTelemetry traces of inference requests: one trace per request with a span per stage (authenticate,
    rate limits, plan, reserve, each upstream attempt, the stream, settle). Off until an exporter is chosen;
    the standard OTEL_* environment variables fill this section (see README, "Tracing, logs and Sentry")."""

    exporter: Literal["none", "otlp", "console"] = "none"
    # OTLP over HTTP (protobuf): the full traces URL of a collector (Tempo, Jaeger, an OpenTelemetry Collector).
    endpoint: str = "http://localhost:4318/v1/traces"
    headers: dict[str, str] = Field(default_factory=dict)     # sent with every export (e.g. an auth token)
    service_name: str | None = None                           # default: resource `service.name`, else gatewayz
    sampler: Literal["always_on", "always_off", "traceidratio", "parentbased_always_on",
                     "parentbased_always_off", "parentbased_traceidratio"] = "parentbased_always_on"
    sampler_arg: float = Field(default=1.0, ge=0, le=1)       # the ratio of the traceidratio samplers
    resource_attributes: dict[str, str] = Field(default_factory=dict)

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v

    @property
    def enabled(self) -> bool:
        return self.exporter != "none"


class Settings(_Strict):
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    admin_key: str | None = None
    encryption_key: str | None = None
    data_dir: Path = Path("./data")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=256)
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    request_deadline_s: float = Field(default=600.0, gt=0)
    # On SIGTERM: stop accepting, let in-flight requests and open streams finish for up to this long (then
    # they are cut), then write every pending settlement and exit.
    shutdown_grace_s: float = Field(default=30.0, ge=0, le=3600)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = True                       # one JSON object a line (request id, trace id); false: text
    # Log each inference request's messages (or input) at DEBUG, credentials masked. For debugging only:
    # prompts are user data. Needs log_level: debug to show.
    log_prompts: bool = False
    metrics_public: bool = False                # GET /metrics without the admin key (for a private network)
    metrics_dir: Path | None = None             # prometheus multiprocess directory; `serve --workers N` sets it
    credits: CreditsConfig = Field(default_factory=CreditsConfig)
    billing: BillingConfig = Field(default_factory=BillingConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    usage: UsageConfig = Field(default_factory=UsageConfig)
    coupons: CouponsConfig = Field(default_factory=CouponsConfig)
    referrals: ReferralsConfig = Field(default_factory=ReferralsConfig)
    stripe: StripeConfig = Field(default_factory=StripeConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    errors: ErrorMonitorConfig = Field(default_factory=ErrorMonitorConfig)
    incidents: IncidentsConfig = Field(default_factory=IncidentsConfig)
    tracing: TracingConfig = Field(default_factory=TracingConfig)
    # Sentry error reports (unexpected errors, tagged with the request id); off without a DSN.
    sentry_dsn: str | None = None
    sentry_environment: str = "production"
    sentry_traces_sample_rate: float = Field(default=0.0, ge=0, le=1)   # share of inference requests traced
    anonymous: AnonymousConfig = Field(default_factory=AnonymousConfig)
    cors: CorsConfig = Field(default_factory=CorsConfig)
    security_headers: SecurityHeadersConfig = Field(default_factory=SecurityHeadersConfig)
    # Reverse proxies (addresses or CIDR ranges) whose X-Forwarded-For is believed; empty: the socket peer
    # is the client. List your load balancer here, or every client shares its address (and its limits).
    trusted_proxies: list[str] = Field(default_factory=list, max_length=100)
    # The bundled catalog: every model the enabled built-in providers serve, priced (see README).
    builtin_catalog: bool = True
    # Keys and URLs of built-in providers found in the environment (OPENAI_API_KEY, GROQ_API_KEY, ...).
    provider_env: dict[str, str] = Field(default_factory=dict)
    providers: list[ProviderConfig] = Field(default_factory=list)
    models: list[ModelConfig] = Field(default_factory=list)
    # Subscription tiers (replaces the built-in list; must include `free`, every user's starting plan).
    plans: list[PlanConfig] = Field(default_factory=default_plans, min_length=1)
    trials: TrialConfig = Field(default_factory=TrialConfig)
    partner_trials: list[PartnerTrialConfig] = Field(default_factory=list)

    @field_validator("admin_key")
    @classmethod
    def _admin_key_length(cls, v: str | None) -> str | None:
        if v is not None and len(v) < 32:
            raise ValueError("must be at least 32 characters")
        return v

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, v: str) -> str:
        if not v.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("use sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST/DB")
        return v

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        out = []
        for item in v:
            try:
                out.append(str(ipaddress.ip_network(item.strip(), strict=False)))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR range") from None
        return out

    @model_validator(mode="after")
    def _anonymous_stricter(self) -> Settings:
        a, lim = self.anonymous, self.limits
        if not a.enabled:
            return self
        if lim.requests_per_minute and a.requests_per_minute_per_ip > lim.requests_per_minute:
            raise ValueError("anonymous.requests_per_minute_per_ip must not exceed limits.requests_per_minute")
        if lim.tokens_per_minute and a.tokens_per_minute_per_ip > lim.tokens_per_minute:
            raise ValueError("anonymous.tokens_per_minute_per_ip must not exceed limits.tokens_per_minute")
        return self

    def builtin_enabled(self) -> list[str]:
        """Built-in providers switched on by a key (or, for local servers, a URL) in the environment."""
        return [p.name for p in BUILTIN if self.provider_env.get(p.env_key)
                or (p.base_url_env and self.provider_env.get(p.base_url_env))]

    @model_validator(mode="after")
    def _plans_and_codes(self) -> Settings:
        ids = [p.id for p in self.plans]
        if len(set(ids)) != len(ids):
            raise ValueError("plans: duplicate plan id")
        if "free" not in ids:
            raise ValueError("plans: a plan with id 'free' is required (every user starts on it)")
        codes = [t.code.lower() for t in self.partner_trials]
        if len(set(codes)) != len(codes):
            raise ValueError("partner_trials: duplicate code (codes are case-insensitive)")
        unknown = sorted(set(self.stripe.plan_prices) - set(ids))
        if unknown:
            raise ValueError(f"stripe.plan_prices: unknown plan {unknown[0]!r}")
        packages = [p.id for p in self.stripe.credit_packages]
        if len(set(packages)) != len(packages):
            raise ValueError("stripe.credit_packages: duplicate package id")
        return self

    @model_validator(mode="after")
    def _references(self) -> Settings:
        configured = [p.name for p in self.providers]
        dup = {n for n in configured if configured.count(n) > 1}
        if dup:
            raise ValueError(f"providers: duplicate name {sorted(dup)[0]!r}")
        names = configured + self.builtin_enabled()
        seen: dict[str, str] = {}
        for i, m in enumerate(self.models):
            for j, route in enumerate(m.providers):
                if route.provider not in names:
                    raise ValueError(f"models.{i}.providers.{j}.provider: unknown provider {route.provider!r}")
            for ident in [m.id, *m.aliases]:
                if ident in seen:
                    raise ValueError(f"models.{i}: id or alias {ident!r} is already used by {seen[ident]!r}")
                seen[ident] = m.id
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def _interpolate(value: Any, env: dict[str, str], path: str) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, env, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env, f"{path}.{i}") for i, v in enumerate(value)]
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(f"{path}: environment variable {name} is not set")
        return _ENV_REF.sub(sub, value)
    return value


def _format_validation(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "config"
        lines.append(f"{where}: {e['msg']}")
    return "invalid configuration: " + "; ".join(lines)


ENV_OVERRIDES = {
    "GATEWAYZ_DATABASE_URL": "database_url",
    "GATEWAYZ_REDIS_URL": "redis_url",
    "GATEWAYZ_ADMIN_KEY": "admin_key",
    "GATEWAYZ_ENCRYPTION_KEY": "encryption_key",
    "GATEWAYZ_DATA_DIR": "data_dir",
    "GATEWAYZ_WORKERS": "workers",
    "GATEWAYZ_METRICS_DIR": "metrics_dir",
    "SENTRY_DSN": "sentry_dsn",
    "SENTRY_ENVIRONMENT": "sentry_environment",
    "SENTRY_TRACES_SAMPLE_RATE": "sentry_traces_sample_rate",
}
_TRUE = ("1", "true", "yes", "on")


def _key_values(text: str, what: str) -> dict[str, str]:
    """The W3C-baggage-like lists of OTEL_EXPORTER_OTLP_HEADERS and OTEL_RESOURCE_ATTRIBUTES: k=v,k2=v2
    (values percent-encoded)."""
    out: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{what}: {item.strip()!r} is not key=value")
        out[unquote(key.strip())] = unquote(value.strip())
    return out


def _tracing_env(env: dict[str, str], raw: dict[str, Any]) -> dict[str, Any]:
    """The `tracing` section with the standard OpenTelemetry variables applied (they win over the file)."""
    section = dict(raw.get("tracing") or {})
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if not endpoint and env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        endpoint = env["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + "/v1/traces"
    if endpoint:
        section["endpoint"] = endpoint
        section.setdefault("exporter", "otlp")  # an endpoint alone turns export on
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        section["exporter"] = exporter
    headers = env.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or env.get("OTEL_EXPORTER_OTLP_HEADERS")
    if headers:
        section["headers"] = _key_values(headers, "OTEL_EXPORTER_OTLP_HEADERS")
    if env.get("OTEL_RESOURCE_ATTRIBUTES"):
        section["resource_attributes"] = _key_values(env["OTEL_RESOURCE_ATTRIBUTES"], "OTEL_RESOURCE_ATTRIBUTES")
    for var, field in (("OTEL_SERVICE_NAME", "service_name"), ("OTEL_TRACES_SAMPLER", "sampler"),
                       ("OTEL_TRACES_SAMPLER_ARG", "sampler_arg")):
        if env.get(var):
            section[field] = env[var].strip()
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
        section["exporter"] = "none"
    return section

STRIPE_ENV = {"STRIPE_SECRET_KEY": "secret_key", "STRIPE_WEBHOOK_SECRET": "webhook_secret"}


def load_settings(config_path: str | Path | None = None, env: dict[str, str] | None = None,
                  **overrides: Any) -> Settings:
    """Read the YAML file (argument, else GATEWAYZ_CONFIG), interpolate ${VAR}, apply env and CLI overrides."""
    env = dict(os.environ) if env is None else env
    path = config_path or env.get("GATEWAYZ_CONFIG")
    raw: dict[str, Any] = {}
    if path:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        try:
            loaded = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path}: the top level must be a mapping")
        raw = _interpolate(loaded, env, "")
    for var, field in ENV_OVERRIDES.items():
        if env.get(var):
            raw[field] = env[var]
    for var, field in STRIPE_ENV.items():
        if env.get(var):
            raw["stripe"] = {**(raw.get("stripe") or {}), field: env[var]}
    raw["provider_env"] = {k: env[k] for k in env_names() if env.get(k)}
    raw["tracing"] = _tracing_env(env, raw)
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc)) from None


def worker_environment(config_path: str | Path | None, settings: Settings) -> None:
    """Hand the parent's configuration to worker processes, which load settings from the environment."""
    if config_path:
        os.environ["GATEWAYZ_CONFIG"] = str(Path(config_path).resolve())
    os.environ["GATEWAYZ_WORKERS"] = str(settings.workers)
    if settings.metrics_dir is not None:
        os.environ["GATEWAYZ_METRICS_DIR"] = str(settings.metrics_dir.resolve())


def export_process_env(name: str, value: str) -> None:
    """For libraries configured only through the environment (prometheus-client's multiprocess directory)."""
    if os.environ.get(name) != value:
        os.environ[name] = value
