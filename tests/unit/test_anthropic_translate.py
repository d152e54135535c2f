"""Units: Anthropic Messages <-> OpenAI chat completions translation, checked against both SDKs' own types."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx2
import pydantic
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, MessageTokensCount, RawMessageStreamEvent
from anthropic.types.message_create_params import MessageCreateParamsNonStreaming
from anthropic.types.shared import ErrorResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk, CompletionCreateParams

from gatewayz.providers.anthropic.translate import (
    StreamTranslator,
    TranslationError,
    count_tokens_estimate,
    error_body,
    messages_to_openai,
    openai_to_message,
    sse,
)

EVENT = pydantic.TypeAdapter(RawMessageStreamEvent)
OPENAI_REQUEST = pydantic.TypeAdapter(CompletionCreateParams)
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def _materialise(value: Any) -> Any:
    """pydantic validates TypedDict `Iterable` fields lazily: walk them so that every item is checked."""
    if isinstance(value, dict):
        return {k: _materialise(v) for k, v in value.items()}
    if isinstance(value, list | tuple) or hasattr(value, "__next__"):
        return [_materialise(v) for v in value]
    return value


def _valid_openai(body: dict[str, Any]) -> dict[str, Any]:
    _materialise(OPENAI_REQUEST.validate_python(body))
    return body


def _request(**overrides: Any) -> dict[str, Any]:
    params: MessageCreateParamsNonStreaming = {
        "model": "claude-test-model",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Hello"}],
    }
    body: dict[str, Any] = dict(params)
    body.update(overrides)
    return body


# ---------------------------------------------------------------- request


def test_request_scalar_fields() -> None:
    params: MessageCreateParamsNonStreaming = {
        "model": "claude-test-other",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "Hi"}],
        "stop_sequences": ["END", "\n\nHuman:"],
        "metadata": {"user_id": "user-42"},
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "service_tier": "auto",
    }
    # sampling parameters: no longer in this SDK's TypedDict, still sent by older SDKs and in the curated spec
    out = _valid_openai(messages_to_openai({**params, "temperature": 0.3, "top_p": 0.9, "top_k": 40}))
    assert out == {
        "model": "claude-test-other",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 1024,
        "stop": ["END", "\n\nHuman:"],
        "temperature": 0.3,
        "top_p": 0.9,
        "reasoning_effort": "medium",  # thinking with a 2,048-token budget
        "user": "user-42",
    }


@pytest.mark.parametrize("stream", [True, False])
def test_request_stream(stream: bool) -> None:
    out = _valid_openai(messages_to_openai(_request(stream=stream)))
    assert out["stream"] is stream
    assert out.get("stream_options") == ({"include_usage": True} if stream else None)


@pytest.mark.parametrize(
    ("system", "expected"),
    [
        ("You are terse.", "You are terse."),
        (
            [
                {"type": "text", "text": "You are terse."},
                {"type": "text", "text": "Answer in French.", "cache_control": {"type": "ephemeral"}},
            ],
            "You are terse.\nAnswer in French.",
        ),
    ],
)
def test_request_system(system: Any, expected: str) -> None:
    out = _valid_openai(messages_to_openai(_request(system=system)))
    assert out["messages"] == [{"role": "system", "content": expected}, {"role": "user", "content": "Hello"}]


def test_request_system_role_message_and_thinking_blocks() -> None:
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "redacted_thinking", "data": "xxx"},
            {"type": "text", "text": "Hello"},
            {"type": "text", "text": " there"},
        ]},
        {"role": "system", "content": [{"type": "text", "text": "Now be formal."}]},
        {"role": "user", "content": "Again"},
    ]
    out = _valid_openai(messages_to_openai(_request(messages=messages)))
    assert out["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello there"},
        {"role": "system", "content": "Now be formal."},
        {"role": "user", "content": "Again"},
    ]


def test_request_images_and_documents() -> None:
    content = [
        {"type": "text", "text": "Compare these."},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Plain notes."}},
        {"type": "document", "title": "spec.pdf",
         "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}},
    ]
    out = _valid_openai(messages_to_openai(_request(messages=[{"role": "user", "content": content}])))
    assert out["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "Compare these."},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        {"type": "text", "text": "Plain notes."},
        {"type": "file", "file": {"filename": "spec.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}},
    ]}]


def test_request_tool_round_trip() -> None:
    messages = [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking both."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Roma ☀"}},
        ]},
        {"role": "user", "content": [
            {"type": "text", "text": "Also: umbrella?"},
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C, sunny"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": True,
             "content": [{"type": "text", "text": "lookup failed"}, {"type": "text", "text": "timeout"}]},
        ]},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_3", "name": "get_weather", "input": {}},
        ]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_3"}]},
    ]
    out = _valid_openai(messages_to_openai(_request(messages=messages, tools=[WEATHER_TOOL])))
    assert out["messages"][0] == {"role": "user", "content": "Weather in Paris and Rome?"}
    assistant = out["messages"][1]
    assert assistant["role"] == "assistant" and assistant["content"] == "Checking both."
    assert [(c["id"], c["type"], c["function"]["name"]) for c in assistant["tool_calls"]] == [
        ("toolu_1", "function", "get_weather"), ("toolu_2", "function", "get_weather"),
    ]
    assert [json.loads(c["function"]["arguments"]) for c in assistant["tool_calls"]] == [
        {"city": "Paris"}, {"city": "Roma ☀"},
    ]
    assert out["messages"][2:] == [
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18C, sunny"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: lookup failed\ntimeout"},
        {"role": "user", "content": "Also: umbrella?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "toolu_3", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
        ]},
        {"role": "tool", "tool_call_id": "toolu_3", "content": ""},
    ]


def test_request_tool_result_image_goes_to_the_user_turn() -> None:
    messages = [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "screenshot", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
            {"type": "text", "text": "captured"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        ]}]},
    ]
    out = _valid_openai(messages_to_openai(_request(messages=messages)))
    assert out["messages"][1:] == [
        {"role": "tool", "tool_call_id": "t1", "content": "captured"},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]},
    ]


@pytest.mark.parametrize(
    ("tool_choice", "expected_choice", "expected_parallel"),
    [
        (None, None, None),
        ({"type": "auto"}, "auto", None),
        ({"type": "any"}, "required", None),
        ({"type": "tool", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}, None),
        ({"type": "none"}, "none", None),
        ({"type": "auto", "disable_parallel_tool_use": True}, "auto", False),
        ({"type": "any", "disable_parallel_tool_use": True}, "required", False),
        ({"type": "tool", "name": "get_weather", "disable_parallel_tool_use": False},
         {"type": "function", "function": {"name": "get_weather"}}, None),
    ],
)
def test_request_tools_and_tool_choice(tool_choice: Any, expected_choice: Any, expected_parallel: Any) -> None:
    extra = {"tool_choice": tool_choice} if tool_choice is not None else {}
    out = _valid_openai(messages_to_openai(_request(tools=[WEATHER_TOOL, {"name": "noop", "input_schema": {
        "type": "object"}}], **extra)))
    assert out["tools"] == [
        {"type": "function", "function": {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": WEATHER_TOOL["input_schema"],
        }},
        {"type": "function", "function": {"name": "noop", "parameters": {"type": "object"}}},
    ]
    assert out.get("tool_choice") == expected_choice
    assert out.get("parallel_tool_calls") == expected_parallel


def test_request_tool_choice_without_tools_is_dropped() -> None:
    out = messages_to_openai(_request(tool_choice={"type": "any", "disable_parallel_tool_use": True}))
    assert "tool_choice" not in out and "parallel_tool_calls" not in out and "tools" not in out


def _without(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda body: body.pop(key)


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda body: body.__setitem__(key, value)


def _content(*blocks: Any, role: str = "user") -> Callable[[dict[str, Any]], None]:
    return _set("messages", [{"role": role, "content": list(blocks)}])


@pytest.mark.parametrize(
    ("mutate", "param"),
    [
        (_without("model"), "model"),
        (_set("model", 42), "model"),
        (_without("max_tokens"), "max_tokens"),
        (_set("max_tokens", 0), "max_tokens"),
        (_set("max_tokens", -5), "max_tokens"),
        (_set("max_tokens", "100"), "max_tokens"),
        (_set("max_tokens", True), "max_tokens"),
        (_set("max_tokens", 1.5), "max_tokens"),
        (_without("messages"), "messages"),
        (_set("messages", []), "messages"),
        (_set("messages", "Hello"), "messages"),
        (_set("messages", [{"role": "tool", "content": "x"}]), "messages[0].role"),
        (_set("messages", [{"content": "x"}]), "messages[0].role"),
        (_content({"type": "video", "url": "x"}), "messages[0].content[0].type"),
        (_content({"type": "tool_use", "id": "t", "name": "n", "input": {}}), "messages[0].content[0].type"),
        (_content({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                  role="assistant"), "messages[0].content[0].type"),
        (_content({"type": "image", "source": {"type": "file", "file_id": "f"}}), "messages[0].content[0].source.type"),
        (_content({"type": "text"}), "messages[0].content[0].text"),
        (_content({"type": "tool_result", "content": "x"}), "messages[0].content[0].tool_use_id"),
        (_set("system", [{"type": "image"}]), "system[0]"),
        (_set("stop_sequences", "END"), "stop_sequences"),
        (_set("temperature", "hot"), "temperature"),
        (_set("tools", [{"type": "web_search_20250305", "name": "web_search"}]), "tools[0].type"),
        (_set("tools", [{"name": "f"}]), "tools[0].input_schema"),
        (_set("tool_choice", {"type": "sometimes"}), "tool_choice.type"),
        (_set("tool_choice", {"type": "tool"}), "tool_choice.name"),
    ],
)
def test_request_validation(mutate: Callable[[dict[str, Any]], None], param: str) -> None:
    body = _request()
    mutate(body)
    with pytest.raises(TranslationError) as caught:
        messages_to_openai(body)
    assert isinstance(caught.value, ValueError)
    assert caught.value.param == param
    assert str(caught.value).startswith(param + ":")


# ---------------------------------------------------------------- response


def _completion(message: dict[str, Any], finish_reason: str = "stop", usage: Any = None) -> dict[str, Any]:
    raw = {
        "id": "chatcmpl-abc123",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "upstream-model",
        "choices": [{"index": 0, "finish_reason": finish_reason, "message": {"role": "assistant", **message}}],
        "usage": usage,
    }
    return ChatCompletion.model_validate(raw).model_dump()


def test_response_text_and_tool_calls() -> None:
    resp = _completion(
        {"content": "Checking both.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_2", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Rome", "units": "c"}'}},
        ]},
        finish_reason="tool_calls",
        usage={"prompt_tokens": 120, "completion_tokens": 40, "total_tokens": 160,
               "prompt_tokens_details": {"cached_tokens": 100}},
    )
    out = openai_to_message(resp, "claude-test-model")
    message = Message.model_validate(out)
    assert message.id == "msg_abc123"
    assert message.model == "claude-test-model" and message.role == "assistant" and message.type == "message"
    assert [b.type for b in message.content] == ["text", "tool_use", "tool_use"]
    assert out["content"][0] == {"type": "text", "text": "Checking both."}
    assert out["content"][1:] == [
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Rome", "units": "c"}},
    ]
    assert message.stop_reason == "tool_use" and message.stop_sequence is None
    assert out["usage"] == {
        "input_tokens": 20, "output_tokens": 40, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 0,
    }


@pytest.mark.parametrize(
    ("finish_reason", "expected"),
    [("stop", "end_turn"), ("length", "max_tokens"), ("tool_calls", "tool_use"),
     ("function_call", "tool_use"), ("content_filter", "refusal")],
)
def test_response_finish_reasons(finish_reason: str, expected: str) -> None:
    out = openai_to_message(_completion({"content": "x"}, finish_reason=finish_reason), "m")
    assert Message.model_validate(out).stop_reason == expected


def test_response_odd_shapes() -> None:
    # no text, no usage, unparsable / non-object arguments, no tool call id, "stop" despite tool calls
    resp = _completion({"content": None, "tool_calls": [
        {"id": "", "type": "function", "function": {"name": "a", "arguments": "{not json"}},
        {"id": "call_b", "type": "function", "function": {"name": "b", "arguments": "[1, 2]"}},
    ]})
    out = openai_to_message(resp, "m")
    message = Message.model_validate(out)
    assert [(b.type, getattr(b, "input", None)) for b in message.content] == [("tool_use", {}), ("tool_use", {})]
    assert out["content"][0]["id"].startswith("toolu_")
    assert message.stop_reason == "tool_use"
    assert out["usage"] == {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0,
                            "cache_creation_input_tokens": 0}
    empty = Message.model_validate(openai_to_message({"choices": []}, "m"))
    assert empty.content == [] and empty.stop_reason == "end_turn" and empty.id.startswith("msg_")


def test_response_refusal_and_legacy_function_call() -> None:
    refused = openai_to_message(_completion({"content": None, "refusal": "I can't."}, "content_filter"), "m")
    assert refused["content"] == [{"type": "text", "text": "I can't."}] and refused["stop_reason"] == "refusal"
    legacy = openai_to_message(
        _completion({"function_call": {"name": "f", "arguments": '{"a": 1}'}}, "function_call"), "m")
    assert Message.model_validate(legacy).stop_reason == "tool_use"
    assert legacy["content"][0]["name"] == "f" and legacy["content"][0]["input"] == {"a": 1}


# ---------------------------------------------------------------- stream


def _chunk(delta: dict[str, Any] | None = None, finish: str | None = None, usage: Any = None,
           choices: bool = True) -> dict[str, Any]:
    raw = {
        "id": "chatcmpl-s1", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": "upstream",
        "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}] if choices else [],
        "usage": usage,
    }
    return ChatCompletionChunk.model_validate(raw).model_dump()


def _call(index: int, arguments: str, call_id: str | None = None, name: str | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if call_id:
        call.update(id=call_id, type="function")
        call["function"]["name"] = name
    return {"tool_calls": [call]}


REALISTIC_STREAM = [
    _chunk({"role": "assistant", "content": ""}),
    _chunk({"content": "Let me "}),
    _chunk({"content": "check both."}),
    _chunk(_call(0, "", "call_a", "get_weather")),
    _chunk(_call(0, '{"ci')),
    _chunk(_call(0, 'ty": "Par')),
    _chunk(_call(0, 'is"}')),
    _chunk(_call(1, '{"tz": ', "call_b", "get_time")),
    _chunk(_call(1, '"Europe/Rome", "fmt": [1, ')),
    _chunk(_call(1, "2]}")),
    _chunk({}, finish="tool_calls"),
    _chunk(choices=False, usage={"prompt_tokens": 50, "completion_tokens": 30, "total_tokens": 80,
                                 "prompt_tokens_details": {"cached_tokens": 8}}),
]


def _run(translator: StreamTranslator, chunks: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    events = [e for c in chunks for e in translator.feed(c)]
    return events + translator.finish()


def _validated(events: list[tuple[str, dict[str, Any]]]) -> Any:
    """Every event validates as the SDK's RawMessageStreamEvent; returns the SDK's accumulated Message."""
    snapshot = None
    json_bufs: dict[int, bytes] = {}
    for name, data in events:
        assert name == data["type"]
        event = EVENT.validate_python(data)
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=json_bufs)
    return snapshot


def test_stream_text_then_parallel_tool_calls() -> None:
    translator = StreamTranslator("claude-test-model")
    events = _run(translator, REALISTIC_STREAM)
    assert [(n, d.get("index")) for n, d in events] == [
        ("message_start", None),
        ("content_block_start", 0), ("content_block_delta", 0), ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1), ("content_block_delta", 1), ("content_block_delta", 1),
        ("content_block_delta", 1), ("content_block_stop", 1),
        ("content_block_start", 2), ("content_block_delta", 2), ("content_block_delta", 2),
        ("content_block_delta", 2), ("content_block_stop", 2),
        ("message_delta", None), ("message_stop", None),
    ]
    start = events[0][1]["message"]
    assert start["id"] == "msg_s1" and start["model"] == "claude-test-model" and start["content"] == []
    assert events[5][1]["content_block"] == {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {}}
    assert events[10][1]["content_block"] == {"type": "tool_use", "id": "call_b", "name": "get_time", "input": {}}
    for index, expected in [(1, {"city": "Paris"}), (2, {"tz": "Europe/Rome", "fmt": [1, 2]})]:
        deltas = [d["delta"] for n, d in events if n == "content_block_delta" and d["index"] == index]
        fragments = [d["partial_json"] for d in deltas]
        assert json.loads("".join(fragments)) == expected
    assert events[-2][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 30, "input_tokens": 42, "cache_read_input_tokens": 8},
    }
    final = _validated(events)
    assert final.content[0].text == "Let me check both."
    assert [(b.name, b.input) for b in final.content[1:]] == [
        ("get_weather", {"city": "Paris"}), ("get_time", {"tz": "Europe/Rome", "fmt": [1, 2]}),
    ]
    assert final.stop_reason == "tool_use" and final.usage.output_tokens == 30 and final.usage.input_tokens == 42
    assert translator.usage == (50, 30)
    assert translator.unrecognised == 0


@pytest.mark.parametrize(
    ("finish_reason", "expected"),
    [("stop", "end_turn"), ("length", "max_tokens"), ("content_filter", "refusal"), (None, "end_turn")],
)
def test_stream_text_finish_reasons(finish_reason: str | None, expected: str) -> None:
    translator = StreamTranslator("m", message_id="msg_fixed")
    events = _run(translator, [_chunk({"content": "Hi"}), _chunk({}, finish=finish_reason)])
    final = _validated(events)
    assert final.id == "msg_fixed" and final.stop_reason == expected and final.content[0].text == "Hi"
    assert events[-2][1]["usage"] == {"output_tokens": 0}  # no usage reported upstream
    assert translator.usage is None


def test_stream_empty_and_unrecognised() -> None:
    translator = StreamTranslator("m")
    bad: Any = "not a chunk"
    events = translator.feed({"object": "weird"}) + translator.feed(bad) + translator.feed(_chunk(choices=False))
    assert [n for n, _ in events] == ["message_start"]
    assert translator.unrecognised == 3
    end = translator.finish()
    assert [n for n, _ in end] == ["message_delta", "message_stop"]
    assert _validated(events + end).content == []
    assert translator.finish() == [] and translator.feed(_chunk({"content": "late"})) == []
    assert [n for n, _ in StreamTranslator("m").finish()] == ["message_start", "message_delta", "message_stop"]


def test_stream_usage_on_first_chunk_and_tool_then_text() -> None:
    translator = StreamTranslator("m")
    chunks = [
        _chunk({"role": "assistant"}, usage={"prompt_tokens": 12, "completion_tokens": 0, "total_tokens": 12}),
        _chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"arguments": '{"q":'}}]}),  # name comes later
        _chunk({"tool_calls": [{"index": 0, "function": {"name": "search", "arguments": ' "x"}'}}]}),
        _chunk({"content": "Done."}, finish="stop",
               usage={"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}),
    ]
    events = _run(translator, chunks)
    assert events[0][1]["message"]["usage"] == {"input_tokens": 12, "output_tokens": 0}
    final = _validated(events)
    assert [b.type for b in final.content] == ["tool_use", "text"]
    assert final.content[0].name == "search" and final.content[0].input == {"q": "x"}
    assert final.stop_reason == "tool_use"  # upstream said "stop" although it called a tool
    assert translator.usage == (12, 7)


def test_stream_interleaved_tool_fragments_are_not_lost() -> None:
    chunks = [
        _chunk({"tool_calls": [
            {"index": 0, "id": "c0", "function": {"name": "a", "arguments": '{"x": '}},
            {"index": 1, "id": "c1", "function": {"name": "b", "arguments": '{"y": 2}'}},
        ]}),
        _chunk(_call(0, "1}")),
        _chunk({}, finish="tool_calls"),
    ]
    final = _validated(_run(StreamTranslator("m"), chunks))
    assert [(b.name, b.input) for b in final.content] == [("a", {"x": 1}), ("b", {"y": 2})]


def test_stream_error_event() -> None:
    translator = StreamTranslator("m")
    translator.feed(_chunk({"content": "partial"}))
    [(name, data)] = translator.error("upstream connection lost")
    assert name == "error"
    assert ErrorResponse.model_validate(data).error.type == "api_error"
    assert data == {"type": "error", "error": {"type": "api_error", "message": "upstream connection lost"}}
    assert translator.finish() == []


def test_sse_framing() -> None:
    assert sse("message_stop", {"type": "message_stop"}) == b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    frame = sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                        "delta": {"type": "text_delta", "text": "é\n"}})
    head, data = frame.removesuffix(b"\n\n").split(b"\n")
    assert head == b"event: content_block_delta" and json.loads(data.removeprefix(b"data: "))["delta"]["text"] == "é\n"


# ---------------------------------------------------------------- count_tokens, errors


def test_count_tokens_estimate() -> None:
    body = {
        "model": "m",
        "system": "abcd",  # 4 bytes
        "messages": [
            {"role": "user", "content": "hello world!"},  # 12
            {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},  # 2
            {"role": "user", "content": [
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "é"}]},  # 2
            ]},
        ],
    }
    assert count_tokens_estimate(body) == 5 + 3 * 4 + 1000
    with_tools = count_tokens_estimate({**body, "tools": [WEATHER_TOOL]})
    assert with_tools > count_tokens_estimate(body)
    assert with_tools == count_tokens_estimate({**body, "tools": [WEATHER_TOOL]})
    with pytest.raises(TranslationError):
        count_tokens_estimate({"model": "m", "messages": []})


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, "invalid_request_error"), (401, "authentication_error"), (402, "billing_error"),
     (403, "permission_error"), (404, "not_found_error"), (413, "request_too_large"), (429, "rate_limit_error"),
     (500, "api_error"), (502, "api_error"), (503, "api_error"), (504, "api_error"), (529, "overloaded_error"),
     (422, "invalid_request_error"), (599, "api_error")],
)
def test_error_body(status: int, kind: str) -> None:
    body = error_body(status, "nope")
    assert body == {"type": "error", "error": {"type": kind, "message": "nope"}}
    if kind != "request_too_large":  # a documented API error type the SDK's union does not list
        ErrorResponse.model_validate(body)


# ---------------------------------------------------------------- the official SDK, end to end


def _upstream_completion(openai_body: dict[str, Any]) -> dict[str, Any]:
    assert openai_body["tools"][0]["function"]["name"] == "get_weather"
    return _completion(
        {"content": "On it.", "tool_calls": [
            {"id": "call_9", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
        ]},
        finish_reason="tool_calls",
        usage={"prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39},
    )


def _gateway(request: httpx2.Request) -> httpx2.Response:
    """What the lead's endpoint does, with a canned upstream."""
    body = json.loads(request.content)
    if request.url.path == "/v1/messages/count_tokens":
        return httpx2.Response(200, json={"input_tokens": count_tokens_estimate(body)})
    try:
        openai_body = _valid_openai(messages_to_openai(body))
    except TranslationError as exc:
        return httpx2.Response(400, json=error_body(400, str(exc)))
    if not openai_body.get("stream"):
        return httpx2.Response(200, json=openai_to_message(_upstream_completion(openai_body), body["model"]))
    translator = StreamTranslator(body["model"])
    frames = b"".join(sse(n, d) for c in REALISTIC_STREAM for n, d in translator.feed(c))
    frames += b"".join(sse(n, d) for n, d in translator.finish())
    return httpx2.Response(200, content=frames, headers={"content-type": "text/event-stream"})


