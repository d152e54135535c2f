"""Routing end to end, through HTTP with the openai SDK and httpx: circuit breakers (open, skip, half-open
probe, reset, all open), per-request provider preferences, fallback models, variants, latency and weighted
ordering, and the health / uptime / status views.

The planner and the breaker state machine have unit tests (tests/unit/test_routing.py); here every claim is
checked from the outside: which emulator received what (its request log), which provider answered
(X-Gateway-Provider), what the client was charged, and what the admin and public views report."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from gatewayz.settings import ModelConfig, ModelRoute, Pricing
from tests.conftest import EMU_KEY, GatewayFactory, make_settings
from tests.databases import DatabaseFactory
from tests.emulator import Emulator, Fault
from tests.gateway_server import ADMIN_KEY, GatewayServer, migrate

HELLO: Any = [{"role": "user", "content": "hello routing"}]
ECHO = "Echo: hello routing"
LEAKS = ("Traceback", 'File "', "/work/", "site-packages", '"detail"')
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


# ------------------------------------------------------------------------------------------------ helpers
def sdk(gw: GatewayServer, api_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=api_key, max_retries=0, timeout=20)


def chat(client: openai.OpenAI, model: str = "test/echo", **kw: Any) -> Any:
    """A completion through the SDK; returns the raw response (headers + .parse())."""
    return client.chat.completions.with_raw_response.create(model=model, messages=HELLO, **kw)


def served_by(client: openai.OpenAI, model: str = "test/echo", **kw: Any) -> str:
    raw = chat(client, model, **kw)
    resp = raw.parse()
    assert resp.choices[0].message.content == ECHO
    return str(raw.headers["x-gateway-provider"])


def post_chat(gw: GatewayServer, api_key: str | None, body: dict[str, Any],
              headers: dict[str, str] | None = None) -> httpx.Response:
    h = dict(headers or {})
    if api_key is not None:
        h["Authorization"] = f"Bearer {api_key}"
    return httpx.post(gw.url + "/v1/chat/completions", json={"model": "test/echo", "messages": HELLO, **body},
                      headers=h, timeout=20)


def admin_get(gw: GatewayServer, path: str) -> dict[str, Any]:
    r = httpx.get(gw.url + path, headers=ADMIN, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def breaker(gw: GatewayServer, provider: str) -> dict[str, Any]:
    return admin_get(gw, f"/circuit-breakers/{provider}")


def counts(*emus: Emulator) -> list[int]:
    return [len(e.requests) for e in emus]


def assert_openai_error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert {"message", "type", "param", "code"} <= set(err)
    assert isinstance(err["message"], str) and err["message"]
    for leak in LEAKS:
        assert leak not in r.text
    return err  # type: ignore[no-any-return]


def route(provider: str, model: str = "ok-model", **kw: Any) -> ModelRoute:
    return ModelRoute(provider=provider, model=model, **kw)


def price(inp: str, out: str) -> Pricing:
    return Pricing(input=Decimal(inp), output=Decimal(out))


def model(ident: str, routes: list[ModelRoute], inp: str = "1", out: str = "2", **kw: Any) -> ModelConfig:
    return ModelConfig(id=ident, pricing=price(inp, out), context_length=8192, max_output_tokens=1024,
                       providers=routes, **kw)


def start(factory: GatewayFactory, emus: list[Emulator], credits: str = "10",
          **kw: Any) -> tuple[GatewayServer, dict[str, Any], openai.OpenAI]:
    gw = factory(emus, **kw)
    user = gw.create_user(credits)
    return gw, user, sdk(gw, user["api_key"])


def breakers(threshold: int, cooldown_s: float = 30.0) -> dict[str, Any]:
    return {"breaker": {"failure_threshold": threshold, "cooldown_s": cooldown_s}}


def nanos(usage: Any, inp_per_m: int, out_per_m: int) -> int:
    """Cost in nanodollars of this usage at these USD-per-million prices ($1/M = 1,000 nanos a token)."""
    return int(usage.prompt_tokens * inp_per_m * 1_000 + usage.completion_tokens * out_per_m * 1_000)


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=20) as c:
        yield c


# ----------------------------------------------------------------------------------- 1. breaker lifecycle
def test_breaker_opens_then_skips_the_provider_and_a_half_open_probe_closes_it(
        gateway_factory: GatewayFactory, emu_a: Emulator, emu_b: Emulator) -> None:
    gw, _, client = start(gateway_factory, [emu_a, emu_b], routing=breakers(3, cooldown_s=1))
    emu_a.set_default_fault(Fault(status=503, latency_ms=300))  # a slow failure: skipping it is visible

    for i in range(3):
        t0 = time.perf_counter()
        assert served_by(client) == "emu-b"
        assert time.perf_counter() - t0 >= 0.29  # it waited for emu-a's failure first
        assert counts(emu_a, emu_b) == [i + 1, i + 1]
    state = breaker(gw, "emu-a")
    assert state["provider"] == "emu-a" and state["state"] == "open"
    assert 0 < state["retry_after_s"] <= 1
    assert breaker(gw, "emu-b")["state"] == "closed"

    for _ in range(5):  # open: emu-a is not even asked, emu-b answers at once
        t0 = time.perf_counter()
        assert served_by(client) == "emu-b"
        assert time.perf_counter() - t0 < 0.25
    chunks = list(client.chat.completions.create(model="test/echo", messages=HELLO, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ECHO
    assert counts(emu_a, emu_b) == [3, 9]

    # cooldown over, emu-a healthy again: the next request is a trial on emu-a, which closes the breaker
    emu_a.set_default_fault(None)
    time.sleep(1.1)
    assert breaker(gw, "emu-a")["state"] == "half_open"
    assert served_by(client) == "emu-a"
    assert counts(emu_a, emu_b) == [4, 9]
    state = breaker(gw, "emu-a")
    assert state["state"] == "closed" and state["consecutive_failures"] == 0
    assert state["models"]["ok-model"]["state"] == "closed"
    assert served_by(client) == "emu-a"

    # open it again; this time the trial fails: the breaker reopens for a full cooldown
    emu_a.set_default_fault(Fault(status=503))
    for _ in range(3):
        assert served_by(client) == "emu-b"
    assert breaker(gw, "emu-a")["state"] == "open"
    time.sleep(1.1)
    before = counts(emu_a, emu_b)
    assert served_by(client) == "emu-b"  # the trial went to emu-a, failed, then emu-b served
    assert counts(emu_a, emu_b) == [before[0] + 1, before[1] + 1]
    state = breaker(gw, "emu-a")
    assert state["state"] == "open" and state["retry_after_s"] > 0.5
    assert served_by(client) == "emu-b"
    assert counts(emu_a, emu_b)[0] == before[0] + 1  # open again: skipped

    listing = admin_get(gw, "/circuit-breakers")
    assert listing["policy"]["failure_threshold"] == 3 and listing["policy"]["cooldown_s"] == 1
    assert [p["provider"] for p in listing["data"]] == ["emu-a", "emu-b"]
    moves = {(t["key"], t["from"], t["to"]): t["count"] for t in listing["transitions"]}
    assert moves[("emu-a", "closed", "open")] == 2
    assert moves[("emu-a", "half_open", "closed")] == 1
    assert moves[("emu-a", "half_open", "open")] == 1


# -------------------------------------------------------------------------------------- 2. admin: reset
def test_reset_one_and_reset_all_close_breakers(gateway_factory: GatewayFactory, emu_a: Emulator,
                                               emu_b: Emulator) -> None:
    gw, _, client = start(gateway_factory, [emu_a, emu_b], routing=breakers(2))
    emu_a.set_default_fault(Fault(status=503))
    for _ in range(2):
        assert served_by(client) == "emu-b"
    assert breaker(gw, "emu-a")["state"] == "open"
    assert breaker(gw, "emu-a")["models"]["ok-model"]["state"] == "open"

    r = httpx.post(gw.url + "/circuit-breakers/emu-a/reset", headers=ADMIN)
    assert r.status_code == 200, r.text
    state = breaker(gw, "emu-a")
    assert state["state"] == "closed" and state["models"]["ok-model"]["state"] == "closed"
    emu_a.set_default_fault(None)
    assert served_by(client) == "emu-a"  # tried again at once, no cooldown wait

    emu_a.set_default_fault(Fault(status=503))
    for _ in range(2):
        assert served_by(client) == "emu-b"
    assert breaker(gw, "emu-a")["state"] == "open"
    r = httpx.post(gw.url + "/circuit-breakers/reset-all", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert breaker(gw, "emu-a")["state"] == "closed"
    emu_a.set_default_fault(None)
    assert served_by(client) == "emu-a"


def test_breaker_admin_routes_need_an_admin_key(gateway_factory: GatewayFactory, emu_a: Emulator,
                                                emu_b: Emulator) -> None:
    gw, user, client = start(gateway_factory, [emu_a, emu_b], routing=breakers(2))
    emu_a.set_default_fault(Fault(status=503))
    for _ in range(2):
        served_by(client)
    calls = [("GET", "/circuit-breakers"), ("GET", "/circuit-breakers/emu-a"),
             ("POST", "/circuit-breakers/emu-a/reset"), ("POST", "/circuit-breakers/reset-all"),
             ("GET", "/health/providers"), ("GET", "/health/providers/uptime")]
    for method, path in calls:
        r = httpx.request(method, gw.url + path, headers={"Authorization": f"Bearer {user['api_key']}"})
        assert_openai_error(r, 403)
        r = httpx.request(method, gw.url + path)
        assert_openai_error(r, 401)
    assert breaker(gw, "emu-a")["state"] == "open"  # the refused resets changed nothing

    for method, path in [("GET", "/circuit-breakers/nope"), ("POST", "/circuit-breakers/nope/reset")]:
        r = httpx.request(method, gw.url + path, headers=ADMIN)
        assert_openai_error(r, 404)


# -------------------------------------------------------------------------------------- 3. all open: 503
def test_every_breaker_open_is_503_with_retry_after_and_free(gateway_factory: GatewayFactory, emu_a: Emulator,
                                                             emu_b: Emulator) -> None:
    gw, user, client = start(gateway_factory, [emu_a, emu_b], routing=breakers(1, cooldown_s=30))
    key = user["api_key"]
    emu_a.set_default_fault(Fault(status=503))
    emu_b.set_default_fault(Fault(status=503))
    assert_openai_error(post_chat(gw, key, {}), 502)  # both fail once: both breakers open
    assert counts(emu_a, emu_b) == [1, 1]
    before = gw.balance_nanos(key)

    r = post_chat(gw, key, {})
    err = assert_openai_error(r, 503)
    assert r.headers.get("x-request-id")
    assert 1 <= int(r.headers["retry-after"]) <= 30
    assert "emu-a" in err["message"] and "emu-b" in err["message"]
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="test/echo", messages=HELLO)
    assert caught.value.status_code == 503
    with pytest.raises(openai.InternalServerError) as caught:
        list(client.chat.completions.create(model="test/echo", messages=HELLO, stream=True))
    assert caught.value.status_code == 503
    assert counts(emu_a, emu_b) == [1, 1]  # no upstream call at all
    assert gw.balance_nanos(key) == before


# ------------------------------------------------------------------------------- 4. dead or slow upstream
@pytest.mark.parametrize("kind", ["hang", "slow", "killed"])
def test_dead_or_slow_upstream_is_skipped_once_its_breaker_opens(kind: str, gateway_factory: GatewayFactory,
                                                                 emu_a: Emulator, emu_b: Emulator) -> None:
    gw, _, client = start(gateway_factory, [emu_a, emu_b], timeout_s=0.3, routing=breakers(2))
    if kind == "hang":
        emu_a.set_default_fault(Fault(hang=True))
    elif kind == "slow":
        emu_a.set_default_fault(Fault(latency_ms=2000))
    else:
        emu_a.stop()
    for _ in range(2):
        assert served_by(client) == "emu-b"
    assert breaker(gw, "emu-a")["state"] == "open"
    seen = len(emu_a.requests)
    for _ in range(5):
        t0 = time.perf_counter()
        assert served_by(client) == "emu-b"
        assert time.perf_counter() - t0 < 0.25  # no provider timeout paid any more
    assert len(emu_a.requests) == seen


# -------------------------------------------------------------------------- 5. 404: provider+model only
def test_404_trips_only_the_provider_and_model_breaker(gateway_factory: GatewayFactory, emu_a: Emulator,
                                                       emu_b: Emulator) -> None:
    models = [model("test/echo", [route("emu-a"), route("emu-b")]),
              model("test/other", [route("emu-a", "other-model"), route("emu-b", "other-model")])]
    gw, _, client = start(gateway_factory, [emu_a, emu_b], models=models, routing=breakers(3))
    for _ in range(3):
        emu_a.push_fault(Fault(status=404), model="ok-model")
        assert served_by(client) == "emu-b"
    state = breaker(gw, "emu-a")
    assert state["state"] == "closed"
    assert state["models"]["ok-model"]["state"] == "open"
    assert state["models"]["other-model"]["state"] == "closed"

    assert served_by(client) == "emu-b"
    assert [r.json["model"] for r in emu_a.requests] == ["ok-model"] * 3  # not asked for ok-model again
    assert served_by(client, "test/other") == "emu-a"  # the provider itself is fine
    assert emu_a.requests[-1].json["model"] == "other-model"

    health = {m["model"]: m["status"] for m in httpx.get(gw.url + "/health/models").json()["data"]}
    assert health == {"test/echo": "degraded", "test/other": "healthy"}


# --------------------------------------------------------------------------- 6. provider preferences
def test_provider_order_and_ignore(client: openai.OpenAI, emu_a: Emulator, emu_b: Emulator) -> None:
    assert served_by(client, extra_body={"provider": {"order": ["emu-b"]}}) == "emu-b"
    assert served_by(client, extra_body={"provider": {"order": ["emu-b", "emu-a"]}}) == "emu-b"
    assert served_by(client, extra_body={"provider": {"ignore": ["emu-a"]}}) == "emu-b"
    assert counts(emu_a, emu_b) == [0, 3]
    assert served_by(client, extra_body={"provider": {"only": ["emu-b"]}}) == "emu-b"
    assert served_by(client, extra_body={"provider": {"ignore": ["emu-b"]}}) == "emu-a"
    assert counts(emu_a, emu_b) == [1, 4]

    # order is a preference, not a filter: with fallbacks allowed the other provider still serves
    emu_b.push_fault(Fault(status=503))
    assert served_by(client, extra_body={"provider": {"order": ["emu-b"]}}) == "emu-a"
    assert counts(emu_a, emu_b) == [2, 5]


def test_gateway_fields_are_not_forwarded_upstream(client: openai.OpenAI, emu_a: Emulator) -> None:
    served_by(client, extra_body={"provider": {"order": ["emu-a"], "allow_fallbacks": True},
                                  "models": ["test/pricey"], "session_id": "s-1"})
    sent = emu_a.requests[-1].json
    assert sent["model"] == "ok-model" and sent["messages"] == HELLO
    assert not {"provider", "models", "session_id"} & set(sent)


@pytest.mark.parametrize("prefs", [{"only": ["emu-a"], "allow_fallbacks": False},
                                   {"order": ["emu-a"], "allow_fallbacks": False},
                                   {"only": ["emu-a"]}],
                         ids=["only-no-fallbacks", "order-no-fallbacks", "only"])
def test_no_fallbacks_means_the_error_comes_back(prefs: dict[str, Any], gateway: GatewayServer,
                                                 user: dict[str, Any], emu_a: Emulator, emu_b: Emulator) -> None:
    before = gateway.balance_nanos(user["api_key"])
    emu_a.set_default_fault(Fault(status=503))
    r = post_chat(gateway, user["api_key"], {"provider": prefs})
    err = assert_openai_error(r, 502)
    assert [a["provider"] for a in err["attempts"]] == ["emu-a"]
    assert counts(emu_a, emu_b) == [1, 0]
    assert gateway.balance_nanos(user["api_key"]) == before


def split_models() -> list[ModelConfig]:
    """test/split costs $10/$20 per million on emu-a (the model's price) and $1/$2 on emu-b."""
    return [model("test/split", [route("emu-a"), route("emu-b", pricing=price("1", "2"))], "10", "20"),
            model("test/echo", [route("emu-a"), route("emu-b")])]


def test_sort_by_price_serves_and_charges_the_cheaper_provider(gateway_factory: GatewayFactory,
                                                               emu_a: Emulator, emu_b: Emulator) -> None:
    gw, user, client = start(gateway_factory, [emu_a, emu_b], models=split_models())
    key = user["api_key"]

    balance = gw.balance_nanos(key)
    raw = chat(client, "test/split")  # listed order: emu-a, at the model's price
    resp = raw.parse()
    assert raw.headers["x-gateway-provider"] == "emu-a" and resp.model == "test/split"
    cost = nanos(resp.usage, 10, 20)
    assert resp.usage.model_extra["cost"] == pytest.approx(cost / 1e9)
    assert gw.balance_nanos(key) == balance - cost

    balance -= cost
    raw = chat(client, "test/split", extra_body={"provider": {"sort": "price"}})
    resp = raw.parse()
    assert raw.headers["x-gateway-provider"] == "emu-b" and resp.model == "test/split"
    cost = nanos(resp.usage, 1, 2)
    assert resp.usage.model_extra["cost"] == pytest.approx(cost / 1e9)
    assert gw.balance_nanos(key) == balance - cost
    assert counts(emu_a, emu_b) == [1, 1]


def test_max_price_filters_providers(gateway_factory: GatewayFactory, emu_a: Emulator, emu_b: Emulator) -> None:
    gw, user, client = start(gateway_factory, [emu_a, emu_b], models=split_models())
    raw = chat(client, "test/split", extra_body={"provider": {"max_price": {"prompt": 5, "completion": 5}}})
    assert raw.headers["x-gateway-provider"] == "emu-b"
    assert raw.parse().usage.model_extra["cost"] == pytest.approx(nanos(raw.parse().usage, 1, 2) / 1e9)
    raw = chat(client, "test/split", extra_body={"provider": {"max_price": {"completion": 20}}})
    assert raw.headers["x-gateway-provider"] == "emu-a"
    assert counts(emu_a, emu_b) == [1, 1]

    r = post_chat(gw, user["api_key"], {"model": "test/split", "provider": {"max_price": {"prompt": 0.5}}})
    err = assert_openai_error(r, 400)
    assert err["param"] == "provider"
    assert counts(emu_a, emu_b) == [1, 1]


@pytest.mark.parametrize("body", [
    {"provider": "emu-a"}, {"provider": ["emu-a"]}, {"provider": {"order": "emu-a"}},
    {"provider": {"only": [1, 2]}}, {"provider": {"ignore": {"emu-a": True}}},
    {"provider": {"sort": "random"}}, {"provider": {"allow_fallbacks": "no"}},
    {"provider": {"require_parameters": 1}}, {"provider": {"max_price": "cheap"}},
    {"provider": {"max_price": {"prompt": -1}}}, {"provider": {"max_price": {"completion": "lots"}}},
    {"provider": {"max_price": {"prompt": True}}},
    {"models": "test/pricey"}, {"models": [1]}, {"models": ["test/pricey"] * 9},
], ids=lambda b: str(b)[:60])
def test_invalid_routing_fields_are_400_without_upstream_call(body: dict[str, Any], gateway: GatewayServer,
                                                              user: dict[str, Any], emu_a: Emulator,
                                                              emu_b: Emulator) -> None:
    r = post_chat(gateway, user["api_key"], body)
    err = assert_openai_error(r, 400)
    assert err["param"] and str(err["param"]).split(".")[0] in ("provider", "models")
    assert counts(emu_a, emu_b) == [0, 0]


def test_invalid_provider_prefs_through_the_sdk(client: openai.OpenAI, emu_a: Emulator) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="test/echo", messages=HELLO, extra_body={"provider": {"sort": "x"}})
    assert caught.value.param == "provider.sort"
    assert emu_a.requests == []


