"""The Bedrock adapter's translations: OpenAI -> Converse requests (golden files from AWS's documented
examples), Converse -> OpenAI answers, ConverseStream bytes -> chunks, error bodies, and what it refuses."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from gatewayz.errors import InvalidRequest
from gatewayz.providers.adapter import make_adapter
from gatewayz.providers.bedrock.adapter import BedrockAdapter
from gatewayz.providers.bedrock.request import converse_body
from gatewayz.providers.engine import AttemptFailed
from gatewayz.providers.spec import ProviderSpec, builtin_specs, spec_from_config
from gatewayz.providers.sse import DONE
from gatewayz.settings import Settings, load_settings
from tests.emulator.bedrock_stream import encode_message, event_message, exception_message

FIXTURES = Path(__file__).parent.parent / "fixtures" / "bedrock"


def _fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def _adapter(**options: str) -> BedrockAdapter:
    opts = options or {"access_key_id": "AKID", "secret_access_key": "secret", "region": "us-west-2"}
    return BedrockAdapter(ProviderSpec("bedrock", "bedrock", "https://bedrock-runtime.{region}.amazonaws.com",
                                       options=opts))


def _strip(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("id", "created")}


# ------------------------------------------------------------------------------------------- requests

@pytest.mark.parametrize("name", ["request_tool_docs.json", "request_tool_result_docs.json",
                                  "request_multimodal.json", "request_tool_choice_none.json",
                                  "request_json_mode.json"])
def test_golden_request_translation(name: str) -> None:
    case = _fixture(name)
    assert converse_body(case["openai"], case["model"]) == case["converse"]


def test_request_is_signed_for_the_wire() -> None:
    case = _fixture("request_tool_docs.json")
    out = asyncio.run(_adapter().request(case["openai"], case["model"], False))
    assert out.url == "https://bedrock-runtime.us-west-2.amazonaws.com/model/anthropic.claude-3-sonnet-20240229-v1:0/converse"
    assert orjson.loads(out.data) == case["converse"]
    assert out.headers["host"] == "bedrock-runtime.us-west-2.amazonaws.com"
    assert out.headers["accept"] == "application/json" and out.headers["content-type"] == "application/json"
    assert out.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKID/")
    assert "/us-west-2/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date" \
        in out.headers["authorization"]
    stream = asyncio.run(_adapter().request(case["openai"], case["model"], True))
    assert stream.url.endswith("/converse-stream") and stream.headers["accept"] == "application/vnd.amazon.eventstream"


def test_credentials_from_options_and_the_environment() -> None:
    settings = load_settings(env={"AWS_ACCESS_KEY_ID": "AKIA1", "AWS_SECRET_ACCESS_KEY": "wJalrSECRET",
                                  "AWS_SESSION_TOKEN": "t", "AWS_DEFAULT_REGION": "eu-west-1",
                                  "AWS_REGION": "eu-west-3"})
    assert "bedrock" in settings.builtin_enabled()
    adapter = make_adapter(builtin_specs(settings)["bedrock"])
    assert isinstance(adapter, BedrockAdapter) and adapter.region == "eu-west-3"  # AWS_REGION wins
    assert adapter.base_url == "https://bedrock-runtime.eu-west-3.amazonaws.com"
    assert adapter.auth.credentials is not None and adapter.auth.credentials.session_token == "t"
    assert "wJalrSECRET" not in repr(adapter.auth)
    keyed = load_settings(env={"AWS_ACCESS_KEY_ID": "AKIA1", "AWS_SECRET_ACCESS_KEY": "s",
                               "AWS_BEARER_TOKEN_BEDROCK": "bedrock-api-key"})
    bearer = make_adapter(builtin_specs(keyed)["bedrock"])
    assert isinstance(bearer, BedrockAdapter) and bearer.region == "us-east-1"
    out = asyncio.run(bearer.request({"messages": [{"role": "user", "content": "hi"}]}, "m", False))
    assert out.headers["authorization"] == "Bearer bedrock-api-key" and "x-amz-date" not in out.headers
    config_key = BedrockAdapter(ProviderSpec("b", "bedrock", "http://h", api_key="k2"))
    assert config_key.auth.bearer_token == "k2"
    named = Settings(providers=[{"name": "bedrock", "options": {  # type: ignore[list-item]
        "region": "ap-south-1", "access_key_id": "A", "secret_access_key": "S"}}])
    configured = make_adapter(spec_from_config(named.providers[0]))
    assert isinstance(configured, BedrockAdapter) and configured.auth.credentials is not None
    assert configured.base_url == "https://bedrock-runtime.ap-south-1.amazonaws.com"


@pytest.mark.parametrize("options", [{}, {"access_key_id": "AKID"}, {"secret_access_key": "s"}])
def test_missing_credentials_fail_each_attempt(options: dict[str, str]) -> None:
    adapter = BedrockAdapter(ProviderSpec("b", "bedrock", "http://h", options=options))
    with pytest.raises(AttemptFailed) as exc:
        asyncio.run(adapter.request({"messages": [{"role": "user", "content": "hi"}]}, "m", False))
    assert exc.value.kind == "no_credentials" and exc.value.status == 401


@pytest.mark.parametrize(("body", "kind"), [
    ({"n": 2}, "unsupported: n > 1"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url",
                                                 "image_url": {"url": "https://example.com/cat.png"}}]}]},
     "unsupported: http(s) image or file URL, Bedrock takes data: URLs"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
     "unsupported: audio input"),
    ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "unsupported: non-function tools"),
])
def test_inputs_bedrock_cannot_take_fail_over(body: dict[str, Any], kind: str) -> None:
    """Another provider may take these (an OpenAI upstream fetches image URLs): AttemptFailed, status 400
    so the provider's health is not blamed."""
    request = {"messages": [{"role": "user", "content": "hi"}], **body}
    with pytest.raises(AttemptFailed) as exc:
        asyncio.run(_adapter().request(request, "m", False))
    assert exc.value.kind == kind and exc.value.status == 400


