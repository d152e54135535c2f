"""The emulator, proven with the real ``openai`` SDK (and raw HTTP where the SDK hides things)."""

from __future__ import annotations

import base64
import json
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessageFunctionToolCall

from tests.emulator import Emulator, Fault, FaultSyntaxError
from tests.emulator.faults import directive_fault, parse_fault_spec, strip_directives

KEY = "emu-key"
USER: list[Any] = [{"role": "user", "content": "hello big world"}]
AUTH = {"Authorization": f"Bearer {KEY}"}


def function_tool(name: str, *properties: str) -> Any:
    schema = {"type": "object", "properties": {p: {"type": "string"} for p in properties}}
    return {"type": "function", "function": {"name": name, "description": name, "parameters": schema}}


WEATHER_TOOL = function_tool("get_weather", "city", "unit")
TIME_TOOL = function_tool("get_time", "zone")


@pytest.fixture(scope="module")
def server_a() -> Iterator[Emulator]:
    with Emulator(name="a", api_key=KEY) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def server_b() -> Iterator[Emulator]:
    with Emulator(name="b") as emulator:
        yield emulator


@pytest.fixture
def emu(server_a: Emulator) -> Emulator:
    server_a.reset()
    return server_a


@pytest.fixture
def emu_b(server_b: Emulator) -> Emulator:
    server_b.reset()
    return server_b


def client_for(emulator: Emulator, timeout: float = 5.0, api_key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=emulator.base_url, api_key=api_key, max_retries=0, timeout=timeout)


@pytest.fixture
def client(emu: Emulator) -> openai.OpenAI:
    return client_for(emu)


def chat(client: openai.OpenAI, **kwargs: Any) -> ChatCompletion:
    kwargs.setdefault("model", "ok-model")
    kwargs.setdefault("messages", USER)
    return client.chat.completions.create(**kwargs)


def stream(client: openai.OpenAI, **kwargs: Any) -> list[ChatCompletionChunk]:
    kwargs.setdefault("model", "ok-model")
    kwargs.setdefault("messages", USER)
    return list(client.chat.completions.create(stream=True, **kwargs))


def streamed_text(chunks: list[ChatCompletionChunk], index: int = 0) -> str:
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].index == index]
    return "".join(p or "" for p in pieces)


# ------------------------------------------------------------------ chat shape
def test_non_stream_shape_and_usage(client: openai.OpenAI) -> None:
    messages = [{"role": "system", "content": "be brief"}, *USER]
    result = chat(client, messages=messages, seed=7)
    assert isinstance(result, ChatCompletion)
    assert result.id.startswith("chatcmpl-") and result.object == "chat.completion"
    assert result.model == "ok-model" and result.system_fingerprint and result.created > 0
    choice = result.choices[0]
    assert choice.index == 0 and choice.finish_reason == "stop" and choice.logprobs is None
    assert choice.message.role == "assistant" and choice.message.refusal is None
    assert choice.message.content == "Echo: hello big world" and choice.message.tool_calls is None
    usage = result.usage
    assert usage is not None
    prompt = (2 + 3) + (3 + 3) + 3
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (prompt, 4, prompt + 4)
    assert usage.prompt_tokens_details and usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details and usage.completion_tokens_details.reasoning_tokens == 0


def test_array_content_with_image_parts(client: openai.OpenAI) -> None:
    parts = [
        {"type": "text", "text": "describe"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "text", "text": "this picture"},
    ]
    result = chat(client, messages=[{"role": "user", "content": parts}])
    assert result.choices[0].message.content == "Echo: describe this picture"
    assert result.usage is not None and result.usage.prompt_tokens == 3 + 3 + 3


def test_stream_assembles_and_reports_usage(client: openai.OpenAI) -> None:
    chunks = stream(client, stream_options={"include_usage": True})
    assert all(isinstance(c, ChatCompletionChunk) and c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    first = chunks[0].choices[0].delta
    assert first.role == "assistant" and first.content == ""
    assert streamed_text(chunks) == chat(client).choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4 and chunks[-1].usage.prompt_tokens == 9
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_without_usage_request_has_no_usage(client: openai.OpenAI) -> None:
    chunks = stream(client)
    assert all(c.usage is None and c.choices for c in chunks)
    assert streamed_text(chunks) == "Echo: hello big world"


# ----------------------------------------------------------------------- tools
def test_tool_call_non_stream(client: openai.OpenAI) -> None:
    result = chat(client, tools=[WEATHER_TOOL, TIME_TOOL])
    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    call = calls[0]
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert call.id.startswith("call_") and call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "hello big world", "unit": "hello big world"}
    assert result.usage is not None and result.usage.completion_tokens == len(call.function.arguments.split())


