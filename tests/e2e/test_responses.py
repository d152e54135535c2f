"""POST /v1/responses end to end with the official openai SDK, served by an OpenAI-format chat upstream."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import openai
import pydantic
import pytest

from tests.emulator import Emulator, Fault
from tests.gateway_server import GatewayServer

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
           "additionalProperties": False}
TOOLS: Any = [{"type": "function", "name": "get_weather", "description": "Weather for a city.",
               "parameters": WEATHER, "strict": True}]
LONG_ANSWER = " ".join(f"word{i}" for i in range(200))


def _cost(usage: Any) -> int:
    """Nanodollars for test/echo: $1 per million input tokens, $2 per million output tokens."""
    return int(usage.input_tokens * 1_000 + usage.output_tokens * 2_000)


def test_text_with_instructions_billed_exactly(gateway: GatewayServer, user: dict[str, Any],
                                              client: openai.OpenAI, emu_a: Emulator) -> None:
    before = gateway.balance_nanos(user["api_key"])
    r = client.responses.create(model="echo", input="hello there", instructions="Be brief.", max_output_tokens=50,
                                temperature=0.5, metadata={"k": "v"}, store=True)
    assert r.output_text == "Echo: hello there" and r.status == "completed" and r.model == "test/echo"
    assert r.id.startswith("resp_") and r.object == "response" and r.error is None
    assert r.instructions == "Be brief." and r.metadata == {"k": "v"} and r.max_output_tokens == 50
    message = r.output[0]
    assert message.type == "message" and message.id.startswith("msg_") and message.status == "completed"
    sent = emu_a.requests[-1].json
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}]
    assert sent["max_completion_tokens"] == 50 and sent["temperature"] == 0.5
    assert "metadata" not in sent and "store" not in sent and "instructions" not in sent
    usage = r.usage
    assert usage is not None and usage.input_tokens == 3 + (2 + 3) + (2 + 3) and usage.output_tokens == 3
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    cost = _cost(usage)
    assert round(usage.model_dump()["cost"] * 1e9) == cost
    assert gateway.balance_nanos(user["api_key"]) == before - cost


def test_multi_turn_input(client: openai.OpenAI, emu_a: Emulator) -> None:
    first = client.responses.create(model="test/echo", input="my name is Ada")
    history: Any = [{"role": "user", "content": "my name is Ada"}, *first.output,
                    {"role": "developer", "content": "Answer in English."},
                    {"role": "user", "content": [{"type": "input_text", "text": "what is my name?"}]}]
    second = client.responses.create(model="test/echo", input=history)
    assert second.output_text == "Echo: what is my name?"
    assert emu_a.requests[-1].json["messages"] == [
        {"role": "user", "content": "my name is Ada"}, {"role": "assistant", "content": "Echo: my name is Ada"},
        {"role": "system", "content": "Answer in English."}, {"role": "user", "content": "what is my name?"}]


def test_function_tool_round_trip(client: openai.OpenAI, emu_a: Emulator) -> None:
    question: Any = [{"role": "user", "content": "weather in Paris?"}]
    r = client.responses.create(model="test/echo", input=question, tools=TOOLS, tool_choice="required")
    call = r.output[0]
    assert call.type == "function_call" and call.name == "get_weather" and call.status == "completed"
    assert json.loads(call.arguments) == {"city": "weather in Paris?"} and call.id and call.id.startswith("fc_")
    assert r.output_text == "" and r.tools[0].name == "get_weather" and r.tool_choice == "required"  # type: ignore[union-attr]
    sent = emu_a.requests[-1].json
    assert sent["tools"] == [{"type": "function", "function": {"name": "get_weather", "description":
                                                                "Weather for a city.", "parameters": WEATHER,
                                                                "strict": True}}]
    assert sent["tool_choice"] == "required"
    final = client.responses.create(model="test/echo", tools=TOOLS, input=[
        *question, *r.output, {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"}])
    assert final.output_text == "Echo: weather in Paris?"
    messages = emu_a.requests[-1].json["messages"]
    assert messages[1]["role"] == "assistant" and messages[1]["tool_calls"][0]["id"] == call.call_id
    assert messages[1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": call.arguments}
    assert messages[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "sunny, 21C"}


def test_parallel_function_calls(client: openai.OpenAI, emu_a: Emulator) -> None:
    calls = [{"id": f"call_{c}", "type": "function", "function": {"name": "get_weather",
                                                                   "arguments": json.dumps({"city": c})}}
             for c in ("Paris", "Rome")]
    emu_a.push_fault(Fault(body={
        "id": "chatcmpl-par", "object": "chat.completion", "created": 1, "model": "ok-model",
        "choices": [{"index": 0, "finish_reason": "tool_calls",
                     "message": {"role": "assistant", "content": None, "tool_calls": calls}}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28}}))
    r = client.responses.create(model="test/echo", input="weather in Paris and Rome?", tools=TOOLS,
                                parallel_tool_calls=True)
    assert [(o.type, o.call_id) for o in r.output] == [("function_call", "call_Paris"),  # type: ignore[union-attr]
                                                       ("function_call", "call_Rome")]
    assert r.parallel_tool_calls is True and r.usage is not None and r.usage.output_tokens == 8
    outputs: Any = [{"type": "function_call_output", "call_id": o.call_id, "output": "sunny"}  # type: ignore[union-attr]
                    for o in r.output]
    final = client.responses.create(model="test/echo", tools=TOOLS, parallel_tool_calls=False,
                                    input=[{"role": "user", "content": "weather?"}, *r.output, *outputs])
    assert final.output_text == "Echo: weather?"
    sent = emu_a.requests[-1].json
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "tool", "tool"]
    assert len(sent["messages"][1]["tool_calls"]) == 2 and sent["parallel_tool_calls"] is False


class Echoed(pydantic.BaseModel):
    echo: str


def test_json_schema_text_format(client: openai.OpenAI, emu_a: Emulator) -> None:
    schema = {"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"],
              "additionalProperties": False}
    r = client.responses.create(model="test/echo", input="json please", text={
        "format": {"type": "json_schema", "name": "echoed", "schema": schema, "strict": True}})
    assert json.loads(r.output_text) == {"echo": "json please"}
    assert emu_a.requests[-1].json["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "echoed", "schema": schema, "strict": True}}
    assert r.text is not None and r.text.format is not None and r.text.format.type == "json_schema"
    parsed = client.responses.parse(model="test/echo", input="typed", text_format=Echoed)
    assert parsed.output_parsed == Echoed(echo="typed")


def test_streaming_events_usage_and_exact_cost(gateway: GatewayServer, user: dict[str, Any],
                                               client: openai.OpenAI) -> None:
    before = gateway.balance_nanos(user["api_key"])
    with client.responses.stream(model="test/echo", input="one two three") as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == final.output_text == "Echo: one two three"
    assert final.status == "completed" and final.usage is not None and final.usage.output_tokens == 4
    cost = _cost(final.usage)
    assert round(final.usage.model_dump()["cost"] * 1e9) == cost
    assert gateway.balance_nanos(user["api_key"]) == before - cost


def test_streamed_function_call(client: openai.OpenAI) -> None:
    events = list(client.responses.create(model="test/echo", input="Lyon", tools=TOOLS, stream=True))
    kinds = [e.type for e in events]
    assert kinds[2] == "response.output_item.added" and "response.function_call_arguments.delta" in kinds
    assert kinds[-3:] == ["response.function_call_arguments.done", "response.output_item.done", "response.completed"]
    done = events[-1]
    assert done.type == "response.completed"
    call = done.response.output[0]
    assert call.type == "function_call" and json.loads(call.arguments) == {"city": "Lyon"}
    assert "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta") == call.arguments


def test_max_output_tokens_makes_it_incomplete(client: openai.OpenAI) -> None:
    r = client.responses.create(model="test/echo", input="a b c d e f", max_output_tokens=2)
    assert r.status == "incomplete" and r.incomplete_details is not None
    assert r.incomplete_details.reason == "max_output_tokens" and r.output_text == "Echo: a"
    events = list(client.responses.create(model="test/echo", input="a b c d", max_output_tokens=2, stream=True))
    assert events[-1].type == "response.incomplete"


def test_mid_stream_drop_fails_the_response_and_bills_the_estimate(gateway: GatewayServer, user: dict[str, Any],
                                                                  client: openai.OpenAI, emu_a: Emulator,
                                                                  emu_b: Emulator) -> None:
    for emu in (emu_a, emu_b):
        emu.set_default_fault(Fault(content=LONG_ANSWER, drop_after_chunks=4))
    events = list(client.responses.create(model="test/echo", input="tell me a story", stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.failed"
    failed = events[-1].response
    assert failed.status == "failed" and failed.error is not None and failed.error.code == "server_error"
    assert failed.output and failed.output[0].status == "incomplete"  # type: ignore[union-attr]

    before = gateway.balance_nanos(user["api_key"])
    raw = json.dumps({"model": "test/echo", "input": "tell me a long story", "stream": True}).encode()
    with httpx.stream("POST", gateway.url + "/v1/responses", content=raw, timeout=30,
                      headers={"Authorization": f"Bearer {user['api_key']}"}) as r:
        assert r.status_code == 200
        body = r.read().decode()
    data = [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]
    assert data[-1]["type"] == "response.failed" and "[DONE]" not in body
    delivered = "".join(d["delta"] for d in data if d["type"] == "response.output_text.delta")
    assert delivered and LONG_ANSWER.startswith(delivered)
    estimate = math.ceil(len(raw) / 4) * 1_000 + math.ceil(len(delivered) / 4) * 2_000
    assert round(data[-1]["response"]["usage"]["cost"] * 1e9) == estimate
    assert gateway.balance_nanos(user["api_key"]) == before - estimate


def test_stateless_and_unsupported_requests_are_400(gateway: GatewayServer, user: dict[str, Any],
                                                    client: openai.OpenAI, emu_a: Emulator) -> None:
    before, sent = gateway.balance_nanos(user["api_key"]), len(emu_a.requests)
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="test/echo", input="again", previous_response_id="resp_123")
    assert err.value.code == "unsupported_parameter" and "send the full conversation" in err.value.message
    assert err.value.body["param"] == "previous_response_id"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="test/echo", input="news?", tools=[{"type": "web_search"}])
    assert err.value.body["param"] == "tools[0].type"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="test/echo", input=[])
    assert len(emu_a.requests) == sent and gateway.balance_nanos(user["api_key"]) == before


def test_errors_keep_the_openai_shape(gateway: GatewayServer, client: openai.OpenAI, emu_a: Emulator) -> None:
    with pytest.raises(openai.NotFoundError) as nf:
        client.responses.create(model="nope/nothing", input="x")
    assert nf.value.code == "model_not_found"
    emu_a.push_fault(Fault(status=400, error_message="bad thing"))
    with pytest.raises(openai.BadRequestError) as bad:
        client.responses.create(model="test/echo", input="x")
    assert "bad thing" in bad.value.message
    anonymous = httpx.post(gateway.url + "/v1/responses", json={"model": "test/echo", "input": "x"})
    assert anonymous.status_code == 401 and anonymous.json()["error"]["type"] == "authentication_error"
