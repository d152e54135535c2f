"""Bedrock Runtime wire format: ``POST /model/{modelId}/converse`` and ``/converse-stream``.

Auth is checked the AWS way: ``Authorization: AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/bedrock/...``
is verified by recomputing the signature with botocore's SigV4 signer (an implementation independent of
the gateway's) and the emulator's ``api_key`` as the secret access key: over the raw path as received,
the headers the request names as signed, and the body, whose SHA-256 must also match
``x-amz-content-sha256``. A wrong key id, region, service or signature, or a date more than 15 minutes
off, gets 403 with Bedrock's error shape. ``Authorization: Bearer <api_key>`` (a Bedrock API key) is
accepted too. Errors are ``{"message": ...}`` with the type in ``x-amzn-ErrorType``.

Semantics are the OpenAI format's (``openai_chat.py``) read from a Converse body: the answer echoes the
last user text (``"Echo: ..."``, directives removed, ``Fault.content`` replaces it), ``stopSequences`` cut
it (stopReason ``stop_sequence``), then ``maxTokens`` keeps that many words (``max_tokens``). With tools,
and unless the last message carries a toolResult, the answer calls tools (stopReason ``tool_use``), each
with the user text as the value of every schema property: the tool ``toolChoice.tool`` names, or else
EVERY tool in order - parallel calls, which the OpenAI format does not make. Tokens are words:
``inputTokens = 3 + sum(words + 3)`` over the system prompt (as one message, if any) and each Converse
message (text blocks and toolResult texts), ``outputTokens`` = words of the text, or of each call's
arguments (at least 1 per call). ``Fault.usage`` replaces the Converse usage object verbatim;
``Fault.omit_usage`` leaves it out (a stream then sends metadata with metrics only).

Stream: messageStart, contentBlockDelta per word piece (text, or each tool's input after its
contentBlockStart), contentBlockStop, messageStop, metadata; every event carries the ``p`` padding field
real Bedrock adds. ``push_stream_exception(after, type, message)`` makes the next stream send an
exception message after ``after`` events instead of the rest."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import threading
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
from aiohttp import web

from .bedrock_auth import sigv4_problem
from .bedrock_stream import BinaryEventStream
from .faults import Fault, strip_directives
from .textgen import apply_stop, arguments_for, count_words, truncate_words, word_pieces
from .wire import Exchange, Route

ERROR_TYPES = {400: "ValidationException", 403: "AccessDeniedException", 404: "ResourceNotFoundException",
               408: "ModelTimeoutException", 424: "ModelErrorException", 429: "ThrottlingException",
               500: "InternalServerException", 503: "ServiceUnavailableException"}
_TYPE_SUFFIX = ":http://internal.amazon.com/coral/com.amazon.bedrock/"
_BLOCKS = {"text", "image", "document", "toolUse", "toolResult", "reasoningContent", "cachePoint"}


def bedrock_error(status: int, message: str, error_type: str | None = None) -> web.Response:
    kind = error_type or ERROR_TYPES.get(status, "InternalServerException" if status >= 500 else "ValidationException")
    return web.Response(status=status, body=orjson.dumps({"message": message}), content_type="application/json",
                        headers={"x-amzn-ErrorType": kind + _TYPE_SUFFIX, "x-amzn-RequestId": str(uuid.uuid4())})


def _words_of(blocks: list[dict[str, Any]]) -> int:
    words = 0
    for block in blocks:
        if isinstance(block.get("text"), str):
            words += count_words(block["text"])
        result = block.get("toolResult")
        if isinstance(result, dict):
            words += sum(count_words(p.get("text")) for p in result.get("content") or [] if isinstance(p, dict))
    return words


def input_tokens(body: dict[str, Any]) -> int:
    system = body.get("system") or []
    total = 3 + (_words_of(system) + 3 if system else 0)
    return total + sum(_words_of(m["content"]) + 3 for m in body["messages"])


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        texts = [b["text"] for b in message["content"] if isinstance(b.get("text"), str)]
        if message["role"] == "user" and texts:
            return strip_directives(" ".join(texts)).strip()
    return ""


def validate(body: Any) -> str | None:
    """A ValidationException message for what real Bedrock refuses, or None."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
        return ("A conversation must start with a user message. Try again with a conversation that starts with "
                "a user message.")
    uses_tools = False
    for i, message in enumerate(body["messages"]):
        expected = "user" if i % 2 == 0 else "assistant"
        if not isinstance(message, dict) or message.get("role") != expected:
            return ("A conversation must alternate between user and assistant roles. Make sure the conversation "
                    "alternates between user and assistant roles and try again.")
        content = message.get("content")
        if not isinstance(content, list) or not content:
            return f"The content field in the Message object at messages.{i} is empty."
        for j, block in enumerate(content):
            if not isinstance(block, dict) or len(block) != 1 or next(iter(block)) not in _BLOCKS:
                return f"messages.{i}.content.{j}: a ContentBlock must hold exactly one known member."
            if "text" in block and not str(block["text"]).strip():
                return f"The text field in the ContentBlock object at messages.{i}.content.{j} is blank."
            if "image" in block and _bad_image(block["image"]):
                return f"messages.{i}.content.{j}.image: invalid format or bytes."
            uses_tools = uses_tools or "toolUse" in block or "toolResult" in block
    tool_config = body.get("toolConfig")
    if uses_tools and not isinstance(tool_config, dict):
        return "The toolConfig field must be defined when using toolUse and toolResult content blocks."
    config = body.get("inferenceConfig") or {}
    for key in ("temperature", "topP"):
        if key in config and not 0 <= config[key] <= 1:
            return f"inferenceConfig.{key}: must be between 0 and 1."
    if "maxTokens" in config and not (isinstance(config["maxTokens"], int) and config["maxTokens"] >= 1):
        return "inferenceConfig.maxTokens: must be at least 1."
    return _tool_config_problem(tool_config) if isinstance(tool_config, dict) else None


