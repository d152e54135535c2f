"""Upstreams and models: providers, prices, routes, router priors."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from gatewayz.config.base import Strict
from gatewayz.providers.registry import BY_NAME

_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}$")


class ProviderConfig(Strict):
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


class Pricing(Strict):
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


class ModelRoute(Strict):
    provider: str
    model: str = Field(min_length=1, max_length=200)
    # Share of first attempts when the model routes by weight (e.g. 70 and 30).
    weight: float | None = Field(default=None, gt=0)
    # What the user pays when this provider serves the model; the model's pricing otherwise.
    pricing: Pricing | None = None


class RouterPriors(Strict):
    """Benchmark priors for router:general:* and router:code:* (override the built-in data file)."""

    quality: float = Field(ge=0, le=100)
    swe_bench: float | None = Field(default=None, ge=0, le=100)
    humaneval: float | None = Field(default=None, ge=0, le=100)
    agentic: float | None = Field(default=None, ge=0, le=100)


class ModelConfig(Strict):
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
