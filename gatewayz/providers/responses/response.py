"""An OpenAI chat.completion -> a Responses API `response` object (and the pieces the stream shares)."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from gatewayz.billing.money import nanos_to_json
from gatewayz.pipeline.context import Usage
from gatewayz.providers.chat_parts import content_text, logprob_entries

JSON = dict[str, Any]

# Why a response stopped early, by chat finish_reason: the Responses API calls such a response incomplete.
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(24)


def usage_object(usage: Usage, cost: int) -> JSON:
    return {"input_tokens": usage.prompt_tokens,
            "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": 0},
            "output_tokens": usage.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
            "total_tokens": usage.prompt_tokens + usage.completion_tokens, "cost": nanos_to_json(cost)}


def response_object(resp_id: str, created_at: int, model: str, echo: JSON, *, status: str,
                    output: list[JSON], usage: JSON | None = None, finish_reason: str | None = None,
                    error: JSON | None = None) -> JSON:
    """The `response` object: the request's echoed fields, the output items so far, status and usage."""
    reason = INCOMPLETE.get(finish_reason or "")
    if status == "completed" and reason is not None:
        status = "incomplete"
    done = status in ("completed", "incomplete")
    return {"id": resp_id, "object": "response", "created_at": created_at, "status": status,
            "completed_at": int(time.time()) if done else None, "error": error,
            "incomplete_details": {"reason": reason} if status == "incomplete" else None,
            **echo, "model": model, "output": output, "usage": usage}


def reasoning_of(container: JSON) -> str:
    """The reasoning text of a chat message or delta (`reasoning_content`, or `reasoning` as some routers name it)."""
    for key in ("reasoning_content", "reasoning"):
        value = container.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def arguments_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else ""


def reasoning_item(text: str, item_id: str | None = None, status: str = "completed") -> JSON:
    return {"type": "reasoning", "id": item_id or new_id("rs_"), "summary": [],
            "content": [{"type": "reasoning_text", "text": text}], "status": status}


def text_part(text: str, logprobs: list[JSON]) -> JSON:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs}


def message_item(parts: list[JSON], item_id: str | None = None, status: str = "completed") -> JSON:
    return {"type": "message", "id": item_id or new_id("msg_"), "status": status, "role": "assistant",
            "content": parts}


def call_item(call_id: Any, name: Any, arguments: str, item_id: str | None = None,
              status: str = "completed") -> JSON:
    return {"type": "function_call", "id": item_id or new_id("fc_"),
            "call_id": call_id if isinstance(call_id, str) and call_id else new_id("call_"),
            "name": name if isinstance(name, str) else "", "arguments": arguments, "status": status}


def chat_to_response(data: JSON, resp_id: str, created_at: int, model: str, echo: JSON, usage: JSON) -> JSON:
    """A chat.completion (its first choice) as a Responses API `response` object."""
    choices = data.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message")
    if not isinstance(message, dict):
        message = {}
    finish = choice.get("finish_reason") if isinstance(choice.get("finish_reason"), str) else None
    output: list[JSON] = []
    reasoning = reasoning_of(message)
    if reasoning:
        output.append(reasoning_item(reasoning))
    parts: list[JSON] = []
    text = content_text(message.get("content"))
    if text:
        parts.append(text_part(text, logprob_entries(choice)))  # chat's entries have the Responses shape
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        parts.append({"type": "refusal", "refusal": refusal})
    if parts:
        output.append(message_item(parts, status="incomplete" if finish in INCOMPLETE else "completed"))
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            output.append(call_item(call.get("id"), function.get("name"), arguments_of(function.get("arguments"))))
    return response_object(resp_id, created_at, model, echo, status="completed", output=output, usage=usage,
                           finish_reason=finish)