def test_tool_choice_named_none_and_tool_result(client: openai.OpenAI) -> None:
    named = {"type": "function", "function": {"name": "get_time"}}
    calls = chat(client, tools=[WEATHER_TOOL, TIME_TOOL], tool_choice=named).choices[0].message.tool_calls
    assert calls is not None and isinstance(calls[0], ChatCompletionMessageFunctionToolCall)
    assert calls[0].function.name == "get_time"
    assert chat(client, tools=[WEATHER_TOOL], tool_choice="none").choices[0].message.content == (
        "Echo: hello big world"
    )
    loop = [
        *USER,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    answer = chat(client, messages=loop, tools=[WEATHER_TOOL]).choices[0]
    assert answer.finish_reason == "stop" and answer.message.content == "Echo: hello big world"


def test_tool_call_streamed(client: openai.OpenAI) -> None:
    chunks = stream(client, tools=[WEATHER_TOOL])
    head = chunks[0].choices[0].delta.tool_calls
    assert head is not None and head[0].id and head[0].function is not None
    assert head[0].function.name == "get_weather" and head[0].function.arguments == ""
    fragments = [
        tc.function.arguments or ""
        for c in chunks[1:]
        if c.choices
        for tc in c.choices[0].delta.tool_calls or []
        if tc.function is not None
    ]
    assert len(fragments) > 1
    assert json.loads("".join(fragments)) == {"city": "hello big world", "unit": "hello big world"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


# ---------------------------------------------------------------- other knobs
def test_json_mode_and_schema(client: openai.OpenAI) -> None:
    content = chat(client, response_format={"type": "json_object"}).choices[0].message.content
    assert content is not None and json.loads(content) == {"echo": "hello big world"}
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    content = chat(client, response_format=schema).choices[0].message.content
    assert content is not None and json.loads(content) == {"echo": "hello big world"}


def test_logprobs(client: openai.OpenAI) -> None:
    choice = chat(client, logprobs=True, top_logprobs=2).choices[0]
    assert choice.logprobs is not None and choice.logprobs.content is not None
    entries = choice.logprobs.content
    assert "".join(e.token for e in entries) == choice.message.content and len(entries) == 4
    assert all(len(e.top_logprobs) == 2 and e.logprob < 0 for e in entries)
    assert all(e.bytes == list(e.token.encode()) and e.top_logprobs[0].token == e.token for e in entries)
    assert chat(client, logprobs=True, top_logprobs=2).choices[0].logprobs == choice.logprobs
    chunks = stream(client, logprobs=True)
    streamed = [
        entry.token
        for c in chunks
        if c.choices and c.choices[0].logprobs
        for entry in c.choices[0].logprobs.content or []
    ]
    assert streamed == [e.token for e in entries]


def test_n_choices(client: openai.OpenAI) -> None:
    result = chat(client, n=3)
    assert [c.index for c in result.choices] == [0, 1, 2]
    assert {c.message.content for c in result.choices} == {"Echo: hello big world"}
    assert result.usage is not None and result.usage.completion_tokens == 12
    chunks = stream(client, n=2)
    assert streamed_text(chunks, 0) == streamed_text(chunks, 1) == "Echo: hello big world"


def test_stop_and_max_tokens(client: openai.OpenAI) -> None:
    stopped = chat(client, stop=["world", "big"]).choices[0]
    assert stopped.message.content == "Echo: hello " and stopped.finish_reason == "stop"
    assert chat(client, stop="zzz").choices[0].message.content == "Echo: hello big world"
    for key in ("max_tokens", "max_completion_tokens"):
        result = chat(client, **{key: 2})
        assert result.choices[0].message.content == "Echo: hello"
        assert result.choices[0].finish_reason == "length"
        assert result.usage is not None and result.usage.completion_tokens == 2
    chunks = stream(client, max_tokens=3)
    assert streamed_text(chunks) == "Echo: hello big" and chunks[-1].choices[0].finish_reason == "length"


# ------------------------------------------------------------------ embeddings
def test_embeddings_float_and_base64(client: openai.OpenAI) -> None:
    floats = client.embeddings.create(model="emb", input=["alpha beta", "gamma"], encoding_format="float")
    assert isinstance(floats, CreateEmbeddingResponse) and floats.object == "list" and floats.model == "emb"
    assert [d.index for d in floats.data] == [0, 1] and all(len(d.embedding) == 8 for d in floats.data)
    assert floats.data[0].embedding != floats.data[1].embedding
    assert abs(sum(x * x for x in floats.data[0].embedding) - 1.0) < 1e-5
    assert (floats.usage.prompt_tokens, floats.usage.total_tokens) == (3, 3)
    default = client.embeddings.create(model="emb", input=["alpha beta", "gamma"])  # SDK asks for base64
    assert [d.embedding for d in default.data] == [d.embedding for d in floats.data]
    sized = client.embeddings.create(model="emb", input="alpha beta", dimensions=20)
    assert len(sized.data[0].embedding) == 20
    tokens = client.embeddings.create(model="emb", input=[[1, 2, 3]], encoding_format="float")
    assert tokens.usage.prompt_tokens == 3


def test_embeddings_base64_wire_format(emu: Emulator) -> None:
    body = {"model": "emb", "input": "alpha beta", "encoding_format": "base64"}
    raw = httpx.post(emu.base_url + "/embeddings", json=body, headers=AUTH).json()
    decoded = struct.unpack("<8f", base64.b64decode(raw["data"][0]["embedding"]))
    body["encoding_format"] = "float"
    plain = httpx.post(emu.base_url + "/embeddings", json=body, headers=AUTH).json()
    assert list(decoded) == plain["data"][0]["embedding"]


# ---------------------------------------------------------- models, auth, errors
def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    chat(client, model="seen-model")
    ids = [m.id for m in client.models.list()]
    assert ids[0] == "ok-model" and "seen-model" in ids
    model = client.models.retrieve("seen-model")
    assert model.id == "seen-model" and model.object == "model" and model.owned_by == "emulator-a"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("never-seen")


def test_auth_failure(emu: Emulator, emu_b: Emulator) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        chat(client_for(emu, api_key="wrong"))
    assert caught.value.code == "invalid_api_key" and caught.value.type == "authentication_error"
    assert chat(client_for(emu_b, api_key="anything")).choices[0].message.content


def test_bad_requests_and_unknown_path(emu: Emulator, client: openai.OpenAI) -> None:
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    bad = httpx.post(emu.base_url + "/chat/completions", content=b"{nope", headers=headers)
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="ok-model", messages=[])
    with pytest.raises(openai.BadRequestError):
        client.post("/chat/completions", body={"messages": USER}, cast_to=object)
    missing = httpx.get(emu.url + "/v2/whatever", headers=headers)
    assert missing.status_code == 404 and set(missing.json()["error"]) == {"message", "type", "param", "code"}


# ---------------------------------------------------------------------- faults
def test_status_fault_with_retry_headers(emu: Emulator, client: openai.OpenAI) -> None:
    emu.push_fault(Fault(status=429, retry_after=2, retry_after_ms=1500))
    with pytest.raises(openai.RateLimitError) as caught:
        chat(client)
    headers = caught.value.response.headers
    assert headers["retry-after"] == "2" and headers["retry-after-ms"] == "1500"
    assert caught.value.body == {
        "message": "Emulated upstream error (HTTP 429).",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    emu.push_fault(Fault(status=503, error_message="overloaded"))
    with pytest.raises(openai.InternalServerError) as server_error:
        chat(client)
    assert server_error.value.status_code == 503 and server_error.value.type == "server_error"
    emu.push_fault(Fault(status=402))
    with pytest.raises(openai.APIStatusError) as payment:
        chat(client)
    assert payment.value.status_code == 402


def test_latency_fault(emu: Emulator, client: openai.OpenAI) -> None:
    emu.push_fault(Fault(latency_ms=250))
    started = time.monotonic()
    raw = client.chat.completions.with_raw_response.create(model="ok-model", messages=USER)
    assert time.monotonic() - started >= 0.25
    assert raw.parse().choices[0].message.content == "Echo: hello big world"


def test_hang_fault_times_out_client(emu: Emulator) -> None:
    emu.push_fault(Fault(hang=True))
    with pytest.raises(openai.APITimeoutError):
        chat(client_for(emu, timeout=0.3))
    assert chat(client_for(emu)).choices[0].message.content  # the server is still serving


def test_hang_released_by_stop() -> None:
    emulator = Emulator(name="h").start()
    emulator.set_default_fault(Fault(hang=True))
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            chat(client_for(emulator, timeout=10))
        except openai.APIError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=call)
    worker.start()
    while not emulator.requests:
        time.sleep(0.01)
    started = time.monotonic()
    emulator.stop()
    worker.join(5)
    assert outcome and isinstance(outcome[0], openai.APIConnectionError)
    assert time.monotonic() - started < 3


def test_malformed_chunk(emu: Emulator, client: openai.OpenAI) -> None:
    emu.push_fault(Fault(malformed_chunk_at=2))
    received: list[ChatCompletionChunk] = []
    with pytest.raises((json.JSONDecodeError, openai.APIError)):
        for chunk in client.chat.completions.create(model="ok-model", messages=USER, stream=True):
            received.append(chunk)
    assert len(received) == 2


def test_drop_mid_stream_and_non_stream(emu: Emulator, client: openai.OpenAI) -> None:
    emu.push_fault(Fault(drop_after_chunks=2))
    received: list[ChatCompletionChunk] = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in client.chat.completions.create(model="ok-model", messages=USER, stream=True):
            received.append(chunk)
    assert len(received) == 2
    emu.push_fault(Fault(drop_after_chunks=50))  # longer than the stream: still no clean end
    with pytest.raises(openai.APIConnectionError):
        stream(client)
    emu.push_fault(Fault(drop_after_chunks=0))
    with pytest.raises(openai.APIConnectionError):
        chat(client)


def test_chunk_delay_is_flushed_per_chunk(emu: Emulator, client: openai.OpenAI) -> None:
    emu.push_fault(Fault(chunk_delay_ms=60))
    arrivals = []
    started = time.monotonic()
    for _chunk in client.chat.completions.create(model="ok-model", messages=USER, stream=True):
        arrivals.append(time.monotonic() - started)
    assert len(arrivals) == 6
    assert all(arrival >= index * 0.055 for index, arrival in enumerate(arrivals))  # delayed...
    assert arrivals[-1] - arrivals[0] >= 0.25  # ...and flushed one by one, not held back until the end


def test_body_raw_body_usage_and_content_faults(emu: Emulator, client: openai.OpenAI) -> None:
    emu.push_fault(Fault(content="custom answer here"))
    custom = chat(client)
    assert custom.choices[0].message.content == "custom answer here"
    assert custom.usage is not None and custom.usage.completion_tokens == 3
    usage = {"prompt_tokens": 11, "completion_tokens": 22, "total_tokens": 33}
    emu.push_fault(Fault(usage=usage))
    overridden = chat(client)
    assert overridden.usage is not None and overridden.usage.model_dump(exclude_none=True) == usage
    emu.push_fault(Fault(omit_usage=True))
    assert chat(client).usage is None
    emu.push_fault(Fault(omit_usage=True))
    assert all(c.usage is None for c in stream(client, stream_options={"include_usage": True}))
    emu.push_fault(Fault(body={"hello": "there"}, status=202))
    raw = client.chat.completions.with_raw_response.create(model="ok-model", messages=USER)
    assert raw.status_code == 202 and json.loads(raw.content) == {"hello": "there"}
    emu.push_fault(Fault(raw_body=b'{"id": "chatcmpl-x", "choi'))
    raw_response = httpx.post(emu.base_url + "/chat/completions", json={"model": "m", "messages": USER}, headers=AUTH)
    assert raw_response.status_code == 200 and raw_response.content == b'{"id": "chatcmpl-x", "choi'


# ---------------------------------------------------------- fault selection
def test_queued_fault_consumed_once_and_logged(emu: Emulator, client: openai.OpenAI) -> None:
    fault = Fault(status=500)
    emu.push_fault(fault)
    with pytest.raises(openai.InternalServerError):
        chat(client)
    assert chat(client).choices[0].message.content
    assert [r.fault for r in emu.requests] == [fault, None]


def test_per_model_queued_fault(emu: Emulator, client: openai.OpenAI) -> None:
    emu.push_fault(Fault(status=503), model="m2")
    assert chat(client, model="m1").model == "m1"
    with pytest.raises(openai.InternalServerError):
        chat(client, model="m2")
    assert chat(client, model="m2").model == "m2"


def test_precedence_default_queue_directive(emu: Emulator, client: openai.OpenAI) -> None:
    emu.set_default_fault(Fault(content="default says"))
    emu.push_fault(Fault(content="queued says"))
    directive = [{"role": "user", "content": '[[fault:content="directive, says"]] hi'}]
    assert chat(client, messages=directive).choices[0].message.content == "directive, says"
    assert chat(client).choices[0].message.content == "queued says"
    assert chat(client).choices[0].message.content == "default says"
    emu.set_default_fault(None)
    assert chat(client).choices[0].message.content == "Echo: hello big world"


def test_directive_targets_emulator_by_name(emu: Emulator, emu_b: Emulator, client: openai.OpenAI) -> None:
    client_b = client_for(emu_b)
    text = "[[fault@b:status=503,retry_after=1]] [[fault@a:status=429]] what now"
    messages = [{"role": "user", "content": text}]
    with pytest.raises(openai.RateLimitError):
        chat(client, messages=messages)
    with pytest.raises(openai.InternalServerError) as caught:
        chat(client_b, messages=messages)
    assert caught.value.response.headers["retry-after"] == "1"
    only_b = [{"role": "user", "content": "[[fault@b:status=500]] what now"}]
    assert chat(client, messages=only_b).choices[0].message.content == "Echo: what now"
    everyone = [{"role": "system", "content": "[[fault:status=502]]"}, *USER]
    for target in (client, client_b):
        with pytest.raises(openai.InternalServerError):
            chat(target, messages=everyone)
    assert emu.requests[-1].fault == Fault(status=502)


def test_bad_directive_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="unknown fault field"):
        chat(client, messages=[{"role": "user", "content": "[[fault:explode=true]]"}])