def test_require_parameters_skips_providers_that_do_not_support_them(tmp_path: Path, databases: DatabaseFactory,
                                                                      emu_a: Emulator, emu_b: Emulator) -> None:
    url = databases.url("sqlite")
    migrate(url)
    base = make_settings(tmp_path, url, [emu_a, emu_b])
    providers = [p.model_copy(update={"unsupported_params": ["logprobs", "top_logprobs"]}) if p.name == "emu-a"
                 else p for p in base.providers]
    gw = GatewayServer(base.model_copy(update={"providers": providers})).start()
    try:
        client = sdk(gw, gw.create_user("10")["api_key"])
        require = {"provider": {"require_parameters": True}}
        assert served_by(client, logprobs=True, extra_body=require) == "emu-b"
        assert served_by(client, extra_body=require) == "emu-a"  # not using them: emu-a is fine
        assert served_by(client, logprobs=True) == "emu-a"  # not required: the listed order
        assert counts(emu_a, emu_b) == [2, 1]
        assert emu_b.requests[0].json["logprobs"] is True
        r = post_chat(gw, client.api_key, {"logprobs": True, "provider": {"require_parameters": True,
                                                                          "only": ["emu-a"]}})
        assert assert_openai_error(r, 400)["param"] == "provider"
        assert counts(emu_a, emu_b) == [2, 1]
    finally:
        gw.stop()