BMP, BAD_BASE64 = "data:image/bmp;base64,AA==", "data:image/png;base64,@@"


@pytest.mark.parametrize("body", [
    {"messages": []},
    {"messages": [{"role": "wizard", "content": "hi"}]},
    {"messages": [{"role": "user", "content": 5}]},
    {"messages": [{"role": "user", "content": [{"type": "video"}]}]},
    {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": BMP}}]}]},
    {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": BAD_BASE64}}]}]},
    {"messages": [{"role": "tool", "content": "x"}]},
    {"messages": [{"role": "system", "content": "only a system prompt"}]},
    {"messages": [{"role": "user", "content": "hi"}], "stop": 5},
    {"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"},
    {"messages": [{"role": "user", "content": "hi"}], "top_k": 0},
    {"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {}}]},
    {"messages": [{"role": "user", "content": "hi"}], "tool_choice": "sometimes",
     "tools": [{"type": "function", "function": {"name": "f"}}]},
])
def test_malformed_requests_are_400s(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest):
        converse_body(body, "m")


def test_merging_ids_and_json_mode_with_tools() -> None:
    body = {"messages": [
        {"role": "user", "content": "a"},
        {"role": "assistant", "tool_calls": [
            {"id": "call a/1", "type": "function", "function": {"name": "f", "arguments": "not json"}},
            {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": "{\"x\": 1}"}}]},
        {"role": "tool", "tool_call_id": "call a/1", "content": ""},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "two"}]}],
        "tools": [{"type": "function", "function": {"name": "f"}}, {"type": "function", "function": {"name": "g"}}],
        "tool_choice": "required", "response_format": {"type": "json_object"}}
    out = converse_body(body, "anthropic.claude")
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user"]
    uses = [b["toolUse"] for b in out["messages"][1]["content"]]
    assert uses == [{"toolUseId": "call_a_1", "name": "f", "input": {}},
                    {"toolUseId": "call_2", "name": "g", "input": {"x": 1}}]
    results = [b["toolResult"] for b in out["messages"][2]["content"]]
    assert results == [{"toolUseId": "call_a_1", "content": [{"text": "(empty)"}]},
                       {"toolUseId": "call_2", "content": [{"text": "two"}]}]
    config = out["toolConfig"]
    assert [t["toolSpec"]["name"] for t in config["tools"]] == ["f", "g", "gatewayz_json_response"]
    assert config["toolChoice"] == {"any": {}}
    assert config["tools"][0]["toolSpec"]["inputSchema"] == {"json": {"type": "object", "properties": {}}}


