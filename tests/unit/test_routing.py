"""Units: the breaker state machine, the planner's ordering and filters."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import pytest

from gatewayz.catalog.service import Catalog
from gatewayz.errors import InvalidRequest, ServiceUnavailable
from gatewayz.providers.spec import ProviderSpec
from gatewayz.routing import breaker
from gatewayz.routing.breaker import Breaker, BreakerPolicy, step
from gatewayz.routing.breaker_store import MemoryBreakers
from gatewayz.routing.planner import Planner, fallback_models, parse_prefs
from gatewayz.routing.stats import ProviderStats
from gatewayz.settings import ModelConfig, ModelRoute, Pricing

POLICY = BreakerPolicy(failure_threshold=3, cooldown_s=10, half_open_successes=2)


def test_state_machine() -> None:
    b = Breaker()
    for _ in range(2):
        assert step(b, "failure", POLICY, 0.0) == ("closed", "closed")
    assert step(b, "success", POLICY, 0.0) == ("closed", "closed")  # not consecutive any more
    assert b.failures == 0
    for _ in range(2):
        step(b, "failure", POLICY, 1.0)
    assert step(b, "failure", POLICY, 1.0) == ("closed", "open")
    assert b.effective(POLICY, 5.0) == "open" and b.retry_after(POLICY, 5.0) == 6.0
    assert step(b, "success", POLICY, 5.0) == ("open", "open")  # a straggler changes nothing
    assert b.effective(POLICY, 11.0) == "half_open"
    assert step(b, "success", POLICY, 11.0) == ("half_open", "half_open")
    assert step(b, "success", POLICY, 11.5) == ("half_open", "closed")
    for _ in range(3):
        step(b, "failure", POLICY, 20.0)
    assert step(b, "failure", POLICY, 31.0) == ("half_open", "open")  # a failed trial reopens
    assert b.opened_at == 31.0


async def test_memory_breakers(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(breaker, "now", lambda: clock[0])
    monkeypatch.setattr("gatewayz.routing.breaker_store.now", lambda: clock[0])
    mb = MemoryBreakers(POLICY)
    assert mb.allows("p") and mb.get("p")["state"] == "closed"
    for _ in range(3):
        mb.report("p", "m", "failure")
    assert not mb.allows("p") and not mb.allows("p|m")
    assert mb.transitions[("p", "closed", "open")] == 1
    clock[0] += 10
    assert mb.allows("p") and mb.get("p")["state"] == "half_open"
    mb.report("p", "m", "success")
    mb.report("p", "m", "success")
    assert mb.get("p")["state"] == "closed"
    for _ in range(3):
        mb.report("p", "x", "failure", model_only=True)  # a 404: this model only
    assert mb.allows("p") and not mb.allows("p|x")
    await mb.reset(None)
    assert mb.allows("p|x")


def _catalog(**kw: Any) -> Catalog:
    routes = [ModelRoute(provider="a", model="ma", weight=kw.get("wa")),
              ModelRoute(provider="b", model="mb", weight=kw.get("wb"),
                         pricing=Pricing(input=Decimal("0.5"), output=Decimal("1"))),
              ModelRoute(provider="c", model="mc", weight=kw.get("wc"))]
    return Catalog([
        ModelConfig(id="x/m", pricing=Pricing(input=Decimal("1"), output=Decimal("2")), providers=routes,
                    routing=kw.get("routing")),
        ModelConfig(id="y/other", pricing=Pricing(input=Decimal("3"), output=Decimal("3")),
                    providers=[ModelRoute(provider="c", model="mo")]),
    ])


def _planner(stats: ProviderStats | None = None, breakers: MemoryBreakers | None = None,
             seed: int = 1) -> Planner:
    specs = {n: ProviderSpec(name=n, wire="openai", base_url="http://x",
                             unsupported_params=frozenset({"logprobs"}) if n == "a" else frozenset())
             for n in "abc"}
    return Planner(specs, breakers or MemoryBreakers(POLICY), stats or ProviderStats(0.5), random.Random(seed))


def _order(planner: Planner, catalog: Catalog, name: str = "x/m", body: dict[str, Any] | None = None,
           session: str | None = None) -> list[str]:
    body = body or {}
    entry = catalog.resolve(name)
    cands = planner.plan(entry, name, body, fallback_models(body, catalog, entry), parse_prefs(body), session)
    return [f"{c.route.provider}:{c.entry.id}" for c in cands]


def test_ordered_price_variants_and_preferences() -> None:
    cat, p = _catalog(), _planner()
    assert _order(p, cat) == ["a:x/m", "b:x/m", "c:x/m"]
    assert _order(p, cat, "x/m:floor")[0] == "b:x/m"  # the cheapest route first
    assert _order(p, cat, body={"provider": {"order": ["c", "b"]}}) == ["c:x/m", "b:x/m", "a:x/m"]
    assert _order(p, cat, body={"provider": {"order": ["c"], "allow_fallbacks": False}}) == ["c:x/m"]
    assert _order(p, cat, body={"provider": {"only": ["b", "c"]}}) == ["b:x/m", "c:x/m"]
    assert _order(p, cat, body={"provider": {"ignore": ["a"]}}) == ["b:x/m", "c:x/m"]
    assert _order(p, cat, body={"provider": {"max_price": {"prompt": 0.5}}}) == ["b:x/m"]
    assert _order(p, cat, body={"logprobs": True, "provider": {"require_parameters": True}}) == ["b:x/m", "c:x/m"]
    assert _order(p, cat, body={"models": ["y/other"]}) == ["a:x/m", "b:x/m", "c:x/m", "c:y/other"]
    with pytest.raises(InvalidRequest):
        _order(p, cat, body={"provider": {"only": ["zzz"]}})
    for bad in ({"sort": "fastest"}, {"order": "a"}, {"allow_fallbacks": "no"}, {"max_price": {"prompt": -1}}):
        with pytest.raises(InvalidRequest):
            parse_prefs({"provider": bad})


def test_latency_and_throughput_order_follow_live_stats() -> None:
    stats = ProviderStats(0.5)
    cat, p = _catalog(routing="latency"), _planner(stats)
    assert _order(p, cat)[0] == "a:x/m"  # nothing measured yet: config order
    stats.record("a", "ma", True, latency_ms=300)
    stats.record("b", "mb", True, latency_ms=50)
    stats.record("c", "mc", True, latency_ms=120)
    assert _order(p, cat) == ["b:x/m", "c:x/m", "a:x/m"]
    stats.record("a", "ma", True, latency_ms=300, ttft_ms=10)  # streams are ranked by time to first token
    assert _order(p, cat)[0] == "a:x/m"
    assert _order(p, cat, "x/m:nitro")[0] == "a:x/m"  # unmeasured throughput first, to measure it
    stats.record("a", "ma", True, latency_ms=1010, ttft_ms=10, completion_tokens=100)
    stats.record("b", "mb", True, latency_ms=1050, ttft_ms=50, completion_tokens=500)
    stats.record("c", "mc", True, latency_ms=1100, ttft_ms=100, completion_tokens=10_000)
    assert _order(p, cat, "x/m:nitro") == ["c:x/m", "b:x/m", "a:x/m"]


def test_weighted_split_and_sticky_sessions() -> None:
    cat, p = _catalog(wa=70, wb=30, wc=None), _planner(seed=7)
    firsts = [_order(p, cat)[0] for _ in range(4000)]
    share_a = firsts.count("a:x/m") / len(firsts)
    assert 0.66 < share_a < 0.74 and "c:x/m" not in firsts
    sticky = {_order(p, cat, session="conv-42")[0] for _ in range(50)}
    assert len(sticky) == 1


def test_open_breakers_are_skipped_and_all_open_is_503() -> None:
    mb = MemoryBreakers(POLICY)
    cat, p = _catalog(), _planner(breakers=mb)
    for _ in range(3):
        mb.report("a", "ma", "failure")
    assert _order(p, cat) == ["b:x/m", "c:x/m"]
    for name, model in (("b", "mb"), ("c", "mc")):
        for _ in range(3):
            mb.report(name, model, "failure")
    with pytest.raises(ServiceUnavailable) as err:
        _order(p, cat)
    assert int(err.value.headers["retry-after"]) >= 1
