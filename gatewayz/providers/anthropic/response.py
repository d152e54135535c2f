"""OpenAI chat.completion -> Anthropic Message, plus the shared stop-reason / usage mapping and error bodies."""

from __future__ import annotations

import json
import uuid
from types import MappingProxyType
from typing import Any

JSON = dict[str, Any]

_STOP_REASONS = MappingProxyType({
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
})

_ERROR_TYPES = MappingProxyType({
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "api_error",
    504: "api_error",
    529: "overloaded_error",
})


def stop_reason(finish_reason: Any, has_tool_use: bool = False) -> str:
    """OpenAI finish_reason -> Anthropic stop_reason ("end_turn" when missing or unknown).

    Upstreams that report "stop" although they returned tool calls get "tool_use", which is what
    Anthropic clients check before running tools."""
    reason = _STOP_REASONS.get(finish_reason, "end_turn") if isinstance(finish_reason, str) else "end_turn"
    return "tool_use" if has_tool_use and reason == "end_turn" else reason


def usage_counts(usage: Any) -> tuple[int, int, int]:
    """OpenAI usage -> (prompt_tokens, completion_tokens, cached prompt tokens); zeros when absent."""
    if not isinstance(usage, dict):
        return 0, 0, 0
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens")), _int(cached)


def anthropic_input_tokens(prompt_tokens: int, cached_tokens: int) -> int:
    """Anthropic's input_tokens excludes cache reads (its total input is input + cache_read + cache_creation)."""
    return max(prompt_tokens - cached_tokens, 0)


def message_id(upstream_id: Any) -> str:
    if isinstance(upstream_id, str) and upstream_id:
        return "msg_" + upstream_id.removeprefix("chatcmpl-")
    return "msg_" + uuid.uuid4().hex


def tool_use_id(upstream_id: Any) -> str:
    return upstream_id if isinstance(upstream_id, str) and upstream_id else "toolu_" + uuid.uuid4().hex


def parse_arguments(arguments: Any) -> JSON:
    """Tool call arguments (a JSON string) -> the tool_use input object; {} if unparsable or not an object."""
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def openai_to_message(resp: JSON, model: str) -> JSON:
    """Translate an OpenAI chat.completion (first choice only) into an Anthropic Message.

    `model` is the name the client asked for. stop_sequence is always None: OpenAI does not say
    which stop sequence (if any) ended the text, so "stop" maps to "end_turn"."""
    choices = resp.get("choices") if isinstance(resp, dict) else None
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message")
    if not isinstance(message, dict):
        message = {}

    content: list[JSON] = []
    text = _text(message.get("content")) or _text(message.get("refusal"))
    if text:
        content.append({"type": "text", "text": text})
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            content.append(_tool_use(call.get("id"), function))
    legacy = message.get("function_call")
    if isinstance(legacy, dict):
        content.append(_tool_use(None, legacy))

    prompt, completion, cached = usage_counts(resp.get("usage") if isinstance(resp, dict) else None)
    has_tools = any(block["type"] == "tool_use" for block in content)
    return {
        "id": message_id(resp.get("id") if isinstance(resp, dict) else None),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason"), has_tools),
        "stop_sequence": None,
        "usage": {
            "input_tokens": anthropic_input_tokens(prompt, cached),
            "output_tokens": completion,
            "cache_read_input_tokens": cached,
            "cache_creation_input_tokens": 0,
        },
    }


def _tool_use(call_id: Any, function: JSON) -> JSON:
    name = function.get("name")
    return {
        "type": "tool_use",
        "id": tool_use_id(call_id),
        "name": name if isinstance(name, str) else "",
        "input": parse_arguments(function.get("arguments")),
    }


def _text(content: Any) -> str:
    """Message content: a string, or (some upstreams) a list of text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def error_body(status: int, message: str) -> JSON:
    """Anthropic's error shape for an HTTP status: {"type": "error", "error": {"type", "message"}}.

    Unlisted statuses fall back to invalid_request_error (4xx) or api_error (anything else)."""
    kind = _ERROR_TYPES.get(status) or ("invalid_request_error" if 400 <= status < 500 else "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}