# ---------------------------------------------------------------------------------- 7. fallback models
def fallback_models() -> list[ModelConfig]:
    """Two models with different upstream names, so a fault can target one of them on every provider."""
    return [model("test/echo", [route("emu-a", "echo-up"), route("emu-b", "echo-up")], "1", "2"),
            model("test/pricey", [route("emu-a", "pricey-up"), route("emu-b", "pricey-up")], "1000", "1000")]


def test_fallback_model_serves_and_bills_at_its_price(gateway_factory: GatewayFactory, emu_a: Emulator,
                                                      emu_b: Emulator) -> None:
    gw, user, client = start(gateway_factory, [emu_a, emu_b], models=fallback_models())
    key = user["api_key"]

    balance = gw.balance_nanos(key)
    raw = chat(client, extra_body={"models": ["test/pricey"]})  # the first model works: no fallback
    resp = raw.parse()
    assert resp.model == "test/echo" and raw.headers["x-gateway-provider"] == "emu-a"
    cost = nanos(resp.usage, 1, 2)
    assert gw.balance_nanos(key) == balance - cost
    balance -= cost

    emu_a.push_fault(Fault(status=503), model="echo-up")
    emu_b.push_fault(Fault(status=503), model="echo-up")
    raw = chat(client, extra_body={"models": ["test/pricey"]})
    resp = raw.parse()
    assert resp.model == "test/pricey"
    assert resp.choices[0].message.content == ECHO
    assert raw.headers["x-gateway-provider"] == "emu-a"
    assert [r.json["model"] for r in emu_a.requests] == ["echo-up", "echo-up", "pricey-up"]
    assert [r.json["model"] for r in emu_b.requests] == ["echo-up"]
    cost = nanos(resp.usage, 1000, 1000)
    assert resp.usage.model_extra["cost"] == pytest.approx(cost / 1e9)
    assert gw.balance_nanos(key) == balance - cost


