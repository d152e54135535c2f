"""Gemini GenerateContentResponse -> OpenAI chat.completion, and Google errors -> OpenAI error bodies.

- candidates -> choices (by `index`); text parts are joined into `content`, `thought: true` parts into
  `reasoning_content`, functionCall parts become tool_calls with generated ids (call_<hex>) and JSON arguments;
  a call's thoughtSignature is handed to the client as extra_content.google.thought_signature (Google's own
  OpenAI-compatible convention), which request.py sends back.
- finishReason: STOP -> stop (tool_calls when the candidate called functions), MAX_TOKENS -> length, the
  safety family (SAFETY, RECITATION, BLOCKLIST, PROHIBITED_CONTENT, SPII, IMAGE_SAFETY...) -> content_filter,
  anything else -> stop. promptFeedback.blockReason without candidates -> one empty choice, content_filter.
- usageMetadata: prompt_tokens = promptTokenCount (which includes cached tokens) + toolUsePromptTokenCount,
  cached_tokens = cachedContentTokenCount, completion_tokens = candidatesTokenCount + thoughtsTokenCount,
  reasoning_tokens = thoughtsTokenCount (so that the total matches Gemini's totalTokenCount)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import orjson

from gatewayz.providers.engine import AttemptFailed
from gatewayz.providers.openai_wire import openai_error_body

JSON = dict[str, Any]

_FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
           "BLOCKLIST": "content_filter", "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter",
           "IMAGE_SAFETY": "content_filter", "IMAGE_PROHIBITED_CONTENT": "content_filter"}
_ERROR_TYPES = {"INVALID_ARGUMENT": "invalid_request_error", "FAILED_PRECONDITION": "invalid_request_error",
                "OUT_OF_RANGE": "invalid_request_error", "NOT_FOUND": "invalid_request_error",
                "ALREADY_EXISTS": "invalid_request_error", "UNAUTHENTICATED": "authentication_error",
                "PERMISSION_DENIED": "permission_error", "RESOURCE_EXHAUSTED": "rate_limit_error",
                "CANCELLED": "server_error", "INTERNAL": "server_error", "UNAVAILABLE": "server_error",
                "DEADLINE_EXCEEDED": "server_error", "UNKNOWN": "server_error"}


def finish_reason(reason: Any, called_functions: bool) -> str:
    mapped = _FINISH.get(reason, "stop") if isinstance(reason, str) else "stop"
    return "tool_calls" if mapped == "stop" and called_functions else mapped


def _count(meta: JSON, key: str) -> int:
    value = meta.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def openai_usage(meta: Any) -> JSON | None:
    if not isinstance(meta, dict):
        return None
    prompt = _count(meta, "promptTokenCount") + _count(meta, "toolUsePromptTokenCount")
    thoughts = _count(meta, "thoughtsTokenCount")
    completion = _count(meta, "candidatesTokenCount") + thoughts
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": _count(meta, "cachedContentTokenCount")},
            "completion_tokens_details": {"reasoning_tokens": thoughts}}


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def completion_id(data: JSON) -> str:
    rid = data.get("responseId")
    return "chatcmpl-" + (rid if isinstance(rid, str) and rid else uuid.uuid4().hex)


def tool_call(part: JSON) -> JSON | None:
    """An OpenAI tool call (without index) for a functionCall part; None if the part is none."""
    call = part.get("functionCall")
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        return None
    args = call.get("args")
    out: JSON = {"id": new_call_id(), "type": "function",
                 "function": {"name": call["name"],
                              "arguments": json.dumps(args if isinstance(args, dict) else {}, ensure_ascii=False)}}
    signature = part.get("thoughtSignature")
    if isinstance(signature, str) and signature:
        out["extra_content"] = {"google": {"thought_signature": signature}}
    return out


def candidate_parts(candidate: JSON) -> list[JSON]:
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    return [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []


def to_openai(data: Any) -> JSON:
    """A generateContent answer as a chat.completion; AttemptFailed("bad_response") when it is none."""
    if not isinstance(data, dict) or "error" in data and "candidates" not in data:
        raise AttemptFailed("bad_response", 200)
    candidates = data.get("candidates") or []
    if not isinstance(candidates, list) or not all(isinstance(c, dict) for c in candidates):
        raise AttemptFailed("bad_response", 200)
    choices = [_choice(c, i) for c, i in zip(candidates, candidate_indexes(candidates), strict=True)]
    if not choices:
        feedback = data.get("promptFeedback")
        if not isinstance(feedback, dict) or not feedback.get("blockReason"):
            raise AttemptFailed("bad_response", 200)
        choices = [{"index": 0, "message": {"role": "assistant", "content": ""}, "logprobs": None,
                    "finish_reason": "content_filter"}]
    out: JSON = {"id": completion_id(data), "object": "chat.completion", "created": int(time.time()),
                 "model": data.get("modelVersion") or "", "choices": sorted(choices, key=lambda c: c["index"])}
    usage = openai_usage(data.get("usageMetadata"))
    if usage is not None:
        out["usage"] = usage
    return out


def candidate_indexes(candidates: list[Any]) -> list[int]:
    """Each candidate's index. proto3 JSON leaves out a zero, so a missing index is 0 (or, if 0 is taken, the
    lowest free number)."""
    given = [c.get("index") if isinstance(c, dict) and isinstance(c.get("index"), int) else None
             for c in candidates]
    taken = {i for i in given if i is not None}
    out = []
    for index in given:
        if index is None:
            index = next(i for i in range(len(candidates) + len(taken) + 1) if i not in taken)
            taken.add(index)
        out.append(index)
    return out


def _choice(candidate: JSON, index: int) -> JSON:
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[JSON] = []
    for part in candidate_parts(candidate):
        call = tool_call(part)
        if call is not None:
            calls.append(call)
        elif isinstance(part.get("text"), str):
            (thoughts if part.get("thought") is True else texts).append(part["text"])
    message: JSON = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    if calls:
        message["tool_calls"] = calls
    return {"index": index, "message": message, "logprobs": None,
            "finish_reason": finish_reason(candidate.get("finishReason"), bool(calls))}


def openai_error(error: JSON, http_status: int | None = None) -> JSON:
    """A Google error object {code, message, status} as OpenAI's {message, type, param, code}."""
    status = error.get("status") if isinstance(error.get("status"), str) else None
    code = error.get("code") if isinstance(error.get("code"), int) else http_status
    message = error.get("message")
    if not isinstance(message, str) or not message:
        message = f"The upstream provider reported an error ({status or code or 'unknown'})."
    kind = _ERROR_TYPES.get(status or "") or (
        "invalid_request_error" if code is not None and 400 <= code < 500 else "upstream_error")
    return {"message": message, "type": kind, "param": None,
            "code": status.lower() if status else f"upstream_{code}" if code else "upstream_error"}


def error_body(status: int, body: bytes) -> bytes:
    """A Google error body (an object, or the array a non-SSE stream answers with) in OpenAI's shape."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, list):
        data = next((d for d in data if isinstance(d, dict) and "error" in d), None)
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return orjson.dumps({"error": openai_error(data["error"], status)})
    return openai_error_body(status, body)
