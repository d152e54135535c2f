"""Prepaid credits end to end: exact charges, the ledger, holds, 402s, concurrency, idempotency, failures.

Prices of the test models (tests/conftest.py): test/echo costs 1,000 nanodollars per prompt token and 2,000 per
completion token; test/pricey costs 1,000,000 per token either way. The emulator counts one token per word:
prompt = 3 + sum(words + 3 per message), completion = words of the answer.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest
import sqlalchemy as sa

from gatewayz.storage.schema import credit_holds, credit_transactions, usage_records, users
from tests.conftest import GatewayFactory
from tests.emulator import Emulator, Fault
from tests.gateway_server import ADMIN_KEY, GatewayServer

ECHO_IN = 1_000       # nanodollars per prompt token of test/echo
ECHO_OUT = 2_000      # nanodollars per completion token of test/echo
PRICEY = 1_000_000    # nanodollars per token of test/pricey
ECHO_CONTEXT = 8192
ECHO_MAX_OUT = 1024

# --------------------------------------------------------------------------------------------------- helpers


def words(text: str) -> int:
    return len(text.split())


def emu_prompt_tokens(*texts: str) -> int:
    """The emulator's prompt token count for messages with these texts."""
    return 3 + sum(words(t) + 3 for t in texts)


def echo_cost(prompt_tokens: int, completion_tokens: int) -> int:
    return prompt_tokens * ECHO_IN + completion_tokens * ECHO_OUT


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def echo_hold(raw: bytes, max_tokens: int | None = None, n: int = 1) -> int:
    """What reserve.py holds for a test/echo request with this exact body."""
    out = min(max_tokens, ECHO_MAX_OUT) if max_tokens else ECHO_MAX_OUT
    return min(len(raw), ECHO_CONTEXT) * ECHO_IN + out * n * ECHO_OUT


def usd(nanos: int) -> str:
    return str(Decimal(nanos) / 1_000_000_000)


def chat_body(text: str, model: str = "test/echo", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def post_chat(gw: GatewayServer, api_key: str, body: dict[str, Any] | bytes, *, request_id: str | None = None,
              timeout: float = 30) -> httpx.Response:
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    if request_id is not None:
        headers["X-Request-ID"] = request_id
    raw = body if isinstance(body, bytes) else encode(body)
    return httpx.post(gw.url + "/v1/chat/completions", content=raw, headers=headers, timeout=timeout)


def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}"}


def sdk(gw: GatewayServer, api_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=api_key, max_retries=0, timeout=20)


def select_rows(gw: GatewayServer, stmt: Any) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        async with gw.container.db.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(stmt)]
    return gw.run(run())  # type: ignore[no-any-return]


def ledger(gw: GatewayServer, user_id: int) -> list[dict[str, Any]]:
    t = credit_transactions
    return select_rows(gw, sa.select(t).where(t.c.user_id == user_id).order_by(t.c.id))


def usage_for(gw: GatewayServer, user_id: int, request_id: str | None = None) -> list[dict[str, Any]]:
    u = usage_records
    q = sa.select(u).where(u.c.user_id == user_id)
    if request_id is not None:
        q = q.where(u.c.request_id == request_id)
    return select_rows(gw, q.order_by(u.c.id))


def db_user(gw: GatewayServer, user_id: int) -> dict[str, Any]:
    return select_rows(gw, sa.select(users).where(users.c.id == user_id))[0]


def usage_charges(rows: list[dict[str, Any]], request_id: str | None = None) -> list[dict[str, Any]]:
    return [r for r in rows if r["type"] == "api_usage" and (request_id is None or r["request_id"] == request_id)]


