"""Stage: the ordered list of (model, provider) candidates a request will try.

Inputs: the model's configured providers and routing strategy (ordered, latency, price, throughput,
weighted), an OpenRouter-style `provider` object in the body (order, allow_fallbacks, only, ignore, sort,
max_price, require_parameters), the `:nitro` / `:floor` variants, a request-level `models` fallback list,
and live state: providers whose circuit breaker is open are left out."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from gatewayz.catalog.service import Catalog, CatalogEntry, Route, variant_sort
from gatewayz.errors import InvalidRequest, ServiceUnavailable
from gatewayz.providers.spec import ProviderSpec
from gatewayz.routing.breaker_store import MemoryBreakers
from gatewayz.routing.stats import ProviderStats

GATEWAY_FIELDS = ("provider", "models", "session_id")  # read by the gateway, never sent upstream
SORTS = ("price", "latency", "throughput")
MAX_FALLBACK_MODELS = 8


@dataclass(frozen=True, slots=True)
class Candidate:
    entry: CatalogEntry
    route: Route


@dataclass(slots=True)
class ProviderPrefs:
    order: list[str] | None = None
    allow_fallbacks: bool = True
    only: list[str] | None = None
    ignore: list[str] | None = None
    sort: str | None = None
    max_input_picos: int | None = None
    max_output_picos: int | None = None
    require_parameters: bool = False


def _names(value: Any, field: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or len(value) > 64:
        raise InvalidRequest(f"`provider.{field}` must be a list of provider names.", param=f"provider.{field}",
                             code="invalid_value")
    return value


def _price(value: Any, field: str) -> int | None:
    if value is None:
        return None
    try:
        usd_per_million = Decimal(str(value))
    except InvalidOperation:
        usd_per_million = Decimal(-1)
    if isinstance(value, bool) or not usd_per_million.is_finite() or usd_per_million < 0:
        raise InvalidRequest(f"`provider.max_price.{field}` must be a non-negative USD amount per million tokens.",
                             param=f"provider.max_price.{field}", code="invalid_value")
    return int(usd_per_million * 1_000_000)


def parse_prefs(body: dict[str, Any]) -> ProviderPrefs | None:
    raw = body.get("provider")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidRequest("`provider` must be an object.", param="provider", code="invalid_value")
    sort = raw.get("sort")
    if sort is not None and sort not in SORTS:
        raise InvalidRequest(f"`provider.sort` must be one of {', '.join(SORTS)}.", param="provider.sort",
                             code="invalid_value")
    for flag in ("allow_fallbacks", "require_parameters"):
        if flag in raw and not isinstance(raw[flag], bool):
            raise InvalidRequest(f"`provider.{flag}` must be a boolean.", param=f"provider.{flag}",
                                 code="invalid_value")
    max_price = raw.get("max_price") or {}
    if not isinstance(max_price, dict):
        raise InvalidRequest("`provider.max_price` must be an object like {\"prompt\": 1, \"completion\": 2}.",
                             param="provider.max_price", code="invalid_value")
    return ProviderPrefs(order=_names(raw.get("order"), "order"), allow_fallbacks=raw.get("allow_fallbacks", True),
                         only=_names(raw.get("only"), "only"), ignore=_names(raw.get("ignore"), "ignore"),
                         sort=sort, max_input_picos=_price(max_price.get("prompt"), "prompt"),
                         max_output_picos=_price(max_price.get("completion"), "completion"),
                         require_parameters=raw.get("require_parameters", False))


def fallback_models(body: dict[str, Any], catalog: Catalog, primary: CatalogEntry) -> list[CatalogEntry]:
    raw = body.get("models")
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(m, str) for m in raw) or len(raw) > MAX_FALLBACK_MODELS:
        raise InvalidRequest(f"`models` must be a list of at most {MAX_FALLBACK_MODELS} model ids.", param="models",
                             code="invalid_value")
    out: list[CatalogEntry] = []
    for name in raw:
        entry = catalog.resolve(name)
        if entry.mode != primary.mode:
            raise InvalidRequest(f"`models`: {entry.id} is a {entry.mode} model and cannot stand in for "
                                 f"{primary.id}, a {primary.mode} model.", param="models", code="invalid_value")
        if entry is not primary and entry not in out:
            out.append(entry)
    return out


class Planner:
    def __init__(self, providers: dict[str, ProviderSpec], breakers: MemoryBreakers, stats: ProviderStats,
                 rng: random.Random | None = None) -> None:
        self._providers = providers
        self._breakers = breakers
        self._stats = stats
        self._rng = rng or random.Random()

    def plan(self, primary: CatalogEntry, requested: str, body: dict[str, Any], fallbacks: list[CatalogEntry],
             prefs: ProviderPrefs | None, session: str | None) -> list[Candidate]:
        sort = (prefs.sort if prefs else None) or variant_sort(requested)
        out: list[Candidate] = []
        blocked: list[str] = []
        for entry in [primary, *fallbacks]:
            routes = [r for r in entry.routes if self._eligible(r, body, prefs)]
            routes = self._order(entry, routes, prefs, sort, session)
            if prefs is not None and not prefs.allow_fallbacks:
                routes = routes[: max(len(prefs.order or ()), 1)]
            for r in routes:
                keys = (r.provider, f"{r.provider}|{r.upstream_model}")
                closed = [k for k in keys if not self._breakers.allows(k)]
                if closed:
                    blocked.extend(closed)
                else:
                    out.append(Candidate(entry, r))
        if not out:
            self._refuse(primary, blocked)
        return out

    def _eligible(self, r: Route, body: dict[str, Any], prefs: ProviderPrefs | None) -> bool:
        if prefs is None:
            return True
        if prefs.only is not None and r.provider not in prefs.only:
            return False
        if prefs.ignore is not None and r.provider in prefs.ignore:
            return False
        if prefs.max_input_picos is not None and r.input_picos > prefs.max_input_picos:
            return False
        if prefs.max_output_picos is not None and r.output_picos > prefs.max_output_picos:
            return False
        if prefs.require_parameters:
            unsupported = self._providers[r.provider].unsupported_params
            if any(p in body for p in unsupported):
                return False
        return True

    def _order(self, entry: CatalogEntry, routes: list[Route], prefs: ProviderPrefs | None, sort: str | None,
               session: str | None) -> list[Route]:
        if prefs is not None and prefs.order:
            rank = {name: i for i, name in enumerate(prefs.order)}
            return sorted(routes, key=lambda r: rank.get(r.provider, len(rank)))
        strategy = sort or entry.routing
        if strategy == "price":
            return sorted(routes, key=lambda r: r.unit_price)
        if strategy == "latency":
            # Unmeasured providers go first, so every provider gets measured; then the fastest.
            return sorted(routes, key=lambda r: self._stats.latency(r.provider, r.upstream_model) or 0.0)
        if strategy == "throughput":
            return sorted(routes, key=lambda r: -(self._stats.throughput(r.provider, r.upstream_model) or 1e12))
        if strategy == "weighted" and len(routes) > 1:
            first = self._weighted(routes, session)
            return [first, *(r for r in routes if r is not first)]
        return routes

    def _weighted(self, routes: list[Route], session: str | None) -> Route:
        weights = [r.weight or 0.0 for r in routes]
        total = sum(weights)
        if total <= 0:
            return routes[0]
        if session is not None:  # sticky: one conversation keeps one provider while it is healthy
            point = int.from_bytes(hashlib.blake2b(session.encode(), digest_size=8).digest(), "big") / 2**64 * total
        else:
            point = self._rng.random() * total
        for r, w in zip(routes, weights, strict=True):
            point -= w
            if point < 0:
                return r
        return routes[-1]

    def _refuse(self, entry: CatalogEntry, blocked: list[str]) -> None:
        if blocked:
            # The earliest moment any open breaker lets a trial request through.
            wait = min(self._breakers.retry_after(k) for k in blocked) or 1.0
            after = max(1, round(wait))
            self._stats.uptime.record("model:" + entry.id, False)
            providers = sorted({k.split("|", 1)[0] for k in blocked})
            raise ServiceUnavailable(
                f"Every provider of {entry.id} is failing right now (circuit breakers open: "
                f"{', '.join(providers)}); retry after {after}s.", code="providers_unavailable",
                headers={"retry-after": str(after)})
        raise InvalidRequest(f"No provider of {entry.id} matches the request's provider preferences.",
                             param="provider", code="no_matching_provider")
