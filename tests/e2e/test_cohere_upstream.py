"""The native Cohere v2 Chat upstream end to end: the official openai SDK, and the official anthropic SDK (through
both translations: Anthropic -> OpenAI at /v1/messages, OpenAI -> Cohere at the upstream, and back) -> the gateway
-> the emulator speaking Cohere's v2 Chat API.

Providers: co-a and co-b speak Cohere, openai-c speaks OpenAI. Token counts follow the emulator's documented
accounting (tests/emulator/cohere_chat.py): the billed units are what the gateway bills, never `tokens`, which
adds the emulator's TEMPLATE_TOKENS to the input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from gatewayz.settings import ModelConfig, ModelRoute, Pricing, ProviderConfig
from tests.conftest import EMU_KEY, GatewayFactory
from tests.e2e.test_anthropic_upstream import A_HELLO, A_TOOLS, ECHO_SCHEMA, HELLO, TOOLS
from tests.e2e.test_failover import usage_rows
from tests.emulator import Emulator, Fault
from tests.emulator.cohere_format import CohereFormat
from tests.gateway_server import ADMIN_KEY, GatewayServer

FIXTURES = Path(__file__).parent.parent / "fixtures" / "cohere"
PLAN = "I will use get_weather, get_time."
PRICE = Pricing(input=Decimal("1"), output=Decimal("2"))


@pytest.fixture
def upstreams() -> Iterator[tuple[Emulator, Emulator, Emulator]]:
    """Emulators a and b speak Cohere's v2 Chat, c speaks OpenAI."""
    with (Emulator(name="a", api_key=EMU_KEY, formats=[CohereFormat()]) as a,
          Emulator(name="b", api_key=EMU_KEY, formats=[CohereFormat()]) as b,
          Emulator(name="c", api_key=EMU_KEY) as c):
        yield a, b, c


@pytest.fixture
def co_a(upstreams: tuple[Emulator, ...]) -> Emulator:
    return upstreams[0]


@pytest.fixture
def co_b(upstreams: tuple[Emulator, ...]) -> Emulator:
    return upstreams[1]


@pytest.fixture
def oai_c(upstreams: tuple[Emulator, ...]) -> Emulator:
    return upstreams[2]


@pytest.fixture
def gateway(gateway_factory: GatewayFactory, co_a: Emulator, co_b: Emulator, oai_c: Emulator) -> GatewayServer:
    """Overrides conftest's gateway (whose `user` and `client` fixtures then use this one)."""
    cohere = [ProviderConfig(name=f"co-{e.name}", type="cohere", base_url=e.url + "/v2", api_key=EMU_KEY,
                             timeout_s=5) for e in (co_a, co_b)]
    openai_c = ProviderConfig(name="openai-c", type="openai", base_url=oai_c.base_url, api_key=EMU_KEY, timeout_s=5)
    models = [ModelConfig(id=model_id, pricing=PRICE, max_output_tokens=8192, providers=[
        ModelRoute(provider=p, model="ok-model" if p == "openai-c" else "command-emu") for p in providers])
        for model_id, providers in (("test/command", ("co-a", "co-b")), ("test/mixed", ("co-a", "openai-c")))]
    return gateway_factory([], extra_providers=[*cohere, openai_c], models=models)


def nanos(prompt: int, completion: int) -> int:
    """What the gateway charges at PRICE ($1 / $2 per million tokens)."""
    return (prompt * int(PRICE.input) + completion * int(PRICE.output)) * 1_000