def assert_books_balance(gw: GatewayServer, user_id: int) -> list[dict[str, Any]]:
    """Once settlements are written: ledger sum == balance, a consistent running balance, no hold left."""
    gw.drain()
    rows = ledger(gw, user_id)
    row = db_user(gw, user_id)
    assert row["balance_nanos"] >= 0
    assert sum(r["amount_nanos"] for r in rows) == row["balance_nanos"]
    running = 0
    for r in rows:
        running += r["amount_nanos"]
        assert r["balance_after_nanos"] == running, r
        assert r["balance_after_nanos"] >= 0
    # Holds are released: the authority agrees with the database, and nothing is left held.
    assert gw.run(gw.container.credits.balance(user_id)) == row["balance_nanos"]
    assert row["held_nanos"] == 0
    assert select_rows(gw, sa.select(credit_holds).where(credit_holds.c.user_id == user_id)) == []
    return rows


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def sse_events(text: str) -> list[str]:
    return [e[len("data: "):] for e in text.split("\n\n") if e.startswith("data: ")]


AUTHORITIES = [pytest.param({}, id="memory-default"), pytest.param({"authority": "sql"}, id="sql")]


@pytest.fixture(params=AUTHORITIES)
def any_gateway(request: pytest.FixtureRequest, gateway_factory: GatewayFactory, emu_a: Emulator,
                emu_b: Emulator) -> GatewayServer:
    """The standard gateway on SQLite, once with the default (memory) credit authority, once with the SQL one."""
    return gateway_factory([emu_a, emu_b], credits=dict(request.param))


# ------------------------------------------------------------------------------------------- exact charges


def test_exact_charges_match_usage_cost_and_ledger(gateway: GatewayServer, user: dict[str, Any]) -> None:
    client = sdk(gateway, user["api_key"])
    opening = gateway.balance_nanos(user["api_key"])
    assert opening == 10 * 1_000_000_000
    charges: dict[str, tuple[int, int, int]] = {}   # request id -> (prompt, completion, cost nanos)
    texts = ["hello", "one two three", "a b c d e f g", "the quick brown fox jumps"]
    for text in texts:
        raw = client.chat.completions.with_raw_response.create(
            model="test/echo", messages=[{"role": "user", "content": text}])
        resp = raw.parse()
        assert resp.usage is not None
        prompt, completion = resp.usage.prompt_tokens, resp.usage.completion_tokens
        assert prompt == emu_prompt_tokens(text)
        assert completion == words("Echo: " + text)
        cost = echo_cost(prompt, completion)
        assert round(resp.usage.model_extra["cost"] * 1e9) == cost
        charges[raw.headers["x-request-id"]] = (prompt, completion, cost)
    # A streamed request is charged the same way (its cost is on the usage chunk).
    raw_stream = client.chat.completions.with_raw_response.create(
        model="test/echo", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "streamed words here"}])
    chunks = list(raw_stream.parse())
    last = chunks[-1]
    assert last.usage is not None
    cost = echo_cost(last.usage.prompt_tokens, last.usage.completion_tokens)
    assert round(last.usage.model_extra["cost"] * 1e9) == cost
    charges[raw_stream.headers["x-request-id"]] = (last.usage.prompt_tokens, last.usage.completion_tokens, cost)

    total = sum(c for _, _, c in charges.values())
    balance = gateway.balance_nanos(user["api_key"])
    assert opening - balance == total

    rows = assert_books_balance(gateway, user["id"])
    assert rows[0]["type"] == "admin_credit"
    assert rows[0]["amount_nanos"] == opening and rows[0]["balance_after_nanos"] == opening
    usage_rows = usage_charges(rows)
    assert len(usage_rows) == len(charges)
    assert -sum(r["amount_nanos"] for r in usage_rows) == total
    for r in usage_rows:
        prompt, completion, cost = charges[r["request_id"]]
        assert r["amount_nanos"] == -cost
        assert r["model"] == "test/echo"
        assert (r["prompt_tokens"], r["completion_tokens"]) == (prompt, completion)
    assert sum(r["amount_nanos"] for r in rows) == balance
    # Every request has its usage record with the same cost.
    records = {r["request_id"]: r for r in usage_for(gateway, user["id"])}
    for request_id, (_, _, cost) in charges.items():
        assert records[request_id]["status"] == 200
        assert records[request_id]["cost_nanos"] == cost


# ------------------------------------------------------------------------------------------------- refusals