def _bad_image(image: Any) -> bool:
    if not isinstance(image, dict) or image.get("format") not in ("png", "jpeg", "gif", "webp"):
        return True
    try:
        return not base64.b64decode((image.get("source") or {}).get("bytes") or "", validate=True)
    except (binascii.Error, ValueError, TypeError):
        return True


def _tool_config_problem(config: dict[str, Any]) -> str | None:
    tools = config.get("tools")
    if not isinstance(tools, list) or not tools:
        return "toolConfig.tools: must hold at least one tool."
    names = [((t.get("toolSpec") or {}).get("name")) for t in tools if isinstance(t, dict)]
    if not all(isinstance(n, str) and n for n in names) or len(names) != len(tools):
        return "toolConfig.tools: every tool needs a toolSpec with a name."
    choice = config.get("toolChoice")
    if choice is not None:
        if not isinstance(choice, dict) or len(choice) != 1 or next(iter(choice)) not in ("auto", "any", "tool"):
            return "toolConfig.toolChoice: must be one of auto, any, tool."
        if "tool" in choice and choice["tool"].get("name") not in names:
            return f"toolConfig.toolChoice.tool.name: no tool named {choice['tool'].get('name')!r}."
    return None


def plan(body: dict[str, Any], fault: Fault) -> dict[str, Any]:
    """{"text", "calls": [(id, name, arguments)], "stop", "usage"} for a validated Converse body."""
    messages = body["messages"]
    user_text = last_user_text(messages)
    config = body.get("toolConfig") or {}
    last_has_result = any("toolResult" in b for b in messages[-1]["content"])
    text, calls = "", []
    if config and not last_has_result:
        specs = [t["toolSpec"] for t in config["tools"]]
        forced = (config.get("toolChoice") or {}).get("tool")
        chosen = [s for s in specs if s["name"] == forced["name"]] if forced else specs
        calls = [("tooluse_" + uuid.uuid4().hex[:22], s["name"],
                  arguments_for((s.get("inputSchema") or {}).get("json"), user_text)) for s in chosen]
        stop, completion = "tool_use", sum(max(1, count_words(c[2])) for c in calls)
    else:
        text = fault.content if fault.content is not None else "Echo: " + user_text
        inference = body.get("inferenceConfig") or {}
        text, cut = apply_stop(text, inference.get("stopSequences"))
        text, truncated = truncate_words(text, inference.get("maxTokens"))
        stop = "max_tokens" if truncated else "stop_sequence" if cut else "end_turn"
        completion = count_words(text)
    prompt = input_tokens(body)
    usage = None if fault.omit_usage else fault.usage or {
        "inputTokens": prompt, "outputTokens": completion, "totalTokens": prompt + completion}
    return {"text": text, "calls": calls, "stop": stop, "usage": usage}


def converse_body(answer: dict[str, Any]) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"text": answer["text"]}] if answer["text"] else []
    content += [{"toolUse": {"toolUseId": i, "name": n, "input": json.loads(a)}} for i, n, a in answer["calls"]]
    out: dict[str, Any] = {"output": {"message": {"role": "assistant", "content": content}},
                           "stopReason": answer["stop"], "metrics": {"latencyMs": 1}}
    if answer["usage"] is not None:
        out["usage"] = answer["usage"]
    return out


