"""Units: router:general:* and router:code:* choose from priors blended with live state."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gatewayz.catalog.service import Catalog
from gatewayz.errors import InvalidRequest, ServiceUnavailable
from gatewayz.routing.breaker import BreakerPolicy
from gatewayz.routing.breaker_store import MemoryBreakers
from gatewayz.routing.routers import Prior, Routers, code_tier, load_priors, prompt_complexity
from gatewayz.routing.stats import ProviderStats
from gatewayz.settings import ModelConfig, ModelRoute, Pricing

PRIORS = {"big": Prior(quality=90, swe_bench=70, humaneval=95, agentic=92),
          "mid": Prior(quality=80, swe_bench=50, humaneval=90, agentic=60),
          "small": Prior(quality=60, swe_bench=35, humaneval=80, agentic=40),
          "tiny": Prior(quality=40, swe_bench=10, humaneval=60, agentic=20)}
PRICES = {"big": "15", "mid": "3", "small": "0.6", "tiny": "0.1"}


def _routers() -> tuple[Routers, ProviderStats, MemoryBreakers]:
    catalog = Catalog([ModelConfig(id=m, pricing=Pricing(input=Decimal(p), output=Decimal(p)),
                                   providers=[ModelRoute(provider=f"p-{m}", model=m)]) for m, p in PRICES.items()])
    stats, breakers = ProviderStats(0.5), MemoryBreakers(BreakerPolicy(failure_threshold=1))
    return Routers(catalog, stats, breakers, PRIORS), stats, breakers


def test_general_modes() -> None:
    r, stats, breakers = _routers()
    assert r.choose("router:general:quality", {}).entry.id == "big"
    assert r.choose("router:general:cost", {}).entry.id == "tiny"
    stats.record("p-mid", "mid", True, latency_ms=20)
    stats.record("p-big", "big", True, latency_ms=900)
    assert r.choose("router:general:latency", {}).entry.id == "mid"
    assert r.choose("router:general:balanced", {}).entry.id in {"mid", "small", "big"}
    breakers.report("p-big", "big", "failure")  # its only provider is failing: never chosen
    assert r.choose("router:general:quality", {}).entry.id == "mid"


def test_code_modes_and_tiers() -> None:
    r, _, _ = _routers()
    assert r.choose("router:code:quality", {}).entry.id == "big"
    assert r.choose("router:code:agentic", {}).entry.id == "big"
    assert r.choose("router:code:price", {}).entry.id == "small"  # cheapest of tier 3 or better
    easy = {"messages": [{"role": "user", "content": "rename x to y"}]}
    hard = {"messages": [{"role": "user", "content": "Refactor the architecture to remove the race condition"}]}
    assert r.choose("router:code:auto", easy).entry.id == "tiny"
    assert r.choose("router:code:auto", hard).entry.id == "big"
    assert [t["model"] for t in r.tiers()] == ["big", "mid", "small", "tiny"]
    assert [code_tier(PRIORS[m]) for m in ("big", "mid", "small", "tiny")] == [1, 2, 3, 4]


def test_complexity_and_errors() -> None:
    assert prompt_complexity([{"role": "user", "content": "hi"}]) == 4
    assert prompt_complexity([{"role": "user", "content": "```py\nx\n```"}]) == 3
    assert prompt_complexity([{"role": "user", "content": "debug this traceback ```x```"}]) == 1
    r, _, breakers = _routers()
    for bad in ("router:general:best", "router:nope:x", "router:code"):
        with pytest.raises(InvalidRequest):
            r.choose(bad, {})
    for m in PRICES:
        breakers.report(f"p-{m}", m, "failure")
    with pytest.raises(ServiceUnavailable):
        r.choose("router:general:quality", {})


def test_shipped_priors_load() -> None:
    priors = load_priors()
    assert len(priors) >= 10 and all(0 <= p.quality <= 100 for p in priors.values())
