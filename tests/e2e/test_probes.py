"""Active probes: started and stopped over HTTP, one-token requests at the tier interval, feeding breakers."""

from __future__ import annotations

import time

import httpx

from tests.conftest import GatewayFactory
from tests.emulator import Emulator, Fault
from tests.gateway_server import ADMIN_KEY

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def test_probes_start_stop_and_open_breakers(gateway_factory: GatewayFactory, emu_a: Emulator,
                                             emu_b: Emulator) -> None:
    gw = gateway_factory([emu_a, emu_b], routing={"probes": {"critical_s": 1, "popular_s": 1, "standard_s": 1},
                                                  "breaker": {"failure_threshold": 2, "cooldown_s": 60}})
    assert httpx.get(gw.url + "/health/monitoring", headers=ADMIN).json()["running"] is False
    assert emu_a.requests == []  # off until started
    emu_a.set_default_fault(Fault(status=503))
    key = gw.create_user("1")["api_key"]
    as_user = {"Authorization": f"Bearer {key}"}
    assert httpx.post(gw.url + "/health/monitoring/start", headers=as_user).status_code == 403
    assert httpx.post(gw.url + "/health/monitoring/start", headers=ADMIN).json()["running"] is True
    deadline = time.time() + 10
    while time.time() < deadline and len(emu_a.requests) < 2:
        time.sleep(0.1)
    probe = emu_a.requests[0].json
    assert probe["max_tokens"] == 1 and probe["messages"][0]["content"] == "ping"
    assert emu_b.requests and emu_b.requests[0].json["max_tokens"] == 1
    breakers = httpx.get(gw.url + "/circuit-breakers/emu-a", headers=ADMIN).json()
    assert breakers["state"] == "open"  # two failed probes with a threshold of 2
    status = httpx.get(gw.url + "/health/monitoring", headers=ADMIN).json()
    assert status["probes_sent"] >= 2 and any(not r["ok"] and r["provider"] == "emu-a" for r in status["results"])
    assert httpx.post(gw.url + "/health/monitoring/stop", headers=ADMIN).json()["running"] is False
    sent = len(emu_b.requests)
    time.sleep(1.5)
    assert len(emu_b.requests) == sent  # stopped means stopped
