"""Deterministic OpenAI chat completions (non-streamed bodies and stream chunks).

What the "model" answers
------------------------
* Default text: ``"Echo: " + <text of the last user message>`` with fault
  directives removed (text parts of array contents are joined by a space).
  ``Fault.content`` replaces it.  With ``response_format`` ``json_object`` or
  ``json_schema`` the text is ``{"echo": "<user text>"}``.
* ``stop`` cuts the text at the earliest stop sequence (finish_reason ``stop``);
  then ``max_completion_tokens``/``max_tokens`` keep that many words
  (finish_reason ``length``).
* With function ``tools`` (and ``tool_choice`` not ``"none"``) the answer is one
  call to the named tool (or the first tool), its arguments a JSON object with
  the user text as the value of every schema property; finish_reason
  ``tool_calls``.  If the last message has role ``tool`` the answer is text, so
  tool loops terminate.
* ``n`` choices all carry the same answer.

Token accounting (one token = one whitespace-separated word)
------------------------------------------------------------
* ``prompt_tokens = 3 + sum(words(text content of message) + 3 for each message)``
  - counted on the raw text as sent (directives included); a message's text is
  its string content or its text parts; tool calls and images count 0 words.
* ``completion_tokens = n * per_choice`` where ``per_choice`` is the number of
  words in the produced content, or for a tool call the number of words in its
  arguments string (at least 1).
* ``total_tokens = prompt_tokens + completion_tokens``; cached and reasoning
  token details are always 0.  ``Fault.usage`` replaces the whole object
  verbatim; ``Fault.omit_usage`` removes it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .faults import Fault, strip_directives
from .textgen import apply_stop, arguments_for, count_words, token_logprob, truncate_words, word_pieces

SYSTEM_FINGERPRINT = "fp_emulator"
MAX_CHOICES = 128
MAX_TOP_LOGPROBS = 20


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str


@dataclass(frozen=True)
class ChatPlan:
    """Everything needed to render one chat completion, streamed or not."""

    completion_id: str
    created: int
    model: str
    n: int
    text: str | None
    tool_call: ToolCall | None
    tool_call_ids: tuple[str, ...]
    finish_reason: str
    logprobs: bool
    top_logprobs: int
    usage: dict[str, Any] | None


# ------------------------------------------------------------------ validation
def _is_int(value: Any, low: int, high: int | None = None) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high)


def validate_chat(body: Any) -> str | None:
    """An error message if ``body`` is not an acceptable chat completion request."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "you must provide a model parameter"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' is a required property and must be a non-empty array"
    if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
        return "Invalid 'messages': every message must be an object with a 'role'"
    if body.get("n") is not None and not _is_int(body["n"], 1, MAX_CHOICES):
        return f"Invalid 'n': must be an integer between 1 and {MAX_CHOICES}"
    for key in ("max_tokens", "max_completion_tokens"):
        if body.get(key) is not None and not _is_int(body[key], 1):
            return f"Invalid '{key}': must be a positive integer"
    if body.get("top_logprobs") is not None and not _is_int(body["top_logprobs"], 0, MAX_TOP_LOGPROBS):
        return f"Invalid 'top_logprobs': must be an integer between 0 and {MAX_TOP_LOGPROBS}"
    return None


# -------------------------------------------------------------------- planning
def content_text(content: Any) -> str:
    """The text of a message content (a string, or the ``text`` of its parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        return " ".join(texts)
    return ""


def last_user_text(messages: list[dict[str, Any]]) -> str:
    """Text of the last user message, fault directives removed."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return strip_directives(content_text(message.get("content"))).strip()
    return ""


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    return 3 + sum(count_words(content_text(m.get("content"))) + 3 for m in messages)


def _is_function_tool(tool: Any) -> bool:
    return (
        isinstance(tool, dict) and tool.get("type", "function") == "function" and isinstance(tool.get("function"), dict)
    )


def pick_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    """The function definition the model should call, or None for a text answer."""
    tools = [t["function"] for t in body.get("tools") or [] if _is_function_tool(t)]
    choice = body.get("tool_choice")
    if not tools or choice == "none" or body["messages"][-1].get("role") == "tool":
        return None
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        wanted = choice["function"].get("name")
        return next((t for t in tools if t.get("name") == wanted), tools[0])
    return tools[0]


def _wants_json(body: dict[str, Any]) -> bool:
    response_format = body.get("response_format")
    return isinstance(response_format, dict) and response_format.get("type") in ("json_object", "json_schema")


def _answer_text(body: dict[str, Any], fault: Fault, user_text: str) -> tuple[str, str]:
    """(text, finish_reason) of a text answer."""
    if fault.content is not None:
        text = fault.content
    elif _wants_json(body):
        text = json.dumps({"echo": user_text})
    else:
        text = "Echo: " + user_text
    text, _ = apply_stop(text, body.get("stop"))
    limit = body.get("max_completion_tokens")
    if limit is None:
        limit = body.get("max_tokens")
    text, truncated = truncate_words(text, limit)
    return text, "length" if truncated else "stop"


