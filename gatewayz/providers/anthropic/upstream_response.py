"""Anthropic Message -> OpenAI chat.completion, and the stop-reason, usage and error mappings shared with the
stream decoder (the native Anthropic upstream, inbound half).

- text blocks are concatenated into `content` (null when the answer is only tool calls);
- tool_use blocks become `tool_calls` (the id is kept, input -> JSON arguments), except the gateway's JSON
  mode tool `json_response`, whose input becomes content as JSON text;
- thinking blocks become `reasoning_content` (the de-facto field of DeepSeek / vLLM / OpenRouter-style
  clients); their signatures and redacted_thinking blocks have no OpenAI equivalent and are dropped;
- stop_reason: end_turn / stop_sequence / pause_turn -> stop, max_tokens / model_context_window_exceeded ->
  length, tool_use -> tool_calls (stop when the only call was JSON mode's), refusal -> content_filter;
- usage: prompt_tokens = input_tokens + cache_read_input_tokens + cache_creation_input_tokens,
  cached_tokens = cache_read_input_tokens (cache_write_tokens = cache_creation_input_tokens, as OpenRouter
  reports it), completion_tokens = output_tokens, reasoning_tokens = output_tokens_details.thinking_tokens.
"""

from __future__ import annotations

import time
from types import MappingProxyType
from typing import Any

import orjson

from gatewayz.providers.anthropic.upstream_request import JSON_TOOL
from gatewayz.providers.chat_parts import single_choice_completion
from gatewayz.providers.openai_wire import openai_error_body

JSON = dict[str, Any]

FINISH_REASONS = MappingProxyType({
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
})


class NotAMessage(ValueError):
    """The upstream's 200 answer is not an Anthropic Message."""


def finish_reason(stop_reason: Any, has_tool_calls: bool) -> str:
    reason = FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"
    if reason == "tool_calls" and not has_tool_calls:
        return "stop"  # only JSON mode's tool was called: the JSON is the answer
    return reason


def completion_id(message_id: Any) -> str:
    """chatcmpl-<id without msg_>: the /v1/messages dialect turns it back into the same msg_ id."""
    suffix = message_id.removeprefix("msg_") if isinstance(message_id, str) and message_id else ""
    return "chatcmpl-" + (suffix or str(time.time_ns()))


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def openai_usage(usage: JSON) -> JSON:
    read = _int(usage.get("cache_read_input_tokens"))
    write = _int(usage.get("cache_creation_input_tokens"))
    prompt = _int(usage.get("input_tokens")) + read + write
    completion = _int(usage.get("output_tokens"))
    details = usage.get("output_tokens_details")
    reasoning = _int(details.get("thinking_tokens")) if isinstance(details, dict) else 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": read, "cache_write_tokens": write},
            "completion_tokens_details": {"reasoning_tokens": reasoning}}


def arguments_json(tool_input: Any) -> str:
    return orjson.dumps(tool_input if isinstance(tool_input, dict) else {}).decode()


def chat_completion(data: Any) -> JSON:
    """An Anthropic Message as an OpenAI chat.completion; NotAMessage when it is none."""
    if not isinstance(data, dict) or data.get("type") != "message" or not isinstance(data.get("content"), list):
        raise NotAMessage("not an Anthropic message")
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[JSON] = []
    for block in data["content"]:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "thinking" and isinstance(block.get("thinking"), str):
            thoughts.append(block["thinking"])
        elif kind == "tool_use" and block.get("name") == JSON_TOOL:
            texts.append(arguments_json(block.get("input")))
        elif kind == "tool_use" and isinstance(block.get("name"), str):
            calls.append({"id": str(block.get("id") or ""), "type": "function",
                          "function": {"name": block["name"], "arguments": arguments_json(block.get("input"))}})
    out = single_choice_completion(completion_id(data.get("id")),
                                   data["model"] if isinstance(data.get("model"), str) else "", "".join(texts),
                                   thoughts, calls, finish_reason(data.get("stop_reason"), bool(calls)))
    if isinstance(data.get("usage"), dict):
        out["usage"] = openai_usage(data["usage"])
    return out


def openai_error(error: Any, fallback_code: str) -> JSON:
    """An Anthropic error object {"type", "message"} as the inside of OpenAI's error body."""
    error = error if isinstance(error, dict) else {}
    kind = error.get("type") if isinstance(error.get("type"), str) else None
    message = error.get("message") if isinstance(error.get("message"), str) else None
    return {"message": message or "The upstream provider reported an error.",
            "type": kind or "upstream_error", "param": None, "code": kind or fallback_code}


def error_body(status: int, body: bytes) -> bytes:
    """Anthropic's {"type": "error", "error": {"type", "message"}} as OpenAI's error body."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict) and data.get("type") == "error" and isinstance(data.get("error"), dict):
        return orjson.dumps({"error": openai_error(data["error"], f"upstream_{status}")})
    return openai_error_body(status, body)
