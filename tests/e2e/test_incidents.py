"""Downtime incidents end to end: a provider failing opens its circuit breakers, which open incidents (once per
target, even with two gateways on one PostgreSQL database, with in-process or Redis breakers); recovery
resolves them automatically; statistics report MTTR and availability; the analysis shows the timeline, error
types and patterns and the affected requests; an admin resolves with a note once (then 409)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest

from gatewayz.settings import ModelConfig, ModelRoute, Pricing, ProviderConfig
from tests.conftest import EMU_KEY, GatewayFactory
from tests.databases import DatabaseFactory, require_redis
from tests.emulator import Emulator, Fault
from tests.gateway_server import ADMIN_KEY, GatewayServer, migrate

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
COOLDOWN_S = 3.0   # long enough that, on a loaded machine, no trial request comes before the test means it to


def get(gw: GatewayServer, path: str, **params: Any) -> Any:
    r = httpx.get(gw.url + path, headers=ADMIN, params=params, timeout=20)
    assert r.status_code == 200, r.text
    return r.json()


def post(gw: GatewayServer, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(gw.url + path, headers=ADMIN, json=body, timeout=20)


def chat(gw: GatewayServer, key: str, model: str = "test/echo") -> httpx.Response:
    return httpx.post(gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=20,
                      json={"model": model, "messages": [{"role": "user", "content": "hello"}]})


def wait_for(check: Callable[[], bool], timeout_s: float = 15.0) -> bool:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def incidents(gw: GatewayServer, **params: Any) -> dict[str, dict[str, Any]]:
    return {i["target"]: i for i in get(gw, "/admin/downtime/incidents", **params)["data"]}


def breakers(threshold: int, cooldown_s: float) -> dict[str, Any]:
    return {"breaker": {"failure_threshold": threshold, "cooldown_s": cooldown_s}}


def test_breaker_opens_incidents_and_recovery_resolves_them(gateway_factory: GatewayFactory, emu_a: Emulator,
                                                            emu_b: Emulator) -> None:
    gw = gateway_factory([emu_a, emu_b], routing=breakers(2, cooldown_s=COOLDOWN_S))
    key = gw.create_user("10")["api_key"]
    emu_a.set_default_fault(Fault(status=503))
    for _ in range(2):   # emu-a fails twice (emu-b serves): both of emu-a's breakers open
        r = chat(gw, key)
        assert r.status_code == 200 and r.headers["x-gateway-provider"] == "emu-b"
    opened = incidents(gw, status="ongoing")
    assert set(opened) == {"emu-a", "emu-a|ok-model"}
    provider, model = opened["emu-a"], opened["emu-a|ok-model"]
    assert (provider["kind"], provider["severity"], provider["cause"], provider["status"]) == (
        "provider", "critical", "breaker_open", "open")
    assert (model["kind"], model["severity"], model["provider"], model["model"]) == (
        "model", "major", "emu-a", "ok-model")
    assert provider["resolved_at"] is None and provider["duration_s"] is None

    for _ in range(3):   # while open, emu-a is skipped: no new incident
        assert chat(gw, key).headers["x-gateway-provider"] == "emu-b"
    assert get(gw, "/admin/downtime/incidents")["total"] == 2

    emu_a.set_default_fault(None)
    time.sleep(COOLDOWN_S + 0.1)   # the next request is a trial on emu-a, which closes both breakers
    assert chat(gw, key).headers["x-gateway-provider"] == "emu-a"
    assert wait_for(lambda: get(gw, "/admin/downtime/incidents", status="resolved")["total"] == 2)
    assert get(gw, "/admin/downtime/incidents", status="open")["total"] == 0
    resolved = incidents(gw)
    for inc in resolved.values():
        assert (inc["status"], inc["resolved_by"], inc["resolution_note"]) == ("resolved", "auto", None)
        assert COOLDOWN_S <= inc["duration_s"] < 30
        assert inc["notes"] == "Resolved automatically: the circuit breaker closed again."

    one = get(gw, f"/admin/downtime/incidents/{provider['id']}")
    assert [(e["kind"], e["detail"]) for e in one["events_log"]] == [
        ("breaker", "circuit breaker emu-a: closed -> open"),
        ("resolved", "circuit breaker emu-a: half_open -> closed")]

    stats = get(gw, "/admin/downtime/statistics", hours=1)
    durations = [i["duration_s"] for i in resolved.values()]
    assert (stats["incidents"], stats["open_now"], stats["opened"], stats["resolved"]) == (2, 0, 2, 2)
    assert stats["resolved_automatically"] == 2
    assert stats["mttr_s"] == pytest.approx(sum(durations) / 2, abs=0.002)
    assert stats["by_kind"] == {"provider": 1, "model": 1} and stats["by_cause"] == {"breaker_open": 2}
    per = {t["target"]: t for t in stats["targets"]}
    assert per["emu-a"]["downtime_s"] == pytest.approx(resolved["emu-a"]["duration_s"], abs=0.002)
    assert per["emu-a"]["mttr_s"] == pytest.approx(resolved["emu-a"]["duration_s"], abs=0.002)
    assert 99.0 < per["emu-a"]["availability_percent"] < 100.0   # a few seconds down in the last hour

    gw.drain()   # the usage records of the requests
    analysis = get(gw, f"/admin/downtime/incidents/{provider['id']}/analysis")
    assert analysis["models"] == ["test/echo", "test/pricey"] and not analysis["ongoing"]
    assert analysis["duration_s"] == resolved["emu-a"]["duration_s"]
    # the two requests that failed over and the three emu-b served while emu-a was skipped
    assert analysis["affected_requests"] == {"requests_recorded": 5, "failed": 0, "served_after_failover": 2,
                                             "affected": 2}   # the trial's record is written after the end
    assert analysis["errors"]["total"] == 0    # failover hid the outage from every client
    assert [t["type"] for t in analysis["timeline"]] == ["breaker", "resolved"]

    # an automatically resolved incident takes one note from an admin; a second is refused
    r = post(gw, f"/admin/downtime/incidents/{provider['id']}/resolve", {"note": "emu-a restarted by ops"})
    assert r.status_code == 200, r.text
    assert (r.json()["resolved_by"], r.json()["resolution_note"], r.json()["resolution_note_by"]) == (
        "auto", "emu-a restarted by ops", "admin")
    again = post(gw, f"/admin/downtime/incidents/{provider['id']}/resolve", {"note": "again"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_resolved"


def test_outage_without_failover_analysis_and_manual_resolution(gateway_factory: GatewayFactory,
                                                                emu_a: Emulator) -> None:
    gw = gateway_factory([emu_a], routing=breakers(2, cooldown_s=60), incidents={"check_interval_s": 0.2})
    key = gw.create_user("10")["api_key"]
    emu_a.set_default_fault(Fault(status=503))
    statuses = [chat(gw, key).status_code for _ in range(4)]
    assert statuses == [502, 502, 503, 503]     # two failures open the breakers; then no provider is left
    inc = incidents(gw, status="open")["emu-a"]

    gw.drain()
    analysis = get(gw, f"/admin/downtime/incidents/{inc['id']}/analysis")
    assert analysis["ongoing"] and analysis["incident"]["id"] == inc["id"]
    errors = analysis["errors"]
    assert errors["total"] == 4
    assert sorted(errors["type_distribution"], key=lambda d: d["status"]) == [
        {"class": "upstream", "code": "upstream_error", "status": 502, "count": 2},
        {"class": "upstream", "code": "providers_unavailable", "status": 503, "count": 2}]
    assert sorted((p["code"], p["count"]) for p in errors["patterns"]) == [("providers_unavailable", 2),
                                                                            ("upstream_error", 2)]
    # every request failed; the two refused before reaching a provider have no usage record
    assert analysis["affected_requests"] == {"requests_recorded": 2, "failed": 4, "served_after_failover": 0,
                                             "affected": 4}
    kinds = [t["type"] for t in analysis["timeline"]]
    assert kinds.count("error") == 4 and kinds.count("breaker") == 1
    assert [t["at"] for t in analysis["timeline"]] == sorted(t["at"] for t in analysis["timeline"])

    assert post(gw, f"/admin/downtime/incidents/{inc['id']}/resolve", {"note": ""}).status_code == 400
    assert post(gw, "/admin/downtime/incidents/999999/resolve", {"note": "x"}).status_code == 404
    assert httpx.get(gw.url + "/admin/downtime/incidents/999999/analysis", headers=ADMIN).status_code == 404
    r = post(gw, f"/admin/downtime/incidents/{inc['id']}/resolve", {"note": "upstream maintenance window"})
    assert r.status_code == 200, r.text
    done = r.json()
    assert (done["status"], done["resolved_by"], done["resolution_note"]) == (
        "resolved", "admin", "upstream maintenance window")
    assert post(gw, f"/admin/downtime/incidents/{inc['id']}/resolve", {"note": "x"}).status_code == 409
    assert set(incidents(gw, status="open")) == {"emu-a|ok-model"}
    audit = get(gw, "/admin/audit", action="incident.resolve")
    assert [e["target"] for e in audit["data"]] == [f"incident:{inc['id']}"]
    page = get(gw, "/admin/downtime/incidents", limit=1, offset=1)
    assert page["total"] == 2 and [i["target"] for i in page["data"]] == ["emu-a"]

    # an admin resetting the breaker that is still open resolves its incident automatically
    assert httpx.post(gw.url + "/circuit-breakers/emu-a/reset", headers=ADMIN).status_code == 200
    assert wait_for(lambda: get(gw, "/admin/downtime/incidents", status="open")["total"] == 0)
    reset = incidents(gw)["emu-a|ok-model"]
    assert reset["resolved_by"] == "auto" and reset["notes"] == "Resolved automatically: the circuit breaker was reset."


def test_error_rate_opens_and_resolves_a_provider_incident(gateway_factory: GatewayFactory,
                                                           emu_a: Emulator) -> None:
    gw = gateway_factory([emu_a], routing=breakers(1000, cooldown_s=60),
                         incidents={"check_interval_s": 0.1, "error_rate_min_requests": 10,
                                    "error_rate_threshold": 0.5})
    key = gw.create_user("10")["api_key"]
    emu_a.set_default_fault(Fault(status=503))
    for _ in range(9):
        assert chat(gw, key).status_code == 502
    time.sleep(0.5)
    assert get(gw, "/admin/downtime/incidents")["total"] == 0   # nine attempts: below the minimum
    assert chat(gw, key).status_code == 502
    assert wait_for(lambda: "emu-a" in incidents(gw, status="open"))
    inc = incidents(gw)["emu-a"]
    assert (inc["cause"], inc["kind"], inc["severity"]) == ("error_rate", "provider", "major")
    assert "10 of 10 attempts failed" in inc["notes"]

    emu_a.set_default_fault(None)
    for _ in range(10):   # 10 failed of 20: still at the threshold
        assert chat(gw, key).status_code == 200
    time.sleep(0.5)
    assert "emu-a" in incidents(gw, status="open")
    assert chat(gw, key).status_code == 200      # 10 of 21: below it
    assert wait_for(lambda: get(gw, "/admin/downtime/incidents", status="resolved")["total"] == 1)
    done = incidents(gw)["emu-a"]
    assert done["resolved_by"] == "auto" and "10 of 21 attempts failed" in done["notes"]
    events = get(gw, f"/admin/downtime/incidents/{inc['id']}")["events_log"]
    assert [e["kind"] for e in events] == ["error_rate", "resolved"]


def _cluster_settings(tag: str, emu_a: Emulator, emu_b: Emulator) -> dict[str, Any]:
    """Providers named per test run: Redis (keys and channel) is shared with every other test on the machine."""
    pa, pb = f"emu-a-{tag}", f"emu-b-{tag}"
    providers = [ProviderConfig(name=p, type="openai", base_url=e.base_url, api_key=EMU_KEY, timeout_s=5)
                 for p, e in ((pa, emu_a), (pb, emu_b))]
    routes = [ModelRoute(provider=p, model="ok-model") for p in (pa, pb)]
    models = [ModelConfig(id="test/echo", pricing=Pricing(input=Decimal(1), output=Decimal(2)), providers=routes)]
    return {"extra_providers": providers, "models": models, "routing": breakers(2, cooldown_s=COOLDOWN_S),
            "credits": {"authority": "sql"}}


@pytest.mark.parametrize("breaker_store", ["memory", "redis"])
def test_two_gateways_open_one_incident_per_target(breaker_store: str, gateway_factory: GatewayFactory,
                                                   databases: DatabaseFactory, emu_a: Emulator,
                                                   emu_b: Emulator) -> None:
    """In-process breakers: each gateway opens its own and both report it (one incident, two events). Redis
    breakers: one gateway sees the transition; the other serves the recovery that resolves it."""
    redis_url = require_redis() if breaker_store == "redis" else None
    url = databases.url("postgresql")
    migrate(url)
    tag = uuid.uuid4().hex[:10]
    pa = f"emu-a-{tag}"
    first = gateway_factory([], db_url=url, redis_url=redis_url, **_cluster_settings(tag, emu_a, emu_b))
    second = gateway_factory([], db_url=url, redis_url=redis_url, **_cluster_settings(tag, emu_a, emu_b))
    key = first.create_user("10")["api_key"]
    try:
        emu_a.set_default_fault(Fault(status=503))
        for gw in (first, second):
            for _ in range(2):
                assert chat(gw, key).status_code == 200
        per_gateway = 2 if breaker_store == "memory" else 1
        for gw in (first, second):
            assert wait_for(lambda g=gw: set(incidents(g, status="open")) == {pa, f"{pa}|ok-model"})
        assert wait_for(lambda: incidents(first)[pa]["events"] == per_gateway)
        assert get(second, "/admin/downtime/incidents")["total"] == 2

        emu_a.set_default_fault(None)
        time.sleep(COOLDOWN_S + 0.1)
        for gw in (second, first):   # the trial closes the breakers (in Redis: the first trial closes both)
            assert chat(gw, key).status_code == 200
        assert wait_for(lambda: get(first, "/admin/downtime/incidents", status="resolved")["total"] == 2)
        assert get(second, "/admin/downtime/incidents")["total"] == 2
        assert {i["resolved_by"] for i in incidents(second).values()} == {"auto"}
    finally:
        for gw in (first, second):
            for p in (pa, f"emu-b-{tag}"):
                httpx.post(f"{gw.url}/circuit-breakers/{p}/reset", headers=ADMIN, timeout=5)
