"""Google Gemini (AI Studio) and Vertex AI upstreams end to end: the real gateway, the emulator speaking Google's
wire (tests/emulator/gemini_format.py), and the official openai and anthropic SDKs as clients.

Token accounting of the emulator (both formats): prompt = 3 + sum(words + 3) per turn (system included),
completion = words of the answer. Models are priced $1 / $2 per million, so cost = prompt x 1,000 +
completion x 2,000 nanodollars."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gatewayz.settings import ModelConfig, ModelRoute, Pricing, ProviderConfig, Settings
from tests.conftest import EMU_KEY
from tests.databases import DatabaseFactory
from tests.emulator import Emulator, Fault
from tests.emulator.gemini_format import GeminiFormat
from tests.gateway_server import ADMIN_KEY, GatewayServer, migrate

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "gemini"
MODELS = {"gemini": "google/gemini-2.5-flash", "vertex": "vertex/gemini-2.5-flash"}
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                            "parameters": {"type": "object", "additionalProperties": False,
                                                           "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"zone": {"type": "string", "enum": ["UTC", "CET"]}}}}}


def cost(prompt: int, completion: int) -> int:
    return prompt * 1_000 + completion * 2_000


@dataclass
class Google:
    emu: Emulator
    fmt: GeminiFormat
    key: rsa.RSAPrivateKey
    credentials: Path


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def write_credentials(path: Path, key: rsa.RSAPrivateKey, token_uri: str) -> Path:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path.write_text(json.dumps({"type": "service_account", "project_id": "emu-project", "private_key_id": "kid-1",
                                "private_key": pem, "client_email": "gateway@emu-project.iam.gserviceaccount.com",
                                "token_uri": token_uri}))
    return path


@pytest.fixture
def google(signing_key: rsa.RSAPrivateKey, tmp_path: Path) -> Iterator[Google]:
    fmt = GeminiFormat(public_key=signing_key.public_key())
    with Emulator(name="g", api_key=EMU_KEY, formats=[fmt]) as emu:
        creds = write_credentials(tmp_path / "service-account.json", signing_key, emu.url + "/token")
        yield Google(emu, fmt, signing_key, creds)


def start_gateway(tmp_path: Path, databases: DatabaseFactory, google: Google, fallback: Emulator,
                  **vertex_options: str) -> GatewayServer:
    url = databases.url("sqlite")
    migrate(url)
    options = {"project": "emu-project", "location": "us-east5", "credentials_file": str(google.credentials),
               **vertex_options}
    providers = [
        ProviderConfig(name="gemini-a", type="gemini", base_url=google.emu.url + "/v1beta", api_key=EMU_KEY,
                       timeout_s=5),
        ProviderConfig(name="vertex-a", type="vertex", base_url=google.emu.url + "/v1", options=options,
                       timeout_s=5),
        ProviderConfig(name="emu-b", type="openai", base_url=fallback.base_url, api_key=EMU_KEY, timeout_s=5),
    ]
    price = Pricing(input=Decimal("1"), output=Decimal("2"))

    def model(mid: str, provider: str, upstream: str) -> ModelConfig:
        return ModelConfig(id=mid, pricing=price, context_length=100_000, max_output_tokens=4096,
                           providers=[ModelRoute(provider=provider, model=upstream),
                                      ModelRoute(provider="emu-b", model="ok-model")])

    models = [model(MODELS["gemini"], "gemini-a", "gemini-2.5-flash"),
              model(MODELS["vertex"], "vertex-a", "gemini-2.5-flash"),
              model("google/gemini-3-pro", "gemini-a", "gemini-3-pro-preview")]
    settings = Settings(database_url=url, admin_key=ADMIN_KEY, data_dir=tmp_path, providers=providers,
                        models=models, builtin_catalog=False)
    return GatewayServer(settings).start()


@pytest.fixture
def gw(tmp_path: Path, databases: DatabaseFactory, google: Google, emu_b: Emulator) -> Iterator[GatewayServer]:
    server = start_gateway(tmp_path, databases, google, emu_b)
    yield server
    server.stop()


@pytest.fixture
def account(gw: GatewayServer) -> dict[str, Any]:
    return gw.create_user("10")


@pytest.fixture
def oa(gw: GatewayServer, account: dict[str, Any]) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=account["api_key"], max_retries=0, timeout=20)


@pytest.fixture
def claude(gw: GatewayServer, account: dict[str, Any]) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=account["api_key"], max_retries=0, timeout=20)


@pytest.fixture(params=["gemini", "vertex"])
def wire(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def sent(google: Google) -> dict[str, Any]:
    """The last generateContent body the emulator received."""
    bodies = [r for r in google.emu.requests if r.path != "/token"]
    return bodies[-1].json  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------------------------- openai SDK
def test_text_exact_usage_cost_and_wire(wire: str, gw: GatewayServer, oa: openai.OpenAI, account: dict[str, Any],
                                        google: Google) -> None:
    before = gw.balance_nanos(account["api_key"])
    raw = oa.chat.completions.with_raw_response.create(model=MODELS[wire],
                                                       messages=[{"role": "user", "content": "hello there"}])
    resp = raw.parse()
    assert raw.headers["x-gateway-provider"] == f"{wire}-a"
    assert resp.choices[0].message.content == "Echo: hello there" and resp.choices[0].finish_reason == "stop"
    assert resp.model == MODELS[wire] and resp.id.startswith("chatcmpl-")
    assert resp.usage is not None and (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (8, 3)
    assert resp.usage.model_extra["cost"] == pytest.approx(cost(8, 3) / 1e9)
    assert gw.balance_nanos(account["api_key"]) == before - cost(8, 3)
    request = [r for r in google.emu.requests if r.path != "/token"][-1]
    if wire == "gemini":
        assert request.path == "/v1beta/models/gemini-2.5-flash:generateContent"
        assert request.headers["x-goog-api-key"] == EMU_KEY and "authorization" not in request.headers
    else:
        assert request.path == ("/v1/projects/emu-project/locations/us-east5/publishers/google/models/"
                                "gemini-2.5-flash:generateContent")
        assert request.headers["authorization"].startswith("Bearer ya29.emu-")
        assert google.fmt.token_requests == 1


def test_system_stop_json_mode_length_and_images(wire: str, oa: openai.OpenAI, google: Google) -> None:
    model = MODELS[wire]
    resp = oa.chat.completions.create(model=model, stop=["three"], temperature=0.3, max_tokens=50,
                                      messages=[{"role": "system", "content": "Be brief."},
                                                {"role": "user", "content": "one two three four"}])
    assert resp.choices[0].message.content == "Echo: one two "
    body = sent(google)
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert body["generationConfig"] == {"temperature": 0.3, "maxOutputTokens": 50, "stopSequences": ["three"]}
    assert resp.usage is not None and resp.usage.prompt_tokens == 3 + (2 + 3) + (4 + 3)
    resp = oa.chat.completions.create(model=model, response_format={"type": "json_object"},
                                      messages=[{"role": "user", "content": "hi"}])
    assert json.loads(resp.choices[0].message.content or "") == {"echo": "hi"}
    resp = oa.chat.completions.create(model=model, max_tokens=2, messages=[{"role": "user", "content": "a b c d"}])
    assert resp.choices[0].message.content == "Echo: a" and resp.choices[0].finish_reason == "length"
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()
    resp = oa.chat.completions.create(model=model, messages=[{"role": "user", "content": [
        {"type": "text", "text": "describe"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/photo.jpg"}}]}])
    assert resp.choices[0].message.content == "Echo: describe"
    assert sent(google)["contents"][0]["parts"][1:] == [
        {"inlineData": {"mimeType": "image/png", "data": png}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/photo.jpg"}}]


def test_streaming_text_usage_cost_and_done(wire: str, gw: GatewayServer, oa: openai.OpenAI,
                                            account: dict[str, Any], google: Google) -> None:
    before = gw.balance_nanos(account["api_key"])
    chunks = list(oa.chat.completions.create(model=MODELS[wire], stream=True, n=2,
                                             stream_options={"include_usage": True},
                                             messages=[{"role": "user", "content": "one two three"}]))
    for index in (0, 1):
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices and c.choices[0].index == index)
        assert text == "Echo: one two three"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"] * 2
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (9, 8)
    assert last.usage.model_extra["cost"] == pytest.approx(cost(9, 8) / 1e9)
    assert gw.balance_nanos(account["api_key"]) == before - cost(9, 8)
    request = [r for r in google.emu.requests if r.path != "/token"][-1]
    assert request.path.endswith(":streamGenerateContent") and request.query == {"alt": "sse"}
    assert request.json["generationConfig"] == {"candidateCount": 2}


@pytest.mark.parametrize(("choice", "mode", "called"), [
    ("auto", {"mode": "AUTO"}, "get_weather"),
    ("required", {"mode": "ANY"}, "get_weather"),
    ("none", {"mode": "NONE"}, None),
    ({"type": "function", "function": {"name": "get_time"}}, {"mode": "ANY", "allowedFunctionNames": ["get_time"]},
     "get_time"),
])
def test_tool_choice_and_function_declarations(wire: str, choice: Any, mode: dict[str, Any], called: str | None,
                                               oa: openai.OpenAI, google: Google) -> None:
    """AC-CC.13.1 and AC-CC.13.3: OpenAI tools become functionDeclarations; every tool_choice is honoured."""
    messages: list[Any] = [{"role": "user", "content": "weather in Paris?"}]
    resp = oa.chat.completions.create(model=MODELS[wire], tools=[WEATHER, TIME], tool_choice=choice,
                                      messages=messages)
    body = sent(google)
    assert body["toolConfig"] == {"functionCallingConfig": mode}
    assert body["tools"][0]["functionDeclarations"][0] == {
        "name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "required": ["city"]}}
    message = resp.choices[0].message
    if called is None:
        assert message.content == "Echo: weather in Paris?" and not message.tool_calls
        return
    assert resp.choices[0].finish_reason == "tool_calls" and message.tool_calls
    call = message.tool_calls[0]
    assert call.function.name == called and call.id.startswith("call_")  # type: ignore[union-attr]
    arguments = json.loads(call.function.arguments)  # type: ignore[union-attr]
    assert arguments == ({"city": "weather in Paris?"} if called == "get_weather" else {"zone": "weather in Paris?"})
    messages += [message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temp_c": 21})}]
    answer = oa.chat.completions.create(model=MODELS[wire], tools=[WEATHER, TIME], messages=messages)
    assert answer.choices[0].message.content == "Echo: weather in Paris?"
    assert sent(google)["contents"][1:] == [
        {"role": "model", "parts": [{"functionCall": {"name": called, "args": arguments}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": called, "response": {"temp_c": 21}}}]}]


def test_parallel_calls_thoughts_and_cached_tokens(wire: str, gw: GatewayServer, oa: openai.OpenAI,
                                                   account: dict[str, Any], google: Google) -> None:
    before = gw.balance_nanos(account["api_key"])
    google.emu.push_fault(Fault(body=json.loads((FIXTURES / "response_thinking_parallel.json").read_text())),
                          model="gemini-2.5-flash")
    resp = oa.chat.completions.create(model=MODELS[wire], tools=[WEATHER],
                                      messages=[{"role": "user", "content": "weather in Paris and Tokyo?"}])
    message = resp.choices[0].message
    assert message.tool_calls and [c.function.name for c in message.tool_calls] == ["get_weather"] * 2  # type: ignore[union-attr]
    assert message.model_extra["reasoning_content"].startswith("The user wants the weather")
    assert resp.usage is not None and resp.usage.prompt_tokens_details is not None
    assert resp.usage.prompt_tokens_details.cached_tokens == 1024
    assert resp.usage.completion_tokens_details is not None
    assert resp.usage.completion_tokens_details.reasoning_tokens == 130
    assert gw.balance_nanos(account["api_key"]) == before - cost(1200, 170)

    google.emu.push_fault(Fault(raw_body=(FIXTURES / "stream_parallel_calls.sse").read_bytes()),
                          model="gemini-2.5-flash")
    chunks = list(oa.chat.completions.create(model=MODELS[wire], tools=[WEATHER], stream=True,
                                             stream_options={"include_usage": True},
                                             messages=[{"role": "user", "content": "weather in Paris and Tokyo?"}]))
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert [(c.index, json.loads(c.function.arguments)) for c in calls] == [  # type: ignore[union-attr,arg-type]
        (0, {"city": "Paris"}), (1, {"city": "Tokyo"})]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 27


def test_reasoning_effort_returns_thoughts_and_bills_them(wire: str, oa: openai.OpenAI, google: Google) -> None:
    resp = oa.chat.completions.create(model=MODELS[wire], reasoning_effort="low",
                                      messages=[{"role": "user", "content": "why is the sky blue"}])
    assert sent(google)["generationConfig"] == {"thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True}}
    assert resp.choices[0].message.content == "Echo: why is the sky blue"
    assert resp.choices[0].message.model_extra["reasoning_content"] == "Thinking about: why is the sky blue"
    assert resp.usage is not None and resp.usage.completion_tokens == 6 + 7
    assert resp.usage.completion_tokens_details and resp.usage.completion_tokens_details.reasoning_tokens == 7
    chunks = list(oa.chat.completions.create(model=MODELS[wire], reasoning_effort="low", stream=True,
                                             stream_options={"include_usage": True},
                                             messages=[{"role": "user", "content": "why"}]))
    thoughts = "".join(c.choices[0].delta.model_extra.get("reasoning_content") or "" for c in chunks if c.choices)
    assert thoughts == "Thinking about: why"
    assert chunks[-1].usage and chunks[-1].usage.completion_tokens_details
    assert chunks[-1].usage.completion_tokens_details.reasoning_tokens == 3


def test_gemini_3_thought_signatures_round_trip(oa: openai.OpenAI, claude: anthropic.Anthropic,
                                                google: Google) -> None:
    messages: list[Any] = [{"role": "user", "content": "weather in Oslo?"}]
    resp = oa.chat.completions.create(model="google/gemini-3-pro", tools=[WEATHER], messages=messages)
    message = resp.choices[0].message
    assert message.tool_calls
    call = message.tool_calls[0].model_dump()
    signature = call["extra_content"]["google"]["thought_signature"]
    messages += [message.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": call["id"], "content": "ok"}]
    answer = oa.chat.completions.create(model="google/gemini-3-pro", tools=[WEATHER], messages=messages)
    assert answer.choices[0].message.content == "Echo: weather in Oslo?"
    assert sent(google)["contents"][1]["parts"][0]["thoughtSignature"] == signature
    # The Anthropic protocol has nowhere to keep the signature: the documented placeholder stands in.
    tools = [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    first = claude.messages.create(model="google/gemini-3-pro", max_tokens=100, tools=tools,  # type: ignore[arg-type]
                                   messages=[{"role": "user", "content": "weather in Oslo?"}])
    use = next(b for b in first.content if b.type == "tool_use")
    second = claude.messages.create(model="google/gemini-3-pro", max_tokens=100, tools=tools,  # type: ignore[arg-type]
                                    messages=[{"role": "user", "content": "weather in Oslo?"},
                                              {"role": "assistant", "content": first.content},  # type: ignore[typeddict-item]
                                              {"role": "user", "content": [{"type": "tool_result",
                                                                            "tool_use_id": use.id, "content": "ok"}]}])
    assert second.content[0].type == "text"
    assert sent(google)["contents"][1]["parts"][0]["thoughtSignature"] == "skip_thought_signature_validator"


# ---------------------------------------------------------------------------------------------- anthropic SDK
def test_anthropic_sdk_text_stream_tools_and_errors(wire: str, gw: GatewayServer, claude: anthropic.Anthropic,
                                                    account: dict[str, Any], google: Google,
                                                    emu_b: Emulator) -> None:
    model = MODELS[wire]
    before = gw.balance_nanos(account["api_key"])
    msg = claude.messages.create(model=model, max_tokens=100, system="Be brief.",
                                 messages=[{"role": "user", "content": "hello there"}])
    assert msg.content[0].type == "text" and msg.content[0].text == "Echo: hello there"
    assert msg.stop_reason == "end_turn" and (msg.usage.input_tokens, msg.usage.output_tokens) == (13, 3)
    assert gw.balance_nanos(account["api_key"]) == before - cost(13, 3)
    assert sent(google)["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    with claude.messages.stream(model=model, max_tokens=50,
                                messages=[{"role": "user", "content": "one two three"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Echo: one two three" and final.stop_reason == "end_turn" and final.usage.output_tokens == 4
    tools = [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    first = claude.messages.create(model=model, max_tokens=100, tools=tools,  # type: ignore[arg-type]
                                   messages=[{"role": "user", "content": "weather in Rome?"}])
    use = next(b for b in first.content if b.type == "tool_use")
    assert first.stop_reason == "tool_use" and use.input == {"city": "weather in Rome?"}
    second = claude.messages.create(model=model, max_tokens=100, tools=tools,  # type: ignore[arg-type]
                                    messages=[{"role": "user", "content": "weather in Rome?"},
                                              {"role": "assistant", "content": first.content},  # type: ignore[typeddict-item]
                                              {"role": "user", "content": [{"type": "tool_result",
                                                                            "tool_use_id": use.id, "content": "hot"}]}])
    assert second.content[0].type == "text" and second.content[0].text == "Echo: weather in Rome?"
    assert sent(google)["contents"][2] == {"role": "user", "parts": [
        {"functionResponse": {"name": "get_weather", "response": {"content": "hot"}}}]}
    google.emu.push_fault(Fault(status=400, error_message="Invalid value at 'generation_config.temperature'"),
                          model="gemini-2.5-flash")
    with pytest.raises(anthropic.BadRequestError) as bad:
        claude.messages.create(model=model, max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert bad.value.body["type"] == "error"  # type: ignore[index]
    assert "generation_config.temperature" in bad.value.body["error"]["message"]  # type: ignore[index]
    assert len(emu_b.requests) == 0


# ------------------------------------------------------------------------------------------- errors, failover
def test_upstream_400_is_an_openai_error_without_failover_or_charge(wire: str, gw: GatewayServer, oa: openai.OpenAI,
                                                                    account: dict[str, Any], google: Google,
                                                                    emu_b: Emulator) -> None:
    before = gw.balance_nanos(account["api_key"])
    google.emu.push_fault(Fault(status=400, error_message="* GenerateContentRequest.contents: bad"),
                          model="gemini-2.5-flash")
    with pytest.raises(openai.BadRequestError) as bad:
        oa.chat.completions.create(model=MODELS[wire], messages=[{"role": "user", "content": "x"}])
    assert bad.value.message.endswith("* GenerateContentRequest.contents: bad")
    assert bad.value.code == "invalid_argument" and bad.value.type == "invalid_request_error"
    # A request the emulator's validation refuses, as Gemini would: an unknown part type is not sent at all,
    # an unanswerable tool message is the client's mistake.
    with pytest.raises(openai.BadRequestError) as orphan:
        oa.chat.completions.create(model=MODELS[wire], messages=[{"role": "user", "content": "x"},
                                                                 {"role": "tool", "tool_call_id": "c", "content": "1"}])
    assert orphan.value.param == "messages[1].tool_call_id"
    assert len(emu_b.requests) == 0 and gw.balance_nanos(account["api_key"]) == before


INVALID_KEY = {"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                         "status": "INVALID_ARGUMENT", "details": [{"reason": "API_KEY_INVALID"}]}}


@pytest.mark.parametrize("fault", [Fault(status=503), Fault(status=500), Fault(status=429, retry_after=30),
                                   Fault(status=403), Fault(raw_body=b"{not json"), Fault(drop_after_chunks=0),
                                   Fault(status=400, body=INVALID_KEY)])
def test_failures_fail_over_to_the_next_provider(wire: str, fault: Fault, oa: openai.OpenAI, google: Google,
                                                 emu_b: Emulator) -> None:
    google.emu.push_fault(fault, model="gemini-2.5-flash")
    raw = oa.chat.completions.with_raw_response.create(model=MODELS[wire],
                                                       messages=[{"role": "user", "content": "hello failover"}])
    assert raw.headers["x-gateway-provider"] == "emu-b"
    assert raw.parse().choices[0].message.content == "Echo: hello failover"
    assert len(emu_b.requests) == 1


def test_stream_failing_before_first_event_fails_over(wire: str, oa: openai.OpenAI, google: Google,
                                                      emu_b: Emulator) -> None:
    google.emu.push_fault(Fault(raw_body=b'data: {"error": {"code": 503, "message": "overloaded", '
                                         b'"status": "UNAVAILABLE"}}\r\n\r\n'), model="gemini-2.5-flash")
    chunks = list(oa.chat.completions.create(model=MODELS[wire], stream=True,
                                             messages=[{"role": "user", "content": "a b"}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: a b"
    assert len(emu_b.requests) == 1


def test_mid_stream_drop_and_error_event_end_with_an_error_and_an_estimate(
        wire: str, gw: GatewayServer, oa: openai.OpenAI, claude: anthropic.Anthropic, account: dict[str, Any],
        google: Google) -> None:
    for fault in (Fault(drop_after_chunks=3),
                  Fault(raw_body=b'data: {"candidates": [{"content": {"parts": [{"text": "partial answer"}]}}]}\r\n\r\n'
                                 b'data: {"error": {"code": 500, "message": "internal hiccup", "status": "INTERNAL"}}'
                                 b'\r\n\r\n')):
        before = gw.balance_nanos(account["api_key"])
        google.emu.push_fault(fault, model="gemini-2.5-flash")
        received = []
        with pytest.raises(openai.APIError):
            for chunk in oa.chat.completions.create(model=MODELS[wire], stream=True,
                                                    messages=[{"role": "user", "content": "a b c d e f g"}]):
                received.append(chunk)
        assert received  # the client got the start of the answer first
        assert gw.balance_nanos(account["api_key"]) < before  # what was delivered is billed (an estimate)
    google.emu.push_fault(Fault(drop_after_chunks=3), model="gemini-2.5-flash")
    with pytest.raises(anthropic.APIStatusError), claude.messages.stream(
            model=MODELS[wire], max_tokens=50, messages=[{"role": "user", "content": "a b c d e f"}]) as stream:
        for _ in stream:
            pass


def test_malformed_event_is_skipped_and_the_stream_completes(wire: str, oa: openai.OpenAI, google: Google) -> None:
    google.emu.push_fault(Fault(malformed_chunk_at=1), model="gemini-2.5-flash")
    chunks = list(oa.chat.completions.create(model=MODELS[wire], stream=True, stream_options={"include_usage": True},
                                             messages=[{"role": "user", "content": "one two three"}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: two three"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4


# ----------------------------------------------------------------------------------------------- Vertex OAuth
def test_vertex_token_is_fetched_once_under_concurrency(oa: openai.OpenAI, google: Google) -> None:
    def ask(i: int) -> str:
        raw = oa.chat.completions.with_raw_response.create(model=MODELS["vertex"],
                                                           messages=[{"role": "user", "content": f"n{i}"}])
        return raw.headers["x-gateway-provider"]

    with ThreadPoolExecutor(6) as pool:
        providers = list(pool.map(ask, range(6)))
    assert providers == ["vertex-a"] * 6
    assert google.fmt.token_requests == 1
    (token_request,) = [r for r in google.emu.requests if r.path == "/token"]
    assert token_request.json["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    header = json.loads(base64.urlsafe_b64decode(token_request.json["assertion"].split(".")[0] + "=="))
    assert header == {"alg": "RS256", "typ": "JWT", "kid": "kid-1"}


def test_vertex_token_is_refreshed_before_it_expires(oa: openai.OpenAI, google: Google) -> None:
    google.fmt.token_lifetime_s = 301  # usable for one second: tokens are replaced five minutes early
    for _ in range(2):
        oa.chat.completions.create(model=MODELS["vertex"], messages=[{"role": "user", "content": "hi"}])
    time.sleep(1.2)
    oa.chat.completions.create(model=MODELS["vertex"], messages=[{"role": "user", "content": "hi"}])
    assert google.fmt.token_requests == 2
    tokens = [r.headers["authorization"] for r in google.emu.requests if r.path != "/token"]
    assert tokens[0] == tokens[1] != tokens[2]


def test_vertex_token_failures_fail_over(tmp_path: Path, databases: DatabaseFactory, google: Google,
                                         emu_b: Emulator) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    wrong = write_credentials(tmp_path / "wrong.json", stranger, google.emu.url + "/token")
    cases: list[dict[str, str]] = [{}, {"credentials_file": str(wrong)},
                                   {"credentials_file": str(tmp_path / "missing.json")}]
    for i, options in enumerate(cases):
        google.emu.clear()
        emu_b.clear()
        if i == 0:
            google.emu.push_fault(Fault(status=503))  # the token endpoint's answer: it is the first request
        sub = tmp_path / f"gw{i}"
        sub.mkdir()
        server = start_gateway(sub, databases, google, emu_b, **options)
        try:
            user = server.create_user("1")
            client = openai.OpenAI(base_url=server.url + "/v1", api_key=user["api_key"], max_retries=0, timeout=20)
            raw = client.chat.completions.with_raw_response.create(model=MODELS["vertex"],
                                                                   messages=[{"role": "user", "content": "hi"}])
            assert raw.headers["x-gateway-provider"] == "emu-b"
            assert [r.path for r in google.emu.requests] == ([] if "missing" in str(options) else ["/token"])
        finally:
            server.stop()


def test_vertex_with_user_credentials_and_their_project(tmp_path: Path, databases: DatabaseFactory, google: Google,
                                                        emu_b: Emulator) -> None:
    """What `gcloud auth application-default login` writes: a refresh token, and the project to bill."""
    google.fmt.refresh_token = "1//refresh-me"
    adc = tmp_path / "adc.json"
    adc.write_text(json.dumps({"type": "authorized_user", "client_id": "cid", "client_secret": "secret",
                               "refresh_token": "1//refresh-me", "quota_project_id": "user-project",
                               "token_uri": google.emu.url + "/token"}))
    sub = tmp_path / "gw"
    sub.mkdir()
    server = start_gateway(sub, databases, google, emu_b, credentials_file=str(adc), project="")
    try:
        user = server.create_user("1")
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=user["api_key"], max_retries=0, timeout=20)
        raw = client.chat.completions.with_raw_response.create(model=MODELS["vertex"],
                                                               messages=[{"role": "user", "content": "hi"}])
        assert raw.headers["x-gateway-provider"] == "vertex-a"
        token_request, generate = google.emu.requests
        assert token_request.json == {"grant_type": "refresh_token", "client_id": "cid", "client_secret": "secret",
                                      "refresh_token": "1//refresh-me"}
        assert generate.path.startswith("/v1/projects/user-project/locations/us-east5/")
    finally:
        server.stop()