def test_text_exact_usage_cost_and_wire(gateway: GatewayServer, user: dict[str, Any], client: openai.OpenAI,
                                        co_a: Emulator) -> None:
    before = gateway.balance_nanos(user["api_key"])
    raw = client.chat.completions.with_raw_response.create(model="test/command", messages=HELLO)  # type: ignore[arg-type]
    resp = raw.parse()
    assert raw.headers["x-gateway-provider"] == "co-a" and resp.model == "test/command"
    assert resp.choices[0].message.content == "Echo: hello there" and resp.choices[0].finish_reason == "stop"
    assert resp.id.startswith("chatcmpl-")
    # 3 + (2 + 3) system + (2 + 3) user billed; Cohere's `tokens` said 213 (its prompt template): not billed
    assert resp.usage is not None and (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (13, 3)
    assert resp.usage.model_extra["cost"] == pytest.approx(nanos(13, 3) / 1e9)
    assert gateway.balance_nanos(user["api_key"]) == before - nanos(13, 3)
    sent = co_a.requests[-1]
    assert sent.path == "/v2/chat" and sent.headers["authorization"] == f"Bearer {EMU_KEY}"
    assert sent.json == {"model": "command-emu", "messages": HELLO}


def test_stream_text_usage_and_cost(gateway: GatewayServer, user: dict[str, Any], client: openai.OpenAI,
                                    co_a: Emulator) -> None:
    before = gateway.balance_nanos(user["api_key"])
    chunks = list(client.chat.completions.create(model="test/command", messages=HELLO, stream=True,  # type: ignore[arg-type]
                                              stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: hello there"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage = chunks[-1].usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (13, 3)
    assert usage.model_extra["cost"] == pytest.approx(nanos(13, 3) / 1e9)
    assert gateway.balance_nanos(user["api_key"]) == before - nanos(13, 3)
    assert co_a.requests[-1].json["stream"] is True and "stream_options" not in co_a.requests[-1].json


def test_several_tools_parallel_calls_and_round_trip(client: openai.OpenAI, co_a: Emulator) -> None:
    ask = [{"role": "user", "content": "Paris"}]
    resp = client.chat.completions.create(model="test/command", messages=ask, tools=TOOLS,  # type: ignore[arg-type]
                                       tool_choice="required")
    message = resp.choices[0].message
    assert resp.choices[0].finish_reason == "tool_calls" and message.content == PLAN  # the tool plan, as text
    calls = message.tool_calls or []
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [  # type: ignore[union-attr]
        ("get_weather", {"city": "Paris"}), ("get_time", {"zone": "Paris"})]
    assert [c.id.split("_")[:2] for c in calls] == [["get", "weather"], ["get", "time"]]  # Cohere's ids, kept
    assert co_a.requests[-1].json["tool_choice"] == "REQUIRED" and co_a.requests[-1].json["tools"] == TOOLS
    assert resp.usage is not None and (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (7, 5 + 2 + 2)
    history: list[Any] = [*ask, message.model_dump(exclude_none=True)]
    history += [{"role": "tool", "tool_call_id": c.id, "content": "sunny"} for c in calls]
    answer = client.chat.completions.create(model="test/command", messages=history, tools=TOOLS)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "Echo: Paris"  # the emulator checked every call got its result
    sent = co_a.requests[-1].json["messages"]
    assert sent[1] == {"role": "assistant", "tool_plan": PLAN, "tool_calls": [c.model_dump() for c in calls]}
    assert [(m["role"], m["tool_call_id"], m["content"]) for m in sent[2:]] == [
        ("tool", c.id, "sunny") for c in calls]
    named = client.chat.completions.create(model="test/command", messages=ask, tools=TOOLS,  # type: ignore[arg-type]
                                        tool_choice={"type": "function", "function": {"name": "get_time"}})
    assert [c.function.name for c in named.choices[0].message.tool_calls or []] == ["get_time"]  # type: ignore[union-attr]
    assert [t["function"]["name"] for t in co_a.requests[-1].json["tools"]] == ["get_time"]
    none = client.chat.completions.create(model="test/command", messages=ask, tools=TOOLS,  # type: ignore[arg-type]
                                       tool_choice="none")
    assert none.choices[0].message.content == "Echo: Paris" and co_a.requests[-1].json["tool_choice"] == "NONE"


def test_streamed_parallel_tool_arguments(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="test/command", messages=[{"role": "user", "content": "Rome now"}],
                                            tools=TOOLS, tool_choice="required", stream=True)  # type: ignore[arg-type]
    text, finish = "", None
    heads: dict[int, Any] = {}
    pieces: dict[int, list[str]] = {}
    for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            text += choice.delta.content or ""
            for tc in choice.delta.tool_calls or []:
                heads.setdefault(tc.index, tc)  # the first delta of a call carries its id and name
                pieces.setdefault(tc.index, []).append(tc.function.arguments or "" if tc.function else "")
    assert finish == "tool_calls" and sorted(heads) == [0, 1] and text == PLAN
    assert sum(1 for parts in pieces.values() for p in parts if p) >= 6  # the arguments came in fragments
    calls = {i: {"id": h.id, "name": h.function.name, "arguments": "".join(pieces[i])} for i, h in heads.items()}
    assert [(calls[i]["name"], json.loads(calls[i]["arguments"])) for i in (0, 1)] == [
        ("get_weather", {"city": "Rome now"}), ("get_time", {"zone": "Rome now"})]
    assert str(calls[0]["id"]).startswith("get_weather_") and str(calls[1]["id"]).startswith("get_time_")


def test_images_stop_sequences_and_max_tokens(client: openai.OpenAI, co_a: Emulator) -> None:
    content = [{"type": "text", "text": "describe"},
               {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
               {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}}]
    resp = client.chat.completions.create(model="test/command", messages=[{"role": "user", "content": content}])  # type: ignore[misc,list-item]
    assert resp.choices[0].message.content == "Echo: describe"
    assert co_a.requests[-1].json["messages"][0]["content"] == content
    cut = client.chat.completions.create(model="test/command", messages=HELLO, stop=["llo"])  # type: ignore[arg-type]
    assert cut.choices[0].message.content == "Echo: he" and cut.choices[0].finish_reason == "stop"
    assert co_a.requests[-1].json["stop_sequences"] == ["llo"]
    short = client.chat.completions.create(model="test/command", messages=HELLO, max_tokens=2,  # type: ignore[arg-type]
                                        temperature=0.2, top_p=0.5, seed=1)
    assert short.choices[0].message.content == "Echo: hello" and short.choices[0].finish_reason == "length"
    sent = co_a.requests[-1].json
    assert (sent["max_tokens"], sent["temperature"], sent["p"], sent["seed"]) == (2, 0.2, 0.5, 1)


def test_json_mode(client: openai.OpenAI, co_a: Emulator) -> None:
    fmt: Any = {"type": "json_schema", "json_schema": {"name": "echo", "schema": ECHO_SCHEMA}}
    resp = client.chat.completions.create(model="test/command", messages=HELLO, response_format=fmt)  # type: ignore[arg-type]
    assert json.loads(resp.choices[0].message.content or "") == {"echo": "hello there"}
    assert co_a.requests[-1].json["response_format"] == {"type": "json_object", "json_schema": ECHO_SCHEMA}
    stream = client.chat.completions.create(model="test/command", messages=HELLO, stream=True,  # type: ignore[arg-type]
                                         response_format={"type": "json_object"})
    assert json.loads("".join(c.choices[0].delta.content or "" for c in stream if c.choices)) == {"echo": "hello there"}
    assert co_a.requests[-1].json["response_format"] == {"type": "json_object"}


def test_reasoning_effort_brings_reasoning_content(client: openai.OpenAI, co_a: Emulator) -> None:
    resp = client.chat.completions.create(model="test/command", messages=HELLO, reasoning_effort="low")  # type: ignore[arg-type]
    assert resp.choices[0].message.model_extra["reasoning_content"] == "Thinking about: hello there"
    assert resp.choices[0].message.content == "Echo: hello there"
    assert resp.usage is not None and resp.usage.completion_tokens == 4 + 3  # thinking words are output
    assert co_a.requests[-1].json["thinking"] == {"type": "enabled", "token_budget": 1024}
    stream = client.chat.completions.create(model="test/command", messages=HELLO, reasoning_effort="low", stream=True)  # type: ignore[arg-type]
    deltas = [c.choices[0].delta for c in stream if c.choices]
    assert "".join(d.model_extra.get("reasoning_content") or "" for d in deltas) == "Thinking about: hello there"
    assert "".join(d.content or "" for d in deltas) == "Echo: hello there"


def test_upstream_400_and_untranslatable_requests(client: openai.OpenAI, co_a: Emulator, co_b: Emulator) -> None:
    co_a.push_fault(Fault(status=400, error_message="invalid request: bad thing"))
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="test/command", messages=HELLO)  # type: ignore[arg-type]
    assert bad.value.body == {"message": "invalid request: bad thing", "type": "invalid_request_error", "param": None,
                              "code": "upstream_400"}
    with pytest.raises(openai.BadRequestError) as refused:  # Cohere's own validation: at most 5 stop sequences
        client.chat.completions.create(model="test/command", messages=HELLO, stop=list("abcdef"))  # type: ignore[arg-type]
    assert "at most 5" in refused.value.message
    assert len(co_b.requests) == 0  # a client error does not fail over
    sent = len(co_a.requests)
    with pytest.raises(openai.BadRequestError) as n:
        client.chat.completions.create(model="test/command", messages=HELLO, n=2)  # type: ignore[arg-type]
    assert n.value.param == "n" and "Cohere" in n.value.message
    audio = [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}}]}]
    with pytest.raises(openai.BadRequestError) as unsupported:
        client.chat.completions.create(model="test/command", messages=audio)  # type: ignore[arg-type]
    assert unsupported.value.param == "messages[0].content[0].type"
    assert len(co_a.requests) == sent  # refused before any upstream call


