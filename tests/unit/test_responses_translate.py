"""Units: Responses API <-> OpenAI chat completions translation (golden JSON), checked against the SDK's types."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pydantic
import pytest
from openai.types.chat import CompletionCreateParams
from openai.types.responses import Response, ResponseStreamEvent

from gatewayz.errors import InvalidRequest
from gatewayz.pipeline.context import Usage
from gatewayz.providers.responses.request import responses_to_chat
from gatewayz.providers.responses.response import chat_to_response, usage_object
from gatewayz.providers.responses.stream import ResponseEvents, sse

CHAT_REQUEST = pydantic.TypeAdapter(CompletionCreateParams)
EVENT = pydantic.TypeAdapter(ResponseStreamEvent)
PNG = "data:image/png;base64,iVBORw0KGgo="
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def _consume(value: Any) -> None:
    """pydantic checks a TypedDict's Iterable fields only as they are read: read them all."""
    lazy = isinstance(value, list | tuple) or hasattr(value, "__next__")
    for item in value.values() if isinstance(value, dict) else value if lazy else ():
        _consume(item)


def _valid(chat: dict[str, Any]) -> dict[str, Any]:
    """The chat body passes the openai SDK's request type."""
    _consume(CHAT_REQUEST.validate_python(chat))
    return chat


def _chat(body: dict[str, Any]) -> dict[str, Any]:
    return _valid(responses_to_chat(body)[0])


def _ids(value: Any) -> Any:
    """Random ids and clock times replaced by stable placeholders, for golden comparisons."""
    text = orjson.dumps(value).decode()
    text = re.sub(r'"(resp|msg|fc|rs|call)_[0-9a-f]{48}"', r'"\1_X"', text)
    text = re.sub(r'"completed_at":\d+', '"completed_at":0', text)
    return orjson.loads(text)


def test_golden_request() -> None:
    body = {
        "model": "test/echo", "instructions": "Be brief.", "store": True, "stream": True, "user": "u-1",
        "metadata": {"team": "a"}, "models": ["test/pricey"], "provider": {"sort": "price"},
        "max_output_tokens": 50, "temperature": 0.5, "top_p": 0.9, "parallel_tool_calls": False,
        "reasoning": {"effort": "low", "summary": "auto"}, "include": ["reasoning.encrypted_content"],
        "text": {"format": {"type": "json_schema", "name": "weather", "schema": WEATHER, "strict": True}},
        "tools": [{"type": "function", "name": "get_weather", "description": "Weather.", "parameters": WEATHER,
                   "strict": True}],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "input": [
            {"role": "developer", "content": "Use tools."},
            {"role": "user", "content": [{"type": "input_text", "text": "What is this?"},
                                         {"type": "input_image", "image_url": PNG, "detail": "low"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
             "content": [{"type": "output_text", "text": "A city. ", "annotations": []},
                         {"type": "output_text", "text": "Checking.", "annotations": []}]},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
            {"type": "function_call", "call_id": "call_2", "name": "get_weather", "arguments": '{"city":"Rome"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            {"type": "function_call_output", "call_id": "call_2",
             "output": [{"type": "input_text", "text": "rain"}, {"type": "input_image", "image_url": PNG}]},
            {"role": "user", "content": "Thanks"},
        ],
    }
    chat, echo = responses_to_chat(body)
    _valid(chat)
    assert chat == {
        "model": "test/echo", "models": ["test/pricey"], "provider": {"sort": "price"}, "user": "u-1",
        "stream": True, "max_completion_tokens": 50, "temperature": 0.5, "top_p": 0.9, "reasoning_effort": "low",
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather.",
                                                    "parameters": WEATHER, "strict": True}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}}, "parallel_tool_calls": False,
        "response_format": {"type": "json_schema", "json_schema": {"name": "weather", "schema": WEATHER,
                                                                   "strict": True}},
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "system", "content": "Use tools."},
            {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                         {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}}]},
            {"role": "assistant", "content": "A city. Checking.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather",
                                                                  "arguments": '{"city":"Paris"}'}},
                {"id": "call_2", "type": "function", "function": {"name": "get_weather",
                                                                  "arguments": '{"city":"Rome"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": "rain"},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": PNG}}]},
            {"role": "user", "content": "Thanks"},
        ],
    }
    assert echo["tools"] == [{"type": "function", "name": "get_weather", "description": "Weather.",
                              "parameters": WEATHER, "strict": True}]
    assert echo["tool_choice"] == {"type": "function", "name": "get_weather"} and echo["parallel_tool_calls"] is False
    assert echo["metadata"] == {"team": "a"} and echo["instructions"] == "Be brief." and echo["store"] is False
    assert echo["reasoning"] == {"effort": "low", "summary": "auto"} and echo["max_output_tokens"] == 50
    assert echo["text"]["format"]["type"] == "json_schema"


