"""Daily spend caps end to end: a plan's cap per user and a key's daily_spend_limit, never passed by even one
nanodollar under concurrent requests, whether the counters live in process, in the database (several
gateways sharing it) or in Redis; a 402 daily_cap_exceeded before any upstream call."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import openai
import pytest
import sqlalchemy as sa

from gatewayz.storage.schema import usage_records
from tests.conftest import GatewayFactory
from tests.databases import DatabaseFactory, require_redis
from tests.e2e.plan_helpers import assign, models, user_get
from tests.e2e.test_credits import chat_body, echo_cost, echo_hold, emu_prompt_tokens, encode, select_rows, usd
from tests.emulator import Emulator, Fault
from tests.gateway_server import GatewayServer, migrate

ANSWER = " ".join(["w"] * 1000)
HOLD = echo_hold(encode(chat_body("go")))
COST = echo_cost(emu_prompt_tokens("go"), 1000)   # about 95% of the hold
CAP = 3 * HOLD + HOLD // 2   # three holds fit; once they are charged, a fourth does not
PLANS = [{"id": "free", "name": "Free", "price_usd_month": 0},
         {"id": "capped", "name": "Capped", "price_usd_month": 1, "daily_cap_usd": usd(CAP)}]


def slow_answers(*emus: Emulator) -> None:
    for emu in emus:
        emu.set_default_fault(Fault(content=ANSWER, latency_ms=150))


def burst(urls: list[str], api_key: str, n: int = 30) -> tuple[list[int], list[Any]]:
    """n concurrent chat completions with the openai SDK, spread over the gateways; (statuses, error codes)."""
    statuses: list[int] = []
    codes: list[Any] = []

    async def run() -> None:
        clients = [openai.AsyncOpenAI(base_url=u + "/v1", api_key=api_key, max_retries=0, timeout=30) for u in urls]

        async def one(i: int) -> None:
            try:
                await clients[i % len(clients)].chat.completions.create(
                    model="test/echo", messages=[{"role": "user", "content": "go"}])
                statuses.append(200)
            except openai.APIStatusError as exc:
                statuses.append(exc.status_code)
                codes.append(exc.body.get("code") if isinstance(exc.body, dict) else None)

        try:
            await asyncio.gather(*(one(i) for i in range(n)))
        finally:
            for c in clients:
                await c.close()

    asyncio.run(run())
    return statuses, codes


def charged_today(gw: GatewayServer, user_id: int, key_id: int | None = None) -> int:
    gw.drain()
    q = sa.select(sa.func.coalesce(sa.func.sum(usage_records.c.cost_nanos), 0)).where(
        usage_records.c.user_id == user_id)
    if key_id is not None:
        q = q.where(usage_records.c.api_key_id == key_id)
    return int(next(iter(select_rows(gw, q)[0].values())))


def assert_capped(statuses: list[int], codes: list[Any], charged: int) -> None:
    assert statuses.count(200) == 3, statuses
    assert set(statuses) == {200, 402} and set(codes) == {"daily_cap_exceeded"}, (statuses, codes)
    assert charged == 3 * COST <= CAP


CASES = [
    pytest.param("sqlite", {}, None, id="sqlite-memory"),
    pytest.param("sqlite", {"authority": "sql"}, None, id="sqlite-database"),
    pytest.param("postgresql", {"authority": "sql"}, None, id="postgresql-database"),
    pytest.param("sqlite", {}, "redis", id="sqlite-redis"),
]


@pytest.mark.parametrize(("backend", "credits", "redis"), CASES)
def test_user_daily_cap_holds_under_concurrency(gateway_factory: GatewayFactory, emu_a: Emulator, emu_b: Emulator,
                                                backend: str, credits: dict[str, str], redis: str | None) -> None:
    extra = {"redis_url": require_redis()} if redis else {}
    gw = gateway_factory([emu_a, emu_b], backend=backend, credits=credits, models=models([emu_a, emu_b]),
                         plans=PLANS, **extra)
    slow_answers(emu_a, emu_b)
    u = gw.create_user("10")
    assign(gw, u["id"], "capped")
    statuses, codes = burst([gw.url], u["api_key"])
    assert_capped(statuses, codes, charged_today(gw, u["id"]))
    assert len(emu_a.requests) + len(emu_b.requests) == 3   # refusals never reached an upstream
    plan = user_get(gw, u["api_key"], "/user/plan")
    assert plan["spent_today_nanos"] == 3 * COST and plan["daily_cap"] == pytest.approx(CAP / 1e9)


@pytest.mark.parametrize(("backend", "credits"), [pytest.param("sqlite", {}, id="sqlite-memory"),
                                                  pytest.param("postgresql", {"authority": "sql"}, id="pg-database")])
def test_key_daily_spend_limit_holds_under_concurrency(gateway_factory: GatewayFactory, emu_a: Emulator,
                                                       emu_b: Emulator, backend: str, credits: dict[str, str]) -> None:
    gw = gateway_factory([emu_a, emu_b], backend=backend, credits=credits, models=models([emu_a, emu_b]))
    slow_answers(emu_a, emu_b)
    u = gw.create_user("10")
    headers = {"Authorization": f"Bearer {u['api_key']}"}
    capped = httpx.post(gw.url + "/user/api-keys", headers=headers,
                        json={"name": "capped", "daily_spend_limit": usd(CAP)}).json()
    statuses, codes = burst([gw.url], capped["api_key"])
    assert_capped(statuses, codes, charged_today(gw, u["id"], capped["id"]))
    # The user's other key has no cap of its own.
    other, _ = burst([gw.url], u["api_key"], n=5)
    assert other == [200] * 5


@pytest.mark.parametrize("shared", ["database", "redis"])
def test_daily_cap_is_one_across_gateways_sharing_a_database(gateway_factory: GatewayFactory,
                                                             databases: DatabaseFactory, emu_a: Emulator,
                                                             emu_b: Emulator, shared: str) -> None:
    """Two gateways (think: two workers or instances) on one PostgreSQL database share one counter."""
    url = databases.url("postgresql")
    migrate(url)
    extra = {"redis_url": require_redis()} if shared == "redis" else {}
    gws = [gateway_factory([emu_a, emu_b], db_url=url, credits={"authority": "sql"}, models=models([emu_a, emu_b]),
                           plans=PLANS, **extra) for _ in range(2)]
    slow_answers(emu_a, emu_b)
    u = gws[0].create_user("10")
    assign(gws[0], u["id"], "capped")
    statuses, codes = burst([g.url for g in gws], u["api_key"], n=40)
    for g in gws:
        g.drain()
    assert_capped(statuses, codes, charged_today(gws[0], u["id"]))


def test_key_daily_spend_limit_is_set_listed_and_cleared(gateway: GatewayServer) -> None:
    u = gateway.create_user("1")
    headers = {"Authorization": f"Bearer {u['api_key']}"}
    r = httpx.post(gateway.url + "/user/api-keys", headers=headers, json={"name": "k", "daily_spend_limit": "2.5"})
    assert r.status_code == 201, r.text
    key = r.json()
    assert key["daily_spend_limit"] == 2.5 and key["daily_spend_limit_nanos"] == 2_500_000_000
    listed = {k["id"]: k for k in httpx.get(gateway.url + "/user/api-keys", headers=headers).json()["data"]}
    assert listed[key["id"]]["daily_spend_limit"] == 2.5
    assert listed[u["key_id"]]["daily_spend_limit"] is None
    r = httpx.put(gateway.url + f"/user/api-keys/{key['id']}", headers=headers, json={"daily_spend_limit": 0.1})
    assert r.status_code == 200 and r.json()["daily_spend_limit_nanos"] == 100_000_000
    r = httpx.put(gateway.url + f"/user/api-keys/{key['id']}", headers=headers, json={"daily_spend_limit": None})
    assert r.status_code == 200 and r.json()["daily_spend_limit"] is None
    for bad in (0, -1, "0.0000000001", 2_000_000, "lots"):
        r = httpx.put(gateway.url + f"/user/api-keys/{key['id']}", headers=headers, json={"daily_spend_limit": bad})
        assert r.status_code == 400, (bad, r.text)
    # A tiny limit refuses a request whose hold is larger, before any upstream call.
    r = httpx.put(gateway.url + f"/user/api-keys/{key['id']}", headers=headers,
                  json={"daily_spend_limit": "0.000001"})
    assert r.status_code == 200
    r = httpx.post(gateway.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key['api_key']}"},
                   json=chat_body("hi"))
    assert r.status_code == 402
    err = r.json()["error"]
    assert err["code"] == "daily_cap_exceeded" and err["scope"] == "key" and "daily_spend_limit" in err["message"]
    assert int(r.headers["retry-after"]) > 0
