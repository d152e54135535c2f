"""Typed settings: the YAML config file plus environment overrides. The only module that reads os.environ."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from gatewayz.config.base import ConfigError, Strict
from gatewayz.config.billing import (
    BillingConfig,
    CouponsConfig,
    CreditPackage,
    CreditsConfig,
    PartnerTrialConfig,
    PlanConfig,
    ReferralsConfig,
    StripeConfig,
    TrialConfig,
    UsageConfig,
    default_packages,
    default_plans,
)
from gatewayz.config.models import ModelConfig, ModelRoute, Pricing, ProviderConfig, RouterPriors
from gatewayz.config.operations import (
    AnonymousConfig,
    Argon2Config,
    AuthConfig,
    BreakerConfig,
    CorsConfig,
    ErrorMonitorConfig,
    IncidentsConfig,
    LimitsConfig,
    ProbeConfig,
    RoutingConfig,
    SecurityHeadersConfig,
    TracingConfig,
    VelocityConfig,
)
from gatewayz.providers.registry import BUILTIN, env_names

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./data/gatewayz.db"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

# The configuration models live in gatewayz.config (by domain); the rest of the code imports them from here.
__all__ = [
    "AnonymousConfig", "Argon2Config", "AuthConfig", "BillingConfig", "BreakerConfig", "ConfigError",
    "CorsConfig", "CouponsConfig", "CreditPackage", "CreditsConfig", "default_packages", "default_plans",
    "ErrorMonitorConfig", "IncidentsConfig", "LimitsConfig", "ModelConfig", "ModelRoute", "PartnerTrialConfig",
    "PlanConfig", "Pricing", "ProbeConfig", "ProviderConfig", "ReferralsConfig", "RouterPriors",
    "RoutingConfig", "SecurityHeadersConfig", "StripeConfig", "TracingConfig", "TrialConfig", "UsageConfig",
    "VelocityConfig",
]


class Settings(Strict):
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
