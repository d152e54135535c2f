"""The emulator's Google format over raw HTTP: it refuses what Gemini refuses, so the adapter's tests mean something."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.emulator import Emulator, Fault
from tests.emulator.gemini_format import GeminiFormat

KEY = "emu-key"
STUDIO = "/v1beta/models/gemini-2.5-flash:generateContent"
HI = {"contents": [{"role": "user", "parts": [{"text": "hello big world"}]}]}


@pytest.fixture(scope="module")
def server() -> Iterator[Emulator]:
    with Emulator(name="g", api_key=KEY, formats=[GeminiFormat()]) as emulator:
        yield emulator


@pytest.fixture
def emu(server: Emulator) -> Emulator:
    server.reset()
    return server


def post(emu: Emulator, body: Any, path: str = STUDIO, **headers: str) -> httpx.Response:
    return httpx.post(emu.url + path, json=body, headers={"x-goog-api-key": KEY, **headers}, timeout=5)


def test_answer_usage_and_auth(emu: Emulator) -> None:
    r = post(emu, {**HI, "systemInstruction": {"parts": [{"text": "be kind"}]}})
    assert r.status_code == 200
    body = r.json()
    assert body["candidates"][0]["content"] == {"parts": [{"text": "Echo: hello big world"}], "role": "model"}
    assert body["candidates"][0]["finishReason"] == "STOP" and body["modelVersion"] == "gemini-2.5-flash"
    assert body["usageMetadata"]["promptTokenCount"] == 3 + (2 + 3) + (3 + 3)
    assert body["usageMetadata"]["candidatesTokenCount"] == 4
    bad = post(emu, HI, **{"x-goog-api-key": "wrong"})
    assert bad.status_code == 401 and bad.json()["error"]["status"] == "UNAUTHENTICATED"
    vertex = "/v1/projects/p/locations/l/publishers/google/models/gemini-2.5-flash:generateContent"
    assert post(emu, HI, vertex).status_code == 401
    assert post(emu, HI, vertex, authorization=f"Bearer {KEY}").status_code == 200
    assert post(emu, HI, "/v1beta/models/gemini-2.5-flash:countTokens").status_code == 404


@pytest.mark.parametrize(("body", "message"), [
    ({**HI, "temperature": 1}, 'Unknown name "temperature"'),
    ({"contents": []}, "contents is not specified"),
    ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, "valid role"),
    ({"contents": [{"role": "user", "parts": []}]}, "must not be empty"),
    ({"contents": [{"role": "user", "parts": [{"text": "x", "inline_image": 1}]}]}, 'Unknown name "inline_image"'),
    ({"contents": [{"role": "user", "parts": [{"inlineData": {"mimeType": "image/png", "data": "%%%"}}]}]},
     "Base64 decoding failed"),
    ({**HI, "generationConfig": {"max_tokens": 3}}, 'Unknown name "max_tokens"'),
    ({**HI, "generationConfig": {"thinkingConfig": {"thinkingBudget": 0, "thinkingLevel": "low"}}}, "only one"),
    ({**HI, "tools": [{"functionDeclarations": [{"name": "f", "parameters": {
        "type": "object", "additionalProperties": False, "properties": {"a": {"type": "string"}}}}]}]},
     'Unknown name "additionalProperties"'),
    ({**HI, "tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "OBJECT", "properties": {}}}]}]},
     "should be non-empty for OBJECT type"),
    ({**HI, "tools": [{"functionDeclarations": [{"name": "f", "parameters": {
        "type": "OBJECT", "properties": {"a": {"type": "STRING"}}, "required": ["b"]}}]}]}, "property is not defined"),
    ({**HI, "tools": [{"functionDeclarations": [{"name": "1f"}]}]}, "Invalid function name"),
    ({**HI, "tools": [{"functionDeclarations": [{"name": "f", "parameters": {
        "type": "OBJECT", "properties": {"a": {"description": "untyped"}}}}]}]}, "type: must be specified"),
    ({**HI, "tools": [{"functionDeclarations": [{"name": "f"}]}],
      "toolConfig": {"functionCallingConfig": {"mode": "AUTO", "allowedFunctionNames": ["f"]}}}, "only be set"),
    ({"contents": [{"role": "user", "parts": [{"text": "x"}]},
                   {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}},
                                               {"functionCall": {"name": "g", "args": {}}}]},
                   {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]}]},
     "number of function response parts"),
])
def test_refuses_what_gemini_refuses(emu: Emulator, body: dict[str, Any], message: str) -> None:
    r = post(emu, body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == 400 and error["status"] == "INVALID_ARGUMENT" and message in error["message"]


def test_gemini_3_requires_thought_signatures(emu: Emulator) -> None:
    path = "/v1beta/models/gemini-3-pro-preview:generateContent"
    tools = [{"functionDeclarations": [{"name": "f", "parameters": {"type": "OBJECT",
                                                                    "properties": {"q": {"type": "STRING"}}}}]}]
    first = post(emu, {**HI, "tools": tools}, path).json()
    call = first["candidates"][0]["content"]["parts"][0]
    assert call["functionCall"] == {"name": "f", "args": {"q": "hello big world"}} and call["thoughtSignature"]
    turn = [*HI["contents"], {"role": "model", "parts": [call]},
            {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"ok": True}}}]}]
    assert post(emu, {"contents": turn, "tools": tools}, path).json()["candidates"][0]["content"]["parts"] == [
        {"text": "Echo: hello big world"}]
    unsigned = {"functionCall": call["functionCall"]}
    refused = post(emu, {"contents": [turn[0], {"role": "model", "parts": [unsigned]}, turn[2]], "tools": tools}, path)
    assert refused.status_code == 400 and "thought_signature" in refused.json()["error"]["message"]


def test_streams_as_sse_or_as_a_json_array(emu: Emulator) -> None:
    stream_path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    with httpx.stream("POST", emu.url + stream_path + "?alt=sse", json=HI, headers={"x-goog-api-key": KEY}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [orjson.loads(e[6:]) for e in r.read().decode().split("\n\n") if e]
    assert "".join(e["candidates"][0]["content"]["parts"][0]["text"] for e in events) == "Echo: hello big world"
    assert [("finishReason" in e["candidates"][0], "usageMetadata" in e) for e in events][-2:] == [
        (False, False), (True, True)]
    array = post(emu, HI, stream_path).json()
    assert isinstance(array, list) and len(array) == len(events)
    emu.push_fault(Fault(status=429, error_message="Quota exceeded"))
    limited = post(emu, HI, stream_path + "?alt=sse")
    assert limited.status_code == 429 and limited.json()["error"] == {
        "code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}


def test_thoughts_and_json_mode(emu: Emulator) -> None:
    body = {**HI, "generationConfig": {"thinkingConfig": {"includeThoughts": True, "thinkingBudget": 100},
                                       "responseMimeType": "application/json", "candidateCount": 2}}
    answer = post(emu, body).json()
    assert len(answer["candidates"]) == 2
    assert answer["candidates"][1]["content"]["parts"] == [
        {"text": "Thinking about: hello big world", "thought": True}, {"text": '{"echo": "hello big world"}'}]
    assert answer["usageMetadata"]["thoughtsTokenCount"] == 2 * 5
    assert answer["usageMetadata"]["candidatesTokenCount"] == 2 * 4


def test_token_endpoint_refresh_token_grant() -> None:
    with Emulator(name="t", api_key=KEY, formats=[GeminiFormat(refresh_token="1//r")]) as emu:
        r = httpx.post(emu.url + "/token", data={"grant_type": "refresh_token", "refresh_token": "1//r"})
        token = r.json()["access_token"]
        assert r.json()["token_type"] == "Bearer" and token.startswith("ya29.")
        vertex = "/v1/projects/p/locations/l/publishers/google/models/m:generateContent"
        assert post(emu, HI, vertex, authorization=f"Bearer {token}").status_code == 200
        assert httpx.post(emu.url + "/token", data={"grant_type": "refresh_token", "refresh_token": "x"}).json() == {
            "error": "invalid_grant", "error_description": "Bad Request"}
        jwt = httpx.post(emu.url + "/token", data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                                                   "assertion": "a.b.c"})
        assert jwt.status_code == 400 and jwt.json()["error"] == "invalid_grant"