def test_plain_string_input_and_defaults() -> None:
    chat, echo = responses_to_chat({"model": "m", "input": "hi"})
    assert chat == {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert echo["tools"] == [] and echo["tool_choice"] == "auto" and echo["parallel_tool_calls"] is True
    assert echo["text"] == {"format": {"type": "text"}} and echo["metadata"] == {}


def test_json_object_allowed_tools_and_logprobs() -> None:
    tools = [{"type": "function", "name": n, "parameters": WEATHER} for n in ("a", "b")]
    chat = _chat({"model": "m", "input": "x", "text": {"format": {"type": "json_object"}, "verbosity": "low"},
                  "tools": tools, "top_logprobs": 2,
                  "tool_choice": {"type": "allowed_tools", "mode": "required",
                                  "tools": [{"type": "function", "name": "b"}]}})
    assert chat["response_format"] == {"type": "json_object"} and chat["verbosity"] == "low"
    assert [t["function"]["name"] for t in chat["tools"]] == ["b"] and chat["tool_choice"] == "required"
    assert chat["logprobs"] is True and chat["top_logprobs"] == 2
    # tool_choice without tools is not sent: chat upstreams refuse it
    assert "tool_choice" not in _chat({"model": "m", "input": "x", "tool_choice": "none"})


@pytest.mark.parametrize(("patch", "param"), [
    ({"previous_response_id": "resp_1"}, "previous_response_id"),
    ({"conversation": "conv_1"}, "conversation"),
    ({"prompt": {"id": "pmpt_1"}}, "prompt"),
    ({"background": True}, "background"),
    ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"tools": [{"type": "file_search", "vector_store_ids": ["v"]}]}, "tools[0].type"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
    ({"input": [{"type": "computer_call_output", "call_id": "c"}]}, "input[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1", "detail": "auto"}]}]},
     "input[0].content[0].file_id"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}]},
     "input[0].content[0]"),
    ({"input": []}, "input"),
    ({"input": None}, "input"),
    ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
    ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input[0].call_id"),
    ({"input": [{"role": "system", "content": [{"type": "input_image", "image_url": PNG}]}]}, "input[0].content"),
    ({"model": ""}, "model"),
    ({"max_output_tokens": 0}, "max_output_tokens"),
    ({"temperature": "hot"}, "temperature"),
    ({"tool_choice": {"type": "mcp", "server_label": "x"}}, "tool_choice"),
    ({"tool_choice": "sometimes"}, "tool_choice"),
    ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema"),
    ({"text": {"format": {"type": "yaml"}}}, "text.format.type"),
    ({"tools": [{"type": "function"}]}, "tools[0].name"),
    ({"stream": "yes"}, "stream"),
])
def test_refused_with_a_clear_400(patch: dict[str, Any], param: str) -> None:
    body = {"model": "m", "input": "hi", **patch}
    with pytest.raises(InvalidRequest) as err:
        responses_to_chat(body)
    assert err.value.status == 400 and err.value.param == param, err.value.message
    if "previous_response_id" in patch:
        assert "send the full conversation" in err.value.message


ECHO = responses_to_chat({"model": "m", "input": "hi"})[1]
USAGE = usage_object(Usage(prompt_tokens=10, completion_tokens=5, cached_tokens=2, reasoning_tokens=3), 12_345)


def test_golden_response() -> None:
    chat = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "up",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": {"content": [
                {"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": []}]},
                "message": {"role": "assistant", "content": "Hi", "reasoning_content": "think",
                            "tool_calls": [{"id": "call_a", "type": "function",
                                            "function": {"name": "f", "arguments": '{"x":1}'}}]}}]}
    response = chat_to_response(chat, "resp_" + "0" * 48, 1700000000, "test/echo", ECHO, USAGE)
    Response.model_validate(response)
    assert _ids(response)["output"] == [
        {"type": "reasoning", "id": "rs_X", "summary": [], "status": "completed",
         "content": [{"type": "reasoning_text", "text": "think"}]},
        {"type": "message", "id": "msg_X", "status": "completed", "role": "assistant",
         "content": [{"type": "output_text", "text": "Hi", "annotations": [],
                      "logprobs": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": []}]}]},
        {"type": "function_call", "id": "fc_X", "call_id": "call_a", "name": "f", "arguments": '{"x":1}',
         "status": "completed"},
    ]
    assert response["usage"] == {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 2,
                                                                              "cache_write_tokens": 0},
                                 "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 3},
                                 "total_tokens": 15, "cost": 0.000012345}
    assert response["status"] == "completed" and response["incomplete_details"] is None
    assert response["object"] == "response" and response["created_at"] == 1700000000 and response["error"] is None
    assert response["model"] == "test/echo" and response["tool_choice"] == "auto"


def test_length_makes_an_incomplete_response() -> None:
    chat = {"choices": [{"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": "a b"}}]}
    response = Response.model_validate(chat_to_response(chat, "resp_x", 1, "m", ECHO, USAGE))
    assert response.status == "incomplete" and response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output[0].status == "incomplete" and response.output_text == "a b"  # type: ignore[union-attr]


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "c", "object": "chat.completion.chunk", "choices": [
        {"index": 0, "delta": delta, "finish_reason": finish}]}


