"""Billing properties: for any mix of requests, failures, retries and restarts, the ledger, the balances and the
per-response costs agree to the nanodollar, and the customer's export says the same.

Each scenario is a seeded random mix (`random.Random(seed)`, reproducible: the seed is in every assertion
message) of concurrent requests through the real SDKs: OpenAI chat (JSON and streams), Anthropic messages (JSON
and streams), embeddings and speech, with upstream faults asked for in-band (emulator directives): 5xx on the
first provider (failover), 5xx / 429 / timeouts on every provider, the user's own 400, streams dropped midway,
malformed chunks, missing usage. Client-given X-Request-IDs are reused (concurrently and afterwards), and the
balance is small so some requests are refused with 402. It runs on both credit authorities x SQLite and
PostgreSQL.

Nothing is charged before a successful answer: a request that fails before any answer only ever held money,
and its hold is released (there is no charge to refund, which is stricter than charging and refunding). A
stream cut midway is charged an estimate of what was delivered, never more than its hold.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import anthropic
import httpx
import openai
import pytest
import sqlalchemy as sa

from gatewayz.settings import ModelConfig, ModelRoute, Pricing
from gatewayz.storage.schema import credit_holds
from tests.conftest import GatewayFactory
from tests.e2e.test_credits import admin, db_user, echo_hold, encode, ledger, post_chat, select_rows, usage_for, usd
from tests.emulator import Emulator, Fault
from tests.gateway_server import GatewayServer

ECHO_IN, ECHO_OUT = 1_000, 2_000     # nanodollars a token of test/echo
ECHO_MAX_OUT = 1024
TIMEOUT_S = 1.0                      # each provider's timeout: a hanging provider is left after a second


def _routes() -> list[ModelRoute]:
    return [ModelRoute(provider="emu-a", model="ok-model"), ModelRoute(provider="emu-b", model="ok-model")]


MODELS = [
    ModelConfig(id="test/echo", pricing=Pricing(input=Decimal("1"), output=Decimal("2")), context_length=8192,
                max_output_tokens=ECHO_MAX_OUT, providers=_routes()),
    ModelConfig(id="test/embed", mode="embedding", pricing=Pricing(input=Decimal("0.02")), providers=_routes()),
    ModelConfig(id="test/tts", mode="speech", pricing=Pricing(characters=Decimal("15")), providers=_routes()),
]
PLAN = "prop"

CASES = [
    pytest.param("sqlite", "memory", id="sqlite-memory"),
    pytest.param("sqlite", "sql", id="sqlite-sql"),
    pytest.param("postgresql", "memory", id="postgresql-memory"),
    pytest.param("postgresql", "sql", id="postgresql-sql"),
]


def start(factory: GatewayFactory, emus: list[Emulator], backend: str, authority: str, **kw: Any) -> GatewayServer:
    plans = [{"id": "free", "name": "Free", "price_usd_month": 0},
             {"id": PLAN, "name": "Prop", "price_usd_month": 1, "monthly_allowance_usd": "0.0005"}]
    gw = factory(emus, backend=backend, models=MODELS, credits={"authority": authority}, timeout_s=TIMEOUT_S,
                 plans=plans, **kw)
    assert type(gw.container.credits).__name__ == {"memory": "MemoryAuthority", "sql": "SqlAuthority"}[authority]
    return gw


# ------------------------------------------------------------------------------------------------ requests

CHAT_FAULTS = [  # (weight, directive)
    (10, ""),
    (2, "[[fault@a:status=503]]"),                  # fails over to b
    (1, "[[fault:status=500]]"),                     # every provider: 502
    (1, "[[fault:status=429,retry_after=0]]"),       # every provider rate-limited
    (1, "[[fault@a:hang=true]]"),                    # a times out, b serves
    (1, "[[fault:latency_ms=1600]]"),                # every provider times out
    (1, "[[fault@a:status=400]]"),                   # the user's own error: not failed over
    (1, "[[fault:omit_usage=true]]"),                # billed on an estimate
    (1, "[[fault:latency_ms=300]]"),                 # slow: overlaps the others
]
STREAM_FAULTS = [
    (2, "[[fault:drop_after_chunks=3]]"),            # cut midway: an estimate
    (1, "[[fault:drop_after_chunks=1]]"),
    (1, "[[fault:malformed_chunk_at=1]]"),           # one junk chunk, skipped; usage still exact
]
MEDIA_FAULTS = [(6, ""), (2, "[[fault@a:status=503]]"), (1, "[[fault:status=500]]"), (1, "[[fault@a:status=400]]")]
KINDS = [(3, "openai_json"), (3, "openai_stream"), (2, "anthropic_json"), (2, "anthropic_stream"),
         (1, "embedding"), (1, "speech")]


def pick(rng: random.Random, weighted: list[tuple[int, str]]) -> str:
    return rng.choices([v for _, v in weighted], [w for w, _ in weighted])[0]


@dataclass
class Call:
    rid: str
    kind: str
    text: str
    max_tokens: int
    delay: float


@dataclass
class Outcome:
    call: Call
    status: int | str        # HTTP status of a refusal, 200 for an answer, "cut" for a stream that broke midway
    cost: int | None = None  # what the response said it cost (nanodollars)
    code: str | None = None
    tokens: tuple[int, int] | None = None


@dataclass
class Round:
    seed: int
    calls: list[Call] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)


def plan_round(seed: int, n: int = 22) -> Round:
    rng = random.Random(seed)
    rnd = Round(seed)
    for i in range(n):
        kind = pick(rng, KINDS)
        faults = MEDIA_FAULTS if kind in ("embedding", "speech") else CHAT_FAULTS
        if kind.endswith("_stream"):
            faults = faults + STREAM_FAULTS
        words = " ".join(f"w{rng.randrange(1000)}" for _ in range(rng.randint(3, 30)))
        rnd.calls.append(Call(f"prop-{seed}-{i}", kind, f"{words} {pick(rng, faults)}".strip(),
                              rng.randint(16, 160), rng.uniform(0, 0.4)))
    # Retries of a request id: some while the first may be in flight, some well after it finished.
    for _ in range(rng.randint(3, 6)):
        first = rng.choice(rnd.calls[:n])
        rnd.calls.append(Call(first.rid, first.kind, first.text, first.max_tokens, first.delay + rng.uniform(0, 1.5)))
    return rnd


def nanos(usd_value: Any) -> int:
    return round(Decimal(str(usd_value)) * 1_000_000_000)


async def send(call: Call, oai: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic) -> Outcome:
    hdr = {"X-Request-ID": call.rid}
    messages: Any = [{"role": "user", "content": call.text}]
    try:
        if call.kind == "openai_json":
            r = await oai.chat.completions.with_raw_response.create(model="test/echo", messages=messages,
                                                                    max_tokens=call.max_tokens, extra_headers=hdr)
            u: Any = r.parse().usage
            return Outcome(call, 200, nanos(u.cost), tokens=(u.prompt_tokens, u.completion_tokens))
        if call.kind == "openai_stream":
            stream = await oai.chat.completions.create(model="test/echo", messages=messages, stream=True,
                                                       max_tokens=call.max_tokens, extra_headers=hdr,
                                                       stream_options={"include_usage": True})
            out = Outcome(call, "cut")
            try:
                async for chunk in stream:
                    if chunk.usage is not None:
                        c: Any = chunk.usage
                        out = Outcome(call, 200, nanos(c.cost), tokens=(c.prompt_tokens, c.completion_tokens))
            except openai.APIError as exc:
                if isinstance(exc, openai.APIStatusError):
                    raise
                return Outcome(call, "cut")
            return out
        if call.kind == "anthropic_json":
            m = await claude.messages.with_raw_response.create(model="test/echo", max_tokens=call.max_tokens,
                                                                messages=messages, extra_headers=hdr)
            mu: Any = (await m.parse()).usage
            return Outcome(call, 200, nanos(mu.cost), tokens=(mu.input_tokens, mu.output_tokens))
        if call.kind == "anthropic_stream":
            async with claude.messages.stream(model="test/echo", max_tokens=call.max_tokens, messages=messages,
                                              extra_headers=hdr) as s:
                async for _ in s:
                    pass
                final = (await s.get_final_message()).usage
            # The stream reports the billed tokens; the cost follows from the price.
            return Outcome(call, 200, final.input_tokens * ECHO_IN + final.output_tokens * ECHO_OUT,
                           tokens=(final.input_tokens, final.output_tokens))
        if call.kind == "embedding":
            e = await oai.embeddings.with_raw_response.create(model="test/embed", input=call.text, extra_headers=hdr)
            cost = nanos(e.headers["x-gateway-cost"])
            parsed: Any = e.parse()  # the embeddings' raw response parses synchronously
            assert nanos(parsed.usage.cost) == cost
            return Outcome(call, 200, cost)
        sp = await oai.audio.speech.with_raw_response.create(model="test/tts", voice="alloy", input=call.text,
                                                            extra_headers=hdr)
        return Outcome(call, 200, nanos(sp.headers["x-gateway-cost"]))
    except openai.APIStatusError as exc:
        body = exc.body if isinstance(exc.body, dict) else {}
        return Outcome(call, exc.status_code, code=body.get("code"))
    except anthropic.APIStatusError as exc:
        if exc.status_code == 200:   # an error event in a stream that had started
            return Outcome(call, "cut")
        err = exc.body.get("error") if isinstance(exc.body, dict) else None
        return Outcome(call, exc.status_code, code=err.get("type") if isinstance(err, dict) else None)


def run_round(gw: GatewayServer, api_key: str, rnd: Round) -> None:
    async def go() -> None:
        oai = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=api_key, max_retries=0, timeout=30)
        claude = anthropic.AsyncAnthropic(base_url=gw.url, api_key=api_key, max_retries=0, timeout=30)

        async def one(call: Call) -> Outcome:
            await asyncio.sleep(call.delay)
            return await send(call, oai, claude)

        try:
            rnd.outcomes = list(await asyncio.gather(*(one(c) for c in rnd.calls)))
        finally:
            await oai.close()
            await claude.close()

    asyncio.run(go())


# ------------------------------------------------------------------------------------------------ invariants


def charge(row: dict[str, Any]) -> int:
    return -(row["amount_nanos"] + row["allowance_nanos"])


def check_books(gw: GatewayServer, user: dict[str, Any], why: str) -> list[dict[str, Any]]:
    """Balance and allowance never negative; each pool's ledger rows sum to it (running totals too); the
    authority agrees with the database; no hold left."""
    gw.drain()
    rows = ledger(gw, user["id"])
    u = db_user(gw, user["id"])
    assert u["balance_nanos"] >= 0 and u["allowance_nanos"] >= 0, why
    assert sum(r["amount_nanos"] for r in rows) == u["balance_nanos"], why
    assert sum(r["allowance_nanos"] for r in rows) == u["allowance_nanos"], why
    balance = allowance = 0
    for r in rows:
        balance += r["amount_nanos"]
        allowance += r["allowance_nanos"]
        assert r["balance_after_nanos"] == balance and balance >= 0, (why, r)
        if r["allowance_after_nanos"] is not None:
            assert r["allowance_after_nanos"] == allowance and allowance >= 0, (why, r)
    assert u["held_nanos"] == 0, why
    assert select_rows(gw, sa.select(credit_holds).where(credit_holds.c.user_id == user["id"])) == [], why
    assert tuple(gw.run(gw.container.credits.funds(user["id"]))) == (u["balance_nanos"], u["allowance_nanos"]), why
    seen = httpx.get(gw.url + "/user/balance", headers={"Authorization": f"Bearer {user['api_key']}"}).json()
    assert (int(seen["balance_nanos"]), int(seen["allowance_nanos"])) == (u["balance_nanos"], u["allowance_nanos"])
    return rows


def check_round(gw: GatewayServer, user: dict[str, Any], rnd: Round) -> None:
    why = f"seed {rnd.seed}"
    rows = check_books(gw, user, why)
    charges: dict[str, int] = {}
    for r in rows:
        if r["type"] == "api_usage":
            assert r["request_id"] not in charges, (why, "charged twice", r["request_id"])
            charges[r["request_id"]] = charge(r)
    records = {r["request_id"]: r for r in usage_for(gw, user["id"])}
    assert set(charges) <= set(records), why
    by_rid: dict[str, list[Outcome]] = {}
    for o in rnd.outcomes:
        by_rid.setdefault(o.call.rid, []).append(o)
        assert o.status in (200, "cut", 400, 402, 409, 429, 502, 503, 504), (why, o)
        if o.status == 402:
            assert o.code in ("insufficient_credits", "billing_error"), (why, o)  # billing_error: Anthropic's type
        if o.status == 409:
            assert len([c for c in rnd.calls if c.rid == o.call.rid]) > 1, (why, o)
    for rid, outs in by_rid.items():
        answered = [o for o in outs if o.status in (200, "cut")]
        assert len(answered) <= 1, (why, "one request id answered twice", outs)
        charged = charges.get(rid, 0)
        rec = records.get(rid)
        if not answered:
            assert charged == 0, (why, "charged without an answer", outs)
            assert rec is None or (rec["cost_nanos"] == 0 and rec["status"] != 200), (why, rec)
            continue
        o = answered[0]
        assert rec is not None, (why, o)
        assert rec["cost_nanos"] == charged, (why, rec, charged)
        if o.status == 200:
            assert rec["status"] == 200 and o.cost == charged, (why, o, charged)
            if o.call.kind in ("openai_json", "openai_stream", "anthropic_json", "anthropic_stream"):
                assert o.tokens == (rec["prompt_tokens"], rec["completion_tokens"]), (why, o, rec)
                assert charged == rec["prompt_tokens"] * ECHO_IN + rec["completion_tokens"] * ECHO_OUT, (why, rec)
            if o.call.kind == "speech":
                assert rec["characters"] == len(o.call.text) and charged == len(o.call.text) * 15_000, (why, rec)
        else:
            # Cut midway: the estimate of what was delivered, within the hold (the client's body has at least
            # 4 x prompt_tokens - 3 bytes, and the hold counts each byte as a prompt token).
            assert rec["status"] == 502 and rec["error_code"] == "upstream_stream_interrupted", (why, rec)
            hold_at_least = (4 * rec["prompt_tokens"] - 3) * ECHO_IN + min(o.call.max_tokens, ECHO_MAX_OUT) * ECHO_OUT
            assert charged <= hold_at_least, (why, rec)
    assert set(charges) <= set(by_rid), why
    # What the customer can see and export says the same.
    auth = {"Authorization": f"Bearer {user['api_key']}"}
    exported = httpx.get(gw.url + "/user/usage/export", params={"format": "json"}, headers=auth, timeout=30).json()
    assert {e["request_id"]: e["cost_nanos"] for e in exported if e["cost_nanos"]} == charges, why
    assert sum(e["cost_nanos"] for e in exported) == sum(charges.values()), why
    stats = httpx.get(gw.url + "/user/activity/stats", headers=auth, timeout=30).json()
    assert stats["totals"]["spend_nanos"] == sum(charges.values()), why
    assert stats["totals"]["requests"] == len(exported) == len(records), why


@pytest.mark.parametrize(("backend", "authority"), CASES)
def test_random_mixes_keep_the_books_exact(gateway_factory: GatewayFactory, emu_a: Emulator, emu_b: Emulator,
                                           backend: str, authority: str) -> None:
    gw = start(gateway_factory, [emu_a, emu_b], backend, authority)
    base = {"sqlite": 100, "postgresql": 200}[backend] + {"memory": 0, "sql": 50}[authority]
    statuses: set[int | str] = set()
    for seed in (base, base + 1):
        rng = random.Random(seed)
        user = gw.create_user(usd(rng.randint(1_500_000, 4_000_000)))
        if rng.random() < 0.5:
            r = httpx.post(gw.url + "/admin/assign-plan", headers=admin(), json={"user_id": user["id"], "plan": PLAN})
            assert r.status_code == 200, r.text
        rnd = plan_round(seed)
        run_round(gw, user["api_key"], rnd)
        check_round(gw, user, rnd)
        statuses |= {o.status for o in rnd.outcomes}
    assert 200 in statuses and len(statuses) >= 3, statuses   # the mix really mixes outcomes


# ------------------------------------------------------------------------------------------ restarts


@pytest.mark.parametrize(("backend", "authority"), CASES)
def test_request_id_retried_after_a_restart_is_charged_once(gateway_factory: GatewayFactory, emu_a: Emulator,
                                                             emu_b: Emulator, backend: str, authority: str) -> None:
    gw = start(gateway_factory, [emu_a, emu_b], backend, authority)
    user = gw.create_user("1")
    rid = f"restart-{backend}-{authority}"
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=user["api_key"], max_retries=0, timeout=20)
    first = client.chat.completions.with_raw_response.create(
        model="test/echo", messages=[{"role": "user", "content": "charge me once"}],
        extra_headers={"X-Request-ID": rid})
    cost = nanos(first.parse().usage.cost)  # type: ignore[union-attr]
    assert cost > 0
    gw.stop()   # settlements are drained on shutdown; the next gateway knows the id only from the database

    again = start(gateway_factory, [emu_a, emu_b], backend, authority, db_url=gw.settings.database_url)
    upstream_calls = len(emu_a.requests) + len(emu_b.requests)
    retry = openai.OpenAI(base_url=again.url + "/v1", api_key=user["api_key"], max_retries=0, timeout=20)
    with pytest.raises(openai.ConflictError) as exc:
        retry.chat.completions.create(model="test/echo", messages=[{"role": "user", "content": "charge me once"}],
                                      extra_headers={"X-Request-ID": rid})
    assert exc.value.body["code"] == "duplicate_request_id"  # type: ignore[index]
    claude = anthropic.Anthropic(base_url=again.url, api_key=user["api_key"], max_retries=0, timeout=20)
    with pytest.raises(anthropic.ConflictError):
        claude.messages.create(model="test/echo", max_tokens=50, messages=[{"role": "user", "content": "once"}],
                               extra_headers={"X-Request-ID": rid})
    assert len(emu_a.requests) + len(emu_b.requests) == upstream_calls   # refused before any upstream call
    rows = check_books(again, user, "restart")
    assert [charge(r) for r in rows if r["type"] == "api_usage"] == [cost]
    assert db_user(again, user["id"])["balance_nanos"] == 1_000_000_000 - cost


# ---------------------------------------------------------------------------------- refunds by error class

AUTHORITIES = [pytest.param("memory", id="memory"), pytest.param("sql", id="sql")]
FAILURES = [
    pytest.param("[[fault:status=503]]", 502, id="5xx-everywhere"),
    pytest.param("[[fault:latency_ms=1600]]", None, id="timeout-everywhere"),
    pytest.param("[[fault:status=429]]", None, id="429-everywhere"),
    pytest.param("[[fault@a:status=400]]", 400, id="users-own-400"),
    pytest.param("[[fault:drop_after_chunks=0]]", None, id="connection-dropped"),
]


@pytest.mark.parametrize("authority", AUTHORITIES)
@pytest.mark.parametrize(("directive", "status"), FAILURES)
def test_a_request_failing_before_any_answer_costs_nothing(gateway_factory: GatewayFactory, emu_a: Emulator,
                                                           emu_b: Emulator, authority: str, directive: str,
                                                           status: int | None) -> None:
    """Nothing is charged before an answer: the hold is released, so there is no charge to refund."""
    gw = start(gateway_factory, [emu_a, emu_b], "sqlite", authority)
    body = {"model": "test/echo", "messages": [{"role": "user", "content": f"fails {directive}"}]}
    raw = encode(body)
    hold = echo_hold(raw)
    user = gw.create_user(usd(hold))   # exactly one hold: a hold left behind refuses the next request
    rid = "fail-" + authority
    r = post_chat(gw, user["api_key"], raw, request_id=rid)
    assert r.status_code >= 400, r.text
    if status is not None:
        assert r.status_code == status, r.text
    assert "error" in r.json()
    rows = check_books(gw, user, directive)
    assert [row for row in rows if row["type"] == "api_usage"] == []
    assert db_user(gw, user["id"])["balance_nanos"] == hold
    record = usage_for(gw, user["id"], rid)
    assert len(record) == 1 and record[0]["cost_nanos"] == 0 and record[0]["status"] == r.status_code
    # The whole balance is spendable again at once.
    ok = post_chat(gw, user["api_key"], {"model": "test/echo", "messages": [{"role": "user", "content": "fine"}]})
    assert ok.status_code == 200, ok.text
    check_books(gw, user, directive)
    assert nanos(ok.json()["usage"]["cost"]) == hold - db_user(gw, user["id"])["balance_nanos"]


@pytest.mark.parametrize("authority", AUTHORITIES)
def test_usage_beyond_the_hold_is_charged_the_hold_and_said_so(gateway_factory: GatewayFactory, emu_a: Emulator,
                                                               emu_b: Emulator, authority: str) -> None:
    gw = start(gateway_factory, [emu_a, emu_b], "sqlite", authority)
    emu_a.set_default_fault(Fault(usage={"prompt_tokens": 5, "completion_tokens": 10_000_000,
                                         "total_tokens": 10_000_005}))
    user = gw.create_user("1")
    raw = encode({"model": "test/echo", "messages": [{"role": "user", "content": "overreport"}], "max_tokens": 20})
    r = post_chat(gw, user["api_key"], raw, request_id="over-" + authority)
    assert r.status_code == 200, r.text
    cost = nanos(r.json()["usage"]["cost"])
    assert cost == echo_hold(raw, max_tokens=20)   # capped at what was held
    rows = check_books(gw, user, "over")
    assert [charge(row) for row in rows if row["type"] == "api_usage"] == [cost]
    assert usage_for(gw, user["id"], "over-" + authority)[0]["cost_nanos"] == cost


def test_anthropic_answer_without_upstream_usage_reports_the_billed_estimate(gateway_factory: GatewayFactory,
                                                                             emu_a: Emulator,
                                                                             emu_b: Emulator) -> None:
    gw = start(gateway_factory, [emu_a, emu_b], "sqlite", "memory")
    user = gw.create_user("1")
    claude = anthropic.Anthropic(base_url=gw.url, api_key=user["api_key"], max_retries=0, timeout=20)
    r = claude.messages.with_raw_response.create(
        model="test/echo", max_tokens=50, messages=[{"role": "user", "content": "no usage [[fault:omit_usage=true]]"}],
        extra_headers={"X-Request-ID": "estimated"})
    usage: Any = r.parse().usage
    gw.drain()
    record = usage_for(gw, user["id"], "estimated")[0]
    assert (usage.input_tokens, usage.output_tokens) == (record["prompt_tokens"], record["completion_tokens"])
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert nanos(usage.cost) == record["cost_nanos"] == usage.input_tokens * ECHO_IN + usage.output_tokens * ECHO_OUT
    rows = check_books(gw, user, "estimated")
    assert [charge(row) for row in rows if row["type"] == "api_usage"] == [record["cost_nanos"]]
