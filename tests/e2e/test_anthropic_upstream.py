"""The native Anthropic upstream end to end: the official openai SDK, and the official anthropic SDK (through both
translations: Anthropic -> OpenAI at /v1/messages, OpenAI -> Anthropic at the upstream, and back) -> the gateway ->
the emulator speaking Anthropic's Messages API; and count_tokens answered by the upstream itself.

Providers: anth-a and anth-b speak Anthropic (anth-b with json_mode=native), openai-c speaks OpenAI. Token
counts follow the emulator's documented accounting (tests/emulator/anthropic_messages.py)."""

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

from gatewayz.settings import ModelConfig, ModelRoute, Pricing, ProviderConfig, Settings
from tests.conftest import EMU_KEY
from tests.databases import DatabaseFactory
from tests.e2e.test_failover import usage_rows
from tests.emulator import Emulator, Fault
from tests.emulator.anthropic_format import AnthropicFormat
from tests.gateway_server import ADMIN_KEY, GatewayServer, migrate

FIXTURES = Path(__file__).parent.parent / "fixtures" / "anthropic"
HELLO = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}]
TOOLS: list[Any] = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {
        "type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}},
]
ECHO_SCHEMA = {"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"]}
A_TOOLS: list[Any] = [{"name": t["function"]["name"], "input_schema": t["function"]["parameters"]} for t in TOOLS]
A_HELLO: list[Any] = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def anth_a() -> Iterator[Emulator]:
    with Emulator(name="a", api_key=EMU_KEY, formats=[AnthropicFormat()]) as emu:
        yield emu


@pytest.fixture
def anth_b() -> Iterator[Emulator]:
    with Emulator(name="b", api_key=EMU_KEY, formats=[AnthropicFormat()]) as emu:
        yield emu


@pytest.fixture
def oai_c() -> Iterator[Emulator]:
    with Emulator(name="c", api_key=EMU_KEY) as emu:
        yield emu


@pytest.fixture
def gw(tmp_path: Path, databases: DatabaseFactory, anth_a: Emulator, anth_b: Emulator,
       oai_c: Emulator) -> Iterator[GatewayServer]:
    url = databases.url("sqlite")
    migrate(url)
    providers = [
        ProviderConfig(name="anth-a", type="anthropic", base_url=anth_a.base_url, api_key=EMU_KEY, timeout_s=5),
        ProviderConfig(name="anth-b", type="anthropic", base_url=anth_b.base_url, api_key=EMU_KEY, timeout_s=5,
                       options={"json_mode": "native"}),
        ProviderConfig(name="openai-c", type="openai", base_url=oai_c.base_url, api_key=EMU_KEY, timeout_s=5),
    ]
    price = Pricing(input=Decimal("1"), output=Decimal("2"))

    def model(model_id: str, *routes: tuple[str, str]) -> ModelConfig:
        return ModelConfig(id=model_id, pricing=price, max_output_tokens=8192,
                           providers=[ModelRoute(provider=p, model=m) for p, m in routes])

    models = [model("test/claude", ("anth-a", "claude-emu"), ("anth-b", "claude-emu")),
              model("test/mixed", ("anth-a", "claude-emu"), ("openai-c", "ok-model")),
              model("test/native-json", ("anth-b", "claude-emu")),
              model("test/gpt", ("openai-c", "ok-model"))]
    server = GatewayServer(Settings(database_url=url, admin_key=ADMIN_KEY, data_dir=tmp_path, providers=providers,
                                    models=models)).start()
    yield server
    server.stop()


@pytest.fixture
def user(gw: GatewayServer) -> dict[str, Any]:
    return gw.create_user("10")


@pytest.fixture
def oai(gw: GatewayServer, user: dict[str, Any]) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=user["api_key"], max_retries=0, timeout=20)


def cost_of(prompt: int, completion: int) -> int:
    return prompt * 1_000 + completion * 2_000  # $1 / $2 per million tokens, in nanodollars