@pytest.mark.parametrize("fault", [
    Fault(status=500), Fault(status=503), Fault(status=429), Fault(status=401), Fault(drop_after_chunks=0),
    Fault(body={"id": "x", "finish_reason": "ERROR", "message": {"role": "assistant", "content": []}}),
    Fault(raw_body=b"not json"),
])
def test_failover_to_the_second_cohere_provider(fault: Fault, client: openai.OpenAI, co_a: Emulator,
                                                co_b: Emulator) -> None:
    co_a.push_fault(fault)
    raw = client.chat.completions.with_raw_response.create(model="test/command", messages=HELLO)  # type: ignore[arg-type]
    assert raw.headers["x-gateway-provider"] == "co-b"
    assert raw.parse().choices[0].message.content == "Echo: hello there"
    assert (len(co_a.requests), len(co_b.requests)) == (1, 1)


def test_failover_across_wires(client: openai.OpenAI, co_a: Emulator, oai_c: Emulator) -> None:
    co_a.push_fault(Fault(status=503))
    stream = client.chat.completions.with_raw_response.create(model="test/mixed", messages=HELLO, stream=True)  # type: ignore[arg-type]
    assert stream.headers["x-gateway-provider"] == "openai-c"
    text = "".join(c.choices[0].delta.content or "" for c in stream.parse() if c.choices)
    assert text == "Echo: hello there" and oai_c.requests[-1].path == "/v1/chat/completions"