def test_hold_covers_the_most_expensive_fallback(gateway_factory: GatewayFactory, emu_a: Emulator,
                                                 emu_b: Emulator) -> None:
    """$0.01 pays for test/echo ($1/$2 per million) easily, but not for the hold of a request that may end up
    on test/pricey ($1000/M: a few hundred prompt bytes and 10 output tokens are already ~$0.2)."""
    gw, user, client = start(gateway_factory, [emu_a, emu_b], credits="0.01", models=fallback_models())
    assert chat(client, max_tokens=10).parse().model == "test/echo"
    with pytest.raises(openai.APIStatusError) as caught:
        chat(client, max_tokens=10, extra_body={"models": ["test/pricey"]})
    assert caught.value.status_code == 402
    assert counts(emu_a, emu_b) == [1, 0]


def test_fallback_model_serves_when_every_breaker_of_the_first_is_open(gateway_factory: GatewayFactory,
                                                                       emu_a: Emulator, emu_b: Emulator) -> None:
    """404s open the (provider, echo-up) breakers on both providers; test/pricey's routes stay usable."""
    gw, user, client = start(gateway_factory, [emu_a, emu_b], models=fallback_models(), routing=breakers(1))
    emu_a.push_fault(Fault(status=404), model="echo-up")
    emu_b.push_fault(Fault(status=404), model="echo-up")
    assert_openai_error(post_chat(gw, user["api_key"], {}), 502)
    for p in ("emu-a", "emu-b"):
        state = breaker(gw, p)
        assert state["state"] == "closed" and state["models"]["echo-up"]["state"] == "open"
    seen = counts(emu_a, emu_b)

    raw = chat(client, extra_body={"models": ["test/pricey"]})
    assert raw.parse().model == "test/pricey" and raw.headers["x-gateway-provider"] == "emu-a"
    assert counts(emu_a, emu_b) == [seen[0] + 1, seen[1]]
    assert emu_a.requests[-1].json["model"] == "pricey-up"  # echo-up was not tried again

    r = post_chat(gw, user["api_key"], {})  # no fallback: every route of test/echo is open
    assert_openai_error(r, 503)
    assert counts(emu_a, emu_b) == [seen[0] + 1, seen[1]]


