"""Failover end to end: emulator "a" (provider emu-a) misbehaves, emulator "b" (emu-b) should take over.

What is checked, per the dispatch contract: 5xx, 401/402/403/404, timeouts, refused connections, garbage 200s
and streams that die before their first event all move on to the next provider, invisibly to the client; a
400/422 is the client's own fault and goes back unchanged, with no failover and no charge; a 429 with a short
Retry-After is retried once on the same provider; when every provider fails the client gets one OpenAI error
(502, 504 or 429) naming every attempt and pays nothing; no provider is ever tried twice (bar that retry)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest
import sqlalchemy as sa

from tests.conftest import EMU_KEY, GatewayFactory
from tests.emulator import Emulator, Fault
from tests.gateway_server import GatewayServer

HELLO = [{"role": "user", "content": "hello failover"}]
ECHO = "Echo: hello failover"
LEAKS = ("Traceback", 'File "', "/work/", "site-packages", '"detail"')


def sdk(gw: GatewayServer, api_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=api_key, max_retries=0, timeout=20)


def chat_raw(gw: GatewayServer, api_key: str, **body: Any) -> httpx.Response:
    payload = {"model": "test/echo", "messages": HELLO, **body}
    return httpx.post(gw.url + "/v1/chat/completions", json=payload, timeout=20,
                      headers={"Authorization": f"Bearer {api_key}"})


def counts(*emus: Emulator) -> list[int]:
    return [len(e.requests) for e in emus]


def assert_plain_success(raw: Any, provider: str) -> None:
    """A normal completion served by `provider`, with no trace of the providers that failed before it."""
    resp = raw.parse()
    assert raw.headers["x-gateway-provider"] == provider
    assert resp.model == "test/echo"
    assert resp.object == "chat.completion"
    assert resp.choices[0].message.content == ECHO
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None and resp.usage.total_tokens > 0
    text = raw.text
    for trace in ("emu-a", "attempts", '"error"', "Emulated upstream error"):
        assert trace not in text
    assert all("emu-a" not in v for v in raw.headers.values())


def assert_openai_error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert {"message", "type", "param", "code"} <= set(err)
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["type"], str) and err["type"]
    for leak in LEAKS:
        assert leak not in r.text
    assert r.headers.get("x-request-id")
    return err  # type: ignore[no-any-return]


def usage_rows(gw: GatewayServer, request_id: str) -> list[dict[str, Any]]:
    from gatewayz.storage.schema import usage_records

    gw.drain()

    async def fetch() -> list[dict[str, Any]]:
        async with gw.container.db.connect() as conn:
            result = await conn.execute(sa.select(usage_records).where(usage_records.c.request_id == request_id))
            return [dict(row) for row in result.mappings().all()]

    return gw.run(fetch())  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------------------------ fail over
@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_fail_over_transparently(status: int, client: openai.OpenAI, emu_a: Emulator,
                                               emu_b: Emulator) -> None:
    emu_a.push_fault(Fault(status=status, retry_after=1))
    raw = client.chat.completions.with_raw_response.create(model="test/echo", messages=HELLO)
    assert_plain_success(raw, "emu-b")
    assert counts(emu_a, emu_b) == [1, 1]
    assert emu_b.requests[0].json["model"] == "ok-model"


@pytest.mark.parametrize("status", [401, 402, 403, 404])
def test_provider_side_4xx_fail_over(status: int, client: openai.OpenAI, emu_a: Emulator, emu_b: Emulator) -> None:
    emu_a.push_fault(Fault(status=status))
    raw = client.chat.completions.with_raw_response.create(model="test/echo", messages=HELLO)
    assert_plain_success(raw, "emu-b")
    assert counts(emu_a, emu_b) == [1, 1]


def test_real_upstream_auth_failure_fails_over(gateway: GatewayServer, client: openai.OpenAI, emu_a: Emulator,
                                               emu_b: Emulator) -> None:
    """Not an injected fault: emu-a really rejects the gateway's credentials."""
    emu_a.api_key = "a-different-key"
    raw = client.chat.completions.with_raw_response.create(model="test/echo", messages=HELLO)
    assert_plain_success(raw, "emu-b")
    assert emu_a.requests[0].headers["authorization"] == f"Bearer {EMU_KEY}"
    assert counts(emu_a, emu_b) == [1, 1]