def test_zero_credits_is_refused_before_any_upstream_call(gateway: GatewayServer, emu_a: Emulator,
                                                          emu_b: Emulator) -> None:
    broke = gateway.create_user("0")
    r = post_chat(gateway, broke["api_key"], chat_body("hi"))
    assert r.status_code == 402
    assert r.json()["error"]["code"] == "insufficient_credits"
    with pytest.raises(openai.APIStatusError) as exc:
        sdk(gateway, broke["api_key"]).chat.completions.create(
            model="test/echo", messages=[{"role": "user", "content": "hi"}])
    assert exc.value.status_code == 402
    assert emu_a.requests == [] and emu_b.requests == []
    assert gateway.balance_nanos(broke["api_key"]) == 0
    assert ledger(gateway, broke["id"]) == []


def test_hold_of_pricey_model_needs_balance_and_max_tokens_lowers_it(gateway: GatewayServer, emu_a: Emulator,
                                                                      emu_b: Emulator) -> None:
    modest = gateway.create_user("0.5")
    body = chat_body("hi", model="test/pricey")
    raw = encode(body)
    full_hold = (len(raw) + ECHO_MAX_OUT) * PRICEY
    assert full_hold > 500_000_000  # more than the balance
    r = post_chat(gateway, modest["api_key"], raw)
    assert r.status_code == 402, r.text
    assert r.json()["error"]["code"] == "insufficient_credits"
    assert emu_a.requests == [] and emu_b.requests == []

    small = encode(chat_body("hi", model="test/pricey", max_tokens=10))
    assert (len(small) + 10) * PRICEY < 500_000_000
    r = post_chat(gateway, modest["api_key"], small)
    assert r.status_code == 200, r.text
    usage = r.json()["usage"]
    cost = usage["prompt_tokens"] * PRICEY + usage["completion_tokens"] * PRICEY
    assert usage["prompt_tokens"] == emu_prompt_tokens("hi") and usage["completion_tokens"] == 2
    assert round(usage["cost"] * 1e9) == cost
    assert gateway.balance_nanos(modest["api_key"]) == 500_000_000 - cost
    assert len(emu_a.requests) == 1
    assert_books_balance(gateway, modest["id"])


def test_balance_exactly_equal_to_hold_is_enough(any_gateway: GatewayServer) -> None:
    raw = encode(chat_body("exact"))
    hold = echo_hold(raw)
    u = any_gateway.create_user(usd(hold))
    assert post_chat(any_gateway, u["api_key"], raw).status_code == 200
    # One nanodollar less than the hold is refused.
    v = any_gateway.create_user(usd(hold - 1))
    r = post_chat(any_gateway, v["api_key"], raw)
    assert r.status_code == 402
    assert_books_balance(any_gateway, u["id"])
    assert_books_balance(any_gateway, v["id"])


# ---------------------------------------------------------------------------------------------- concurrency

CONCURRENCY_CASES = [
    pytest.param("sqlite", {}, id="sqlite-memory-default"),
    pytest.param("sqlite", {"authority": "sql"}, id="sqlite-sql"),
    pytest.param("postgresql", {}, id="postgresql-memory-default"),
    pytest.param("postgresql", {"authority": "sql"}, id="postgresql-sql"),
]


