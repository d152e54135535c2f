"""Routing, limits, ingress security, accounts, and the observability settings."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gatewayz.config.base import Strict


class BreakerConfig(Strict):
    """One documented default everywhere: 5 consecutive failures open a breaker for 60 s; then one
    successful trial request closes it (a failed one reopens it for another 60 s)."""

    failure_threshold: int = Field(default=5, ge=1, le=1000)
    cooldown_s: float = Field(default=60.0, gt=0, le=86400)
    half_open_successes: int = Field(default=1, ge=1, le=100)


class ProbeConfig(Strict):
    """Active health probes: a one-token request to every provider of every model, at the model's tier
    interval. They cost provider tokens (the operator's, never a user's), so they are off until enabled
    here or started at POST /health/monitoring/start."""

    enabled: bool = False
    critical_s: float = Field(default=300, ge=1)
    popular_s: float = Field(default=1800, ge=1)
    standard_s: float = Field(default=14400, ge=1)
    timeout_s: float = Field(default=30, gt=0, le=600)


class RoutingConfig(Strict):
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    probes: ProbeConfig = Field(default_factory=ProbeConfig)
    # An upstream 429 that asks to wait at most this long is retried on the same provider once.
    retry_429_max_wait_s: float = Field(default=2.0, ge=0, le=60)
    # Weight of the newest sample in the latency and throughput averages (EWMA).
    ewma_alpha: float = Field(default=0.2, gt=0, le=1)


class VelocityConfig(Strict):
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


class LimitsConfig(Strict):
    """Rate limits per minute; 0 turns one off. Enforced once across every worker and instance when Redis is
    configured (one atomic script per check), in process otherwise; Redis failing falls back to in process."""

    requests_per_minute: int = Field(default=1200, ge=0)         # per API key
    tokens_per_minute: int = Field(default=2_000_000, ge=0)      # per API key, prompt + completion
    user_requests_per_minute: int = Field(default=0, ge=0)       # per user, across all their keys
    ip_requests_per_minute: int = Field(default=300, ge=0)       # requests that fail authentication, per IP
    key_creations_per_hour: int = Field(default=10, ge=0)        # API keys a user may create, per user
    velocity: VelocityConfig = Field(default_factory=VelocityConfig)


class AnonymousConfig(Strict):
    """Layer 3: POST /v1/chat/completions without any credential, for the listed free models only (catalog
    entries with `free: true`), limited per client address more strictly than a key; never charged."""

    enabled: bool = False
    models: list[str] = Field(default_factory=list)
    requests_per_minute_per_ip: int = Field(default=10, ge=1)
    tokens_per_minute_per_ip: int = Field(default=20_000, ge=1)


class CorsConfig(Strict):
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


class SecurityHeadersConfig(Strict):
    """Headers on the management and dashboard routes (nosniff, frame denial, no referrer, a CSP that loads
    nothing on non-HTML answers). HSTS only when `hsts_max_age_s` > 0: serve over HTTPS first."""

    enabled: bool = True
    hsts_max_age_s: int = Field(default=0, ge=0, le=2 * 365 * 86400)
    hsts_include_subdomains: bool = False


class Argon2Config(Strict):
    """Password hashing cost (argon2id). Raising it rehashes each stored password at its owner's next login."""

    time_cost: int = Field(default=3, ge=1, le=20)
    memory_cost_kib: int = Field(default=65536, ge=8, le=4 * 1024 * 1024)
    parallelism: int = Field(default=4, ge=1, le=64)

    @model_validator(mode="after")
    def _memory_per_lane(self) -> Argon2Config:
        if self.memory_cost_kib < 8 * self.parallelism:
            raise ValueError("memory_cost_kib must be at least 8 x parallelism")
        return self


class AuthConfig(Strict):
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




class ErrorMonitorConfig(Strict):
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


class IncidentsConfig(Strict):
    """Downtime incidents (GET /admin/downtime/*). A circuit breaker opening opens one for its provider (or
    provider + model); its closing resolves it. The error-rate rule opens one for a provider whose attempts
    failed at `error_rate_threshold` or more over `error_rate_window_s` (at least `error_rate_min_requests`
    attempts seen by one worker), and resolves it when the rate falls below the threshold again."""

    check_interval_s: float = Field(default=5.0, gt=0, le=3600)
    error_rate: bool = True
    error_rate_threshold: float = Field(default=0.5, gt=0, le=1)
    error_rate_min_requests: int = Field(default=10, ge=1)
    error_rate_window_s: float = Field(default=300.0, gt=0, le=86400)


class TracingConfig(Strict):
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