@pytest.mark.parametrize(("status", "error_class"), [(400, openai.BadRequestError),
                                                    (422, openai.UnprocessableEntityError)])
def test_client_error_is_returned_unchanged_without_failover_or_charge(
        status: int, error_class: type[openai.APIStatusError], gateway: GatewayServer, client: openai.OpenAI,
        user: dict[str, Any], emu_a: Emulator, emu_b: Emulator) -> None:
    upstream_body = (b'{"error":{"message":"upstream says: temperature 9 is out of range",'
                     b'"type":"invalid_request_error","param":"temperature","code":"upstream_code_x"}}')
    before = gateway.balance_nanos(user["api_key"])

    emu_a.push_fault(Fault(status=status, raw_body=upstream_body))
    with pytest.raises(error_class) as caught:
        client.chat.completions.create(model="test/echo", messages=HELLO, temperature=1.0)
    assert caught.value.status_code == status
    assert caught.value.message.endswith("upstream says: temperature 9 is out of range")
    assert caught.value.code == "upstream_code_x" and caught.value.param == "temperature"

    emu_a.push_fault(Fault(status=status, raw_body=upstream_body))
    r = chat_raw(gateway, user["api_key"])
    assert r.status_code == status
    assert r.content == upstream_body  # byte for byte
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers.get("x-request-id")

    assert counts(emu_a, emu_b) == [2, 0]
    assert gateway.balance_nanos(user["api_key"]) == before


def test_upstream_validation_error_passes_through_with_emulator_body(gateway: GatewayServer, user: dict[str, Any],
                                                                     emu_a: Emulator, emu_b: Emulator) -> None:
    """The upstream's own 400 (not an injected one): top_logprobs out of its range."""
    before = gateway.balance_nanos(user["api_key"])
    r = chat_raw(gateway, user["api_key"], logprobs=True, top_logprobs=99)
    err = assert_openai_error(r, 400)
    assert "top_logprobs" in err["message"]
    assert counts(emu_a, emu_b) == [1, 0]
    assert gateway.balance_nanos(user["api_key"]) == before


@pytest.mark.parametrize("fault", [Fault(hang=True), Fault(latency_ms=1000)], ids=["hang", "slow"])
def test_timeout_fails_over(fault: Fault, gateway_factory: GatewayFactory, emu_a: Emulator,
                            emu_b: Emulator) -> None:
    gw = gateway_factory([emu_a, emu_b], timeout_s=0.5)
    key = gw.create_user("10")["api_key"]
    emu_a.push_fault(fault)
    t0 = time.perf_counter()
    raw = sdk(gw, key).chat.completions.with_raw_response.create(model="test/echo", messages=HELLO)
    elapsed = time.perf_counter() - t0
    assert_plain_success(raw, "emu-b")
    assert 0.4 <= elapsed < 2.5  # one 0.5 s timeout, then emu-b at once (not the 5 s default)
    assert counts(emu_a, emu_b) == [1, 1]


def test_provider_not_listening_fails_over(client: openai.OpenAI, emu_a: Emulator, emu_b: Emulator) -> None:
    emu_a.stop()  # its port is now closed: connection refused
    with pytest.raises(httpx.ConnectError):
        httpx.get(emu_a.url + "/v1/models", timeout=2)
    raw = client.chat.completions.with_raw_response.create(model="test/echo", messages=HELLO)
    assert_plain_success(raw, "emu-b")
    assert counts(emu_a, emu_b) == [0, 1]
    # and again: a dead provider is not "remembered" into an error
    raw = client.chat.completions.with_raw_response.create(model="test/echo", messages=HELLO)
    assert_plain_success(raw, "emu-b")