@pytest.fixture
def client() -> Iterator[anthropic.Anthropic]:
    http = httpx2.Client(transport=httpx2.MockTransport(_gateway))
    with anthropic.Anthropic(api_key="gw-key", base_url="http://gateway.test", max_retries=0, http_client=http) as c:
        yield c


def test_sdk_create(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="claude-test-model", max_tokens=100, tools=[WEATHER_TOOL],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
    )
    assert isinstance(message, Message)
    assert message.content[0].type == "text" and message.content[0].text == "On it."
    assert message.content[1].type == "tool_use" and message.content[1].input == {"city": "Oslo"}
    assert message.stop_reason == "tool_use" and message.usage.input_tokens == 30


def test_sdk_stream(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model="claude-test-model", max_tokens=100, messages=[{"role": "user", "content": "Go"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Let me check both."
    assert [b.type for b in final.content] == ["text", "tool_use", "tool_use"]
    assert final.content[2].type == "tool_use" and final.content[2].input == {"tz": "Europe/Rome", "fmt": [1, 2]}
    assert final.stop_reason == "tool_use" and final.usage.output_tokens == 30


def test_sdk_errors_and_count_tokens(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model="m", max_tokens=0, messages=[{"role": "user", "content": "x"}])
    assert caught.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "max_tokens" in caught.value.message
    counted = client.messages.count_tokens(model="m", messages=[{"role": "user", "content": "hello world!"}])
    assert isinstance(counted, MessageTokensCount) and counted.input_tokens == 3 + 4


def test_thinking_becomes_a_reasoning_effort() -> None:
    to_openai = messages_to_openai
    base = {"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    efforts = {b: to_openai({**base, "thinking": {"type": "enabled", "budget_tokens": b}}).get("reasoning_effort")
               for b in (1024, 4096, 16000)}
    assert efforts == {1024: "low", 4096: "medium", 16000: "high"}
    assert "reasoning_effort" not in to_openai({**base, "thinking": {"type": "disabled"}})
    with pytest.raises(TranslationError):
        to_openai({**base, "thinking": {"type": "enabled", "budget_tokens": "lots"}})