def test_retry_after_reflects_the_open_model_breakers(gateway_factory: GatewayFactory, emu_a: Emulator,
                                                      emu_b: Emulator) -> None:
    """When test/echo is unavailable because its provider+model breakers are open (cooldown 30 s), the 503 must
    say to come back when they half-open (~30 s), not in 1 s."""
    gw, user, _ = start(gateway_factory, [emu_a, emu_b], routing=breakers(1, cooldown_s=30))
    emu_a.push_fault(Fault(status=404))
    emu_b.push_fault(Fault(status=404))
    assert_openai_error(post_chat(gw, user["api_key"], {}), 502)
    r = post_chat(gw, user["api_key"], {})
    assert_openai_error(r, 503)
    assert 25 <= int(r.headers["retry-after"]) <= 30, r.headers["retry-after"]
    assert counts(emu_a, emu_b) == [1, 1]


# ------------------------------------------------------------------------------------------ 8. variants
def test_floor_and_nitro_variants(gateway_factory: GatewayFactory, emu_a: Emulator, emu_b: Emulator) -> None:
    gw, user, client = start(gateway_factory, [emu_a, emu_b], models=split_models())
    balance = gw.balance_nanos(user["api_key"])
    raw = chat(client, "test/split:floor")
    resp = raw.parse()
    assert raw.headers["x-gateway-provider"] == "emu-b"  # the cheaper route
    assert resp.model.startswith("test/split")
    assert gw.balance_nanos(user["api_key"]) == balance - nanos(resp.usage, 1, 2)

    raw = chat(client, "test/split:nitro")
    assert raw.parse().model.startswith("test/split")
    assert raw.headers["x-gateway-provider"] in ("emu-a", "emu-b")
    for name in ("test/echo:floor", "test/echo:nitro"):
        assert chat(client, name).parse().choices[0].message.content == ECHO
    assert all(r.json["model"] == "ok-model" for r in emu_a.requests + emu_b.requests)

    seen = counts(emu_a, emu_b)
    for name in ("test/split:zzz", "test/echo:zzz"):
        with pytest.raises(openai.NotFoundError):
            chat(client, name)
    assert counts(emu_a, emu_b) == seen