def test_connection_dropped_without_answer_fails_over(client: openai.OpenAI, emu_a: Emulator,
                                                      emu_b: Emulator) -> None:
    emu_a.push_fault(Fault(drop_after_chunks=0))  # non-stream: closes the connection without answering
    raw = client.chat.completions.with_raw_response.create(model="test/echo", messages=HELLO)
    assert_plain_success(raw, "emu-b")
    assert counts(emu_a, emu_b) == [1, 1]


@pytest.mark.parametrize("raw_body", [b'{"id": "chatcmpl-x", "choi', b"<html>502 Bad Gateway</html>", b"",
                                      b'{"error": {"message": "overloaded", "type": "server_error"}}'],
                         ids=["truncated", "html", "empty", "error-object"])
def test_malformed_200_fails_over(raw_body: bytes, client: openai.OpenAI, emu_a: Emulator, emu_b: Emulator) -> None:
    emu_a.push_fault(Fault(raw_body=raw_body))
    raw = client.chat.completions.with_raw_response.create(model="test/echo", messages=HELLO)
    assert_plain_success(raw, "emu-b")
    assert counts(emu_a, emu_b) == [1, 1]


@pytest.mark.parametrize("fault", [Fault(status=503), Fault(status=500), Fault(drop_after_chunks=0),
                                   Fault(raw_body=b"")],
                         ids=["503", "500", "dropped-before-first-chunk", "empty-200"])
