"""The native Cohere v2 Chat adapter: golden translations from Cohere's documented examples
(tests/fixtures/cohere/), stream decoding, error bodies and what cannot be translated."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from gatewayz.errors import InvalidRequest
from gatewayz.providers.adapter import make_adapter
from gatewayz.providers.cohere import CohereAdapter, make
from gatewayz.providers.engine import AttemptFailed
from gatewayz.providers.registry import BY_NAME
from gatewayz.providers.spec import ProviderSpec
from gatewayz.providers.sse import DONE

FIXTURES = Path(__file__).parent.parent / "fixtures" / "cohere"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def adapter(**options: str) -> CohereAdapter:
    return make(ProviderSpec(name="cohere", wire="cohere", base_url="https://api.cohere.com/v2", api_key="co-test",
                             options=options))


def translate(body: dict[str, Any], stream: bool = False) -> dict[str, Any]:
    out = asyncio.run(adapter().request(body, "command-a", stream))
    return orjson.loads(out.data)  # type: ignore[no-any-return]


def chat(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An OpenAI request with these messages (one user "hi" when none) and extra fields."""
    return dict(extra, model="m", messages=list(messages or [{"role": "user", "content": "hi"}]))


def decode(raw: bytes, piece: int = 0) -> list[Any]:
    """What one decoder makes of `raw` fed `piece` bytes at a time (0: all at once)."""
    decoder = adapter().decoder()
    size = piece or max(len(raw), 1)
    return [item for i in range(0, len(raw), size) for item in decoder.feed(raw[i:i + size])]


def without_created(items: list[Any]) -> list[Any]:
    """The items with their `created` timestamps dropped (they differ between decoders)."""
    return [dict(item, created=None) if isinstance(item, dict) else item for item in items]


def deltas(chunks: list[Any]) -> list[dict[str, Any]]:
    return [c["choices"][0]["delta"] for c in chunks if isinstance(c, dict) and c.get("choices")]


# ---------------------------------------------------------------- request

def test_registry_and_wire() -> None:
    info = BY_NAME["cohere"]
    assert (info.env_key, info.base_url, info.role, info.makers, info.catalog, info.wire) == (
        "COHERE_API_KEY", "https://api.cohere.com/v2", "maker", ("cohere",), "cohere_chat", "cohere")
    spec = ProviderSpec(name="c", wire="cohere", base_url="https://api.cohere.com/v2")
    assert isinstance(make_adapter(spec), CohereAdapter)
    with pytest.raises(ValueError, match="no options"):
        adapter(region="x")


def test_golden_request_translation() -> None:
    out = asyncio.run(adapter().request(fixture("request_openai.json"), "command-a-03-2025", True))
    assert out.url == "https://api.cohere.com/v2/chat"
    assert out.headers["authorization"] == "Bearer co-test" and out.headers["content-type"] == "application/json"
    assert orjson.loads(out.data) == fixture("request_cohere.json")


def test_minimal_request_and_parameters() -> None:
    assert translate(chat()) == {"model": "command-a", "messages": [{"role": "user", "content": "hi"}]}
    out = translate(chat(max_tokens=7, stop="END", top_k=40, top_p=0.5, seed=3), stream=True)
    assert (out["max_tokens"], out["stop_sequences"], out["k"], out["p"], out["seed"], out["stream"]) == (
        7, ["END"], 40, 0.5, 3, True)
    assert "top_p" not in out and "top_k" not in out and "stop" not in out
    assert translate(chat(max_tokens=7, max_completion_tokens=9))["max_tokens"] == 9