# ------------------------------------------------------------------------------------------ responses

@pytest.mark.parametrize("name", ["response_tool_use_docs.json", "response_text_reasoning_cache.json"])
def test_golden_response_translation(name: str) -> None:
    case = _fixture(name)
    out = _adapter().response(case["converse"])
    assert out["id"].startswith("chatcmpl-") and isinstance(out["created"], int)
    assert _strip(out) == case["openai"]


@pytest.mark.parametrize(("stop", "reason"), [("end_turn", "stop"), ("stop_sequence", "stop"),
                                              ("max_tokens", "length"), ("guardrail_intervened", "content_filter"),
                                              ("content_filtered", "content_filter"),
                                              ("malformed_model_output", "stop"),
                                              ("model_context_window_exceeded", "length")])
def test_stop_reasons(stop: str, reason: str) -> None:
    data = {"output": {"message": {"role": "assistant", "content": [{"text": "x"}]}}, "stopReason": stop}
    assert _adapter().response(data)["choices"][0]["finish_reason"] == reason


def test_json_mode_answer_is_the_message_text() -> None:
    data = {"output": {"message": {"role": "assistant", "content": [
        {"toolUse": {"toolUseId": "t1", "name": "gatewayz_json_response", "input": {"colour": "blue"}}}]}},
        "stopReason": "tool_use", "usage": {"inputTokens": 3, "outputTokens": 4, "totalTokens": 7}}
    choice = _adapter().response(data)["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": '{"colour": "blue"}'}
    assert choice["finish_reason"] == "stop"


@pytest.mark.parametrize("data", [None, [], {"output": {}}, {"output": {"message": {"content": "x"}}},
                                  {"message": "throttled"}])
def test_junk_answers_fail_the_attempt(data: Any) -> None:
    with pytest.raises(AttemptFailed) as exc:
        _adapter().response(data)
    assert exc.value.kind == "bad_response"


@pytest.mark.parametrize(("status", "body", "code", "message"), [
    (400, b'{"message":"Malformed input request: temperature must be <= 1"}', "ValidationException",
     "Malformed input request: temperature must be <= 1"),
    (424, b'{"message":"Model error","originalStatusCode":500}', "ModelErrorException", "Model error"),
    (400, b'{"__type":"com.amazon.coral#SerializationException","Message":"bad json"}', "SerializationException",
     "bad json"),
    (413, b"<html>too big</html>", "upstream_413", "<html>too big</html>"),
])
def test_error_bodies_become_openai_errors(status: int, body: bytes, code: str, message: str) -> None:
    error = orjson.loads(_adapter().error_body(status, body))["error"]
    assert error == {"message": message, "type": "invalid_request_error", "param": None, "code": code}


# --------------------------------------------------------------------------------------------- streams

def _feed_all(data: bytes, step: int) -> list[Any]:
    decoder = _adapter().decoder()
    out: list[Any] = []
    for i in range(0, len(data), step):
        out += decoder.feed(data[i:i + step])
    return out


@pytest.mark.parametrize("step", [1, 5, 64, 100_000])
def test_golden_stream_at_any_chunk_boundary(step: int) -> None:
    expected = _fixture("stream_tool_use.events.json")["chunks"]
    out = _feed_all((FIXTURES / "stream_tool_use.bin").read_bytes(), step)
    assert out[-1] == DONE
    chunks = out[:-1]
    assert len({c["id"] for c in chunks}) == 1 and all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert [_strip({k: v for k, v in c.items() if k not in ("object", "model")}) for c in chunks] == expected[:-1]


def _stream(*frames: bytes) -> list[Any]:
    return _adapter().decoder().feed(b"".join(frames))