def test_stream_failing_before_first_chunk_fails_over(fault: Fault, client: openai.OpenAI, emu_a: Emulator,
                                                      emu_b: Emulator) -> None:
    emu_a.push_fault(fault)
    raw = client.chat.completions.with_raw_response.create(model="test/echo", messages=HELLO, stream=True,
                                                           stream_options={"include_usage": True})
    assert raw.headers["x-gateway-provider"] == "emu-b"
    chunks = list(raw.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ECHO
    assert all(c.model == "test/echo" for c in chunks)
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert counts(emu_a, emu_b) == [1, 1]


def test_stream_timeout_before_first_chunk_fails_over(gateway_factory: GatewayFactory, emu_a: Emulator,
                                                      emu_b: Emulator) -> None:
    gw = gateway_factory([emu_a, emu_b], timeout_s=0.5)
    key = gw.create_user("10")["api_key"]
    emu_a.push_fault(Fault(hang=True))
    chunks = list(sdk(gw, key).chat.completions.create(model="test/echo", messages=HELLO, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ECHO
    assert counts(emu_a, emu_b) == [1, 1]


# ---------------------------------------------------------------------------------------------------- 429
@pytest.mark.parametrize("fault", [Fault(status=429, retry_after=0.2), Fault(status=429, retry_after_ms=200)],
                         ids=["retry-after", "retry-after-ms"])
def test_429_with_short_retry_after_is_retried_once_on_same_provider(fault: Fault, client: openai.OpenAI,
                                                                     emu_a: Emulator, emu_b: Emulator) -> None:
    emu_a.push_fault(fault)
    t0 = time.perf_counter()
    raw = client.chat.completions.with_raw_response.create(model="test/echo", messages=HELLO)
    elapsed = time.perf_counter() - t0
    resp = raw.parse()
    assert raw.headers["x-gateway-provider"] == "emu-a"
    assert resp.choices[0].message.content == ECHO and resp.model == "test/echo"
    assert counts(emu_a, emu_b) == [2, 0]
    first, second = emu_a.requests
    assert second.time - first.time >= 0.19  # it waited as told
    assert elapsed < 2.0


@pytest.mark.parametrize("fault", [Fault(status=429, retry_after=30), Fault(status=429, retry_after_ms=30_000),
                                   Fault(status=429)], ids=["retry-after-30", "retry-after-ms-30000", "no-hint"])
def test_429_with_long_or_no_retry_after_moves_on_at_once(fault: Fault, client: openai.OpenAI, emu_a: Emulator,
                                                          emu_b: Emulator) -> None:
    emu_a.push_fault(fault)
    t0 = time.perf_counter()
    raw = client.chat.completions.with_raw_response.create(model="test/echo", messages=HELLO)
    assert time.perf_counter() - t0 < 2.0
    assert_plain_success(raw, "emu-b")
    assert counts(emu_a, emu_b) == [1, 1]


# ------------------------------------------------------------------------------------ every provider fails
def test_all_providers_failing_is_a_502_naming_each_attempt_and_free(gateway: GatewayServer, client: openai.OpenAI,
                                                                    user: dict[str, Any], emu_a: Emulator,
                                                                    emu_b: Emulator) -> None:
    before = gateway.balance_nanos(user["api_key"])
    emu_a.set_default_fault(Fault(status=503))
    emu_b.set_default_fault(Fault(status=503))

    r = chat_raw(gateway, user["api_key"])
    err = assert_openai_error(r, 502)
    assert "emu-a" in err["message"] and "emu-b" in err["message"] and "503" in err["message"]
    assert isinstance(err["attempts"], list) and len(err["attempts"]) == 2
    assert [a["provider"] for a in err["attempts"]] == ["emu-a", "emu-b"]
    assert [a["status"] for a in err["attempts"]] == [503, 503]
    assert counts(emu_a, emu_b) == [1, 1]

    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="test/echo", messages=HELLO)
    assert caught.value.status_code == 502
    with pytest.raises(openai.InternalServerError):
        list(client.chat.completions.create(model="test/echo", messages=HELLO, stream=True))
    assert counts(emu_a, emu_b) == [3, 3]

    assert gateway.balance_nanos(user["api_key"]) == before  # exactly: a failed request costs nothing
    rows = usage_rows(gateway, r.headers["x-request-id"])
    assert len(rows) == 1
    assert rows[0]["status"] == 502 and rows[0]["cost_nanos"] == 0 and rows[0]["attempts"] == 2


def test_all_providers_timing_out_is_a_504(gateway_factory: GatewayFactory, emu_a: Emulator,
                                           emu_b: Emulator) -> None:
    gw = gateway_factory([emu_a, emu_b], timeout_s=0.4)
    user = gw.create_user("10")
    before = gw.balance_nanos(user["api_key"])
    emu_a.set_default_fault(Fault(hang=True))
    emu_b.set_default_fault(Fault(hang=True))
    t0 = time.perf_counter()
    r = chat_raw(gw, user["api_key"])
    assert time.perf_counter() - t0 < 3.0
    err = assert_openai_error(r, 504)
    assert "emu-a" in err["message"] and "emu-b" in err["message"]
    assert [a["provider"] for a in err["attempts"]] == ["emu-a", "emu-b"]
    assert counts(emu_a, emu_b) == [1, 1]
    assert gw.balance_nanos(user["api_key"]) == before


def test_all_providers_rate_limited_is_a_429_with_retry_after(client: openai.OpenAI, gateway: GatewayServer,
                                                             user: dict[str, Any], emu_a: Emulator,
                                                             emu_b: Emulator) -> None:
    before = gateway.balance_nanos(user["api_key"])
    emu_a.set_default_fault(Fault(status=429, retry_after=30))
    emu_b.set_default_fault(Fault(status=429, retry_after=30))
    t0 = time.perf_counter()
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="test/echo", messages=HELLO)
    assert time.perf_counter() - t0 < 2.0
    retry_after = caught.value.response.headers.get("retry-after")
    assert retry_after is not None and float(retry_after) >= 1
    assert caught.value.body["attempts"] and caught.value.type
    assert counts(emu_a, emu_b) == [1, 1]

    emu_a.set_default_fault(Fault(status=429))
    emu_b.set_default_fault(Fault(status=429))
    r = chat_raw(gateway, user["api_key"])
    assert_openai_error(r, 429)
    assert float(r.headers["retry-after"]) >= 1
    assert gateway.balance_nanos(user["api_key"]) == before


def test_short_429_on_every_provider_retries_each_once_only(client: openai.OpenAI, emu_a: Emulator,
                                                            emu_b: Emulator) -> None:
    emu_a.set_default_fault(Fault(status=429, retry_after=0.1))
    emu_b.set_default_fault(Fault(status=429, retry_after=0.1))
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="test/echo", messages=HELLO)
    assert counts(emu_a, emu_b) == [2, 2]  # the single 429 retry each, never more


