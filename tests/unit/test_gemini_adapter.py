"""The Gemini / Vertex adapter without the network: golden request translation, answers, streams, errors, URLs."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from gatewayz.errors import InvalidRequest
from gatewayz.providers.adapter import make_adapter
from gatewayz.providers.engine import AttemptFailed
from gatewayz.providers.gemini.adapter import GeminiAdapter
from gatewayz.providers.gemini.request import SKIP_SIGNATURE, build_request
from gatewayz.providers.gemini.schema import to_gemini
from gatewayz.providers.gemini.stream import GeminiStreamDecoder
from gatewayz.providers.spec import ProviderSpec
from gatewayz.providers.sse import DONE

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "gemini"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def gemini(body: dict[str, Any], model: str = "gemini-2.5-flash", **options: str) -> dict[str, Any]:
    return build_request(body, model, options)


def user(content: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}]}


def adapter(wire: str = "gemini", base_url: str = "https://generativelanguage.googleapis.com/v1beta",
            **options: str) -> GeminiAdapter:
    spec = ProviderSpec(name=wire, wire=wire, base_url=base_url, api_key="k-123", options=options)
    made = make_adapter(spec)
    assert isinstance(made, GeminiAdapter)
    return made


# --------------------------------------------------------------------------------------------------- requests
def test_golden_multiturn_tool_request() -> None:
    """The docs' multi-turn function-calling example: OpenAI in, exactly Gemini's JSON out."""
    assert gemini(fixture("openai_multiturn_tools.json")) == fixture("gemini_multiturn_tools.json")


def test_parameters_map_to_generation_config() -> None:
    body = {**user("hi"), "temperature": 0.5, "top_p": 0.9, "top_k": 40, "max_completion_tokens": 99,
            "max_tokens": 5, "stop": "END", "n": 2, "seed": 7, "presence_penalty": 0.1, "frequency_penalty": -0.2,
            "response_format": {"type": "json_object"}, "parallel_tool_calls": False, "user": "u1",
            "logprobs": True, "stream_options": {"include_usage": True}, "models": ["x"]}
    assert gemini(body) == {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "generationConfig": {"temperature": 0.5, "topP": 0.9, "topK": 40, "seed": 7, "presencePenalty": 0.1,
                             "frequencyPenalty": -0.2, "maxOutputTokens": 99, "stopSequences": ["END"],
                             "candidateCount": 2, "responseMimeType": "application/json"}}
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"],
              "additionalProperties": False}
    out = gemini({**user("hi"), "n": 1, "stop": ["a", "b"],
                  "response_format": {"type": "json_schema", "json_schema": {"name": "x", "strict": True,
                                                                             "schema": schema}}})
    assert out["generationConfig"] == {
        "stopSequences": ["a", "b"], "responseMimeType": "application/json",
        "responseSchema": {"type": "OBJECT", "properties": {"answer": {"type": "STRING"}}, "required": ["answer"]}}


def test_system_and_developer_messages_become_the_system_instruction() -> None:
    out = gemini({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
                               {"role": "developer", "content": [{"type": "text", "text": "No emoji."}]}]})
    assert out["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "No emoji."}]}
    assert out["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]
    lone = gemini({"messages": [{"role": "system", "content": "Say hi."}]})
    assert lone == {"contents": [{"role": "user", "parts": [{"text": "Say hi."}]}]}


def test_images_audio_and_files() -> None:
    parts = gemini(user([
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.webp?size=2", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/render"}},
        {"type": "image_url", "image_url": {"url": "gs://bucket/scan.png"}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}},
    ]), image_mime_type="image/png")["contents"][0]["parts"]
    assert parts == [
        {"text": "What is this?"},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/cat.webp?size=2"}},
        {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/render"}},  # the option's type
        {"fileData": {"mimeType": "image/png", "fileUri": "gs://bucket/scan.png"}},
        {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
    ]
    assert gemini(user([{"type": "image_url", "image_url": {"url": "https://x.io/a"}}]))["contents"][0]["parts"] \
        == [{"fileData": {"mimeType": "image/jpeg", "fileUri": "https://x.io/a"}}]


def test_inputs_gemini_cannot_take() -> None:
    with pytest.raises(InvalidRequest) as bad:
        gemini(user([{"type": "image_url", "image_url": {"url": "data:image/png,notbase64"}}]))
    assert bad.value.param == "messages[0].content[0].image_url.url"
    with pytest.raises(InvalidRequest):
        gemini({"messages": [{"role": "wizard", "content": "x"}]})
    with pytest.raises(InvalidRequest) as orphan:
        gemini({"messages": [{"role": "user", "content": "x"},
                             {"role": "tool", "tool_call_id": "nope", "content": "1"}]})
    assert orphan.value.param == "messages[1].tool_call_id"
    with pytest.raises(InvalidRequest):
        gemini({"messages": [{"role": "user", "content": ""}]})
    for part in ({"type": "file", "file": {"file_id": "file-abc"}}, {"type": "video_url", "video_url": "x"}):
        with pytest.raises(AttemptFailed) as unsupported:  # another provider may take it
            gemini(user([part]))
        assert unsupported.value.kind == "unsupported_input"
    with pytest.raises(AttemptFailed):
        gemini({**user("x"), "tools": [{"type": "custom", "custom": {"name": "c"}}]})


def test_parallel_tool_results_share_one_turn_and_wrap_non_objects() -> None:
    calls = [{"id": f"call_{c}", "type": "function", "function": {"name": f"f{c}", "arguments": "{}"}}
             for c in ("a", "b")]
    out = gemini({"messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": "On it.", "tool_calls": calls},
        {"role": "tool", "tool_call_id": "call_b", "content": "plain text"},
        {"role": "tool", "tool_call_id": "call_a", "content": [{"type": "text", "text": "[1, 2]"}]},
        {"role": "user", "content": "thanks"}]})
    assert out["contents"][1:] == [
        {"role": "model", "parts": [{"text": "On it."}, {"functionCall": {"name": "fa", "args": {}}},
                                    {"functionCall": {"name": "fb", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "fb", "response": {"content": "plain text"}}},
                                   {"functionResponse": {"name": "fa", "response": {"content": "[1, 2]"}}},
                                   {"text": "thanks"}]}]


@pytest.mark.parametrize(("choice", "config"), [
    ("auto", {"mode": "AUTO"}), ("required", {"mode": "ANY"}), ("none", {"mode": "NONE"}),
    ({"type": "function", "function": {"name": "b"}}, {"mode": "ANY", "allowedFunctionNames": ["b"]}),
])
def test_tool_choice(choice: Any, config: dict[str, Any]) -> None:
    tools = [{"type": "function", "function": {"name": n, "parameters": {"type": "object", "properties": {}}}}
             for n in ("a", "b")]
    out = gemini({**user("x"), "tools": tools, "tool_choice": choice})
    assert out["tools"] == [{"functionDeclarations": [{"name": "a"}, {"name": "b"}]}]  # no empty parameters
    assert out["toolConfig"] == {"functionCallingConfig": config}
    assert "toolConfig" not in gemini({**user("x"), "tool_choice": "required"})  # no tools: nothing to choose


def test_schema_conversion() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema", "title": "Order", "type": "object",
        "additionalProperties": False,
        "$defs": {"Item": {"type": "object", "properties": {"sku": {"type": "string", "format": "uuid"},
                                                            "qty": {"type": "integer", "minimum": 1}},
                           "required": ["sku", "ghost"]}},
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}, "minItems": 1, "uniqueItems": True},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "description": "optional"},
            "when": {"type": ["string", "null"], "format": "date-time"},
            "size": {"enum": [1, 2, 3], "description": "Size."},
            "anything": {"description": "any value"},
            "color": {"const": "red"},
            "id": {"type": ["string", "integer"]},
            "mixed": {"oneOf": [{"type": "string"}, {"type": "number", "format": "double"}]},
            "meta": {"allOf": [{"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["a"]},
                               {"properties": {"b": {"type": "number", "exclusiveMinimum": 0}}}]},
            "free": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "required": ["items", "missing"],
    }
    assert to_gemini(schema) == {"type": "OBJECT", "required": ["items"], "properties": {
        "items": {"type": "ARRAY", "minItems": 1, "items": {
            "type": "OBJECT", "required": ["sku"],
            "properties": {"sku": {"type": "STRING"}, "qty": {"type": "INTEGER", "minimum": 1}}}},
        "note": {"type": "STRING", "description": "optional", "nullable": True},
        "when": {"type": "STRING", "format": "date-time", "nullable": True},
        "size": {"type": "INTEGER", "description": "Size. Allowed values: 1, 2, 3."},
        "anything": {"type": "STRING", "description": "any value"},
        "color": {"type": "STRING", "enum": ["red"]},
        "id": {"anyOf": [{"type": "STRING"}, {"type": "INTEGER"}]},
        "mixed": {"anyOf": [{"type": "STRING"}, {"type": "NUMBER", "format": "double"}]},
        "meta": {"type": "OBJECT", "required": ["a"],
                 "properties": {"a": {"type": "BOOLEAN"}, "b": {"type": "NUMBER"}}},
        "free": {"type": "OBJECT"},
    }}
    assert to_gemini({"anyOf": [{"type": ["string", "integer"]}, {"type": "null"}], "description": "d"}) == {
        "description": "d", "anyOf": [{"type": "STRING"}, {"type": "INTEGER"}], "nullable": True}
    recursive = {"$defs": {"Node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/Node"}}}},
                 "$ref": "#/$defs/Node"}
    depth, node = 0, to_gemini(recursive)
    while "properties" in node:
        node, depth = node["properties"]["child"], depth + 1
    assert 5 < depth < 40 and node["type"] == "OBJECT"


@pytest.mark.parametrize(("model", "effort", "thinking"), [
    ("gemini-2.5-flash", "none", {"thinkingBudget": 0}),
    ("gemini-2.5-flash", "low", {"thinkingBudget": 1024, "includeThoughts": True}),
    ("gemini-2.5-pro", "medium", {"thinkingBudget": 8192, "includeThoughts": True}),
    ("gemini-2.5-pro", "high", {"thinkingBudget": 24576, "includeThoughts": True}),
    ("gemini-3-pro-preview", "medium", {"thinkingLevel": "high", "includeThoughts": True}),
    ("gemini-3-pro-preview", "none", {"thinkingLevel": "low"}),
    ("gemini-3-flash-preview", "minimal", {"thinkingLevel": "minimal", "includeThoughts": True}),
    ("gemini-3-flash-preview", "medium", {"thinkingLevel": "medium", "includeThoughts": True}),
])
def test_reasoning_effort(model: str, effort: str, thinking: dict[str, Any]) -> None:
    assert gemini({**user("x"), "reasoning_effort": effort}, model)["generationConfig"] == {"thinkingConfig": thinking}


def test_bad_parameters_are_400() -> None:
    for body in ({"reasoning_effort": "max"}, {"stop": 3}, {"temperature": "hot"},
                 {"response_format": {"type": "yaml"}}, {"tool_choice": "sometimes", "tools": [
                     {"type": "function", "function": {"name": "f"}}]}):
        with pytest.raises(InvalidRequest):
            gemini({**user("x"), **body})


def test_thought_signatures_round_trip() -> None:
    answer = adapter().response(fixture("response_thinking_parallel.json"))
    calls = answer["choices"][0]["message"]["tool_calls"]
    assert calls[0]["extra_content"] == {"google": {"thought_signature": "CiQB0e2Kb3Nzc2lnbmF0dXJl"}}
    history = {"messages": [{"role": "user", "content": "weather?"}, answer["choices"][0]["message"],
                            *({"role": "tool", "tool_call_id": c["id"], "content": "sunny"} for c in calls)]}
    parts = gemini(history, "gemini-3-pro-preview")["contents"][1]["parts"]
    assert [p.get("thoughtSignature") for p in parts] == [None, "CiQB0e2Kb3Nzc2lnbmF0dXJl", None]
    for call in calls:
        call.pop("extra_content", None)  # a client that dropped the signature
    for model in ("gemini-3-pro-preview", "gemini-flash-latest"):
        parts = gemini(history, model)["contents"][1]["parts"]
        assert [p.get("thoughtSignature") for p in parts] == [None, SKIP_SIGNATURE, None]
    assert all("thoughtSignature" not in p for p in gemini(history)["contents"][1]["parts"])  # 2.5: none needed


# -------------------------------------------------------------------------------------------------- responses
def test_golden_function_call_response() -> None:
    out = adapter().response(fixture("response_function_call.json"))
    assert out["id"] == "chatcmpl-mZqzaPyLHpqfz7IPlpuT8Ac" and out["object"] == "chat.completion"
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["id"].startswith("call_") and len(call["id"]) == 29 and call["type"] == "function"
    assert call["function"]["name"] == "find_movies"
    assert json.loads(call["function"]["arguments"]) == {"location": "Mountain View, CA", "description": "comedy"}
    assert out["usage"] == {"prompt_tokens": 187, "completion_tokens": 11, "total_tokens": 198,
                            "prompt_tokens_details": {"cached_tokens": 0},
                            "completion_tokens_details": {"reasoning_tokens": 0}}


def test_thoughts_parallel_calls_and_cached_usage() -> None:
    out = adapter().response(fixture("response_thinking_parallel.json"))
    message = out["choices"][0]["message"]
    assert message["content"] == "Checking both cities."
    assert message["reasoning_content"].startswith("The user wants the weather")
    assert [json.loads(c["function"]["arguments"]) for c in message["tool_calls"]] == [
        {"city": "Paris"}, {"city": "Tokyo", "unit": "celsius"}]
    assert len({c["id"] for c in message["tool_calls"]}) == 2
    assert out["usage"] == {"prompt_tokens": 1200, "completion_tokens": 170, "total_tokens": 1370,
                            "prompt_tokens_details": {"cached_tokens": 1024},
                            "completion_tokens_details": {"reasoning_tokens": 130}}


@pytest.mark.parametrize(("reason", "finish"), [("MAX_TOKENS", "length"), ("SAFETY", "content_filter"),
                                                ("RECITATION", "content_filter"), ("SPII", "content_filter"),
                                                ("PROHIBITED_CONTENT", "content_filter"), ("OTHER", "stop")])
def test_finish_reasons(reason: str, finish: str) -> None:
    data = {"candidates": [{"content": {"parts": [{"text": "a"}], "role": "model"}, "finishReason": reason}]}
    assert adapter().response(data)["choices"][0]["finish_reason"] == finish


def test_blocked_prompt_several_candidates_and_junk() -> None:
    blocked = adapter().response(fixture("response_prompt_blocked.json"))
    assert blocked["choices"] == [{"index": 0, "message": {"role": "assistant", "content": ""}, "logprobs": None,
                                   "finish_reason": "content_filter"}]
    two = adapter().response({"candidates": [
        {"content": {"parts": [{"text": "B"}]}, "index": 1, "finishReason": "STOP"},
        {"content": {"parts": [{"text": "A"}]}, "finishReason": "STOP"}]})
    assert [(c["index"], c["message"]["content"]) for c in two["choices"]] == [(0, "A"), (1, "B")]
    for junk in ({}, [], "x", {"error": {"code": 500}}, {"candidates": ["x"]}):
        with pytest.raises(AttemptFailed) as bad:
            adapter().response(junk)
        assert bad.value.kind == "bad_response"


def test_error_bodies_in_openai_shape() -> None:
    key = (FIXTURES / "error_invalid_key.json").read_bytes()
    assert orjson.loads(adapter().error_body(400, key)) == {"error": {
        "message": "API key not valid. Please pass a valid API key.", "type": "invalid_request_error",
        "param": None, "code": "invalid_argument"}}
    array = b'[{"error": {"code": 400, "message": "bad schema", "status": "INVALID_ARGUMENT"}}]'
    assert orjson.loads(adapter().error_body(400, array))["error"]["message"] == "bad schema"
    plain = orjson.loads(adapter().error_body(413, b"<html>too large</html>"))
    assert plain["error"]["message"] == "<html>too large</html>" and plain["error"]["code"] == "upstream_413"


# ----------------------------------------------------------------------------------------------------- streams
def decode(raw: bytes, pieces: int = 7, seed: int = 1) -> list[Any]:
    """Feed `raw` in random slices, then the end of the body."""
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(raw)), min(pieces, len(raw) - 1)))
    decoder = GeminiStreamDecoder()
    out: list[Any] = []
    for start, end in zip([0, *cuts], [*cuts, len(raw)], strict=True):
        out.extend(decoder.feed(raw[start:end]))
    before_end = len(out)
    out.extend(decoder.feed(b""))
    assert DONE not in out[:before_end]  # complete only once the body ended
    assert decoder.feed(b"") == []
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_text_stream_from_the_docs(seed: int) -> None:
    out = decode((FIXTURES / "stream_story.sse").read_bytes(), seed=seed)
    assert out[-1] == DONE
    chunks = out[:-1]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "In a sunny cottage by a meadow lived two cats, Pepper and Miso, who loved naps in the sun. The end."
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes.count("stop") == 1 and finishes[-1] == "stop"  # this model repeats STOP on every event
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 32
    assert len({c["id"] for c in chunks}) == 1 and all(c["object"] == "chat.completion.chunk" for c in chunks)


def test_stream_with_thoughts_and_parallel_calls() -> None:
    out = decode((FIXTURES / "stream_parallel_calls.sse").read_bytes())
    chunks = out[:-1]
    assert out[-1] == DONE and all(c["id"] == "chatcmpl-stream-fc-1" for c in chunks)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[1] == {"reasoning_content": "Let me check both cities."}
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert [(c["index"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        (0, "get_weather", {"city": "Paris"}), (1, "get_weather", {"city": "Tokyo"})]
    assert all(c["id"].startswith("call_") and c["type"] == "function" for c in calls)
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"] == {"prompt_tokens": 30, "completion_tokens": 27, "total_tokens": 57,
                                   "prompt_tokens_details": {"cached_tokens": 0},
                                   "completion_tokens_details": {"reasoning_tokens": 15}}


def test_truncated_malformed_error_and_unknown_events() -> None:
    raw = (FIXTURES / "stream_parallel_calls.sse").read_bytes()
    truncated = raw[: raw.index(b'"finishReason"') - 60]  # cut before the event with the finishReason
    out = decode(truncated, pieces=3)
    assert DONE not in out and all(c["choices"][0]["finish_reason"] is None for c in out if isinstance(c, dict))
    decoder = GeminiStreamDecoder()
    assert decoder.feed(b"data: {not json\r\n\r\ndata: {\"surprise\": 1}\r\n\r\n") == [b"{not json", b'{"surprise": 1}']
    err = decoder.feed(b'data: {"error": {"code": 429, "message": "Resource exhausted", "status": '
                       b'"RESOURCE_EXHAUSTED"}}\n\n')
    assert err == [{"error": {"message": "Resource exhausted", "type": "rate_limit_error", "param": None,
                              "code": "resource_exhausted"}}]
    assert DONE not in decoder.feed(b"")


def test_last_event_without_blank_line_and_json_array_body() -> None:
    event = b'data: {"candidates": [{"content": {"parts": [{"text": "hi"}]}, "finishReason": "MAX_TOKENS"}]}'
    decoder = GeminiStreamDecoder()
    assert decoder.feed(event) == []
    tail = decoder.feed(b"")
    assert tail[-1] == DONE and tail[-2]["choices"][0]["finish_reason"] == "length"
    array = orjson.dumps([{"candidates": [{"content": {"parts": [{"text": "a"}]}}]},
                          {"candidates": [{"content": {"parts": [{"text": "b"}]}, "finishReason": "STOP"}],
                           "usageMetadata": {"promptTokenCount": 2, "candidatesTokenCount": 2}}])
    out = decode(b"\n" + array, pieces=4)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in out[:-1] if c["choices"]) == "ab"
    assert out[-2]["usage"]["total_tokens"] == 4 and out[-1] == DONE
    error_array = GeminiStreamDecoder()
    error_array.feed(b'[{"error": {"code": 500, "message": "boom", "status": "INTERNAL"}}]')
    assert error_array.feed(b"") == [{"error": {"message": "boom", "type": "server_error", "param": None,
                                                "code": "internal"}}]


# ---------------------------------------------------------------------------------------------- URLs and auth
def test_ai_studio_urls_and_key_header() -> None:
    a = adapter()
    out = asyncio.run(a.request(user("hi"), "gemini-2.5-flash", False))
    assert out.url == "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    assert out.headers["x-goog-api-key"] == "k-123" and "authorization" not in out.headers
    assert orjson.loads(out.data) == {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    stream = asyncio.run(a.request(user("hi"), "tunedModels/mine-1", True))
    assert stream.url.endswith("/v1beta/tunedModels/mine-1:streamGenerateContent?alt=sse")


def test_vertex_urls() -> None:
    v = adapter("vertex", "https://{location}-aiplatform.googleapis.com/v1", project="p1", location="europe-west4",
                access_token="ya29.static")
    out = asyncio.run(v.request(user("hi"), "gemini-2.5-pro", True))
    assert out.url == ("https://europe-west4-aiplatform.googleapis.com/v1/projects/p1/locations/europe-west4/"
                       "publishers/google/models/gemini-2.5-pro:streamGenerateContent?alt=sse")
    assert out.headers["authorization"] == "Bearer ya29.static" and "x-goog-api-key" not in out.headers
    g = adapter("vertex", "https://{location}-aiplatform.googleapis.com/v1", project="p1", location="global",
                access_token="t")
    assert asyncio.run(g.request(user("hi"), "gemini-2.5-pro", False)).url == (
        "https://aiplatform.googleapis.com/v1/projects/p1/locations/global/publishers/google/models/"
        "gemini-2.5-pro:generateContent")
    tuned = asyncio.run(g.request(user("hi"), "projects/p1/locations/us-central1/endpoints/42", False))
    assert tuned.url == "https://aiplatform.googleapis.com/v1/projects/p1/locations/us-central1/endpoints/42:generateContent"
    with pytest.raises(AttemptFailed) as no_project:
        asyncio.run(adapter("vertex", "http://x/v1", access_token="t").request(user("hi"), "m", False))
    assert no_project.value.kind == "config"
    with pytest.raises(AttemptFailed) as no_credentials:
        asyncio.run(adapter("vertex", "http://x/v1", project="p").request(user("hi"), "m", False))
    assert no_credentials.value.kind == "auth"
