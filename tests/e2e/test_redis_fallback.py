"""Redis failing never blocks a request (AC-1.5.8): while it hangs, and once it is gone, every limit keeps being
enforced in process and requests keep flowing with little added latency."""

from __future__ import annotations

import time

import httpx
import redis

from tests.conftest import GatewayFactory
from tests.emulator import Emulator
from tests.gateway_server import GatewayServer
from tests.redis_server import RedisServer

HI = {"model": "test/echo", "messages": [{"role": "user", "content": "hi"}]}


def _timed(gw: GatewayServer, key: str, n: int) -> tuple[list[int], list[float]]:
    codes, took = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        r = httpx.post(gw.url + "/v1/chat/completions", json=HI, headers={"Authorization": f"Bearer {key}"},
                       timeout=20)
        took.append(time.perf_counter() - t0)
        codes.append(r.status_code)
    return codes, took


def test_limits_fall_back_to_memory_when_redis_hangs_or_dies(gateway_factory: GatewayFactory, emu_a: Emulator,
                                                             private_redis: RedisServer) -> None:
    gw = gateway_factory([emu_a], redis_url=private_redis.url, limits={"requests_per_minute": 5,
                                                                       "tokens_per_minute": 0})
    user = gw.create_user("1")
    codes, _ = _timed(gw, user["api_key"], 2)
    assert codes == [200, 200]
    key_id = gw.run(_key_id(gw, user["id"]))
    counted = redis.Redis(port=private_redis.port).keys(f"gwrl:*:k{key_id}:rpm")  # the deployment's namespace
    assert len(counted) == 1  # counted in Redis so far

    private_redis.pause()  # hangs: every Redis call would wait for ever without its timeout
    codes, took = _timed(gw, user["api_key"], 6)
    # this process never counted the first two: its own budget of 5 applies from here
    assert codes == [200] * 5 + [429], codes
    assert max(took) < 1.5 and sum(took) < 3.0, took

    private_redis.stop()  # gone: connections refused
    fresh = gw.create_user("1")["api_key"]
    codes, took = _timed(gw, fresh, 6)
    assert codes == [200] * 5 + [429], codes
    assert max(took) < 1.5 and sum(took) < 3.0, took
    assert httpx.get(gw.url + "/health").status_code == 200


async def _key_id(gw: GatewayServer, user_id: int) -> int:
    keys = await gw.container.keys.list(user_id)
    return keys[0].id
