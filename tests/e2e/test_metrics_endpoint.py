"""GET /metrics and /api/metrics/parsed after real traffic: counts, tokens, cost, failovers, breakers, limits."""

from __future__ import annotations

from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import GatewayFactory
from tests.emulator import Emulator, Fault
from tests.gateway_server import ADMIN_KEY

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
HI = {"model": "test/echo", "messages": [{"role": "user", "content": "hello there"}]}


def _samples(text: str) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append(s)
    return out


def test_metrics_reflect_real_requests(gateway_factory: GatewayFactory, emu_a: Emulator, emu_b: Emulator) -> None:
    gw = gateway_factory([emu_a, emu_b], limits={"requests_per_minute": 4},
                         routing={"breaker": {"failure_threshold": 1, "cooldown_s": 60}})
    key = gw.create_user("5")["api_key"]
    auth = {"Authorization": f"Bearer {key}"}
    assert httpx.get(gw.url + "/metrics").status_code == 401  # admin only unless metrics_public
    emu_a.push_fault(Fault(status=503))  # one failover; opens emu-a's breaker (threshold 1)
    costs = []
    for _ in range(3):
        r = httpx.post(gw.url + "/v1/chat/completions", headers=auth, json=HI)
        costs.append(r.json()["usage"]["cost"])
    assert httpx.post(gw.url + "/v1/chat/completions", headers=auth,
                      json={**HI, "model": "nope/x"}).status_code == 404
    assert httpx.post(gw.url + "/v1/chat/completions", headers=auth, json=HI).status_code == 429
    text = httpx.get(gw.url + "/metrics", headers=ADMIN).text
    s = _samples(text)
    served = [x for x in s["inference_requests_total"] if x.labels["status"] == "200"]
    assert sum(x.value for x in served) == 3 and {x.labels["provider"] for x in served} == {"emu-b"}
    assert sum(x.value for x in s["inference_requests_total"]) == 5  # + the 404 and the 429
    assert sum(x.value for x in s["cost_usd_total"]) == sum(costs)
    assert sum(x.value for x in s["failovers_total"]) == 1
    assert any(x.labels["provider"] == "emu-a" and x.labels["to_state"] == "open"
               for x in s["circuit_breaker_state_transitions_total"])
    assert s["rate_limit_rejections_total"][0].labels["reason"] == "key_requests"
    assert any(x.labels["route"] == "/v1/chat/completions" for x in s["http_requests_total"])
    om = httpx.get(gw.url + "/metrics", headers={**ADMIN, "Accept": "application/openmetrics-text"}).text
    assert om.rstrip().endswith("# EOF")
    parsed = httpx.get(gw.url + "/api/metrics/parsed", headers=ADMIN).json()
    assert parsed["inference_request_duration_seconds"]["all"]["p50"] is not None
    assert httpx.get(gw.url + "/api/metrics/parsed", headers=auth).status_code == 403
