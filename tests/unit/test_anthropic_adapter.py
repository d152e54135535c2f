"""The native Anthropic upstream adapter: golden translations from Anthropic's documented examples
(tests/fixtures/anthropic/), stream decoding, error bodies and what cannot be translated."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from gatewayz.errors import InvalidRequest
from gatewayz.providers.anthropic.upstream import AnthropicUpstream, make
from gatewayz.providers.engine import AttemptFailed
from gatewayz.providers.spec import ProviderSpec
from gatewayz.providers.sse import DONE

FIXTURES = Path(__file__).parent.parent / "fixtures" / "anthropic"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def adapter(**options: str) -> AnthropicUpstream:
    return make(ProviderSpec(name="anthropic", wire="anthropic", base_url="https://api.anthropic.com/v1",
                             api_key="sk-ant-test", options=options))


def translate(body: dict[str, Any], stream: bool = False, **options: str) -> dict[str, Any]:
    out = asyncio.run(adapter(**options).request(body, "claude-x", stream))
    return orjson.loads(out.data)  # type: ignore[no-any-return]


def chat(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": list(messages) or [{"role": "user", "content": "hi"}], **extra}


def decode(raw: bytes, split: int | None = None) -> list[Any]:
    decoder = adapter().decoder()
    if split is None:
        return decoder.feed(raw)
    out: list[Any] = []
    for i in range(0, len(raw), split):
        out.extend(decoder.feed(raw[i:i + split]))
    return out


def without_created(items: list[Any]) -> list[Any]:
    return [{k: v for k, v in item.items() if k != "created"} if isinstance(item, dict) else item for item in items]


# ---------------------------------------------------------------- request

def test_golden_request_translation() -> None:
    out = asyncio.run(adapter().request(fixture("request_openai.json"), "claude-sonnet-4-5-20250929", True))
    assert out.url == "https://api.anthropic.com/v1/messages"
    assert out.headers["x-api-key"] == "sk-ant-test" and out.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in out.headers
    assert orjson.loads(out.data) == fixture("request_anthropic.json")


def test_options_version_max_tokens_and_unknown_option() -> None:
    a = adapter(version="2024-01-01", max_tokens="777")
    out = asyncio.run(a.request(chat(), "claude-x", False))
    assert out.headers["anthropic-version"] == "2024-01-01" and orjson.loads(out.data)["max_tokens"] == 777
    assert translate(chat())["max_tokens"] == 4096 and "stream" not in translate(chat())
    assert translate(chat(max_tokens=12))["max_tokens"] == 12
    with pytest.raises(ValueError, match="unknown anthropic option"):
        adapter(region="x")
    with pytest.raises(ValueError, match="max_tokens"):
        adapter(max_tokens="-1")
    with pytest.raises(ValueError, match="json_mode"):
        adapter(json_mode="prefill")


def test_turns_are_merged_and_prefill_trimmed() -> None:
    out = translate(chat({"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                         {"role": "assistant", "content": [{"type": "text", "text": "c  "}]}))
    assert out["messages"] == [{"role": "user", "content": [{"type": "text", "text": "a"}]},
                               {"role": "assistant", "content": [{"type": "text", "text": "b"},
                                                                 {"type": "text", "text": "c"}]}]
    blank_prefill = translate(chat({"role": "user", "content": "a"}, {"role": "assistant", "content": " \n"}))
    assert [m["role"] for m in blank_prefill["messages"]] == ["user"]
    skipped = translate(chat({"role": "user", "content": "a"}, {"role": "assistant", "content": ""},
                             {"role": "user", "content": "b"}))
    assert [m["role"] for m in skipped["messages"]] == ["user"] and len(skipped["messages"][0]["content"]) == 2


def test_tools_choice_and_parallel_flag() -> None:
    tools = [{"type": "function", "function": {"name": "f"}}]
    assert translate(chat(tools=tools))["tools"] == [{"name": "f", "input_schema": {"type": "object",
                                                                                    "properties": {}}}]
    assert "tool_choice" not in translate(chat(tools=tools))
    assert translate(chat(tools=tools, tool_choice="required"))["tool_choice"] == {"type": "any"}
    assert translate(chat(tools=tools, tool_choice="none"))["tool_choice"] == {"type": "none"}
    named = {"type": "function", "function": {"name": "f"}}
    assert translate(chat(tools=tools, tool_choice=named, parallel_tool_calls=False))["tool_choice"] == \
        {"type": "tool", "name": "f", "disable_parallel_tool_use": True}
    assert translate(chat(tools=tools, parallel_tool_calls=False))["tool_choice"] == \
        {"type": "auto", "disable_parallel_tool_use": True}
    assert "tool_choice" not in translate(chat(tool_choice="required"))  # no tools: nothing to choose


@pytest.mark.parametrize("body, param", [
    (chat(n=2), "n"),
    (chat({"role": "system", "content": "only a system prompt"}), "messages"),
    (chat({"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}),
     "messages[0].tool_calls[0].function.arguments"),
    (chat({"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}),
     "messages[0].tool_calls[0].function.arguments"),
    (chat({"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}]}),
     "messages[0].content[0].type"),
    (chat({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,raw"}}]}),
     "messages[0].content[0].image_url.url"),
    (chat({"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}),
     "messages[0].content[0].file.file_data"),
    (chat({"role": "tool", "content": "r"}), "messages[0].tool_call_id"),
    (chat({"role": "function", "name": "f", "content": "r"}), "messages[0].role"),
    (chat(tools=[{"type": "function", "function": {"name": "json_response"}}]), "tools[0].function.name"),
    (chat(tools=[{"type": "web_search"}]), "tools[0]"),
    (chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "array"}}}),
     "response_format.json_schema.schema"),
    (chat(reasoning_effort="extreme"), "reasoning_effort"),
    (chat(stop=[1]), "stop"),
])
def test_untranslatable_input_is_a_400(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        translate(body)
    assert exc.value.status == 400 and exc.value.param == param


def test_pdf_file_becomes_a_document() -> None:
    out = translate(chat({"role": "user", "content": [
        {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}}]}))
    assert out["messages"][0]["content"] == [{"type": "document", "title": "a.pdf", "source": {
        "type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}}]


def test_json_mode_forced_tool_and_native() -> None:
    schema = {"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
    out = translate(chat(response_format=fmt))
    assert out["tools"] == [{"name": "json_response", "description": "Give the answer as a JSON object with this "
                             "tool.", "input_schema": schema}]
    assert out["tool_choice"] == {"type": "tool", "name": "json_response"}
    with_tools = translate(chat(response_format={"type": "json_object"},
                                tools=[{"type": "function", "function": {"name": "f"}}]))
    assert [t["name"] for t in with_tools["tools"]] == ["f", "json_response"]
    assert with_tools["tool_choice"] == {"type": "any"} and with_tools["tools"][1]["input_schema"] == {"type": "object"}
    native = translate(chat(response_format=fmt), json_mode="native")
    assert native["output_config"] == {"format": {"type": "json_schema", "schema": schema}} and "tools" not in native
    assert translate(chat(response_format={"type": "json_object"}), json_mode="native")["tool_choice"]["type"] == "tool"
    assert "tools" not in translate(chat(response_format={"type": "text"}))


def test_reasoning_effort_becomes_a_thinking_budget() -> None:
    out = translate(chat(reasoning_effort="medium", temperature=0.3, top_k=5, top_p=0.5))
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 4096} and out["max_tokens"] == 4096 + 4096
    assert not {"temperature", "top_k", "top_p"} & set(out)
    capped = translate(chat(reasoning_effort="high", max_completion_tokens=8000, top_p=0.97))
    assert capped["thinking"]["budget_tokens"] == 6000 and capped["max_tokens"] == 8000 and capped["top_p"] == 0.97
    assert "thinking" not in translate(chat(reasoning_effort="low", max_tokens=1000))  # under the 1024 minimum
    assert "thinking" not in translate(chat(reasoning_effort="minimal"))
    assert translate(chat(reasoning={"max_tokens": 2000}))["thinking"]["budget_tokens"] == 2000
    forced = translate(chat(reasoning_effort="high", response_format={"type": "json_object"}))
    assert "thinking" not in forced and forced["max_tokens"] == 4096
    loop = chat({"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "r"}, reasoning_effort="high")
    assert "thinking" not in translate(loop)


# --------------------------------------------------------------- response

def test_text_message_from_the_docs() -> None:
    out = adapter().response(fixture("message_text.json"))
    assert out["created"] > 0
    del out["created"]
    assert out == {
        "id": "chatcmpl-013Zva2CMHLNnXjNJJKqJ2EF", "object": "chat.completion", "model": "claude-sonnet-4-5-20250929",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi! My name is Claude.", "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 2095, "completion_tokens": 503, "total_tokens": 2598,
                  "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 0}}}


def test_parallel_tool_use_message_and_cache_usage() -> None:
    out = adapter().response(fixture("message_tool_use.json"))
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "I'll check the current weather in San Francisco for you."
    assert choice["message"]["tool_calls"] == [
        {"id": "toolu_01A09q90qw90lq917835lq9", "type": "function", "function": {
            "name": "get_weather", "arguments": '{"location":"San Francisco, CA","unit":"celsius"}'}},
        {"id": "toolu_01B09q90qw90lq917835lq9", "type": "function", "function": {
            "name": "get_time", "arguments": '{"timezone":"America/Los_Angeles"}'}}]
    assert out["usage"]["prompt_tokens"] == 472 + 100 + 1200 and out["usage"]["completion_tokens"] == 89
    assert out["usage"]["prompt_tokens_details"] == {"cached_tokens": 1200, "cache_write_tokens": 100}


def test_thinking_message_and_stop_reasons() -> None:
    out = adapter().response(fixture("message_thinking.json"))
    message = out["choices"][0]["message"]
    assert message["content"] == "Based on my analysis..."
    assert message["reasoning_content"] == "Let me analyze this step by step..."
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"]["completion_tokens_details"] == {"reasoning_tokens": 1500}
    base = fixture("message_text.json")
    for stop, finish in [("stop_sequence", "stop"), ("refusal", "content_filter"), ("pause_turn", "stop"),
                         ("model_context_window_exceeded", "length"), (None, "stop"), ("novel", "stop")]:
        assert adapter().response({**base, "stop_reason": stop})["choices"][0]["finish_reason"] == finish


def test_json_tool_answer_becomes_content() -> None:
    data = {**fixture("message_text.json"), "stop_reason": "tool_use", "content": [
        {"type": "tool_use", "id": "toolu_1", "name": "json_response", "input": {"echo": "hi"}}]}
    out = adapter().response(data)
    assert out["choices"][0]["message"] == {"role": "assistant", "content": '{"echo":"hi"}', "refusal": None}
    assert out["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("junk", [None, [], {"type": "error", "error": {}}, {"type": "message"}, "text"])
def test_junk_answer_fails_over(junk: Any) -> None:
    with pytest.raises(AttemptFailed) as exc:
        adapter().response(junk)
    assert exc.value.kind == "bad_response"


def test_error_bodies_in_openai_shape() -> None:
    body = (FIXTURES / "error_invalid_request.json").read_bytes()
    assert orjson.loads(adapter().error_body(400, body)) == {"error": {
        "message": "messages: text content blocks must be non-empty", "type": "invalid_request_error",
        "param": None, "code": "invalid_request_error"}}
    html = adapter().error_body(413, b"<html>too big</html>")
    assert orjson.loads(html)["error"]["message"] == "<html>too big</html>"
    openai_shaped = b'{"error": {"message": "m", "type": "t", "param": null, "code": "c"}}'
    assert adapter().error_body(422, openai_shaped) == openai_shaped


# ----------------------------------------------------------------- stream

def test_text_stream_from_the_docs() -> None:
    raw = (FIXTURES / "stream_text.sse").read_bytes()
    chunks = decode(raw)
    assert without_created(decode(raw, split=7)) == without_created(chunks)  # any split of the bytes
    head = {"id": "chatcmpl-1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "object": "chat.completion.chunk",
            "model": "claude-sonnet-4-5-20250929"}

    def choice(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    assert without_created(chunks) == [
        choice({"role": "assistant", "content": ""}), choice({"content": "Hello"}), choice({"content": "!"}),
        choice({}, "stop"),
        {**head, "choices": [], "usage": {"prompt_tokens": 25, "completion_tokens": 15, "total_tokens": 40,
                                          "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                                          "completion_tokens_details": {"reasoning_tokens": 0}}},
        DONE]


def test_tool_use_stream_from_the_docs() -> None:
    chunks = decode((FIXTURES / "stream_tool_use.sse").read_bytes(), split=50)
    assert chunks[-1] == DONE
    deltas = [c["choices"][0]["delta"] for c in chunks[:-1] if c["choices"]]
    text = "".join(d.get("content") or "" for d in deltas)
    assert text == "Okay, let's check the weather for San Francisco, CA:"
    calls = [call for d in deltas for call in d.get("tool_calls", [])]
    assert calls[0] == {"index": 0, "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function",
                        "function": {"name": "get_weather", "arguments": ""}}
    assert all(c["index"] == 0 for c in calls)  # block index 1 is the first tool call
    arguments = "".join(c["function"]["arguments"] for c in calls)
    assert json.loads(arguments) == {"location": "San Francisco, CA", "unit": "fahrenheit"}
    assert chunks[-3]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-2]["usage"]["prompt_tokens"] == 472 and chunks[-2]["usage"]["completion_tokens"] == 89


def test_thinking_stream_without_usage() -> None:
    chunks = decode((FIXTURES / "stream_thinking.sse").read_bytes())
    deltas = [c["choices"][0]["delta"] for c in chunks[:-1]]
    reasoning = "".join(d.get("reasoning_content", "") for d in deltas)
    assert reasoning.startswith("Let me solve this step by step:") and reasoning.endswith("= 12,231")
    assert "".join(d.get("content") or "" for d in deltas) == "27 * 453 = 12,231"
    assert chunks[-1] == DONE and all(c["choices"] for c in chunks[:-1])  # no usage reported: no usage chunk


def test_error_event_ends_the_stream() -> None:
    raw = (FIXTURES / "stream_error.sse").read_bytes()
    chunks = decode(raw + b'event: content_block_start\ndata: {"type": "content_block_start"}\n\n')
    assert len(chunks) == 2 and chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[1] == {"error": {"message": "Overloaded", "type": "overloaded_error", "param": None,
                                   "code": "overloaded_error"}}


def test_json_mode_stream_is_content() -> None:
    raw = b"".join(b"event: %s\ndata: %s\n\n" % (name.encode(), orjson.dumps(data)) for name, data in [
        ("message_start", {"type": "message_start", "message": {"id": "msg_1", "model": "c", "usage": {
            "input_tokens": 3, "cache_read_input_tokens": 2, "output_tokens": 1}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {
            "type": "tool_use", "id": "toolu_1", "name": "json_response", "input": {}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
            "type": "input_json_delta", "partial_json": '{"echo": '}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
            "type": "input_json_delta", "partial_json": '"hi"}'}}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {
            "output_tokens": 4, "input_tokens": 3, "cache_read_input_tokens": 2}}),
        ("message_stop", {"type": "message_stop"})])
    chunks = decode(raw)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-2]) == '{"echo": "hi"}'
    assert chunks[-3]["choices"][0]["finish_reason"] == "stop"
    usage = chunks[-2]["usage"]
    assert usage["prompt_tokens"] == 5 and usage["prompt_tokens_details"]["cached_tokens"] == 2


def test_unknown_malformed_and_truncated_streams() -> None:
    raw = (FIXTURES / "stream_text.sse").read_bytes()
    cut = raw[:raw.index(b"event: message_stop")]
    assert DONE not in decode(cut)  # no message_stop: the gateway ends the stream with an error and estimates
    odd = (b'event: future_event\ndata: {"type": "future_event", "x": 1}\n\n'
           b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0, '
           b'"delta": {"type": "hologram_delta"}}\n\n'
           b"event: content_block_delta\ndata: {not json\n\n")
    chunks = decode(raw.replace(b"event: message_stop", odd + b"event: message_stop"))
    raw_items = [c for c in chunks if isinstance(c, bytes) and c != DONE]
    assert raw_items == [b'event: future_event\ndata: {"type": "future_event", "x": 1}',
                         b'event: content_block_delta/hologram_delta\ndata: {"type": "content_block_delta", '
                         b'"index": 0, "delta": {"type": "hologram_delta"}}',
                         b"{not json"]
    assert all(not item.startswith(b"{") or item == b"{not json" for item in raw_items)
    assert chunks[-1] == DONE and chunks[-2]["usage"]["completion_tokens"] == 15
