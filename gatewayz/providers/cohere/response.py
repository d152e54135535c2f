"""Cohere v2 Chat answer -> OpenAI chat.completion, and the finish-reason, usage and error mappings shared with
the stream decoder (the native Cohere upstream, inbound half).

- text content items are joined into `content`; thinking items (reasoning models) become `reasoning_content`;
- `tool_calls` keep their ids, names and argument strings;
- `tool_plan` (the model's note before calling tools, e.g. "I will search for the weather in Madrid.") becomes
  the message text when there is no other: it is prose meant for the reader, like the text an OpenAI or
  Claude model writes before its tool calls, and an OpenAI client sending the turn back returns it as content,
  which goes out again as the tool_plan (messages.py). reasoning_content would lose it on that round trip;
- finish_reason: COMPLETE / STOP_SEQUENCE -> stop, MAX_TOKENS -> length, TOOL_CALL -> tool_calls (stop when no
  call came). ERROR and TIMEOUT mean the generation failed: a non-streamed answer is not an answer (the
  adapter fails over to the next provider, nothing is billed), a stream ends with an error event (the
  gateway bills what was delivered as an estimate and tells the client);
- usage: Cohere reports `billed_units` (what it charges: the conversation's tokens) and `tokens` (everything
  the model processed, including the prompt template Cohere wraps around the conversation). The gateway bills
  `billed_units`, so the client pays for the tokens the provider charges for, at the provider's listed
  prices; `tokens` is the fallback, field by field, when billed units are missing. Counts may come as floats
  (37.0): they are whole. `cached_tokens`, when reported, becomes prompt_tokens_details.cached_tokens.
  Older answers carry the same counts under `meta` instead of `usage`; both are read.
"""

from __future__ import annotations

import math
import time
from typing import Any

import orjson

from gatewayz.providers.chat_parts import single_choice_completion
from gatewayz.providers.cohere.messages import JSON

FINISH_REASONS = {"COMPLETE": "stop", "STOP_SEQUENCE": "stop", "MAX_TOKENS": "length", "TOOL_CALL": "tool_calls"}
FAILED = frozenset({"ERROR", "TIMEOUT"})


class NotAChat(ValueError):
    """The upstream's 200 answer is not a Cohere chat response."""


class GenerationFailed(ValueError):
    """Cohere answered 200 but the generation ended with ERROR or TIMEOUT."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def reason_of(value: Any) -> str:
    return value.upper() if isinstance(value, str) else ""


def finish_reason(reason: str, has_tool_calls: bool) -> str:
    finish = FINISH_REASONS.get(reason, "stop")
    return "stop" if finish == "tool_calls" and not has_tool_calls else finish


def completion_id(cohere_id: Any) -> str:
    return "chatcmpl-" + (cohere_id if isinstance(cohere_id, str) and cohere_id else str(time.time_ns()))


def obj(value: Any) -> JSON:
    """`value` when it is a JSON object, else an empty one (upstream data is never trusted to be well formed)."""
    return value if isinstance(value, dict) else {}


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return None
    return int(value)


def openai_usage(usage: Any) -> JSON | None:
    """Cohere's usage object in OpenAI's names; None when it holds no counts."""
    if not isinstance(usage, dict):
        return None
    billed, tokens = obj(usage.get("billed_units")), obj(usage.get("tokens"))
    counts = []
    for key in ("input_tokens", "output_tokens"):
        value = _count(billed.get(key))
        counts.append(value if value is not None else _count(tokens.get(key)))
    if counts == [None, None]:
        return None
    prompt, completion = counts[0] or 0, counts[1] or 0
    cached = min(_count(usage.get("cached_tokens")) or 0, prompt)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached}}


def chat_completion(data: Any) -> JSON:
    """A Cohere v2 chat response as an OpenAI chat.completion; NotAChat / GenerationFailed otherwise."""
    message = data.get("message") if isinstance(data, dict) else None
    if not isinstance(message, dict) or "finish_reason" not in data:
        raise NotAChat("not a Cohere chat response")
    reason = reason_of(data.get("finish_reason"))
    if reason in FAILED:
        raise GenerationFailed(reason)
    texts: list[str] = []
    thoughts: list[str] = []
    for item in message.get("content") or []:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "text" and isinstance(item.get("text"), str):
            texts.append(item["text"])
        elif kind == "thinking" and isinstance(item.get("thinking"), str):
            thoughts.append(item["thinking"])
    calls = [_call(c) for c in message.get("tool_calls") or [] if isinstance(c, dict)]
    plan = message.get("tool_plan")
    text = "".join(texts) or (plan if isinstance(plan, str) else "")
    out = single_choice_completion(completion_id(data.get("id")), "", text, thoughts, calls,
                                   finish_reason(reason, bool(calls)))
    usage = openai_usage(data.get("usage")) or openai_usage(data.get("meta"))
    if usage is not None:
        out["usage"] = usage
    return out


def _call(call: JSON) -> JSON:
    function = obj(call.get("function"))
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        arguments = orjson.dumps(arguments if isinstance(arguments, dict) else {}).decode()
    return {"id": str(call.get("id") or ""), "type": "function",
            "function": {"name": str(function.get("name") or ""), "arguments": arguments}}
