"""Chat completions end to end with the official openai SDK: shapes, streaming, parameters, billing."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from tests.emulator import Emulator
from tests.gateway_server import GatewayServer


def test_non_streaming_shape_cost_and_headers(gateway: GatewayServer, client: openai.OpenAI,
                                              user: dict[str, Any]) -> None:
    before = gateway.balance_nanos(user["api_key"])
    raw = client.chat.completions.with_raw_response.create(
        model="test/echo", messages=[{"role": "user", "content": "hello there"}])
    resp = raw.parse()
    assert resp.choices[0].message.content == "Echo: hello there"
    assert resp.model == "test/echo"
    assert resp.usage is not None and resp.usage.prompt_tokens > 0 and resp.usage.completion_tokens > 0
    # cost = prompt x $1/M + completion x $2/M, reported like OpenRouter and charged exactly
    expected_nanos = resp.usage.prompt_tokens * 1_000 + resp.usage.completion_tokens * 2_000
    assert resp.usage.model_extra["cost"] == pytest.approx(expected_nanos / 1e9)
    assert raw.headers["x-gateway-provider"] == "emu-a"
    assert float(raw.headers["x-gateway-overhead-ms"]) >= 0
    assert raw.headers["x-request-id"]
    assert gateway.balance_nanos(user["api_key"]) == before - expected_nanos


def test_alias_resolves_to_canonical_id(client: openai.OpenAI, emu_a: Emulator) -> None:
    resp = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
    assert resp.model == "test/echo"
    assert emu_a.requests[-1].json["model"] == "ok-model"


def test_streaming_with_usage_chunk(gateway: GatewayServer, client: openai.OpenAI, user: dict[str, Any]) -> None:
    before = gateway.balance_nanos(user["api_key"])
    stream = client.chat.completions.create(model="test/echo", stream=True, stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": "one two three"}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: one two three"
    assert all(c.model == "test/echo" for c in chunks)
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    cost = last.usage.prompt_tokens * 1_000 + last.usage.completion_tokens * 2_000
    assert last.usage.model_extra["cost"] == pytest.approx(cost / 1e9)
    assert gateway.balance_nanos(user["api_key"]) == before - cost


def test_streaming_without_include_usage_still_bills(gateway: GatewayServer, client: openai.OpenAI,
                                                     user: dict[str, Any], emu_a: Emulator) -> None:
    before = gateway.balance_nanos(user["api_key"])
    chunks = list(client.chat.completions.create(model="test/echo", stream=True,
                                                 messages=[{"role": "user", "content": "a b"}]))
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)  # no usage-only chunk the client did not ask for
    # The gateway asked the upstream for usage anyway, and charged it.
    assert emu_a.requests[-1].json["stream_options"] == {"include_usage": True}
    assert gateway.balance_nanos(user["api_key"]) < before


def test_sse_wire_format(gateway: GatewayServer, user: dict[str, Any]) -> None:
    with httpx.stream("POST", gateway.url + "/v1/chat/completions",
                      headers={"Authorization": f"Bearer {user['api_key']}"},
                      json={"model": "test/echo", "stream": True,
                            "messages": [{"role": "user", "content": "x y"}]}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        body = r.read().decode()
    events = [e for e in body.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    for e in events[:-1]:
        json.loads(e[6:])


def test_parameters_pass_through(client: openai.OpenAI, emu_a: Emulator) -> None:
    params = {"type": "object", "properties": {"city": {"type": "string"}}}
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "weather", "parameters": params}}]
    resp = client.chat.completions.create(
        model="test/echo", messages=[{"role": "user", "content": "weather in Paris?"}], tools=tools,
        tool_choice="auto", temperature=0.3, top_p=0.9, seed=7, stop=["zzz"], max_tokens=50, user="u-1",
        presence_penalty=0.1, frequency_penalty=0.2, logit_bias={"50256": -100}, parallel_tool_calls=True)
    call = resp.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert "city" in json.loads(call.function.arguments)
    assert resp.choices[0].finish_reason == "tool_calls"
    sent = emu_a.requests[-1].json
    for key, value in {"temperature": 0.3, "top_p": 0.9, "seed": 7, "stop": ["zzz"], "max_tokens": 50,
                       "user": "u-1", "tool_choice": "auto", "parallel_tool_calls": True,
                       "logit_bias": {"50256": -100}}.items():
        assert sent[key] == value
    assert sent["tools"] == tools


def test_json_mode_logprobs_and_n(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(model="test/echo", messages=[{"role": "user", "content": "hi"}],
                                          response_format={"type": "json_object"}, logprobs=True, top_logprobs=2, n=2)
    assert len(resp.choices) == 2
    json.loads(resp.choices[0].message.content or "")
    assert resp.choices[0].logprobs is not None and resp.choices[0].logprobs.content


def test_streamed_tool_call_arguments(client: openai.OpenAI) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"q": {"type": "string"}, "k": {"type": "string"}}}}}]
    args, name = "", None
    for chunk in client.chat.completions.create(model="test/echo", stream=True, tools=tools,
                                                messages=[{"role": "user", "content": "find it"}]):
        for ch in chunk.choices:
            for tc in ch.delta.tool_calls or []:
                name = name or tc.function.name
                args += tc.function.arguments or ""
    assert name == "lookup"
    assert set(json.loads(args)) == {"q", "k"}


def test_plain_route_without_v1(gateway: GatewayServer, user: dict[str, Any]) -> None:
    r = httpx.post(gateway.url + "/chat/completions", headers={"Authorization": f"Bearer {user['api_key']}"},
                   json={"model": "test/echo", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "Echo: hi"


def test_x_api_key_header_is_accepted(gateway: GatewayServer, user: dict[str, Any]) -> None:
    r = httpx.post(gateway.url + "/v1/chat/completions", headers={"x-api-key": user["api_key"]},
                   json={"model": "test/echo", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200


def test_client_request_id_is_echoed(gateway: GatewayServer, user: dict[str, Any]) -> None:
    r = httpx.post(gateway.url + "/v1/chat/completions",
                   headers={"Authorization": f"Bearer {user['api_key']}", "X-Request-ID": "my-id-123"},
                   json={"model": "test/echo", "messages": [{"role": "user", "content": "hi"}]})
    assert r.headers["x-request-id"] == "my-id-123"
    assert httpx.get(gateway.url + "/health/quick").headers["x-request-id"].startswith("req_")
