"""The emulator's Anthropic Messages format, driven by the official anthropic SDK (no gateway involved)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.emulator import Emulator, Fault
from tests.emulator.anthropic_format import AnthropicFormat

KEY = "emu-anthropic-key"
TOOLS: list[Any] = [
    {"name": "get_weather", "description": "weather", "input_schema": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
    {"name": "get_time", "input_schema": {"type": "object", "properties": {"zone": {"type": "string"}}}},
]


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(name="anth", api_key=KEY, formats=[AnthropicFormat()]) as emulator:
        yield emulator


@pytest.fixture
def claude(emu: Emulator) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=emu.url, api_key=KEY, max_retries=0, timeout=10)


def test_text_usage_and_stop_reasons(claude: anthropic.Anthropic) -> None:
    msg = claude.messages.create(model="claude-x", max_tokens=100, system="Be brief.",
                                 messages=[{"role": "user", "content": "hello there"}])
    assert msg.content[0].type == "text" and msg.content[0].text == "Echo: hello there"
    assert msg.stop_reason == "end_turn" and msg.stop_sequence is None
    # 3 + (2 + 3) system + (2 + 3) user; output: "Echo: hello there" = 3 words
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (13, 3)
    cut = claude.messages.create(model="claude-x", max_tokens=100, stop_sequences=["llo"],
                                 messages=[{"role": "user", "content": "hello there"}])
    assert cut.content[0].text == "Echo: he" and cut.stop_reason == "stop_sequence"  # type: ignore[union-attr]
    assert cut.stop_sequence == "llo"
    short = claude.messages.create(model="claude-x", max_tokens=2, messages=[{"role": "user", "content": "a b c"}])
    assert short.content[0].text == "Echo: a" and short.stop_reason == "max_tokens"  # type: ignore[union-attr]


def test_stream_events_in_the_real_order(emu: Emulator, claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(model="claude-x", max_tokens=50,
                                messages=[{"role": "user", "content": "one two"}]) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert final.content[0].text == "Echo: one two" and final.usage.output_tokens == 3  # type: ignore[union-attr]
    r = httpx.post(emu.base_url + "/messages", headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"},
                   json={"model": "m", "max_tokens": 5, "stream": True, "messages": [{"role": "user", "content": "x"}]})
    names = [line.split(": ", 1)[1] for line in r.text.splitlines() if line.startswith("event: ")]
    assert names == ["message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta",
                     "content_block_stop", "message_delta", "message_stop"]
    assert "[DONE]" not in r.text


def test_parallel_tools_with_any_and_single_with_disable(claude: anthropic.Anthropic) -> None:
    msg = claude.messages.create(model="claude-x", max_tokens=100, tools=TOOLS, tool_choice={"type": "any"},
                                 messages=[{"role": "user", "content": "Paris"}])
    uses = [b for b in msg.content if b.type == "tool_use"]
    assert [u.name for u in uses] == ["get_weather", "get_time"] and msg.stop_reason == "tool_use"
    assert uses[0].input == {"city": "Paris"} and uses[1].input == {"zone": "Paris"}
    one = claude.messages.create(model="claude-x", max_tokens=100, tools=TOOLS,
                                 tool_choice={"type": "any", "disable_parallel_tool_use": True},
                                 messages=[{"role": "user", "content": "Paris"}])
    assert [b.name for b in one.content if b.type == "tool_use"] == ["get_weather"]
    results: list[Any] = [{"type": "tool_result", "tool_use_id": u.id, "content": "ok"} for u in uses]
    answer = claude.messages.create(model="claude-x", max_tokens=100, tools=TOOLS, messages=[
        {"role": "user", "content": "Paris"}, {"role": "assistant", "content": msg.content},  # type: ignore[typeddict-item]
        {"role": "user", "content": results}])
    assert answer.content[0].type == "text" and answer.content[0].text == "Echo: Paris"
    with claude.messages.stream(model="claude-x", max_tokens=100, tools=TOOLS, tool_choice={"type": "any"},
                                messages=[{"role": "user", "content": "Rome now"}]) as stream:
        final = stream.get_final_message()
    assert [b.input for b in final.content if b.type == "tool_use"] == [{"city": "Rome now"}, {"zone": "Rome now"}]


def test_thinking_block_and_signature(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(model="claude-x", max_tokens=3000, thinking={"type": "enabled", "budget_tokens": 1024},
                                messages=[{"role": "user", "content": "why"}]) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "thinking" and final.content[0].thinking == "Thinking about: why"
    assert final.content[0].signature and final.content[1].text == "Echo: why"  # type: ignore[union-attr]
    assert final.usage.output_tokens == 3 + 2


def test_validation_auth_and_faults(emu: Emulator, claude: anthropic.Anthropic) -> None:
    bad: list[dict[str, Any]] = [
        {"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]},
        {"model": "m", "max_tokens": 5, "n": 2, "messages": [{"role": "user", "content": "x"}]},
        {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]},
        {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_x", "content": "r"}]}]},
        {"model": "m", "max_tokens": 2000, "temperature": 0.5, "thinking": {"type": "enabled", "budget_tokens": 1024},
         "messages": [{"role": "user", "content": "x"}]},
    ]
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    for body in bad:
        refused = httpx.post(emu.base_url + "/messages", headers=headers, json=body)
        assert refused.status_code == 400 and refused.json()["error"]["type"] == "invalid_request_error", body
    r = httpx.post(emu.base_url + "/messages", headers={"x-api-key": KEY},
                   json={"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400 and "anthropic-version" in r.json()["error"]["message"]
    wrong = anthropic.Anthropic(base_url=emu.url, api_key="nope", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as auth:
        wrong.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert auth.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    emu.push_fault(Fault(status=529, error_message="Overloaded"))
    with pytest.raises(anthropic.APIStatusError) as overloaded:
        claude.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert overloaded.value.status_code == 529
    assert overloaded.value.body["error"] == {"type": "overloaded_error", "message": "Overloaded"}  # type: ignore[index]
    usage = {"input_tokens": 4, "cache_read_input_tokens": 6, "cache_creation_input_tokens": 2, "output_tokens": 9}
    emu.push_fault(Fault(usage=usage))
    msg = claude.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert msg.usage.cache_read_input_tokens == 6 and msg.usage.output_tokens == 9
    count = claude.messages.count_tokens(model="m", system="a b", messages=[{"role": "user", "content": "c d e"}])
    assert count.input_tokens == 3 + 5 + 6
