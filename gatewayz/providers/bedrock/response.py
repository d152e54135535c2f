"""Bedrock Converse answer -> OpenAI chat.completion, plus the shared stop-reason / usage mapping and the
error body.

Content: text blocks joined -> message.content; toolUse -> tool_calls (the toolUseId kept as the call id,
input serialised as the arguments string); reasoningContent text -> message.reasoning_content; a call of
the JSON-mode tool becomes the message text (finish_reason "stop"). Usage: prompt_tokens = inputTokens +
cacheReadInputTokens + cacheWriteInputTokens (Converse counts cache reads and writes apart from
inputTokens, OpenAI includes them), cached_tokens = cacheReadInputTokens."""

from __future__ import annotations

import json
import time
import uuid
from types import MappingProxyType
from typing import Any

import orjson

from gatewayz.providers.bedrock.request import JSON_TOOL

JSON = dict[str, Any]

FINISH_REASONS = MappingProxyType({
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
})

# The HTTP status of each Bedrock Runtime error (botocore's service model), for bodies without a type.
ERROR_TYPES = MappingProxyType({
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
})


def finish_reason(stop_reason: Any, has_tool_calls: bool) -> str:
    """Converse stopReason -> OpenAI finish_reason ("stop" for a reason OpenAI has no word for)."""
    reason = FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"
    if reason == "tool_calls" and not has_tool_calls:
        return "stop"  # the JSON-mode tool: its input is the answer text
    return "tool_calls" if has_tool_calls and reason == "stop" else reason


def openai_usage(usage: Any) -> JSON | None:
    if not isinstance(usage, dict):
        return None
    read, write = _count(usage.get("cacheReadInputTokens")), _count(usage.get("cacheWriteInputTokens"))
    prompt = _count(usage.get("inputTokens")) + read + write
    completion = _count(usage.get("outputTokens"))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": read},
            "completion_tokens_details": {"reasoning_tokens": 0}}


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex


def to_completion(data: Any) -> JSON | None:
    """The chat.completion for a Converse response, or None when `data` is not one."""
    if not isinstance(data, dict):
        return None
    output = data.get("output")
    message = output.get("message") if isinstance(output, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list):
        return None
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[JSON] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif isinstance(block.get("toolUse"), dict):
            use = block["toolUse"]
            arguments = json.dumps(use.get("input", {}), ensure_ascii=False)
            if use.get("name") == JSON_TOOL:
                texts.append(arguments)
            else:
                calls.append({"id": str(use.get("toolUseId") or "call_" + uuid.uuid4().hex[:24]),
                              "type": "function",
                              "function": {"name": str(use.get("name") or ""), "arguments": arguments}})
        elif isinstance(block.get("reasoningContent"), dict):
            text = (block["reasoningContent"].get("reasoningText") or {}).get("text")
            if isinstance(text, str):
                reasoning.append(text)
    out_message: JSON = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        out_message["tool_calls"] = calls
    if reasoning:
        out_message["reasoning_content"] = "".join(reasoning)
    completion: JSON = {
        "id": completion_id(), "object": "chat.completion", "created": int(time.time()), "model": "",
        "choices": [{"index": 0, "message": out_message, "logprobs": None,
                     "finish_reason": finish_reason(data.get("stopReason"), bool(calls))}],
    }
    usage = openai_usage(data.get("usage"))
    if usage is not None:
        completion["usage"] = usage
    return completion


def error_body(status: int, body: bytes) -> bytes:
    """A Bedrock error ({"message": ...}; the type is in the x-amzn-errortype header, which for every
    status that reaches a client, 400 and 424 among them, is the status's one Bedrock error) -> OpenAI's."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    message = ""
    kind = None
    if isinstance(data, dict):
        message = str(data.get("message") or data.get("Message") or "")
        raw_type = data.get("__type") or data.get("code")
        kind = raw_type.rsplit("#", 1)[-1] if isinstance(raw_type, str) and raw_type else None
    if not message:
        message = body.decode("utf-8", "replace").strip()[:500] or f"Bedrock refused the request (HTTP {status})."
    return error_json(message, kind or ERROR_TYPES.get(status, f"upstream_{status}"))


def error_json(message: str, code: str) -> bytes:
    return orjson.dumps(error_object(message, code))


def error_object(message: str, code: str, kind: str = "invalid_request_error") -> JSON:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}