def _stream_raw(gateway: GatewayServer, api_key: str) -> httpx.Response:
    body = {"model": "test/command", "messages": HELLO, "stream": True}
    return httpx.post(f"{gateway.url}/v1/chat/completions", json=body, timeout=20,
                      headers={"Authorization": f"Bearer {api_key}"})


def _last_event(r: httpx.Response) -> Any:
    return json.loads(r.text.strip().splitlines()[-1].removeprefix("data: "))


def test_stream_cut_midway_is_an_error_event_billed_as_estimate(gateway: GatewayServer, user: dict[str, Any],
                                                                co_a: Emulator) -> None:
    before = gateway.balance_nanos(user["api_key"])
    co_a.push_fault(Fault(drop_after_chunks=3))  # message-start, content-start, "Echo:" - then nothing
    r = _stream_raw(gateway, user["api_key"])
    assert r.status_code == 200 and "data: [DONE]" not in r.text and "Echo:" in r.text
    assert _last_event(r)["error"]["code"] == "upstream_stream_interrupted"
    row = usage_rows(gateway, r.headers["x-request-id"])[0]
    assert row["status"] == 502 and row["error_code"] == "upstream_stream_interrupted" and row["cost_nanos"] > 0
    assert gateway.balance_nanos(user["api_key"]) == before - row["cost_nanos"]


def test_generation_error_mid_stream(gateway: GatewayServer, user: dict[str, Any], co_a: Emulator) -> None:
    co_a.push_fault(Fault(raw_body=(FIXTURES / "stream_error.sse").read_bytes()))
    r = _stream_raw(gateway, user["api_key"])
    assert "the model could not finish" in _last_event(r)["error"]["message"] and "data: [DONE]" not in r.text
    assert '"content":" large"' in r.text  # what came before the failure was delivered
    assert usage_rows(gateway, r.headers["x-request-id"])[0]["status"] == 502


def test_malformed_event_is_skipped_logged_and_counted(gateway: GatewayServer, user: dict[str, Any],
                                                       co_a: Emulator) -> None:
    co_a.push_fault(Fault(malformed_chunk_at=2))  # the "Echo:" content-delta
    r = _stream_raw(gateway, user["api_key"])
    assert r.status_code == 200 and r.text.rstrip().endswith("data: [DONE]")
    pieces = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
    assert "".join(p["choices"][0]["delta"].get("content") or "" for p in pieces if p.get("choices")) == \
        " hello there"
    metrics = httpx.get(gateway.url + "/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).text
    assert any(line.startswith("stream_chunk_problems_total") and 'provider="co-a"' in line
               and "malformed" in line and line.endswith(" 1.0") for line in metrics.splitlines())


# ------------------------------------------------ the anthropic SDK: /v1/messages in, both translations

@pytest.fixture
def claude(gateway: GatewayServer, user: dict[str, Any]) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=user["api_key"], max_retries=0, timeout=20)