# ------------------------------------------------------------------------------ 9. latency, 10. weights
def test_latency_routing_converges_on_the_fastest_provider(gateway_factory: GatewayFactory, emu_a: Emulator,
                                                           emu_b: Emulator, http: httpx.Client) -> None:
    models = [model("test/echo", [route("emu-a"), route("emu-b")], routing="latency")]
    gw, user, _ = start(gateway_factory, [emu_a, emu_b], models=models)
    emu_a.set_default_fault(Fault(latency_ms=150))

    def one() -> str:
        r = http.post(gw.url + "/v1/chat/completions", json={"model": "test/echo", "messages": HELLO},
                      headers={"Authorization": f"Bearer {user['api_key']}"})
        assert r.status_code == 200, r.text
        return r.headers["x-gateway-provider"]

    warmup = [one() for _ in range(4)]
    assert set(warmup) == {"emu-a", "emu-b"}  # both get measured
    after = Counter(one() for _ in range(20))
    assert after["emu-b"] >= 18, after


def test_weighted_split_and_sticky_sessions(gateway_factory: GatewayFactory, emu_a: Emulator, emu_b: Emulator,
                                            http: httpx.Client) -> None:
    models = [model("test/echo", [route("emu-a", weight=70), route("emu-b", weight=30)])]
    gw, user, _ = start(gateway_factory, [emu_a, emu_b], models=models)
    auth = {"Authorization": f"Bearer {user['api_key']}"}

    def one(headers: dict[str, str] | None = None, **body: Any) -> str:
        r = http.post(gw.url + "/v1/chat/completions", json={"model": "test/echo", "messages": HELLO, **body},
                      headers={**auth, **(headers or {})})
        assert r.status_code == 200, r.text
        return r.headers["x-gateway-provider"]

    n = 300
    split = Counter(one() for _ in range(n))
    assert 0.6 <= split["emu-a"] / n <= 0.8, split
    assert split["emu-a"] + split["emu-b"] == n

    assert len({one({"X-Session-ID": "conv-1"}) for _ in range(20)}) == 1
    assert len({one(session_id="conv-2") for _ in range(20)}) == 1
    # different conversations still spread over both providers
    assert {one({"X-Session-ID": f"conv-{i}"}) for i in range(40)} == {"emu-a", "emu-b"}