@pytest.mark.parametrize(("backend", "credits"), CONCURRENCY_CASES)
def test_concurrent_requests_never_overspend(gateway_factory: GatewayFactory, emu_a: Emulator, emu_b: Emulator,
                                             backend: str, credits: dict[str, str]) -> None:
    gw = gateway_factory([emu_a, emu_b], backend=backend, credits=credits)
    expected = "SqlAuthority" if credits else "MemoryAuthority"
    assert type(gw.container.credits).__name__ == expected
    # Each answer has 1,000 words, so a request costs nearly its whole hold; the upstream is slow enough that
    # the 40 requests overlap.
    answer = " ".join(["w"] * 1000)
    for emu in (emu_a, emu_b):
        emu.set_default_fault(Fault(content=answer, latency_ms=150))
    text = "go"
    cost = echo_cost(emu_prompt_tokens(text), 1000)
    approx_hold = echo_hold(encode(chat_body(text)))
    opening = approx_hold * 3 + approx_hold // 2   # room for three holds at a time, about 3.7 requests in all
    u = gw.create_user(usd(opening))
    assert gw.balance_nanos(u["api_key"]) == opening

    results: list[int] = []
    refusal_codes: list[str | None] = []
    sampled: list[int] = []

    async def burst() -> None:
        client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=u["api_key"], max_retries=0, timeout=30)
        done = asyncio.Event()

        async def one() -> None:
            try:
                await client.chat.completions.create(model="test/echo",
                                                     messages=[{"role": "user", "content": text}])
                results.append(200)
            except openai.APIStatusError as exc:
                results.append(exc.status_code)
                body = exc.body if isinstance(exc.body, dict) else {}
                refusal_codes.append(body.get("code"))

        async def sample() -> None:
            async with httpx.AsyncClient(base_url=gw.url, headers={"Authorization": f"Bearer {u['api_key']}"},
                                         timeout=10) as h:
                while not done.is_set():
                    r = await h.get("/user/balance")
                    sampled.append(int(r.json()["balance_nanos"]))
                    await asyncio.sleep(0.02)

        sampler = asyncio.create_task(sample())
        try:
            await asyncio.gather(*(one() for _ in range(40)))
        finally:
            done.set()
            await sampler
            await client.close()

    asyncio.run(burst())
    successes = results.count(200)
    refusals = [s for s in results if s != 200]
    assert len(results) == 40
    # Three holds fit at a time; once they settle what is left is less than one hold: exactly three succeed.
    assert successes == 3, results
    assert refusals, "the balance covers only a few requests: some must be refused"
    assert all(s == 402 for s in refusals), results
    assert all(code == "insufficient_credits" for code in refusal_codes), refusal_codes
    assert successes * cost <= opening
    assert all(b >= 0 for b in sampled)

    final = gw.balance_nanos(u["api_key"])
    assert final >= 0
    assert final == opening - successes * cost
    rows = assert_books_balance(gw, u["id"])
    assert len(usage_charges(rows)) == successes
    assert all(r["amount_nanos"] == -cost for r in usage_charges(rows))


# ---------------------------------------------------------------------------------------------- idempotency


def test_duplicate_request_id_is_refused_and_charged_once(gateway: GatewayServer, user: dict[str, Any],
                                                          emu_a: Emulator, emu_b: Emulator) -> None:
    rid = "idem-" + uuid.uuid4().hex
    body = chat_body("pay me once")
    opening = gateway.balance_nanos(user["api_key"])
    first = post_chat(gateway, user["api_key"], body, request_id=rid)
    assert first.status_code == 200
    assert first.headers["x-request-id"] == rid
    cost = round(first.json()["usage"]["cost"] * 1e9)
    # Straight away (the settlement may not be written yet) and again once it is durable.
    second = post_chat(gateway, user["api_key"], body, request_id=rid)
    assert second.status_code == 409, second.text
    assert second.json()["error"]["code"] == "duplicate_request_id"
    gateway.drain()
    third = post_chat(gateway, user["api_key"], body, request_id=rid)
    assert third.status_code == 409
    assert third.json()["error"]["code"] == "duplicate_request_id"
    assert len(emu_a.requests) + len(emu_b.requests) == 1  # the duplicates never reached an upstream
    assert gateway.balance_nanos(user["api_key"]) == opening - cost
    rows = assert_books_balance(gateway, user["id"])
    assert len(usage_charges(rows, rid)) == 1
    assert len(usage_for(gateway, user["id"], rid)) == 1