def _events(chunks: list[dict[str, Any]], usage: dict[str, Any] | None = USAGE) -> list[dict[str, Any]]:
    stream = ResponseEvents("test/echo", ECHO, "resp_1", 1)
    events = stream.start()
    for chunk in chunks:
        events += stream.feed(chunk)
    events += stream.finish(usage)
    for event in events:
        EVENT.validate_python(event)
        assert sse(event).startswith(b"event: " + event["type"].encode() + b"\ndata: {")
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def test_stream_text_event_sequence() -> None:
    events = _events([_chunk({"role": "assistant", "content": ""}), _chunk({"content": "Echo:"}),
                      _chunk({"content": " hi"}), _chunk({}, "stop")])
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed"]
    assert events[0]["response"]["status"] == "in_progress" and events[0]["response"]["output"] == []
    delta = events[4]
    item_id = events[2]["item"]["id"]
    assert delta["item_id"] == item_id and delta["output_index"] == 0 and delta["content_index"] == 0
    assert events[6]["text"] == "Echo: hi"
    final = Response.model_validate(events[-1]["response"])
    assert final.output_text == "Echo: hi" and final.status == "completed" and final.usage is not None
    assert final.output[0].id == item_id and final.usage.model_dump()["cost"] == 0.000012345


def test_stream_reasoning_text_and_interleaved_parallel_calls() -> None:
    def call(index: int, **fields: Any) -> dict[str, Any]:
        return _chunk({"tool_calls": [{"index": index, **fields}]})

    events = _events([
        _chunk({"reasoning_content": "hmm"}), _chunk({"content": "Let me check."}),
        call(0, id="call_a", type="function", function={"name": "f", "arguments": ""}),
        call(1, id="call_b", type="function", function={"name": "g", "arguments": '{"y"'}),
        call(0, function={"arguments": '{"x":1}'}), call(1, function={"arguments": ":2}"}),
        _chunk({}, "tool_calls")])
    kinds = [(e["type"], e.get("output_index")) for e in events]
    assert kinds == [
        ("response.created", None), ("response.in_progress", None),
        ("response.output_item.added", 0), ("response.content_part.added", 0), ("response.reasoning_text.delta", 0),
        ("response.reasoning_text.done", 0), ("response.content_part.done", 0), ("response.output_item.done", 0),
        ("response.output_item.added", 1), ("response.content_part.added", 1), ("response.output_text.delta", 1),
        ("response.output_text.done", 1), ("response.content_part.done", 1), ("response.output_item.done", 1),
        ("response.output_item.added", 2), ("response.output_item.added", 3),
        ("response.function_call_arguments.delta", 3), ("response.function_call_arguments.delta", 2),
        ("response.function_call_arguments.delta", 3),
        ("response.function_call_arguments.done", 2), ("response.output_item.done", 2),
        ("response.function_call_arguments.done", 3), ("response.output_item.done", 3),
        ("response.completed", None)]
    final = Response.model_validate(events[-1]["response"])
    assert [o.type for o in final.output] == ["reasoning", "message", "function_call", "function_call"]
    calls = [(o.call_id, o.name, o.arguments) for o in final.output if o.type == "function_call"]
    assert calls == [("call_a", "f", '{"x":1}'), ("call_b", "g", '{"y":2}')]


def test_stream_cut_by_length_ends_incomplete() -> None:
    events = _events([_chunk({"content": "a b"}), _chunk({}, "length")])
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_stream_failure_reports_the_partial_output_and_the_billed_usage() -> None:
    stream = ResponseEvents("test/echo", ECHO, "resp_1", 1)
    events = stream.feed(_chunk({"content": "Echo: par"}))
    events += stream.feed(_chunk({"tool_calls": [{"index": 0, "id": "call_a", "function": {"name": "f"}}]}))
    events += stream.feed(_chunk({"content": "tial"}))
    events += stream.fail("The upstream provider's stream ended before completion.", USAGE)
    assert stream.finish(USAGE) == [] and stream.feed(_chunk({"content": "late"})) == []
    failed = events[-1]
    EVENT.validate_python(failed)
    assert failed["type"] == "response.failed" and failed["sequence_number"] == len(events) - 1
    response = Response.model_validate(failed["response"])
    assert response.status == "failed" and response.error is not None and response.error.code == "server_error"
    assert [(o.type, o.status) for o in response.output] == [
        ("message", "completed"), ("function_call", "incomplete"), ("message", "incomplete")]
    assert response.output_text == "Echo: partial" and response.usage is not None
    assert response.usage.input_tokens == 10
