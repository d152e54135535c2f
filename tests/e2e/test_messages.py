"""The Anthropic Messages API end to end, with the official anthropic SDK, served by an OpenAI-format upstream."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import pytest

from tests.emulator import Emulator, Fault
from tests.gateway_server import GatewayServer


@pytest.fixture
def claude(gateway: GatewayServer, user: dict[str, Any]) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=user["api_key"], max_retries=0)


def test_message_billed_with_upstream_counts(gateway: GatewayServer, user: dict[str, Any],
                                             claude: anthropic.Anthropic, emu_a: Emulator) -> None:
    before = gateway.balance_nanos(user["api_key"])
    msg = claude.messages.create(model="test/echo", max_tokens=100, system="Be brief.",
                                 messages=[{"role": "user", "content": "hello there"}])
    assert msg.content[0].type == "text" and msg.content[0].text == "Echo: hello there"
    assert msg.stop_reason == "end_turn" and msg.model == "test/echo"
    sent = emu_a.requests[-1].json
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."} and sent["max_tokens"] == 100
    cost = msg.usage.input_tokens * 1_000 + msg.usage.output_tokens * 2_000
    assert gateway.balance_nanos(user["api_key"]) == before - cost  # AC-9.2.3


def test_stream_events_and_text(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(model="test/echo", max_tokens=50,
                                messages=[{"role": "user", "content": "one two three"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Echo: one two three" and final.usage.output_tokens > 0 and final.stop_reason == "end_turn"


def test_tools_round_trip(claude: anthropic.Anthropic) -> None:
    tools = [{"name": "get_weather", "description": "weather", "input_schema": {
        "type": "object", "properties": {"city": {"type": "string"}}}}]
    msg = claude.messages.create(model="test/echo", max_tokens=100, tools=tools,  # type: ignore[arg-type]
                                 messages=[{"role": "user", "content": "weather in Paris?"}])
    call = next(b for b in msg.content if b.type == "tool_use")
    assert call.name == "get_weather" and "city" in call.input and msg.stop_reason == "tool_use"  # type: ignore[operator]
    answer = claude.messages.create(model="test/echo", max_tokens=100, tools=tools,  # type: ignore[arg-type]
                                    messages=[{"role": "user", "content": "weather in Paris?"},
                                              {"role": "assistant", "content": msg.content},  # type: ignore[typeddict-item]
                                              {"role": "user", "content": [{"type": "tool_result",
                                                                            "tool_use_id": call.id,
                                                                            "content": "sunny"}]}])
    assert answer.content[0].type == "text"
    with claude.messages.stream(model="test/echo", max_tokens=100, tools=tools,  # type: ignore[arg-type]
                                messages=[{"role": "user", "content": "find it"}]) as stream:
        final = stream.get_final_message()
    assert final.content[-1].type == "tool_use" and "city" in final.content[-1].input  # type: ignore[union-attr,operator]


def test_errors_in_anthropic_shape(gateway: GatewayServer, claude: anthropic.Anthropic, emu_a: Emulator) -> None:
    with pytest.raises(anthropic.NotFoundError) as nf:
        claude.messages.create(model="claude-nope", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert nf.value.body["type"] == "error" and nf.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError):
        claude.messages.create(model="test/echo", max_tokens=0, messages=[{"role": "user", "content": "x"}])
    emu_a.push_fault(Fault(status=400, error_message="bad thing"))
    with pytest.raises(anthropic.BadRequestError) as bad:
        claude.messages.create(model="test/echo", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert "bad thing" in str(bad.value)
    nokey = anthropic.Anthropic(base_url=gateway.url, api_key="gw_live_" + "y" * 43, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        nokey.messages.create(model="test/echo", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    r = httpx.post(gateway.url + "/v1/messages", content=b"{nope", headers={"x-api-key": "gw_live_" + "y" * 43})
    assert r.status_code == 401 and r.json()["type"] == "error"


def test_stream_cut_midway_ends_with_an_error_event(claude: anthropic.Anthropic, emu_a: Emulator,
                                                    emu_b: Emulator) -> None:
    emu_a.push_fault(Fault(drop_after_chunks=3))
    with pytest.raises(anthropic.APIStatusError), claude.messages.stream(
            model="test/echo", max_tokens=50, messages=[{"role": "user", "content": "a b c d e f"}]) as stream:
        for _ in stream:
            pass


def test_count_tokens(claude: anthropic.Anthropic, gateway: GatewayServer, emu_a: Emulator) -> None:
    sent = len(emu_a.requests)
    counted = claude.messages.count_tokens(model="test/echo", messages=[{"role": "user", "content": "hello " * 40}])
    assert counted.input_tokens > 40 and len(emu_a.requests) == sent  # no upstream call
    assert httpx.post(gateway.url + "/v1/messages/count_tokens", json={"model": "x"}).status_code == 401