def test_concurrent_duplicate_request_ids_get_one_success(any_gateway: GatewayServer, emu_a: Emulator) -> None:
    gw = any_gateway
    emu_a.set_default_fault(Fault(latency_ms=200))
    u = gw.create_user("1")
    rid = "twin-" + uuid.uuid4().hex
    body = chat_body("twins")
    barrier = threading.Barrier(6)

    def send() -> httpx.Response:
        barrier.wait()
        return post_chat(gw, u["api_key"], body, request_id=rid)

    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda _: send(), range(6)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 409, 409, 409, 409, 409], statuses
    assert all(r.json()["error"]["code"] == "duplicate_request_id" for r in responses if r.status_code == 409)
    assert len(emu_a.requests) == 1
    winner = next(r for r in responses if r.status_code == 200)
    cost = round(winner.json()["usage"]["cost"] * 1e9)
    assert gw.balance_nanos(u["api_key"]) == 1_000_000_000 - cost
    rows = assert_books_balance(gw, u["id"])
    assert len(usage_charges(rows, rid)) == 1


def test_same_request_id_for_another_user_is_independent(gateway: GatewayServer) -> None:
    alice, bob = gateway.create_user("1"), gateway.create_user("1")
    rid = "shared-" + uuid.uuid4().hex
    body = chat_body("mine")
    assert post_chat(gateway, alice["api_key"], body, request_id=rid).status_code == 200
    r = post_chat(gateway, bob["api_key"], body, request_id=rid)
    assert r.status_code == 200, r.text
    assert post_chat(gateway, bob["api_key"], body, request_id=rid).status_code == 409
    cost = echo_cost(emu_prompt_tokens("mine"), words("Echo: mine"))
    for who in (alice, bob):
        assert gateway.balance_nanos(who["api_key"]) == 1_000_000_000 - cost
        rows = assert_books_balance(gateway, who["id"])
        assert len(usage_charges(rows, rid)) == 1


def test_request_id_refused_for_credits_can_be_retried(any_gateway: GatewayServer, emu_a: Emulator) -> None:
    gw = any_gateway
    u = gw.create_user("0")
    rid = "retry-" + uuid.uuid4().hex
    assert post_chat(gw, u["api_key"], chat_body("later"), request_id=rid).status_code == 402
    assert emu_a.requests == []
    r = httpx.post(gw.url + "/credits/add", headers=admin(), json={"user_id": u["id"], "amount": "1"})
    assert r.status_code == 200
    # The refused request never ran, so its id is still free.
    r = post_chat(gw, u["api_key"], chat_body("later"), request_id=rid)
    assert r.status_code == 200, r.text
    rows = assert_books_balance(gw, u["id"])
    assert len(usage_charges(rows, rid)) == 1


# ------------------------------------------------------------------------------------------ upstream failures


def test_failure_of_every_provider_costs_nothing(any_gateway: GatewayServer, emu_a: Emulator,
                                                 emu_b: Emulator) -> None:
    gw = any_gateway
    raw = encode(chat_body("will fail"))
    hold = echo_hold(raw)
    u = gw.create_user(usd(hold))   # exactly one hold: a hold left behind would refuse the retry below
    for emu in (emu_a, emu_b):
        emu.set_default_fault(Fault(status=503))
    rid = "fail-" + uuid.uuid4().hex
    r = post_chat(gw, u["api_key"], raw, request_id=rid)
    assert r.status_code == 502, r.text
    assert len(emu_a.requests) == 1 and len(emu_b.requests) == 1
    assert gw.balance_nanos(u["api_key"]) == hold
    records = usage_for(gw, u["id"], rid)
    assert len(records) == 1
    assert records[0]["status"] == 502 and records[0]["cost_nanos"] == 0
    rows = assert_books_balance(gw, u["id"])
    assert usage_charges(rows) == []

    # The hold was released: the same request, now served, is affordable.
    for emu in (emu_a, emu_b):
        emu.set_default_fault(None)
    r = post_chat(gw, u["api_key"], raw)
    assert r.status_code == 200, r.text
    cost = echo_cost(emu_prompt_tokens("will fail"), words("Echo: will fail"))
    assert gw.balance_nanos(u["api_key"]) == hold - cost
    assert_books_balance(gw, u["id"])


