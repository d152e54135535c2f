"""A Bedrock upstream end to end: the official openai and anthropic SDKs -> the gateway -> the Bedrock emulator
(Converse / ConverseStream, SigV4 verified by botocore, binary event streams), failing over to an
OpenAI-format emulator."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
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
from tests.emulator import Emulator, Fault
from tests.emulator.bedrock_format import BedrockFormat
from tests.gateway_server import ADMIN_KEY, GatewayServer, migrate

AKID, SECRET, REGION = "AKIAEMULATOR0000", "emulator/Secret+Key0123456789", "us-west-2"
CLAUDE = "anthropic.claude-3-5-sonnet-20240620-v1:0"
ARN = f"arn:aws:bedrock:{REGION}:123456789012:inference-profile/us.{CLAUDE}"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16).decode()
TOOLS = [{"type": "function", "function": {"name": name, "description": f"{name} of a city", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    for name in ("get_weather", "get_time")]


def words(text: str) -> int:
    return len(text.split())


@pytest.fixture
def bedrock_fmt() -> BedrockFormat:
    return BedrockFormat(access_key_id=AKID, region=REGION)


@pytest.fixture
def bedrock_emu(bedrock_fmt: BedrockFormat) -> Iterator[Emulator]:
    with Emulator(name="br", api_key=SECRET, formats=[bedrock_fmt]) as emu:
        yield emu


@pytest.fixture
def openai_emu() -> Iterator[Emulator]:
    with Emulator(name="oa", api_key=EMU_KEY) as emu:
        yield emu


def _route(provider: str, model: str) -> ModelRoute:
    return ModelRoute(provider=provider, model=model)


@pytest.fixture
def gw(tmp_path: Path, databases: DatabaseFactory, bedrock_emu: Emulator,
       openai_emu: Emulator) -> Iterator[GatewayServer]:
    signed = {"region": REGION, "access_key_id": AKID, "secret_access_key": SECRET, "session_token": "sess-token"}
    providers = [
        ProviderConfig(name="bedrock", type="bedrock", base_url=bedrock_emu.url, options=signed, timeout_s=10),
        ProviderConfig(name="bedrock-key", type="bedrock", base_url=bedrock_emu.url, api_key=SECRET, timeout_s=10),
        ProviderConfig(name="bedrock-wrong", type="bedrock", base_url=bedrock_emu.url, timeout_s=10,
                       options={**signed, "secret_access_key": "not-the-secret"}),
        ProviderConfig(name="oa", type="openai", base_url=openai_emu.base_url, api_key=EMU_KEY, timeout_s=10),
    ]
    price = Pricing(input=Decimal("1"), output=Decimal("2"))

    def model(ident: str, *routes: ModelRoute) -> ModelConfig:
        return ModelConfig(id=ident, pricing=price, context_length=8192, max_output_tokens=1024, providers=list(routes))

    models = [model("test/claude", _route("bedrock", CLAUDE), _route("oa", "ok-model")),
              model("test/arn", _route("bedrock", ARN)),
              model("test/keyed", _route("bedrock-key", "amazon.nova-pro-v1:0")),
              model("test/wrong", _route("bedrock-wrong", CLAUDE), _route("oa", "ok-model"))]
    url = databases.url("sqlite")
    migrate(url)
    server = GatewayServer(Settings(database_url=url, admin_key=ADMIN_KEY, data_dir=tmp_path, providers=providers,
                                    models=models)).start()
    yield server
    server.stop()


@pytest.fixture
def user(gw: GatewayServer) -> dict[str, Any]:
    return gw.create_user("10")


@pytest.fixture
def client(gw: GatewayServer, user: dict[str, Any]) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=user["api_key"], max_retries=0, timeout=30)


@pytest.fixture
def claude(gw: GatewayServer, user: dict[str, Any]) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=user["api_key"], max_retries=0, timeout=30)


def cost_nanos(prompt: int, completion: int) -> int:
    return prompt * 1_000 + completion * 2_000


# ---------------------------------------------------------------------------------------------- openai SDK

def test_text_is_signed_translated_and_billed_exactly(gw: GatewayServer, client: openai.OpenAI,
                                                      user: dict[str, Any], bedrock_emu: Emulator) -> None:
    before = gw.balance_nanos(user["api_key"])
    raw = client.chat.completions.with_raw_response.create(
        model="test/claude", max_tokens=50, temperature=0.2,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}])
    resp = raw.parse()
    assert raw.headers["x-gateway-provider"] == "bedrock"
    assert resp.choices[0].message.content == "Echo: hello there" and resp.choices[0].finish_reason == "stop"
    sent = bedrock_emu.requests[-1]
    assert sent.path == f"/model/{CLAUDE}/converse"
    assert sent.json == {"messages": [{"role": "user", "content": [{"text": "hello there"}]}],
                         "system": [{"text": "Be brief."}], "inferenceConfig": {"maxTokens": 50, "temperature": 0.2}}
    assert sent.headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={AKID}/")
    assert f"/{REGION}/bedrock/aws4_request" in sent.headers["authorization"]
    assert sent.headers["x-amz-security-token"] == "sess-token"
    assert sent.headers["x-amz-content-sha256"] == hashlib.sha256(sent.raw_body).hexdigest()
    prompt = 3 + (words("Be brief.") + 3) + (words("hello there") + 3)  # the emulator's Converse accounting
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (prompt, words("Echo: hello there"))
    assert resp.usage.model_extra is not None and resp.usage.model_extra["cost"] == pytest.approx(
        cost_nanos(prompt, 3) / 1e9)
    assert gw.balance_nanos(user["api_key"]) == before - cost_nanos(prompt, 3)


def test_arn_model_id_and_bedrock_api_key(client: openai.OpenAI, bedrock_emu: Emulator) -> None:
    """An inference-profile ARN ('/' sent as %2F, ':' as is) verifies; a Bedrock API key goes as Bearer."""
    resp = client.chat.completions.create(model="test/arn", messages=[{"role": "user", "content": "x"}])
    assert resp.choices[0].message.content == "Echo: x"
    assert bedrock_emu.requests[-1].path == f"/model/{ARN}/converse"  # aiohttp decodes the path it logs
    resp = client.chat.completions.create(model="test/keyed", messages=[{"role": "user", "content": "y"}])
    assert resp.choices[0].message.content == "Echo: y"
    assert bedrock_emu.requests[-1].headers["authorization"] == f"Bearer {SECRET}"


def test_wrong_secret_is_refused_and_fails_over(client: openai.OpenAI, bedrock_emu: Emulator,
                                                openai_emu: Emulator) -> None:
    raw = client.chat.completions.with_raw_response.create(model="test/wrong",
                                                           messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-gateway-provider"] == "oa" and raw.parse().choices[0].message.content == "Echo: hi"
    assert len(bedrock_emu.requests) == 1 and len(openai_emu.requests) == 1


def test_streaming_text_with_usage(gw: GatewayServer, client: openai.OpenAI, user: dict[str, Any]) -> None:
    before = gw.balance_nanos(user["api_key"])
    chunks = list(client.chat.completions.create(model="test/claude", stream=True,
                                                 stream_options={"include_usage": True},
                                                 messages=[{"role": "user", "content": "one two three"}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: one two three"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (3 + 3 + 3, 4)
    assert gw.balance_nanos(user["api_key"]) == before - cost_nanos(9, 4)


def test_parallel_tool_calls_round_trip(client: openai.OpenAI, bedrock_emu: Emulator) -> None:
    resp = client.chat.completions.create(model="test/claude", tools=TOOLS,  # type: ignore[arg-type]
                                          messages=[{"role": "user", "content": "Paris"}])
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls is not None
    calls = choice.message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]  # type: ignore[union-attr]
    assert all(json.loads(c.function.arguments) == {"city": "Paris"} for c in calls)  # type: ignore[union-attr]
    assert resp.usage is not None and resp.usage.completion_tokens == 4
    history: list[Any] = [{"role": "user", "content": "Paris"}, choice.message.model_dump(exclude_none=True)]
    history += [{"role": "tool", "tool_call_id": c.id, "content": f"result {i}"} for i, c in enumerate(calls)]
    answer = client.chat.completions.create(model="test/claude", tools=TOOLS, messages=history)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "Echo: Paris" and answer.choices[0].finish_reason == "stop"
    sent = bedrock_emu.requests[-1].json
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert [b["toolResult"]["toolUseId"] for b in sent["messages"][2]["content"]] == [c.id for c in calls]


def test_streamed_parallel_tool_calls(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="test/claude", tools=TOOLS, stream=True,  # type: ignore[arg-type]
                                                 messages=[{"role": "user", "content": "Rome"}]))
    calls: dict[int, dict[str, str]] = {}
    fragments = 0
    for chunk in chunks:
        for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            call = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += tc.id or ""
            call["name"] += (tc.function.name or "") if tc.function else ""
            call["arguments"] += (tc.function.arguments or "") if tc.function else ""
            fragments += 1
    assert [c["name"] for c in calls.values()] == ["get_weather", "get_time"]
    assert all(json.loads(c["arguments"]) == {"city": "Rome"} and c["id"].startswith("tooluse_")
               for c in calls.values())
    assert fragments > 4  # the arguments arrived in pieces
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_named_tool_choice_calls_only_that_tool(client: openai.OpenAI, bedrock_emu: Emulator) -> None:
    resp = client.chat.completions.create(model="test/claude", tools=TOOLS,  # type: ignore[arg-type]
                                          tool_choice={"type": "function", "function": {"name": "get_time"}},
                                          messages=[{"role": "user", "content": "Oslo"}])
    assert [c.function.name for c in resp.choices[0].message.tool_calls or []] == ["get_time"]  # type: ignore[union-attr]
    assert bedrock_emu.requests[-1].json["toolConfig"]["toolChoice"] == {"tool": {"name": "get_time"}}


def test_images_stop_sequences_and_max_tokens(client: openai.OpenAI, bedrock_emu: Emulator) -> None:
    resp = client.chat.completions.create(model="test/claude", stop=["three"], messages=[{"role": "user", "content": [
        {"type": "text", "text": "one two three four"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]}])
    assert resp.choices[0].message.content == "Echo: one two " and resp.choices[0].finish_reason == "stop"
    sent = bedrock_emu.requests[-1].json
    assert sent["messages"][0]["content"][1] == {"image": {"format": "png", "source": {"bytes": PNG}}}
    assert sent["inferenceConfig"] == {"stopSequences": ["three"]}
    short = client.chat.completions.create(model="test/claude", max_tokens=2,
                                           messages=[{"role": "user", "content": "a b c d"}])
    assert short.choices[0].message.content == "Echo: a" and short.choices[0].finish_reason == "length"


def test_http_image_url_goes_to_a_provider_that_takes_it(client: openai.OpenAI, bedrock_emu: Emulator,
                                                         openai_emu: Emulator) -> None:
    raw = client.chat.completions.with_raw_response.create(model="test/claude", messages=[{"role": "user", "content": [
        {"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}])
    assert raw.headers["x-gateway-provider"] == "oa" and bedrock_emu.requests == []
    with pytest.raises(openai.APIStatusError) as exc:  # Bedrock alone: the reason is in the error
        client.chat.completions.create(model="test/arn", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}])
    assert exc.value.status_code == 502 and "data: URLs" in str(exc.value)


def test_json_mode_through_a_forced_tool(client: openai.OpenAI, bedrock_emu: Emulator) -> None:
    schema = {"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"]}
    resp = client.chat.completions.create(
        model="test/claude", messages=[{"role": "user", "content": "json please"}],
        response_format={"type": "json_schema", "json_schema": {"name": "echo", "schema": schema}})
    assert json.loads(resp.choices[0].message.content or "") == {"echo": "json please"}
    assert resp.choices[0].finish_reason == "stop" and not resp.choices[0].message.tool_calls
    assert bedrock_emu.requests[-1].json["toolConfig"]["toolChoice"] == {"tool": {"name": "gatewayz_json_response"}}
    chunks = list(client.chat.completions.create(
        model="test/claude", stream=True, messages=[{"role": "user", "content": "json please"}],
        response_format={"type": "json_schema", "json_schema": {"name": "echo", "schema": schema}}))
    assert json.loads("".join(c.choices[0].delta.content or "" for c in chunks if c.choices)) == {"echo": "json please"}


def test_prompt_cache_usage(client: openai.OpenAI, bedrock_emu: Emulator) -> None:
    bedrock_emu.push_fault(Fault(usage={"inputTokens": 10, "outputTokens": 3, "totalTokens": 19,
                                        "cacheReadInputTokens": 4, "cacheWriteInputTokens": 2}))
    resp = client.chat.completions.create(model="test/claude", messages=[{"role": "user", "content": "hi"}])
    assert resp.usage is not None and resp.usage.prompt_tokens == 16 and resp.usage.completion_tokens == 3
    assert resp.usage.prompt_tokens_details is not None and resp.usage.prompt_tokens_details.cached_tokens == 4


# ------------------------------------------------------------------------------------------------- errors

def test_upstream_400_reaches_both_sdks_in_their_shape(client: openai.OpenAI, claude: anthropic.Anthropic,
                                                       bedrock_emu: Emulator, openai_emu: Emulator) -> None:
    with pytest.raises(openai.BadRequestError) as exc:  # a real validation refusal: temperature over 1
        client.chat.completions.create(model="test/claude", temperature=1.5,
                                       messages=[{"role": "user", "content": "x"}])
    assert exc.value.code == "ValidationException" and "temperature" in exc.value.message
    bedrock_emu.push_fault(Fault(status=400, error_message="bad thing"))
    with pytest.raises(anthropic.BadRequestError) as bad:
        claude.messages.create(model="test/claude", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert "bad thing" in str(bad.value) and bad.value.body["type"] == "error"  # type: ignore[index]
    assert openai_emu.requests == []  # a client error is not failed over


@pytest.mark.parametrize("fault", [Fault(status=503), Fault(status=500), Fault(status=429),
                                   Fault(status=424), Fault(drop_after_chunks=0), Fault(raw_body=b'{"junk": 1}'),
                                   Fault(raw_body=b"<html><body>502 Bad Gateway from a proxy</body></html>")],
                         ids=["503", "500", "429", "424-model-error", "dropped", "junk-200", "html-200"])
def test_failures_fail_over(fault: Fault, client: openai.OpenAI, bedrock_emu: Emulator) -> None:
    # 424 ModelErrorException is a 4xx, but the model failed on Bedrock's side: another provider may serve it.
    bedrock_emu.push_fault(fault)
    for stream in (False, True):
        if stream:
            bedrock_emu.push_fault(fault)
        raw = client.chat.completions.with_raw_response.create(model="test/claude", stream=stream,
                                                               messages=[{"role": "user", "content": "hi"}])
        assert raw.headers["x-gateway-provider"] == "oa"


@pytest.mark.parametrize("after", [0, 1], ids=["first", "after-message-start"])
def test_exception_before_any_content_fails_over(after: int, client: openai.OpenAI,
                                                 bedrock_fmt: BedrockFormat) -> None:
    bedrock_fmt.push_stream_exception(after, "throttlingException", "Too many requests, please wait.")
    raw = client.chat.completions.with_raw_response.create(model="test/claude", stream=True,
                                                           messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-gateway-provider"] == "oa"
    assert "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices) == "Echo: hi"


LONG = " ".join(f"word{i}" for i in range(60))


def _stream_body(gw: GatewayServer, user: dict[str, Any], rid: str) -> list[str]:
    with httpx.stream("POST", gw.url + "/v1/chat/completions", timeout=30,
                      headers={"Authorization": f"Bearer {user['api_key']}", "X-Request-ID": rid},
                      json={"model": "test/claude", "stream": True,
                            "messages": [{"role": "user", "content": "tell me a story"}]}) as r:
        assert r.status_code == 200
        body = r.read().decode()
    return [e[6:] for e in body.split("\n\n") if e.startswith("data: ")]


@pytest.mark.parametrize("how", ["drop", "bad-crc", "exception"])
def test_stream_cut_midway_ends_with_an_error_and_bills_an_estimate(how: str, gw: GatewayServer,
                                                                    user: dict[str, Any], bedrock_emu: Emulator,
                                                                    bedrock_fmt: BedrockFormat) -> None:
    if how == "exception":
        bedrock_fmt.push_stream_exception(4, "modelStreamErrorException", "The model failed mid-stream.")
        bedrock_emu.push_fault(Fault(content=LONG))
    else:
        bedrock_emu.push_fault(Fault(content=LONG, **({"drop_after_chunks": 4} if how == "drop"
                                                      else {"malformed_chunk_at": 4})))
    before = gw.balance_nanos(user["api_key"])
    events = _stream_body(gw, user, "br-" + uuid.uuid4().hex)
    assert "[DONE]" not in events
    final = json.loads(events[-1])
    assert final["error"]["code"] == "upstream_stream_interrupted"
    if how == "exception":
        assert "The model failed mid-stream." in final["error"]["message"]
    delivered = "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert delivered == "word0 word1 word2"  # the events before the cut: messageStart + 3 pieces
    charged = before - gw.balance_nanos(user["api_key"])
    full = cost_nanos(3 + words("tell me a story") + 3, words(LONG) + 1)
    assert 0 < charged < full  # an estimate of what was delivered


# --------------------------------------------------------------------------------------------- anthropic SDK

def test_anthropic_sdk_text_stream_and_parallel_tools(claude: anthropic.Anthropic, bedrock_emu: Emulator) -> None:
    msg = claude.messages.create(model="test/claude", max_tokens=100, system="Be brief.",
                                 messages=[{"role": "user", "content": "hello there"}])
    assert msg.content[0].type == "text" and msg.content[0].text == "Echo: hello there"
    assert msg.stop_reason == "end_turn" and msg.usage.input_tokens == 3 + 5 + 5
    assert bedrock_emu.requests[-1].json["system"] == [{"text": "Be brief."}]
    with claude.messages.stream(model="test/claude", max_tokens=50,
                                messages=[{"role": "user", "content": "one two three"}]) as stream:
        assert "".join(stream.text_stream) == "Echo: one two three"
        final = stream.get_final_message()
    assert final.usage.output_tokens == 4 and final.stop_reason == "end_turn"
    tools = [{"name": t["function"]["name"], "description": t["function"]["description"],  # type: ignore[index]
              "input_schema": t["function"]["parameters"]} for t in TOOLS]  # type: ignore[index]
    with claude.messages.stream(model="test/claude", max_tokens=100, tools=tools,  # type: ignore[arg-type]
                                messages=[{"role": "user", "content": "Lima"}]) as stream:
        final = stream.get_final_message()
    uses = [b for b in final.content if b.type == "tool_use"]
    assert [u.name for u in uses] == ["get_weather", "get_time"] and final.stop_reason == "tool_use"
    assert all(u.input == {"city": "Lima"} for u in uses)
    image = claude.messages.create(model="test/claude", max_tokens=20, messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "text", "text": "what is it"}]}])
    assert image.content[0].text == "Echo: what is it"  # type: ignore[union-attr]
    assert bedrock_emu.requests[-1].json["messages"][0]["content"][0]["image"]["format"] == "png"