def test_messages_edge_cases() -> None:
    out = translate(chat({"role": "user", "content": "q"}, {"role": "assistant", "content": None},
                         {"role": "assistant", "content": [{"type": "text", "text": "a"},
                                                           {"type": "refusal", "refusal": "b"}]},
                         {"role": "user", "content": None}))
    assert out["messages"] == [{"role": "user", "content": "q"}, {"role": "assistant", "content": "ab"},
                               {"role": "user", "content": ""}]
    calls = translate(chat({"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}},
        {"id": "c2", "type": "function", "function": {"name": "g", "arguments": {"x": 1}}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "r1"},
        {"role": "tool", "tool_call_id": "c2", "content": "r2"}))
    assert calls["messages"][1] == {"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
        {"id": "c2", "type": "function", "function": {"name": "g", "arguments": '{"x":1}'}}]}
    image = translate(chat({"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "weird"}}]}))
    assert image["messages"][0]["content"] == [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]


def test_tools_and_tool_choice() -> None:
    tools = [{"type": "function", "function": {"name": "f", "strict": True}},
             {"type": "function", "function": {"name": "g", "description": "G", "parameters": {"type": "object"}}}]
    out = translate(chat(tools=tools))
    assert out["tools"] == [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {}}}}, {"type": "function", "function": {
            "name": "g", "description": "G", "parameters": {"type": "object"}}}]
    assert "tool_choice" not in out and "strict_tools" not in out
    assert translate(chat(tools=tools, tool_choice="auto")).get("tool_choice") is None
    assert translate(chat(tools=tools, tool_choice="none"))["tool_choice"] == "NONE"
    assert translate(chat(tools=tools, tool_choice="required"))["tool_choice"] == "REQUIRED"
    named = translate(chat(tools=tools, tool_choice={"type": "function", "function": {"name": "g"}}))
    assert [t["function"]["name"] for t in named["tools"]] == ["g"] and named["tool_choice"] == "REQUIRED"
    strict = translate(chat(tools=[tools[0]], parallel_tool_calls=False))
    assert strict["strict_tools"] is True and "parallel_tool_calls" not in strict
    assert "tool_choice" not in translate(chat(tool_choice="required"))  # no tools: nothing to choose


def test_json_mode_and_thinking() -> None:
    schema = {"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"]}
    assert translate(chat(response_format={"type": "json_object"}))["response_format"] == {"type": "json_object"}
    fmt = {"type": "json_schema", "json_schema": {"name": "e", "schema": schema, "strict": True}}
    assert translate(chat(response_format=fmt))["response_format"] == {"type": "json_object", "json_schema": schema}
    assert translate(chat(response_format={"type": "json_schema", "json_schema": {"name": "e"}}))[
        "response_format"] == {"type": "json_object"}
    assert "response_format" not in translate(chat(response_format={"type": "text"}))
    assert translate(chat(reasoning_effort="none"))["thinking"] == {"type": "disabled"}
    assert translate(chat(reasoning_effort="medium"))["thinking"] == {"type": "enabled", "token_budget": 4096}
    assert translate(chat(reasoning={"max_tokens": 500}))["thinking"] == {"type": "enabled", "token_budget": 500}
    assert "thinking" not in translate(chat())