def test_directive_parsing() -> None:
    fault = parse_fault_spec('status=503, retry_after=1.5,hang=false,content="a, b]",latency_ms=10')
    assert fault == Fault(status=503, retry_after=1.5, content="a, b]", latency_ms=10.0)
    assert parse_fault_spec("raw_body=xyz").raw_body == b"xyz"
    assert directive_fault("no directive here", "a") is None
    assert directive_fault("[[fault:status=500]] [[fault@a:status=429,hang=true]]", "a") == Fault(status=429, hang=True)
    assert directive_fault("[[fault@a:status=429]]", "b") is None
    assert strip_directives("x [[fault@a:status=1]]  y") == "x y"
    for bad in ("status=abc", "hang=1", "usage=3", "nope=1", "status"):
        with pytest.raises(FaultSyntaxError):
            parse_fault_spec(bad)


# ------------------------------------------------------------- log, lifecycle
def test_request_log(emu: Emulator, client: openai.OpenAI) -> None:
    before = time.time()
    chat(client, temperature=0.5)
    client.models.list()
    first, second = emu.requests
    assert (first.method, first.path, second.method, second.path) == (
        "POST",
        "/v1/chat/completions",
        "GET",
        "/v1/models",
    )
    assert first.headers["authorization"] == f"Bearer {KEY}" and "content-type" in first.headers
    assert first.json["temperature"] == 0.5 and first.json["messages"] == USER
    assert second.json is None and first.fault is None
    assert before <= first.time <= second.time
    emu.clear()
    assert emu.requests == []


async def test_async_lifecycle() -> None:
    async with Emulator(name="async") as emulator:
        client = openai.AsyncOpenAI(base_url=emulator.base_url, api_key="x", max_retries=0)
        result = await client.chat.completions.create(model="ok-model", messages=USER)
        assert result.choices[0].message.content == "Echo: hello big world"
        emulator.push_fault(Fault(status=500))
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(model="ok-model", messages=USER)
        chunks = [c async for c in await client.chat.completions.create(model="ok-model", messages=USER, stream=True)]
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ("Echo: hello big world")
        await client.close()
    assert len(emulator.requests) == 3