def stream_events(answer: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = [("messageStart", {"role": "assistant"})]
    block = 0
    if answer["text"]:
        events += [("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}})
                   for piece in word_pieces(answer["text"])]
        events.append(("contentBlockStop", {"contentBlockIndex": 0}))
        block = 1
    for offset, (call_id, name, arguments) in enumerate(answer["calls"]):
        index = block + offset
        events.append(("contentBlockStart", {"contentBlockIndex": index,
                                             "start": {"toolUse": {"toolUseId": call_id, "name": name}}}))
        events += [("contentBlockDelta", {"contentBlockIndex": index, "delta": {"toolUse": {"input": piece}}})
                   for piece in word_pieces(arguments)]
        events.append(("contentBlockStop", {"contentBlockIndex": index}))
    events.append(("messageStop", {"stopReason": answer["stop"]}))
    metadata: dict[str, Any] = {"metrics": {"latencyMs": 1}}
    if answer["usage"] is not None:
        metadata["usage"] = answer["usage"]
    events.append(("metadata", metadata))
    return [(name, {**data, "p": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKL"[: 1 + len(name)]}) for name, data in events]


class BedrockFormat:
    """The Bedrock Runtime routes. ``access_key_id`` / ``region``, when given, must match the credential scope
    of signed requests; the emulator's ``api_key`` is the secret access key (or the Bedrock API key)."""

    def __init__(self, access_key_id: str | None = None, region: str | None = None) -> None:
        self.access_key_id = access_key_id
        self.region = region
        self._lock = threading.Lock()
        self._stream_exceptions: list[tuple[int, str, str]] = []

    def push_stream_exception(self, after: int, exception_type: str, message: str) -> None:
        """The next stream sends ``after`` events, then this exception message, and ends."""
        with self._lock:
            self._stream_exceptions.append((after, exception_type, message))

    def routes(self) -> Sequence[Route]:
        return (Route("POST", "/model/{model_id:.+}/converse", self.converse),
                Route("POST", "/model/{model_id:.+}/converse-stream", self.converse_stream))

    def authorized(self, request: web.Request, api_key: str) -> bool:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("AWS4-HMAC-SHA256 "):
            return True  # the signature needs the body: verified by the handler (403 when wrong)
        scheme, _, token = auth.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip(), api_key)

    def error(self, status: int, message: str, code: str | None = None) -> web.Response:
        if code == "invalid_api_key":  # Bedrock refuses unknown credentials with a 403
            return bedrock_error(403, "The security token included in the request is invalid.",
                                 "UnrecognizedClientException")
        return bedrock_error(status, message, code if code and code.endswith("Exception") else None)

    def model_of(self, request: web.Request, body: Any) -> str | None:
        return request.match_info.get("model_id")

    def wants_stream(self, request: web.Request, body: Any) -> bool:
        return request.path.endswith("/converse-stream")

    async def not_found(self, exchange: Exchange) -> web.StreamResponse:
        return bedrock_error(404, f"Unknown operation: {exchange.request.method} {exchange.request.path}",
                             "UnknownOperationException")

    async def _check(self, exchange: Exchange) -> web.Response | None:
        secret = exchange.emulator.api_key
        request = exchange.request
        if secret is not None and request.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256 "):
            problem = sigv4_problem(request, await request.read(), secret, self.access_key_id, self.region)
            if problem is not None:
                return bedrock_error(403, problem, "InvalidSignatureException")
        problem = validate(exchange.body)
        return bedrock_error(400, problem) if problem is not None else None

    async def converse(self, exchange: Exchange) -> web.StreamResponse:
        refusal = await self._check(exchange)
        if refusal is not None:
            return refusal
        answer = plan(exchange.body, exchange.fault)
        return web.Response(body=orjson.dumps(converse_body(answer)), content_type="application/json",
                            headers={"x-amzn-RequestId": str(uuid.uuid4())})

    async def converse_stream(self, exchange: Exchange) -> web.StreamResponse:
        refusal = await self._check(exchange)
        if refusal is not None:
            return refusal
        with self._lock:
            exception = self._stream_exceptions.pop(0) if self._stream_exceptions else None
        stream = BinaryEventStream(exchange)
        await stream.open()
        for count, (name, data) in enumerate(stream_events(plan(exchange.body, exchange.fault))):
            if exception is not None and count == exception[0]:
                await stream.send({"message": exception[2]}, "exception:" + exception[1])
                break
            await stream.send(data, name)
            if stream.dropped:
                break
        return await stream.finish()
