"""POST /v1/completions (legacy) end to end with the official openai SDK, served by an OpenAI-format chat upstream."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from tests.emulator import Emulator
from tests.gateway_server import GatewayServer


def _cost(usage: Any) -> int:
    """Nanodollars for test/echo: $1 per million prompt tokens, $2 per million completion tokens."""
    return int(usage.prompt_tokens * 1_000 + usage.completion_tokens * 2_000)


def test_completion_billed_exactly(gateway: GatewayServer, user: dict[str, Any], client: openai.OpenAI,
                                   emu_a: Emulator) -> None:
    before = gateway.balance_nanos(user["api_key"])
    c = client.completions.create(model="echo", prompt="say hi", temperature=0.3, seed=1)
    assert c.object == "text_completion" and c.id.startswith("cmpl-") and c.model == "test/echo"
    choice = c.choices[0]
    assert choice.text == "Echo: say hi" and choice.index == 0 and choice.finish_reason == "stop"
    assert choice.logprobs is None
    sent = emu_a.requests[-1].json
    assert sent["messages"] == [{"role": "user", "content": "say hi"}]
    assert sent["max_tokens"] == 16 and sent["temperature"] == 0.3 and sent["seed"] == 1  # OpenAI's default
    assert c.usage is not None and c.usage.prompt_tokens == 3 + 2 + 3 and c.usage.completion_tokens == 3
    cost = _cost(c.usage)
    assert round(c.usage.model_dump()["cost"] * 1e9) == cost
    assert gateway.balance_nanos(user["api_key"]) == before - cost


def test_max_tokens_defaults_to_16(client: openai.OpenAI) -> None:
    prompt = " ".join(f"w{i}" for i in range(40))
    c = client.completions.create(model="test/echo", prompt=prompt)
    assert c.choices[0].finish_reason == "length" and c.usage is not None and c.usage.completion_tokens == 16
    assert len(c.choices[0].text.split()) == 16
    longer = client.completions.create(model="test/echo", prompt=[prompt], max_tokens=30)
    assert longer.usage is not None and longer.usage.completion_tokens == 30


def test_echo_stop_and_n(client: openai.OpenAI, emu_a: Emulator) -> None:
    echoed = client.completions.create(model="test/echo", prompt="Q: hello\nA:", echo=True)
    assert echoed.choices[0].text == "Q: hello\nA:" + "Echo: Q: hello\nA:"
    stopped = client.completions.create(model="test/echo", prompt="one two three", stop=[" two"])
    assert stopped.choices[0].text == "Echo: one" and emu_a.requests[-1].json["stop"] == [" two"]
    several = client.completions.create(model="test/echo", prompt="hey you", n=3)
    assert [ch.index for ch in several.choices] == [0, 1, 2]
    assert {ch.text for ch in several.choices} == {"Echo: hey you"}
    assert several.usage is not None and several.usage.completion_tokens == 3 * 3


def test_logprobs_in_the_legacy_shape(client: openai.OpenAI, emu_a: Emulator) -> None:
    c = client.completions.create(model="test/echo", prompt="a b", logprobs=2)
    lp = c.choices[0].logprobs
    assert lp is not None and lp.tokens is not None and "".join(lp.tokens) == c.choices[0].text
    assert lp.text_offset == [0, 5, 7] and lp.token_logprobs is not None and len(lp.token_logprobs) == 3
    assert lp.top_logprobs is not None and all(len(t) == 2 for t in lp.top_logprobs)
    sent = emu_a.requests[-1].json
    assert sent["logprobs"] is True and sent["top_logprobs"] == 2


def test_streaming_with_usage_and_done(gateway: GatewayServer, user: dict[str, Any], client: openai.OpenAI) -> None:
    before = gateway.balance_nanos(user["api_key"])
    chunks = list(client.completions.create(model="test/echo", prompt="one two", stream=True, echo=True,
                                            stream_options={"include_usage": True}))
    assert all(c.object == "text_completion" and c.model == "test/echo" for c in chunks)
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("cmpl-")
    text = "".join(ch.text for c in chunks for ch in c.choices)
    assert text == "one two" + "Echo: one two"
    assert [ch.finish_reason for c in chunks for ch in c.choices][-1] == "stop"
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None and usage.completion_tokens == 3
    cost = _cost(usage)
    assert round(usage.model_dump()["cost"] * 1e9) == cost
    assert gateway.balance_nanos(user["api_key"]) == before - cost

    raw = httpx.post(gateway.url + "/v1/completions", json={"model": "test/echo", "prompt": "x y", "stream": True},
                     headers={"Authorization": f"Bearer {user['api_key']}"}, timeout=30)
    events = [line[6:] for line in raw.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]" and all("usage" not in json.loads(e) for e in events[:-1])
    assert raw.headers["content-type"].startswith("text/event-stream")


@pytest.mark.parametrize(("body", "param"), [
    ({"prompt": ["a", "b"]}, "prompt"),
    ({"prompt": [1, 2, 3]}, "prompt"),
    ({"prompt": "a", "suffix": "b"}, "suffix"),
    ({"prompt": "a", "best_of": 2}, "best_of"),
    ({"prompt": "a", "logprobs": 1, "echo": True}, "logprobs"),
    ({"prompt": "a", "max_tokens": 0}, "max_tokens"),
])
def test_refused_with_a_clear_400(gateway: GatewayServer, user: dict[str, Any], emu_a: Emulator,
                                  body: dict[str, Any], param: str) -> None:
    r = httpx.post(gateway.url + "/v1/completions", json={"model": "test/echo", **body}, timeout=30,
                   headers={"Authorization": f"Bearer {user['api_key']}"})
    assert r.status_code == 400 and r.json()["error"]["param"] == param and r.json()["error"]["message"]
    assert emu_a.requests == []