START = event_message("messageStart", {"role": "assistant"})
TEXT = event_message("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi"}})
STOP = event_message("messageStop", {"stopReason": "end_turn"})
META = event_message("metadata", {"usage": {"inputTokens": 5, "outputTokens": 1, "totalTokens": 6},
                                  "metrics": {"latencyMs": 3}})


def test_done_needs_both_message_stop_and_metadata() -> None:
    out = _stream(START, TEXT, STOP)
    assert DONE not in out and out[-1]["choices"][0]["finish_reason"] == "stop"
    assert _stream(START, TEXT, STOP, META)[-1] == DONE
    no_usage = _stream(START, TEXT, STOP, event_message("metadata", {"metrics": {"latencyMs": 1}}))
    assert no_usage[-1] == DONE and all("usage" not in c for c in no_usage[:-1])


@pytest.mark.parametrize(("exception", "message"), [
    ("throttlingException", "Too many tokens, please wait before trying again."),
    ("modelStreamErrorException", "The model stream failed."),
    ("validationException", "Input is too long for requested model."),
])
def test_exception_messages_become_error_events(exception: str, message: str) -> None:
    out = _stream(START, TEXT, exception_message(exception, message), STOP, META)
    assert out[-1] == {"error": {"message": message, "type": "upstream_error", "param": None, "code": exception}}
    assert DONE not in out  # nothing after the error is delivered


def test_error_message_type_and_unknown_events() -> None:
    error = encode_message({":message-type": "error", ":error-code": "InternalFailure",
                            ":error-message": "boom"}, b"")
    # nothing precedes it (no role chunk for a bare messageStart): the engine can still fail over
    assert _stream(START, error) == [{"error": {"message": "boom", "type": "upstream_error", "param": None,
                                                "code": "InternalFailure"}}]
    future = event_message("someFutureEvent", {"x": 1})
    assert _stream(future) == []  # skipped, not counted as junk
    not_json = encode_message({":message-type": "event", ":event-type": "contentBlockDelta"}, b"{oops")
    assert _stream(START, not_json)[-1] == b"{oops"
    other = encode_message({":message-type": "mystery"}, b"")
    assert isinstance(_stream(other)[0], bytes)


def test_corrupt_frame_returns_raw_bytes_and_no_done() -> None:
    bad = event_message("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "x"}}, corrupt=True)
    out = _stream(START, TEXT, bad, STOP, META)
    assert out[-1] == bad + STOP + META and DONE not in out
    assert [c["choices"][0]["delta"] for c in out[:-1]] == [{"role": "assistant", "content": ""}, {"content": "Hi"}]


def test_a_body_that_is_no_event_stream_starts_with_an_error() -> None:
    page = b"<html><body>502 Bad Gateway</body></html>"
    out = _stream(page)
    assert out[0]["error"]["code"] == "malformed_stream" and "CRC" in out[0]["error"]["message"]
    assert out[1:] == [page]  # still handed over, for the log


def test_tool_fragments_without_a_start_and_json_mode_stream() -> None:
    orphan = event_message("contentBlockDelta", {"contentBlockIndex": 3, "delta": {"toolUse": {"input": "{}"}}})
    out = _stream(START, orphan)
    head = out[1]["choices"][0]["delta"]["tool_calls"][0]
    assert head["index"] == 0 and head["id"].startswith("call_") and head["function"]["name"] == ""
    assert out[2]["choices"][0]["delta"] == {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}
    json_start = event_message("contentBlockStart", {"contentBlockIndex": 0, "start": {"toolUse": {
        "toolUseId": "t", "name": "gatewayz_json_response"}}})
    piece = event_message("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": '{"a": 1}'}}})
    tool_stop = event_message("messageStop", {"stopReason": "tool_use"})
    out = _stream(START, json_start, piece, tool_stop, META)
    deltas = [c["choices"][0]["delta"] for c in out[:2]]
    assert deltas == [{"role": "assistant", "content": ""}, {"content": '{"a": 1}'}]
    assert out[2]["choices"][0]["finish_reason"] == "stop" and out[-1] == DONE