def test_text_exact_usage_cost_and_wire(gw: GatewayServer, user: dict[str, Any], oai: openai.OpenAI,
                                        anth_a: Emulator) -> None:
    before = gw.balance_nanos(user["api_key"])
    raw = oai.chat.completions.with_raw_response.create(model="test/claude", messages=HELLO)  # type: ignore[arg-type]
    resp = raw.parse()
    assert raw.headers["x-gateway-provider"] == "anth-a" and resp.model == "test/claude"
    assert resp.choices[0].message.content == "Echo: hello there" and resp.choices[0].finish_reason == "stop"
    assert resp.id.startswith("chatcmpl-emu")
    assert resp.usage is not None and (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (13, 3)
    assert resp.usage.model_extra["cost"] == pytest.approx(cost_of(13, 3) / 1e9)
    assert gw.balance_nanos(user["api_key"]) == before - cost_of(13, 3)
    sent = anth_a.requests[-1]
    assert sent.path == "/v1/messages" and sent.headers["x-api-key"] == EMU_KEY
    assert sent.headers["anthropic-version"] == "2023-06-01" and "authorization" not in sent.headers
    assert sent.json == {"model": "claude-emu", "max_tokens": 4096, "system": [{"type": "text", "text": "Be brief."}],
                         "messages": [{"role": "user", "content": [{"type": "text", "text": "hello there"}]}]}


def test_stream_text_usage_and_cost(gw: GatewayServer, user: dict[str, Any], oai: openai.OpenAI) -> None:
    before = gw.balance_nanos(user["api_key"])
    chunks = list(oai.chat.completions.create(model="test/claude", messages=HELLO, stream=True,  # type: ignore[arg-type]
                                              stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: hello there"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage = chunks[-1].usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (13, 3)
    assert usage.model_extra["cost"] == pytest.approx(cost_of(13, 3) / 1e9)
    assert gw.balance_nanos(user["api_key"]) == before - cost_of(13, 3)


def test_several_tools_parallel_calls_and_round_trip(oai: openai.OpenAI, anth_a: Emulator) -> None:
    ask = [{"role": "user", "content": "Paris"}]
    resp = oai.chat.completions.create(model="test/claude", messages=ask, tools=TOOLS,  # type: ignore[arg-type]
                                       tool_choice="required")
    message = resp.choices[0].message
    assert resp.choices[0].finish_reason == "tool_calls" and message.content is None
    calls = message.tool_calls or []
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [  # type: ignore[union-attr]
        ("get_weather", {"city": "Paris"}), ("get_time", {"zone": "Paris"})]
    assert all(c.id.startswith("toolu_") for c in calls)
    assert anth_a.requests[-1].json["tool_choice"] == {"type": "any"}
    history: list[Any] = [*ask, message.model_dump(exclude_none=True)]
    history += [{"role": "tool", "tool_call_id": c.id, "content": "sunny"} for c in calls]
    answer = oai.chat.completions.create(model="test/claude", messages=history, tools=TOOLS)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "Echo: Paris"  # the emulator checked every tool_use got its result
    sent = anth_a.requests[-1].json["messages"]
    assert [b["type"] for b in sent[1]["content"]] == ["tool_use", "tool_use"]
    assert [b["type"] for b in sent[2]["content"]] == ["tool_result", "tool_result"]
    single = oai.chat.completions.create(model="test/claude", messages=ask, tools=TOOLS,  # type: ignore[arg-type]
                                         tool_choice="required", parallel_tool_calls=False)
    assert [c.function.name for c in single.choices[0].message.tool_calls or []] == ["get_weather"]  # type: ignore[union-attr]


def test_streamed_parallel_tool_arguments(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(model="test/claude", messages=[{"role": "user", "content": "Rome now"}],
                                         tools=TOOLS, tool_choice="required", stream=True)  # type: ignore[arg-type]
    calls: dict[int, dict[str, Any]] = {}
    fragments = 0
    finish = None
    for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for tc in choice.delta.tool_calls or []:
                call = calls.setdefault(tc.index, {"id": tc.id, "name": "", "arguments": ""})
                if tc.function and tc.function.name:
                    call["name"] = tc.function.name
                if tc.function and tc.function.arguments:
                    call["arguments"] += tc.function.arguments
                    fragments += 1
    assert finish == "tool_calls" and sorted(calls) == [0, 1] and fragments >= 4
    assert [(calls[i]["name"], json.loads(calls[i]["arguments"])) for i in (0, 1)] == [
        ("get_weather", {"city": "Rome now"}), ("get_time", {"zone": "Rome now"})]
    assert all(str(calls[i]["id"]).startswith("toolu_") for i in (0, 1))


def test_images_stop_sequences_and_max_tokens(oai: openai.OpenAI, anth_a: Emulator) -> None:
    content = [{"type": "text", "text": "describe"},
               {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
               {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]
    resp = oai.chat.completions.create(model="test/claude", messages=[{"role": "user", "content": content}])  # type: ignore[misc,list-item]
    assert resp.choices[0].message.content == "Echo: describe"
    blocks = anth_a.requests[-1].json["messages"][0]["content"]
    assert blocks[1:] == [{"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                       "data": "iVBORw0KGgo="}},
                          {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}]
    cut = oai.chat.completions.create(model="test/claude", messages=HELLO, stop=["llo"])  # type: ignore[arg-type]
    assert cut.choices[0].message.content == "Echo: he" and cut.choices[0].finish_reason == "stop"
    assert anth_a.requests[-1].json["stop_sequences"] == ["llo"]
    short = oai.chat.completions.create(model="test/claude", messages=HELLO, max_tokens=2)  # type: ignore[arg-type]
    assert short.choices[0].message.content == "Echo: hello" and short.choices[0].finish_reason == "length"


def test_json_mode_forced_tool_and_native(oai: openai.OpenAI, anth_a: Emulator, anth_b: Emulator) -> None:
    fmt: Any = {"type": "json_schema", "json_schema": {"name": "echo", "schema": ECHO_SCHEMA}}
    resp = oai.chat.completions.create(model="test/claude", messages=HELLO, response_format=fmt)  # type: ignore[arg-type]
    assert json.loads(resp.choices[0].message.content or "") == {"echo": "hello there"}
    assert resp.choices[0].finish_reason == "stop" and resp.choices[0].message.tool_calls is None
    assert anth_a.requests[-1].json["tool_choice"] == {"type": "tool", "name": "json_response"}
    stream = oai.chat.completions.create(model="test/claude", messages=HELLO, response_format=fmt, stream=True)  # type: ignore[arg-type]
    chunks = list(stream)
    assert json.loads("".join(c.choices[0].delta.content or "" for c in chunks if c.choices)) == {"echo": "hello there"}
    assert not any(c.choices[0].delta.tool_calls for c in chunks if c.choices)
    native = oai.chat.completions.create(model="test/native-json", messages=HELLO, response_format=fmt)  # type: ignore[arg-type]
    assert json.loads(native.choices[0].message.content or "") == {"echo": "hello there"}
    assert anth_b.requests[-1].json["output_config"] == {"format": {"type": "json_schema", "schema": ECHO_SCHEMA}}


def test_reasoning_effort_brings_reasoning_content(oai: openai.OpenAI, anth_a: Emulator) -> None:
    resp = oai.chat.completions.create(model="test/claude", messages=HELLO, reasoning_effort="low",  # type: ignore[arg-type]
                                       temperature=0.5)
    assert resp.choices[0].message.model_extra["reasoning_content"] == "Thinking about: hello there"
    assert resp.choices[0].message.content == "Echo: hello there"
    assert resp.usage is not None and resp.usage.completion_tokens == 4 + 3  # thinking words count as output
    sent = anth_a.requests[-1].json
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024} and sent["max_tokens"] == 4096 + 1024
    assert "temperature" not in sent  # Anthropic refuses it with thinking on; the emulator would have said so


def test_upstream_400_and_untranslatable_requests(oai: openai.OpenAI, anth_a: Emulator, anth_b: Emulator) -> None:
    anth_a.push_fault(Fault(status=400, error_message="messages: bad thing"))
    with pytest.raises(openai.BadRequestError) as bad:
        oai.chat.completions.create(model="test/claude", messages=HELLO)  # type: ignore[arg-type]
    assert bad.value.body == {"message": "messages: bad thing", "type": "invalid_request_error", "param": None,
                              "code": "invalid_request_error"}
    assert len(anth_b.requests) == 0  # a client error does not fail over
    sent = len(anth_a.requests)
    with pytest.raises(openai.BadRequestError) as n:
        oai.chat.completions.create(model="test/claude", messages=HELLO, n=2)  # type: ignore[arg-type]
    assert n.value.param == "n" and "Anthropic" in n.value.message
    broken = [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]
    with pytest.raises(openai.BadRequestError) as args:
        oai.chat.completions.create(model="test/claude", messages=broken)  # type: ignore[arg-type]
    assert args.value.param == "messages[1].tool_calls[0].function.arguments"
    assert len(anth_a.requests) == sent  # refused before any upstream call


@pytest.mark.parametrize("fault", [Fault(status=500), Fault(status=529, error_message="Overloaded"),
                                   Fault(status=429), Fault(status=401), Fault(drop_after_chunks=0)])
def test_failover_to_the_second_anthropic_provider(fault: Fault, oai: openai.OpenAI, anth_a: Emulator,
                                                   anth_b: Emulator) -> None:
    anth_a.push_fault(fault)
    raw = oai.chat.completions.with_raw_response.create(model="test/claude", messages=HELLO)  # type: ignore[arg-type]
    assert raw.headers["x-gateway-provider"] == "anth-b"
    assert raw.parse().choices[0].message.content == "Echo: hello there"
    assert (len(anth_a.requests), len(anth_b.requests)) == (1, 1)


def test_failover_across_wires(oai: openai.OpenAI, anth_a: Emulator, oai_c: Emulator) -> None:
    anth_a.push_fault(Fault(status=503))
    stream = oai.chat.completions.with_raw_response.create(model="test/mixed", messages=HELLO, stream=True)  # type: ignore[arg-type]
    assert stream.headers["x-gateway-provider"] == "openai-c"
    text = "".join(c.choices[0].delta.content or "" for c in stream.parse() if c.choices)
    assert text == "Echo: hello there" and oai_c.requests[-1].path == "/v1/chat/completions"


def _stream_raw(gw: GatewayServer, api_key: str) -> httpx.Response:
    return httpx.post(gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {api_key}"}, timeout=20,
                      json={"model": "test/claude", "messages": HELLO, "stream": True})


def test_stream_cut_midway_is_an_error_event_billed_as_estimate(gw: GatewayServer, user: dict[str, Any],
                                                                anth_a: Emulator) -> None:
    before = gw.balance_nanos(user["api_key"])
    anth_a.push_fault(Fault(drop_after_chunks=4))  # message_start, block start, ping, "Echo:" - then nothing
    r = _stream_raw(gw, user["api_key"])
    assert r.status_code == 200 and "data: [DONE]" not in r.text and "Echo:" in r.text
    last = json.loads(r.text.strip().splitlines()[-1].removeprefix("data: "))
    assert last["error"]["code"] == "upstream_stream_interrupted"
    row = usage_rows(gw, r.headers["x-request-id"])[0]
    assert row["status"] == 502 and row["error_code"] == "upstream_stream_interrupted" and row["cost_nanos"] > 0
    assert gw.balance_nanos(user["api_key"]) == before - row["cost_nanos"]


def test_error_event_from_the_docs_mid_stream(gw: GatewayServer, user: dict[str, Any], anth_a: Emulator) -> None:
    anth_a.push_fault(Fault(raw_body=(FIXTURES / "stream_error.sse").read_bytes()))
    r = _stream_raw(gw, user["api_key"])
    last = json.loads(r.text.strip().splitlines()[-1].removeprefix("data: "))
    assert "Overloaded" in last["error"]["message"] and "data: [DONE]" not in r.text


def test_malformed_event_is_skipped_logged_and_counted(gw: GatewayServer, user: dict[str, Any],
                                                       anth_a: Emulator) -> None:
    anth_a.push_fault(Fault(malformed_chunk_at=3))  # the "Echo:" text delta
    r = _stream_raw(gw, user["api_key"])
    assert r.status_code == 200 and r.text.rstrip().endswith("data: [DONE]")
    pieces = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
    assert "".join(p["choices"][0]["delta"].get("content") or "" for p in pieces if p.get("choices")) == \
        " hello there"
    metrics = httpx.get(gw.url + "/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).text
    assert any(line.startswith("stream_chunk_problems_total") and 'provider="anth-a"' in line
               and "malformed" in line and line.endswith(" 1.0") for line in metrics.splitlines())


# ------------------------------------------ the anthropic SDK: /v1/messages in, both translations, count_tokens

@pytest.fixture
def claude(gw: GatewayServer, user: dict[str, Any]) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=user["api_key"], max_retries=0, timeout=20)


def test_message_through_both_translations(gw: GatewayServer, user: dict[str, Any],
                                           claude: anthropic.Anthropic, anth_a: Emulator) -> None:
    before = gw.balance_nanos(user["api_key"])
    msg = claude.messages.create(model="test/claude", max_tokens=100, system="Be brief.", messages=A_HELLO)
    assert msg.content[0].type == "text" and msg.content[0].text == "Echo: hello there"
    assert msg.stop_reason == "end_turn" and msg.model == "test/claude" and msg.id.startswith("msg_emu")
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (13, 3)
    assert msg.usage.model_extra["cost"] == pytest.approx(cost_of(13, 3) / 1e9)  # type: ignore[index]
    assert gw.balance_nanos(user["api_key"]) == before - cost_of(13, 3)
    sent = anth_a.requests[-1].json
    assert sent["max_tokens"] == 100 and sent["system"] == [{"type": "text", "text": "Be brief."}]
    with claude.messages.stream(model="test/claude", max_tokens=100, messages=A_HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Echo: hello there" and final.usage.output_tokens == 3 and final.stop_reason == "end_turn"


def test_parallel_tools_streamed_and_round_trip(claude: anthropic.Anthropic, anth_a: Emulator) -> None:
    ask: list[Any] = [{"role": "user", "content": "Paris"}]
    with claude.messages.stream(model="test/claude", max_tokens=200, tools=A_TOOLS, tool_choice={"type": "any"},
                                messages=ask) as stream:
        final = stream.get_final_message()
    uses = [b for b in final.content if b.type == "tool_use"]
    assert [(u.name, u.input) for u in uses] == [("get_weather", {"city": "Paris"}), ("get_time", {"zone": "Paris"})]
    assert final.stop_reason == "tool_use" and all(u.id.startswith("toolu_") for u in uses)
    results: list[Any] = [{"type": "tool_result", "tool_use_id": u.id, "content": "sunny"} for u in uses]
    answer = claude.messages.create(model="test/claude", max_tokens=200, tools=A_TOOLS, messages=[
        *ask, {"role": "assistant", "content": final.content}, {"role": "user", "content": results}])  # type: ignore[typeddict-item]
    assert answer.content[0].type == "text" and answer.content[0].text == "Echo: Paris"
    sent = anth_a.requests[-1].json["messages"]
    assert [b["tool_use_id"] for b in sent[2]["content"]] == [u.id for u in uses]  # ids survive both ways
    one = claude.messages.create(model="test/claude", max_tokens=200, tools=A_TOOLS, messages=ask,
                                 tool_choice={"type": "any", "disable_parallel_tool_use": True})
    assert [b.name for b in one.content if b.type == "tool_use"] == ["get_weather"]
    assert anth_a.requests[-1].json["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


def test_image_and_stop_sequences(claude: anthropic.Anthropic, anth_a: Emulator) -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    msg = claude.messages.create(model="test/claude", max_tokens=50, messages=[
        {"role": "user", "content": [{"type": "text", "text": "describe"}, image]}])  # type: ignore[list-item]
    assert msg.content[0].text == "Echo: describe"  # type: ignore[union-attr]
    assert anth_a.requests[-1].json["messages"][0]["content"][1] == image
    cut = claude.messages.create(model="test/claude", max_tokens=50, stop_sequences=["llo"], messages=A_HELLO)
    assert cut.content[0].text == "Echo: he"  # type: ignore[union-attr]
    assert anth_a.requests[-1].json["stop_sequences"] == ["llo"]


def test_errors_in_anthropic_shape(claude: anthropic.Anthropic, anth_a: Emulator,
                                   anth_b: Emulator) -> None:
    anth_a.push_fault(Fault(status=400, error_message="messages: bad thing"))
    with pytest.raises(anthropic.BadRequestError) as bad:
        claude.messages.create(model="test/claude", max_tokens=50, messages=A_HELLO)
    assert bad.value.body == {"type": "error", "error": {"type": "invalid_request_error",  # type: ignore[comparison-overlap]
                                                         "message": "messages: bad thing"}}
    anth_a.push_fault(Fault(status=529, error_message="Overloaded"))
    served = claude.messages.with_raw_response.create(model="test/claude", max_tokens=50, messages=A_HELLO)
    assert served.headers["x-gateway-provider"] == "anth-b"
    anth_a.push_fault(Fault(drop_after_chunks=4))
    with pytest.raises(anthropic.APIStatusError), claude.messages.stream(
            model="test/claude", max_tokens=50, messages=A_HELLO) as stream:
        for _ in stream:
            pass


def test_count_tokens_asks_the_anthropic_upstream(claude: anthropic.Anthropic, anth_a: Emulator,
                                                  oai_c: Emulator) -> None:
    counted = claude.messages.count_tokens(model="test/claude", system="a b", messages=[
        {"role": "user", "content": "c d e"}])
    assert counted.input_tokens == 3 + (2 + 3) + (3 + 3)  # the emulator's own count, not the gateway's estimate
    sent = anth_a.requests[-1]
    assert sent.path == "/v1/messages/count_tokens" and sent.headers["x-api-key"]
    assert sent.json == {"model": "claude-emu", "system": "a b", "messages": [{"role": "user", "content": "c d e"}]}
    anth_a.push_fault(Fault(status=500))  # the upstream cannot count: the estimate stands in
    body: Any = {"model": "test/claude", "messages": [{"role": "user", "content": "hello " * 40}]}
    assert claude.messages.count_tokens(**body).input_tokens > 40
    before = len(oai_c.requests)
    assert claude.messages.count_tokens(**{**body, "model": "test/gpt"}).input_tokens > 40  # an OpenAI upstream
    assert claude.messages.count_tokens(**{**body, "model": "no/such-model"}).input_tokens > 40
    assert len(oai_c.requests) == before and anth_a.requests[-1].path == "/v1/messages/count_tokens"