def test_message_through_both_translations(gateway: GatewayServer, user: dict[str, Any],
                                           claude: anthropic.Anthropic, co_a: Emulator) -> None:
    before = gateway.balance_nanos(user["api_key"])
    msg = claude.messages.create(model="test/command", max_tokens=100, system="Be brief.", messages=A_HELLO)
    assert msg.content[0].type == "text" and msg.content[0].text == "Echo: hello there"
    assert msg.stop_reason == "end_turn" and msg.model == "test/command"
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (13, 3)
    assert msg.usage.model_extra["cost"] == pytest.approx(nanos(13, 3) / 1e9)  # type: ignore[index]
    assert gateway.balance_nanos(user["api_key"]) == before - nanos(13, 3)
    sent = co_a.requests[-1].json
    assert sent == {"model": "command-emu", "messages": HELLO, "max_tokens": 100}
    with claude.messages.stream(model="test/command", max_tokens=100, messages=A_HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Echo: hello there" and final.usage.output_tokens == 3 and final.stop_reason == "end_turn"
    cut = claude.messages.create(model="test/command", max_tokens=2, messages=A_HELLO)
    assert cut.stop_reason == "max_tokens"


def test_parallel_tools_streamed_and_round_trip(claude: anthropic.Anthropic, co_a: Emulator) -> None:
    ask: list[Any] = [{"role": "user", "content": "Paris"}]
    with claude.messages.stream(model="test/command", max_tokens=200, tools=A_TOOLS, tool_choice={"type": "any"},
                                messages=ask) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "text" and final.content[0].text == PLAN
    uses = [b for b in final.content if b.type == "tool_use"]
    assert [(u.name, u.input) for u in uses] == [("get_weather", {"city": "Paris"}), ("get_time", {"zone": "Paris"})]
    assert final.stop_reason == "tool_use" and co_a.requests[-1].json["tool_choice"] == "REQUIRED"
    results: list[Any] = [{"type": "tool_result", "tool_use_id": u.id, "content": "sunny"} for u in uses]
    answer = claude.messages.create(model="test/command", max_tokens=200, tools=A_TOOLS, messages=[
        *ask, {"role": "assistant", "content": final.content}, {"role": "user", "content": results}])  # type: ignore[typeddict-item]
    assert answer.content[0].type == "text" and answer.content[0].text == "Echo: Paris"
    sent = co_a.requests[-1].json["messages"]
    assert sent[1]["tool_plan"] == PLAN and [c["id"] for c in sent[1]["tool_calls"]] == [u.id for u in uses]
    assert [m["tool_call_id"] for m in sent[2:]] == [u.id for u in uses]  # ids survive both ways


def test_image_and_stop_sequences(claude: anthropic.Anthropic, co_a: Emulator) -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    msg = claude.messages.create(model="test/command", max_tokens=50, messages=[
        {"role": "user", "content": [{"type": "text", "text": "describe"}, image]}])  # type: ignore[list-item]
    assert msg.content[0].text == "Echo: describe"  # type: ignore[union-attr]
    assert co_a.requests[-1].json["messages"][0]["content"][1] == {
        "type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    cut = claude.messages.create(model="test/command", max_tokens=50, stop_sequences=["llo"], messages=A_HELLO)
    assert cut.content[0].text == "Echo: he"  # type: ignore[union-attr]
    assert co_a.requests[-1].json["stop_sequences"] == ["llo"]


def test_errors_in_anthropic_shape(claude: anthropic.Anthropic, co_a: Emulator, co_b: Emulator) -> None:
    co_a.push_fault(Fault(status=400, error_message="invalid request: bad thing"))
    with pytest.raises(anthropic.BadRequestError) as bad:
        claude.messages.create(model="test/command", max_tokens=50, messages=A_HELLO)
    assert bad.value.body == {"type": "error", "error": {"type": "invalid_request_error",  # type: ignore[comparison-overlap]
                                                         "message": "invalid request: bad thing"}}
    co_a.push_fault(Fault(status=503))
    served = claude.messages.with_raw_response.create(model="test/command", max_tokens=50, messages=A_HELLO)
    assert served.headers["x-gateway-provider"] == "co-b"
    co_a.push_fault(Fault(drop_after_chunks=3))
    with pytest.raises(anthropic.APIStatusError), claude.messages.stream(
            model="test/command", max_tokens=50, messages=A_HELLO) as stream:
        for _ in stream:
            pass


def test_malformed_event_through_the_anthropic_stream(claude: anthropic.Anthropic, co_a: Emulator) -> None:
    co_a.push_fault(Fault(malformed_chunk_at=2))  # the "Echo:" content-delta: skipped, the rest arrives
    with claude.messages.stream(model="test/command", max_tokens=50, messages=A_HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == " hello there" and final.stop_reason == "end_turn" and final.usage.output_tokens == 3