def test_upstream_client_error_costs_nothing(any_gateway: GatewayServer, emu_a: Emulator, emu_b: Emulator) -> None:
    gw = any_gateway
    u = gw.create_user("1")
    emu_a.push_fault(Fault(status=400, error_message="bad parameter"))
    r = post_chat(gw, u["api_key"], chat_body("rejected"))
    assert r.status_code == 400
    assert emu_b.requests == []  # a client error is not failed over
    assert gw.balance_nanos(u["api_key"]) == 1_000_000_000
    rows = assert_books_balance(gw, u["id"])
    assert usage_charges(rows) == []


# ------------------------------------------------------------------------------------------ interrupted streams

LONG_ANSWER = " ".join(f"word{i}" for i in range(200))
CUT_FAULTS = [
    pytest.param(Fault(content=LONG_ANSWER, drop_after_chunks=3), id="drop-after-3"),
    pytest.param(Fault(content=LONG_ANSWER, drop_after_chunks=1), id="drop-after-first"),
    pytest.param(Fault(content=LONG_ANSWER, malformed_chunk_at=1, drop_after_chunks=3), id="malformed-then-drop"),
]


@pytest.mark.parametrize("fault", CUT_FAULTS)
def test_stream_cut_by_upstream_reports_error_and_bills_an_estimate(gateway: GatewayServer, user: dict[str, Any],
                                                                     emu_a: Emulator, emu_b: Emulator,
                                                                     fault: Fault) -> None:
    text = "tell me a long story"
    full_cost = echo_cost(emu_prompt_tokens(text), words(LONG_ANSWER))
    for emu in (emu_a, emu_b):
        emu.set_default_fault(fault)
    opening = gateway.balance_nanos(user["api_key"])
    raw = encode(chat_body(text, stream=True))
    hold = echo_hold(raw)
    rid = "cut-" + uuid.uuid4().hex
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", content=raw, timeout=30,
                      headers={"Authorization": f"Bearer {user['api_key']}", "X-Request-ID": rid}) as r:
        assert r.status_code == 200
        body = r.read().decode()
    events = sse_events(body)
    assert events and events[-1] != "[DONE]"
    final = json.loads(events[-1])
    assert "error" in final, events[-1]
    assert final["error"]["code"] == "upstream_stream_interrupted"
    assert "[DONE]" not in events

    after = gateway.balance_nanos(user["api_key"])
    charged = opening - after
    assert 0 < charged < hold
    assert charged < full_cost
    rows = assert_books_balance(gateway, user["id"])
    cut_rows = usage_charges(rows, rid)
    assert len(cut_rows) == 1 and cut_rows[0]["amount_nanos"] == -charged
    records = usage_for(gateway, user["id"], rid)
    assert len(records) == 1 and records[0]["cost_nanos"] == charged


def test_stream_cut_raises_in_the_sdk_and_bills_an_estimate(gateway: GatewayServer, user: dict[str, Any],
                                                             emu_a: Emulator, emu_b: Emulator) -> None:
    text = "tell me a long story"
    full_cost = echo_cost(emu_prompt_tokens(text), words(LONG_ANSWER))
    for emu in (emu_a, emu_b):
        emu.set_default_fault(Fault(content=LONG_ANSWER, drop_after_chunks=3))
    opening = gateway.balance_nanos(user["api_key"])
    stream = sdk(gateway, user["api_key"]).chat.completions.create(
        model="test/echo", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": text}])
    received = []
    with pytest.raises(openai.APIError):
        for chunk in stream:
            received.append(chunk)
    assert received, "the chunks before the cut are delivered"
    charged = opening - gateway.balance_nanos(user["api_key"])
    assert 0 < charged < full_cost
    assert_books_balance(gateway, user["id"])


def test_client_disconnect_midstream_still_settles_in_full(gateway: GatewayServer, user: dict[str, Any],
                                                           emu_a: Emulator) -> None:
    answer = " ".join(f"tok{i}" for i in range(20))
    emu_a.set_default_fault(Fault(content=answer, chunk_delay_ms=50))
    text = "keep talking please"
    full_cost = echo_cost(emu_prompt_tokens(text), words(answer))
    opening = gateway.balance_nanos(user["api_key"])
    rid = "gone-" + uuid.uuid4().hex
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", timeout=30,
                      headers={"Authorization": f"Bearer {user['api_key']}", "X-Request-ID": rid},
                      json=chat_body(text, stream=True)) as r:
        assert r.status_code == 200
        first = next(r.iter_raw())
        assert first.startswith(b"data: ")
    # The client is gone while the upstream still streams (20 chunks x 50 ms).
    assert usage_for(gateway, user["id"], rid) == []

    def settled() -> list[dict[str, Any]]:
        gateway.drain()
        return usage_for(gateway, user["id"], rid)

    records = wait_for(settled, timeout=15)
    assert len(records) == 1, "the request was never recorded"
    assert records[0]["status"] == 200
    assert records[0]["cost_nanos"] == full_cost
    assert gateway.balance_nanos(user["api_key"]) == opening - full_cost
    rows = assert_books_balance(gateway, user["id"])
    assert [r["amount_nanos"] for r in usage_charges(rows, rid)] == [-full_cost]


