"""Resolves what a client names to a priced catalog entry, or refuses before any upstream call."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from gatewayz.billing.money import per_million_to_picos, usd_to_nanos
from gatewayz.errors import ModelNotFound
from gatewayz.settings import ModelConfig, Pricing

log = logging.getLogger("gatewayz.catalog")


@dataclass(frozen=True, slots=True)
class UnitPrices:
    image_nanos: int = 0          # per generated image
    minute_nanos: int = 0         # per minute of audio in (billed by the millisecond)
    character_picos: int = 0      # per character of text spoken

    def any(self) -> bool:
        return bool(self.image_nanos or self.minute_nanos or self.character_picos)


@dataclass(frozen=True, slots=True)
class Route:
    provider: str
    upstream_model: str
    input_picos: int = 0       # what the user pays per token when this provider serves the model
    output_picos: int = 0
    weight: float | None = None
    units: UnitPrices | None = None   # media prices (per image, audio second, character), when any

    @classmethod
    def priced(cls, provider: str, upstream_model: str, p: Pricing, weight: float | None = None) -> Route:
        units = UnitPrices(usd_to_nanos(p.image), usd_to_nanos(p.audio_minute), per_million_to_picos(p.characters))
        return cls(provider, upstream_model, per_million_to_picos(p.input), per_million_to_picos(p.output), weight,
                   units if units.any() else None)

    @property
    def unit_price(self) -> int:
        return self.input_picos + self.output_picos


# OpenRouter-style variants that pick a different provider order for the same model. (`:free` is a model
# of its own: define `id: x:free` with `free: true` in the config.)
VARIANT_SORT = {"nitro": "throughput", "floor": "price"}


def variant_sort(name: str) -> str | None:
    _, sep, variant = name.rpartition(":")
    return VARIANT_SORT.get(variant) if sep else None


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    id: str
    aliases: tuple[str, ...]
    input_per_million: Decimal
    output_per_million: Decimal
    input_picos: int          # picodollars per prompt token
    output_picos: int         # picodollars per completion token
    context_length: int
    max_output_tokens: int
    routes: tuple[Route, ...]
    free: bool = False
    routing: str = "ordered"
    mode: str = "chat"
    pricing: Pricing | None = None


class Catalog:
    def __init__(self, models: list[ModelConfig]) -> None:
        self._by_name: dict[str, CatalogEntry] = {}
        self.entries: list[CatalogEntry] = []
        self.unpriced: set[str] = set()
        for m in models:
            if m.pricing is None:
                # Never served at a guessed price: it is neither listed nor routable.
                log.warning("model %s has no pricing and will not be served", m.id)
                self.unpriced.update([m.id, *m.aliases])
                continue
            routes = tuple(Route.priced(r.provider, r.model, r.pricing or m.pricing, r.weight) for r in m.providers)
            weighted = any(r.weight for r in m.providers)
            entry = CatalogEntry(
                id=m.id, aliases=tuple(m.aliases), input_per_million=m.pricing.input,
                output_per_million=m.pricing.output, input_picos=per_million_to_picos(m.pricing.input),
                output_picos=per_million_to_picos(m.pricing.output), context_length=m.context_length,
                max_output_tokens=min(m.max_output_tokens or m.context_length, m.context_length),
                routes=routes, free=m.free, routing=m.routing or ("weighted" if weighted else "ordered"),
                mode=m.mode, pricing=m.pricing)
            self.entries.append(entry)
            for name in (m.id, *m.aliases):
                self._by_name[name] = entry

    def resolve(self, name: str) -> CatalogEntry:
        entry = self._by_name.get(name)
        if entry is not None:
            return entry
        base, _, variant = name.rpartition(":")
        if variant in VARIANT_SORT and base in self._by_name:
            return self._by_name[base]
        if name in self.unpriced:
            raise ModelNotFound(f"The model {name!r} has no price configured, so it is not served.",
                                param="model", code="model_not_found")
        raise ModelNotFound(f"The model {name!r} does not exist or is not served here. "
                            "GET /v1/models lists the available models.", param="model")