def build_usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def plan_chat(body: dict[str, Any], fault: Fault) -> ChatPlan:
    """Decide the answer to a validated chat completion request."""
    messages: list[dict[str, Any]] = body["messages"]
    user_text = last_user_text(messages)
    n = body.get("n") or 1
    tool = pick_tool(body)
    text: str | None = None
    call: ToolCall | None = None
    if tool is not None:
        call = ToolCall(str(tool.get("name", "")), arguments_for(tool.get("parameters"), user_text))
        per_choice, finish = max(1, count_words(call.arguments)), "tool_calls"
    else:
        text, finish = _answer_text(body, fault, user_text)
        per_choice = count_words(text)
    usage = None if fault.omit_usage else fault.usage or build_usage(prompt_tokens(messages), n * per_choice)
    return ChatPlan(
        completion_id=f"chatcmpl-{uuid.uuid4().hex}",
        created=int(time.time()),
        model=body["model"],
        n=n,
        text=text,
        tool_call=call,
        tool_call_ids=tuple(f"call_{uuid.uuid4().hex[:24]}" for _ in range(n)) if call else (),
        finish_reason=finish,
        logprobs=bool(body.get("logprobs")),
        top_logprobs=body.get("top_logprobs") or 0,
        usage=usage,
    )


# ------------------------------------------------------------------- rendering
def _logprob_entry(token: str, position: int, alternatives: int) -> dict[str, Any]:
    value = token_logprob(token, position)
    top = [{"token": token, "logprob": value, "bytes": list(token.encode())}]
    for rank in range(1, alternatives):
        alt = f"{token}{rank}"
        top.append({"token": alt, "logprob": round(value - rank * 0.75, 4), "bytes": list(alt.encode())})
    entry: dict[str, Any] = {"token": token, "logprob": value, "bytes": list(token.encode())}
    entry["top_logprobs"] = top[:alternatives]
    return entry


def _choice_logprobs(plan: ChatPlan) -> dict[str, Any] | None:
    if not plan.logprobs:
        return None
    if plan.text is None:
        return {"content": None, "refusal": None}
    pieces = word_pieces(plan.text)
    return {
        "content": [_logprob_entry(p, i, plan.top_logprobs) for i, p in enumerate(pieces)],
        "refusal": None,
    }


def _message(plan: ChatPlan, index: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": plan.text, "refusal": None, "annotations": []}
    if plan.tool_call is not None:
        message["tool_calls"] = [
            {
                "id": plan.tool_call_ids[index],
                "type": "function",
                "function": {"name": plan.tool_call.name, "arguments": plan.tool_call.arguments},
            }
        ]
    return message


def _choice(plan: ChatPlan, index: int, logprobs: dict[str, Any] | None) -> dict[str, Any]:
    message = _message(plan, index)
    return {"index": index, "message": message, "logprobs": logprobs, "finish_reason": plan.finish_reason}


def completion_body(plan: ChatPlan) -> dict[str, Any]:
    """The ``chat.completion`` object for a non-streamed answer."""
    logprobs = _choice_logprobs(plan)
    body: dict[str, Any] = {
        "id": plan.completion_id,
        "object": "chat.completion",
        "created": plan.created,
        "model": plan.model,
        "choices": [_choice(plan, i, logprobs) for i in range(plan.n)],
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }
    if plan.usage is not None:
        body["usage"] = plan.usage
    return body


def _chunk(plan: ChatPlan, choices: list[dict[str, Any]], with_usage_key: bool) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "id": plan.completion_id,
        "object": "chat.completion.chunk",
        "created": plan.created,
        "model": plan.model,
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": choices,
    }
    if with_usage_key:
        chunk["usage"] = None
    return chunk


def _delta_choice(index: int, delta: dict[str, Any], logprobs: Any = None, finish: str | None = None) -> dict:
    return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}


def _choice_deltas(plan: ChatPlan, index: int) -> Iterator[dict[str, Any]]:
    """The choice entries streamed for choice ``index``, in order."""
    if plan.tool_call is not None:
        call = plan.tool_call
        head = {
            "index": 0,
            "id": plan.tool_call_ids[index],
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        first = {"role": "assistant", "content": None, "refusal": None, "tool_calls": [head]}
        yield _delta_choice(index, first)
        for fragment in word_pieces(call.arguments):
            yield _delta_choice(index, {"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]})
    else:
        yield _delta_choice(index, {"role": "assistant", "content": "", "refusal": None})
        for position, piece in enumerate(word_pieces(plan.text or "")):
            logprobs = None
            if plan.logprobs:
                logprobs = {"content": [_logprob_entry(piece, position, plan.top_logprobs)], "refusal": None}
            yield _delta_choice(index, {"content": piece}, logprobs)
    yield _delta_choice(index, {}, None, plan.finish_reason)


def stream_chunks(plan: ChatPlan, include_usage: bool) -> Iterator[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects of a streamed answer (without ``[DONE]``)."""
    send_usage = include_usage and plan.usage is not None
    for index in range(plan.n):
        for choice in _choice_deltas(plan, index):
            yield _chunk(plan, [choice], send_usage)
    if send_usage:
        final = _chunk(plan, [], False)
        final["usage"] = plan.usage
        yield final