# ------------------------------------------------------------------------------------- 12. health views
def _buckets_total(entry: dict[str, Any]) -> tuple[int, int]:
    for b in entry["buckets"]:
        assert {"start", "ok", "failed"} <= set(b) and b["start"] % 60 == 0
    return sum(b["ok"] for b in entry["buckets"]), sum(b["failed"] for b in entry["buckets"])


def test_health_uptime_and_status_views(gateway_factory: GatewayFactory, emu_a: Emulator,
                                        emu_b: Emulator) -> None:
    gw, user, client = start(gateway_factory, [emu_a, emu_b], routing=breakers(3))
    status = httpx.get(gw.url + "/v1/status").json()
    assert status["status"] == "operational"
    assert {m["model"]: m["status"] for m in status["models"]} == {"test/echo": "healthy", "test/pricey": "healthy"}

    for _ in range(2):
        assert served_by(client) == "emu-a"
    emu_a.set_default_fault(Fault(status=503))
    for _ in range(3):
        assert served_by(client) == "emu-b"

    providers = {p["provider"]: p for p in admin_get(gw, "/health/providers")["data"]}
    a, b = providers["emu-a"], providers["emu-b"]
    assert a["breaker"] == "open" and a["health_score"] == 0
    assert a["requests"] == 5 and a["failures"] == 3
    assert isinstance(a["latency_ms"], float) and a["latency_ms"] > 0
    assert b["breaker"] == "closed" and b["health_score"] == 100
    assert b["requests"] == 3 and b["failures"] == 0 and b["latency_ms"] > 0
    for p in providers.values():
        assert 0 <= p["health_score"] <= 100

    models = {m["model"]: m for m in httpx.get(gw.url + "/health/models").json()["data"]}
    assert models["test/echo"]["status"] == "degraded" and models["test/echo"]["providers"] == 2
    assert models["test/pricey"]["status"] == "degraded"  # same provider: its breaker is open for it too

    uptime = {u["provider"]: u for u in admin_get(gw, "/health/providers/uptime")["data"]}
    assert _buckets_total(uptime["emu-a"]) == (2, 3) and uptime["emu-a"]["uptime_percent"] == 40.0
    assert _buckets_total(uptime["emu-b"]) == (3, 0) and uptime["emu-b"]["uptime_percent"] == 100.0
    r = httpx.get(gw.url + "/health/models/uptime")  # public
    assert r.status_code == 200
    m_up = {u["model"]: u for u in r.json()["data"]}
    assert _buckets_total(m_up["test/echo"]) == (5, 0) and m_up["test/echo"]["uptime_percent"] == 100.0
    assert m_up["test/pricey"]["requests"] == 0 and m_up["test/pricey"]["uptime_percent"] is None
    only = httpx.get(gw.url + "/health/models/uptime", params={"model": "test/echo", "hours": 1}).json()["data"]
    assert [u["model"] for u in only] == ["test/echo"]
    assert httpx.get(gw.url + "/health/models/uptime", params={"model": "no/such"}).status_code == 404

    status = httpx.get(gw.url + "/v1/status").json()
    assert status["status"] == "degraded"
    echo = next(m for m in status["models"] if m["model"] == "test/echo")
    assert echo["status"] == "degraded" and echo["uptime_24h_percent"] == 100.0 and echo["requests_24h"] == 5

    # emu-b fails too: three 502s, then every breaker is open and the models are down
    emu_b.set_default_fault(Fault(status=503))
    for _ in range(3):
        assert_openai_error(post_chat(gw, user["api_key"], {}), 502)
    assert breaker(gw, "emu-b")["state"] == "open"
    models = {m["model"]: m["status"] for m in httpx.get(gw.url + "/health/models").json()["data"]}
    assert models == {"test/echo": "down", "test/pricey": "down"}
    status = httpx.get(gw.url + "/v1/status").json()
    assert status["status"] == "down"
    echo = next(m for m in status["models"] if m["model"] == "test/echo")
    assert echo["requests_24h"] == 8 and echo["uptime_24h_percent"] == 62.5
    providers = {p["provider"]: p for p in admin_get(gw, "/health/providers")["data"]}
    assert providers["emu-b"]["breaker"] == "open" and providers["emu-b"]["health_score"] == 0
    up_b = next(u for u in admin_get(gw, "/health/providers/uptime")["data"] if u["provider"] == "emu-b")
    assert _buckets_total(up_b) == (3, 3) and up_b["uptime_percent"] == 50.0
    assert EMU_KEY not in httpx.get(gw.url + "/v1/status").text
