"""The emulator's Cohere v2 Chat format, driven over plain HTTP (no gateway involved)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.emulator import Emulator, Fault
from tests.emulator.cohere_chat import TEMPLATE_TOKENS
from tests.emulator.cohere_format import CohereFormat

KEY = "emu-cohere-key"
TOOLS: list[Any] = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {
        "type": "object", "properties": {"zone": {"type": "string"}}}}},
]


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(name="co", api_key=KEY, formats=[CohereFormat()]) as emulator:
        yield emulator


def chat(emu: Emulator, key: str = KEY, **body: Any) -> httpx.Response:
    body.setdefault("model", "command-a")
    body.setdefault("messages", [{"role": "user", "content": "hello there"}])
    return httpx.post(emu.url + "/v2/chat", headers={"Authorization": f"bearer {key}"}, json=body, timeout=10)


def events(r: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in r.text.strip().split("\n\n"):
        name, data = block.split("\n")
        out.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return out


def test_text_usage_stop_and_max_tokens(emu: Emulator) -> None:
    r = chat(emu, messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}])
    body = r.json()
    assert body["message"] == {"role": "assistant", "content": [{"type": "text", "text": "Echo: hello there"}]}
    assert body["finish_reason"] == "COMPLETE"
    assert body["usage"] == {"billed_units": {"input_tokens": 13, "output_tokens": 3},
                             "tokens": {"input_tokens": 13 + TEMPLATE_TOKENS, "output_tokens": 3}}
    cut = chat(emu, stop_sequences=["llo"]).json()
    assert cut["message"]["content"][0]["text"] == "Echo: he" and cut["finish_reason"] == "STOP_SEQUENCE"
    short = chat(emu, max_tokens=2).json()
    assert short["message"]["content"][0]["text"] == "Echo: hello" and short["finish_reason"] == "MAX_TOKENS"
    as_json = chat(emu, response_format={"type": "json_object", "json_schema": {"type": "object"}}).json()
    assert json.loads(as_json["message"]["content"][0]["text"]) == {"echo": "hello there"}


def test_stream_events_in_order(emu: Emulator) -> None:
    got = events(chat(emu, stream=True, thinking={"type": "enabled"}))
    assert [name for name, _ in got] == ["message-start", "content-start", *["content-delta"] * 4, "content-end",
                                        "content-start", *["content-delta"] * 3, "content-end", "message-end"]
    assert all(data["type"] == name for name, data in got)
    assert "".join(d["delta"]["message"]["content"].get("thinking", "") for n, d in got if n == "content-delta") == \
        "Thinking about: hello there"
    assert got[-1][1]["delta"]["finish_reason"] == "COMPLETE"
    assert got[-1][1]["delta"]["usage"]["billed_units"] == {"input_tokens": 8, "output_tokens": 3 + 4}


def test_tools_parallel_plan_and_loop_end(emu: Emulator) -> None:
    ask = [{"role": "user", "content": "Paris"}]
    both = chat(emu, messages=ask, tools=TOOLS, tool_choice="REQUIRED").json()
    assert both["finish_reason"] == "TOOL_CALL" and both["message"]["tool_plan"] == "I will use get_weather, get_time."
    calls = both["message"]["tool_calls"]
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        ("get_weather", {"city": "Paris"}), ("get_time", {"zone": "Paris"})]
    assert [c["function"]["name"] for c in chat(emu, messages=ask, tools=TOOLS).json()["message"]["tool_calls"]] == \
        ["get_weather"]
    assert chat(emu, messages=ask, tools=TOOLS, tool_choice="NONE").json()["finish_reason"] == "COMPLETE"
    loop = [*ask, {"role": "assistant", "tool_plan": "p", "tool_calls": calls},
            *({"role": "tool", "tool_call_id": c["id"], "content": "sunny"} for c in calls)]
    assert chat(emu, messages=loop, tools=TOOLS).json()["message"]["content"][0]["text"] == "Echo: Paris"
    streamed = events(chat(emu, messages=ask, tools=TOOLS, tool_choice="REQUIRED", stream=True))
    assert [n for n, _ in streamed if n.startswith("tool-call-")].count("tool-call-start") == 2


@pytest.mark.parametrize("body, problem", [
    ({"top_p": 0.5}, "unknown field 'top_p'"),
    ({"tool_choice": "REQUIRED"}, "needs tools"),
    ({"tool_choice": "required", "tools": TOOLS}, "REQUIRED or NONE"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "tool", "tool_call_id": "x", "content": "r"}]},
     "does not match"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "user", "content": "again"}]}, "has no tool result"),
    ({"messages": [{"role": "developer", "content": "x"}]}, "role must be"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}, "strict": True}}]}, "unknown field"),
    ({"stop_sequences": list("abcdef")}, "at most 5"),
    ({"p": 1}, "p must be"),
    ({"response_format": {"type": "json_object", "json_schema": {"type": "array"}}}, "object schema"),
])
def test_validation_errors_in_cohere_shape(emu: Emulator, body: dict[str, Any], problem: str) -> None:
    r = chat(emu, **body)
    assert r.status_code == 400 and set(r.json()) == {"id", "message"} and problem in r.json()["message"]


def test_auth_and_faults(emu: Emulator) -> None:
    r = chat(emu, key="wrong")
    assert r.status_code == 401 and set(r.json()) == {"id", "message"}
    emu.push_fault(Fault(status=503, error_message="overloaded"))
    r = chat(emu)
    assert r.status_code == 503 and r.json()["message"] == "overloaded"
    emu.push_fault(Fault(omit_usage=True))
    assert "usage" not in chat(emu).json()