# --------------------------------------------------------------------------------- order and no repetition
def test_each_provider_tried_once_in_order(gateway_factory: GatewayFactory, emu_a: Emulator,
                                           emu_b: Emulator) -> None:
    with Emulator(name="c", api_key=EMU_KEY) as emu_c:
        gw = gateway_factory([emu_a, emu_b, emu_c])
        key = gw.create_user("10")["api_key"]
        client = sdk(gw, key)

        emu_a.push_fault(Fault(status=500))
        emu_b.push_fault(Fault(status=502))
        raw = client.chat.completions.with_raw_response.create(model="test/echo", messages=HELLO)
        assert raw.headers["x-gateway-provider"] == "emu-c"
        assert counts(emu_a, emu_b, emu_c) == [1, 1, 1]
        assert emu_a.requests[0].time <= emu_b.requests[0].time <= emu_c.requests[0].time

        for emu in (emu_a, emu_b, emu_c):
            emu.clear()
            emu.set_default_fault(Fault(status=503))
        r = chat_raw(gw, key)
        err = assert_openai_error(r, 502)
        assert [a["provider"] for a in err["attempts"]] == ["emu-a", "emu-b", "emu-c"]
        assert counts(emu_a, emu_b, emu_c) == [1, 1, 1]

        for emu in (emu_a, emu_b, emu_c):
            emu.clear()
        emu_a.set_default_fault(Fault(status=429, retry_after=0.05))
        emu_b.set_default_fault(Fault(status=503))
        emu_c.set_default_fault(None)
        raw = client.chat.completions.with_raw_response.create(model="test/echo", messages=HELLO)
        assert raw.headers["x-gateway-provider"] == "emu-c"
        assert counts(emu_a, emu_b, emu_c) == [2, 1, 1]


def test_failover_does_not_stick(client: openai.OpenAI, emu_a: Emulator, emu_b: Emulator) -> None:
    """Each request starts again from the first provider."""
    emu_a.push_fault(Fault(status=503))
    assert client.chat.completions.with_raw_response.create(
        model="test/echo", messages=HELLO).headers["x-gateway-provider"] == "emu-b"
    assert client.chat.completions.with_raw_response.create(
        model="test/echo", messages=HELLO).headers["x-gateway-provider"] == "emu-a"
    assert counts(emu_a, emu_b) == [2, 1]


# ---------------------------------------------------------------------------------------- billing, records
def test_failover_bills_the_serving_provider_usage_once(gateway: GatewayServer, client: openai.OpenAI,
                                                        user: dict[str, Any], emu_a: Emulator) -> None:
    before = gateway.balance_nanos(user["api_key"])
    emu_a.push_fault(Fault(status=503))
    resp = client.chat.completions.create(model="test/echo", messages=HELLO)
    assert resp.usage is not None
    cost = resp.usage.prompt_tokens * 1_000 + resp.usage.completion_tokens * 2_000
    assert resp.usage.model_extra["cost"] == pytest.approx(cost / 1e9)
    assert gateway.balance_nanos(user["api_key"]) == before - cost


def test_usage_record_after_failover(gateway: GatewayServer, user: dict[str, Any], emu_a: Emulator) -> None:
    emu_a.push_fault(Fault(status=503))
    r = chat_raw(gateway, user["api_key"])
    assert r.status_code == 200 and r.headers["x-gateway-provider"] == "emu-b"
    rows = usage_rows(gateway, r.headers["x-request-id"])
    assert len(rows) == 1
    row = rows[0]
    assert row["provider"] == "emu-b"
    assert row["upstream_model"] == "ok-model"
    assert row["status"] == 200
    assert row["error_code"] is None
    assert row["cost_nanos"] > 0
    assert row["attempts"] == 2, f"usage record counts {row['attempts']} attempt(s) for emu-a then emu-b"