@pytest.mark.parametrize("body, param", [
    (chat(n=2), "n"),
    (chat({"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}]}),
     "messages[0].content[0].type"),
    (chat({"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}),
     "messages[0].content[0].type"),
    (chat({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}),
     "messages[0].content[0].image_url.url"),
    (chat({"role": "tool", "content": "r"}), "messages[0].tool_call_id"),
    (chat({"role": "function", "name": "f", "content": "r"}), "messages[0].role"),
    (chat({"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f"}}]}),
     "messages[0].tool_calls[0].id"),
    (chat({"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": 5}}]}),
     "messages[0].tool_calls[0].function.arguments"),
    (chat(tools=[{"type": "web_search"}]), "tools[0]"),
    (chat(tools=[{"type": "function", "function": {"name": "f"}}], tool_choice={"type": "function",
                                                                                "function": {"name": "g"}}),
     "tool_choice"),
    (chat(tools=[{"type": "function", "function": {"name": "f"}}], tool_choice="any"), "tool_choice"),
    (chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "array"}}}),
     "response_format.json_schema.schema"),
    (chat(response_format={"type": "yaml"}), "response_format.type"),
    (chat(reasoning_effort="extreme"), "reasoning_effort"),
    (chat(stop=[1]), "stop"),
    (chat(temperature="hot"), "temperature"),
    (chat({"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x"}}]}),
     "messages[0].content[0]"),
])
def test_untranslatable_input_is_a_400(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        translate(body)
    assert exc.value.status == 400 and exc.value.param == param


# --------------------------------------------------------------- response

def test_text_response_from_the_docs_bills_billed_units() -> None:
    out = adapter().response(fixture("chat_text.json"))
    assert out["created"] > 0
    del out["created"]
    assert out == {
        "id": "chatcmpl-5a50480a-cf52-46f0-af01-53d18539bd31", "object": "chat.completion", "model": "",
        "choices": [{"index": 0, "message": {"role": "assistant", "refusal": None, "content":
                     "The Art of API Design: Crafting Elegant and Powerful Interfaces"},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 17, "completion_tokens": 12, "total_tokens": 29,
                  "prompt_tokens_details": {"cached_tokens": 0}}}


def test_parallel_tool_calls_with_plan_as_content() -> None:
    out = adapter().response(fixture("chat_tool_calls.json"))
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "I will search for the weather in Madrid and Brasilia."
    assert choice["message"]["tool_calls"] == [
        {"id": "get_weather_dkf0akqdazjb", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"location":"Madrid"}'}},
        {"id": "get_weather_gh65bt2tcdy1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"location":"Brasilia"}'}}]
    assert (out["usage"]["prompt_tokens"], out["usage"]["completion_tokens"]) == (37, 28)  # floats, whole
    bare = adapter().response({**fixture("chat_tool_calls.json"), "message": {"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]}})
    assert bare["choices"][0]["message"]["content"] is None
    assert bare["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == '{"a":1}'


def test_thinking_cached_tokens_and_finish_reasons() -> None:
    out = adapter().response(fixture("chat_thinking.json"))
    message = out["choices"][0]["message"]
    assert message["content"] == "Alice's brother has 3 sisters."
    assert message["reasoning_content"].startswith("Alice has 2 sisters")
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"] == {"prompt_tokens": 24, "completion_tokens": 31, "total_tokens": 55,
                            "prompt_tokens_details": {"cached_tokens": 8}}
    base = fixture("chat_text.json")
    for reason, finish in [("STOP_SEQUENCE", "stop"), ("complete", "stop"), ("TOOL_CALL", "stop"),
                           ("NOVEL", "stop"), (None, "stop")]:
        assert adapter().response({**base, "finish_reason": reason})["choices"][0]["finish_reason"] == finish


def test_usage_fallbacks() -> None:
    base = fixture("chat_text.json")
    tokens_only = adapter().response({**base, "usage": {"tokens": {"input_tokens": 215, "output_tokens": 12}}})
    assert tokens_only["usage"]["prompt_tokens"] == 215
    partial = adapter().response({**base, "usage": {"billed_units": {"output_tokens": 5},
                                                    "tokens": {"input_tokens": 9, "output_tokens": 6}}})
    assert (partial["usage"]["prompt_tokens"], partial["usage"]["completion_tokens"]) == (9, 5)
    meta = {k: v for k, v in base.items() if k != "usage"} | {"meta": {"billed_units": {
        "input_tokens": 17, "output_tokens": 12}, "tokens": {"input_tokens": 215, "output_tokens": 12}}}
    assert adapter().response(meta)["usage"]["total_tokens"] == 29
    assert "usage" not in adapter().response({**base, "usage": {"billed_units": {"search_units": 1}}})


@pytest.mark.parametrize("junk, kind", [
    (None, "bad_response"), ([], "bad_response"), ({"message": "invalid api token"}, "bad_response"),
    ({"id": "x", "message": {"role": "assistant"}}, "bad_response"), ("text", "bad_response"),
    ({"id": "x", "finish_reason": "ERROR", "message": {"role": "assistant", "content": []}}, "generation_error"),
    ({"id": "x", "finish_reason": "TIMEOUT", "message": {"role": "assistant"}}, "generation_timeout"),
])
def test_junk_and_failed_answers_fail_over(junk: Any, kind: str) -> None:
    with pytest.raises(AttemptFailed) as exc:
        adapter().response(junk)
    assert exc.value.kind == kind and exc.value.status == 200


def test_error_bodies_in_openai_shape() -> None:
    body = (FIXTURES / "error_bad_request.json").read_bytes()
    assert orjson.loads(adapter().error_body(400, body)) == {"error": {
        "message": "invalid request: message must be at least 1 token long or tool results must be specified.",
        "type": "invalid_request_error", "param": None, "code": "upstream_400"}}
    assert orjson.loads(adapter().error_body(422, b'{"message": "bad"}'))["error"]["message"] == "bad"
    assert orjson.loads(adapter().error_body(413, b"<html>too big</html>"))["error"]["message"] == \
        "<html>too big</html>"


# ----------------------------------------------------------------- stream

def _choice(delta: dict[str, Any], finish: str | None = None, cid: str = "") -> dict[str, Any]:
    return {"id": cid, "object": "chat.completion.chunk", "created": None, "model": "",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}


def test_text_stream_from_the_docs() -> None:
    raw = (FIXTURES / "stream_text.sse").read_bytes()
    chunks = decode(raw)
    assert without_created(decode(raw, piece=7)) == without_created(chunks)  # any split of the bytes
    cid = "chatcmpl-29f14a5a-11de-4cae-9800-25e4747408ea"
    assert without_created(chunks[:3]) == [_choice({"role": "assistant", "content": ""}, cid=cid),
                                           _choice({"content": "A"}, cid=cid), _choice({"content": " large"}, cid=cid)]
    assert "".join(d.get("content") or "" for d in deltas(chunks)) == \
        "A large language model (LLM) is a type of artificial neural network model."
    assert without_created(chunks[-3:]) == [
        _choice({}, "stop", cid),
        {"id": cid, "object": "chat.completion.chunk", "created": None, "model": "", "choices": [],
         "usage": {"prompt_tokens": 7, "completion_tokens": 16, "total_tokens": 23,
                   "prompt_tokens_details": {"cached_tokens": 0}}},
        DONE]


def test_parallel_tool_call_stream_from_the_docs() -> None:
    chunks = decode((FIXTURES / "stream_tool_calls.sse").read_bytes(), piece=50)
    assert chunks[-1] == DONE
    ds = deltas(chunks)
    assert "".join(d.get("content") or "" for d in ds) == "I will search for the weather in Madrid and Brasilia."
    calls = [call for d in ds for call in d.get("tool_calls", [])]
    heads = [c for c in calls if "id" in c]
    assert heads == [
        {"index": 0, "id": "get_weather_p1t92w7gfgq7", "type": "function",
         "function": {"name": "get_weather", "arguments": ""}},
        {"index": 1, "id": "get_weather_ay6nmvjgp9vn", "type": "function",
         "function": {"name": "get_weather", "arguments": ""}}]
    arguments = {i: "".join(c["function"]["arguments"] for c in calls if c["index"] == i) for i in (0, 1)}
    assert json.loads(arguments[0]) == {"location": "Madrid"} and json.loads(arguments[1]) == {"location": "Brasilia"}
    assert chunks[-3]["choices"][0]["finish_reason"] == "tool_calls"
    assert (chunks[-2]["usage"]["prompt_tokens"], chunks[-2]["usage"]["completion_tokens"]) == (37, 28)


def test_citations_are_known_and_silent() -> None:
    chunks = decode((FIXTURES / "stream_citations.sse").read_bytes())
    assert not [c for c in chunks if isinstance(c, bytes) and c != DONE]
    assert "".join(d.get("content") or "" for d in deltas(chunks)) == \
        "It is currently 24°C in Madrid and 28°C in Brasilia."
    assert chunks[-2]["usage"]["total_tokens"] == 87 + 19 and chunks[-1] == DONE


def test_thinking_stream_without_usage() -> None:
    chunks = decode((FIXTURES / "stream_thinking.sse").read_bytes())
    ds = deltas(chunks)
    assert "".join(d.get("reasoning_content", "") for d in ds) == "Alice has 2 sisters, so her brothers have 3."
    assert "".join(d.get("content") or "" for d in ds) == "Alice's brother has 3 sisters."
    assert chunks[-1] == DONE and all(c["choices"] for c in chunks[:-1])  # no usage reported: no usage chunk


def test_error_finish_ends_the_stream_without_done() -> None:
    raw = (FIXTURES / "stream_error.sse").read_bytes()
    chunks = decode(raw + b'event: content-delta\ndata: {"type": "content-delta"}\n\n')
    assert [d.get("content") for d in deltas(chunks)] == ["", "A", " large"]
    assert chunks[-1] == {"error": {"message": "internal error: the model could not finish", "type": "upstream_error",
                                    "param": None, "code": "cohere_error"}}
    timeout = b'event: message-end\ndata: {"type": "message-end", "delta": {"finish_reason": "TIMEOUT"}}\n\n'
    assert decode(timeout)[0]["error"]["code"] == "cohere_timeout"


def test_unknown_malformed_truncated_and_done_line() -> None:
    raw = (FIXTURES / "stream_text.sse").read_bytes()
    cut = raw[:raw.index(b"event: message-end")]
    assert DONE not in decode(cut)  # no message-end: the gateway ends the stream with an error and estimates
    odd = (b'event: hologram\ndata: {"type": "hologram", "x": 1}\n\n'
           b'event: tool-call-delta\ndata: {"type": "tool-call-delta", "index": 7, "delta": {}}\n\n'
           b"event: content-delta\ndata: {not json\n\n")
    chunks = decode(raw.replace(b"event: message-end", odd + b"event: message-end") + b"data: [DONE]\n\n")
    raw_items = [c for c in chunks if isinstance(c, bytes) and c != DONE]
    assert raw_items == [b'event: hologram\ndata: {"type": "hologram", "x": 1}',
                         b'event: tool-call-delta\ndata: {"type": "tool-call-delta", "index": 7, "delta": {}}',
                         b"{not json"]
    assert chunks[-1] == DONE and chunks.count(DONE) == 1 and chunks[-2]["usage"]["completion_tokens"] == 16
    assert decode(b"data: [DONE]\n\n") == []  # a [DONE] without message-end completes nothing