# ---------------------------------------------------------------------------------------------- credit grants


def test_admin_credit_grant_is_exact_and_spendable_at_once(any_gateway: GatewayServer) -> None:
    gw = any_gateway
    u = gw.create_user("0")
    body = chat_body("now")
    assert post_chat(gw, u["api_key"], body).status_code == 402
    r = httpx.post(gw.url + "/credits/add", headers=admin(),
                   json={"user_id": u["id"], "amount": "0.123456789", "description": "top-up"})
    assert r.status_code == 200, r.text
    assert r.json()["currency"] == "USD"
    assert r.json()["added"] == pytest.approx(0.123456789)
    assert r.json()["balance"] == pytest.approx(0.123456789)
    assert gw.balance_nanos(u["api_key"]) == 123_456_789
    r = post_chat(gw, u["api_key"], body)
    assert r.status_code == 200, r.text
    cost = echo_cost(emu_prompt_tokens("now"), words("Echo: now"))
    assert gw.balance_nanos(u["api_key"]) == 123_456_789 - cost
    rows = assert_books_balance(gw, u["id"])
    grants = [row for row in rows if row["type"] == "admin_credit"]
    assert [g["amount_nanos"] for g in grants] == [123_456_789]
    # A second grant adds exactly too.
    r = httpx.post(gw.url + "/credits/add", headers=admin(), json={"user_id": u["id"], "amount": "2"})
    assert r.status_code == 200
    assert gw.balance_nanos(u["api_key"]) == 2_123_456_789 - cost
    # A JSON number is taken at its decimal value, not as a binary float.
    r = httpx.post(gw.url + "/credits/add", headers=admin(), json={"user_id": u["id"], "amount": 0.1})
    assert r.status_code == 200, r.text
    assert gw.balance_nanos(u["api_key"]) == 2_223_456_789 - cost
    rows = assert_books_balance(gw, u["id"])
    assert [row["amount_nanos"] for row in rows if row["type"] == "admin_credit"] == [
        123_456_789, 2_000_000_000, 100_000_000]


def test_admin_credit_grant_validation(gateway: GatewayServer, user: dict[str, Any]) -> None:
    url = gateway.url + "/credits/add"
    r = httpx.post(url, headers=admin(), json={"user_id": 987654, "amount": "1"})
    assert r.status_code == 404
    for amount in ("0.0000000001", "0", "-1", "-0.5"):
        r = httpx.post(url, headers=admin(), json={"user_id": user["id"], "amount": amount})
        assert r.status_code == 400, (amount, r.text)
    r = httpx.post(url, headers={"Authorization": f"Bearer {user['api_key']}"},
                   json={"user_id": user["id"], "amount": "1"})
    assert r.status_code == 403
    assert gateway.balance_nanos(user["api_key"]) == 10 * 1_000_000_000
    assert_books_balance(gateway, user["id"])
