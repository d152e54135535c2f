"""Velocity mode: an inference error rate above the threshold halves every request limit until the rate has
stayed low for the cooldown; GET /velocity-mode-status reports it, 429s say so. Shared through Redis."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import GatewayFactory
from tests.emulator import Emulator, Fault
from tests.gateway_server import GatewayServer, migrate
from tests.net import wait_until
from tests.redis_server import RedisServer

HI = {"model": "test/echo", "messages": [{"role": "user", "content": "hi"}]}
BAD = {"Authorization": "Bearer gw_live_" + "x" * 43}
FAST = {"window_s": 5, "min_requests": 4, "cooldown_s": 2}



def _status(gw: GatewayServer, key: str) -> dict[str, Any]:
    r = httpx.get(gw.url + "/velocity-mode-status", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _chat(gw: GatewayServer, key: str) -> httpx.Response:
    return httpx.post(gw.url + "/v1/chat/completions", json=HI, headers={"Authorization": f"Bearer {key}"},
                      timeout=20)


def test_errors_halve_the_limits_until_the_cooldown(gateway_factory: GatewayFactory, emu_a: Emulator) -> None:
    gw = gateway_factory([emu_a], limits={"requests_per_minute": 4, "tokens_per_minute": 0, "velocity": FAST})
    key = gw.create_user("1")["api_key"]
    calm = _status(gw, key)
    assert calm["active"] is False and calm["multiplier"] == 1.0 and calm["mode"] == "normal"
    assert calm["thresholds"] == {"error_rate": 0.25, "min_requests": 4, "cooldown_s": 2, "multiplier": 0.5}
    assert calm["window_s"] == 5
    assert httpx.get(gw.url + "/velocity-mode-status").status_code == 401

    emu_a.set_default_fault(Fault(status=500))
    other = gw.create_user("1")["api_key"]
    for _ in range(3):
        assert _chat(gw, other).status_code == 502           # upstream failures
    for _ in range(3):
        assert httpx.post(gw.url + "/v1/chat/completions", json=HI, headers=BAD).status_code == 401
    emu_a.set_default_fault(None)
    assert wait_until(lambda: _status(gw, key)["active"], 5)
    s = _status(gw, key)
    assert s["multiplier"] == 0.5 and s["mode"] == "velocity" and s["error_rate"] > 0.25
    assert s["errors"] >= 4 and s["since"] > time.time() - 10 and s["shared"] is False

    # every request limit now applies at half: 2 of the key's 4 per minute
    first = _chat(gw, key)
    assert first.status_code == 200 and first.headers["x-ratelimit-limit-requests"] == "2"
    assert _chat(gw, key).status_code == 200
    refused = _chat(gw, key)
    assert refused.status_code == 429
    h = refused.headers
    assert h["x-ratelimit-mode"] == "velocity" and h["x-ratelimit-limit"] == "2"
    assert h["x-ratelimit-reason"] == "key_requests" and int(h["retry-after"]) >= 1
    assert "velocity mode" in refused.json()["error"]["message"]

    # the errors leave the window, the cooldown passes: normal limits again
    assert wait_until(lambda: not _status(gw, key)["active"], 15)
    assert _status(gw, key)["multiplier"] == 1.0
    fresh = gw.create_user("1")["api_key"]
    answers = [_chat(gw, fresh) for _ in range(4)]
    assert [r.status_code for r in answers] == [200] * 4
    assert answers[0].headers["x-ratelimit-limit-requests"] == "4"


def test_a_few_errors_or_a_low_rate_do_not_trigger_it(gateway_factory: GatewayFactory, emu_a: Emulator) -> None:
    limits = {"velocity": {"window_s": 30, "min_requests": 8, "cooldown_s": 2}}
    few = gateway_factory([emu_a], limits=limits)
    key = few.create_user("1")["api_key"]
    for _ in range(5):  # 5 errors: fewer requests than the minimum
        httpx.post(few.url + "/v1/chat/completions", json=HI, headers=BAD)
    for _ in range(5):  # not inference: never counted
        httpx.get(few.url + "/user/balance", headers=BAD)
    time.sleep(1.5)
    s = _status(few, key)
    assert s["active"] is False and s["requests"] == 5 and s["errors"] == 5

    low = gateway_factory([emu_a], limits=limits)
    key = low.create_user("1")["api_key"]
    for _ in range(10):  # successes first, so the rate never passes 3 in 13 (23%, below 25%)
        assert _chat(low, key).status_code == 200
    for _ in range(3):
        httpx.post(low.url + "/v1/chat/completions", json=HI, headers=BAD)
    time.sleep(1.5)
    s = _status(low, key)
    assert s["active"] is False and s["requests"] == 13 and s["errors"] == 3 and s["error_rate"] == 0.2308


def test_shared_by_gateways_on_one_redis(gateway_factory: GatewayFactory, emu_a: Emulator,
                                         private_redis: RedisServer, tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    migrate(db)
    common: dict[str, Any] = {"db_url": db, "redis_url": private_redis.url, "credits": {"authority": "sql"},
                              "limits": {"requests_per_minute": 4, "tokens_per_minute": 0, "velocity": FAST}}
    a = gateway_factory([emu_a], **common)
    b = gateway_factory([emu_a], **common)
    key = a.create_user("1")["api_key"]
    for _ in range(6):  # every error goes through A
        assert httpx.post(a.url + "/v1/chat/completions", json=HI, headers=BAD).status_code == 401
    assert wait_until(lambda: _status(b, key)["active"], 5)
    assert wait_until(lambda: _status(b, key)["errors"] == 6, 3)  # each process adds its counts once a second
    assert _status(b, key)["shared"] is True
    assert _chat(b, key).headers["x-ratelimit-limit-requests"] == "2"
    assert wait_until(lambda: not _status(a, key)["active"] and not _status(b, key)["active"], 15)
