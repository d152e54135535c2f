"""Deterministic Gemini generateContent answers, whole or streamed (validation is in gemini_validate.py).

The answer mirrors the OpenAI format (openai_chat.py): "Echo: <text of the last user turn>" (or Fault.content,
or {"echo": ...} with responseMimeType application/json), cut at stopSequences, truncated to maxOutputTokens
words (finishReason MAX_TOKENS); with function declarations and mode not NONE, and unless the last turn
answers function calls, one call to the first allowed function with every schema property set to the user
text (Gemini 3+ models attach a thoughtSignature "emu-sig-<name>"); candidateCount copies. With
thinkingConfig.includeThoughts a thought part "Thinking about: <user text>" comes first.

Usage: promptTokenCount = 3 + sum(words(text parts) + 3) over systemInstruction and each content (counted on the
raw text, directives included); candidatesTokenCount = n x words(answer) (a call: words of its JSON arguments,
at least 1); thoughtsTokenCount = n x words(thought); totalTokenCount = their sum. Fault.usage replaces
usageMetadata verbatim; Fault.omit_usage drops it. Streams send one event per word piece (a call whole, a
thought whole), finishReason on each candidate's last event and usageMetadata on the very last one; there is
no terminator."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .faults import Fault, strip_directives
from .gemini_validate import signs_calls
from .textgen import apply_stop, arguments_for, count_words, truncate_words, word_pieces


@dataclass(frozen=True)
class GeminiPlan:
    response_id: str
    model: str
    n: int
    text: str | None
    call: dict[str, Any] | None       # the functionCall part (with its thoughtSignature, if any)
    thought: str | None
    finish: str
    usage: dict[str, Any] | None


def _texts(content: Any) -> list[str]:
    parts = content.get("parts") if isinstance(content, dict) else None
    return [p["text"] for p in parts or [] if isinstance(p, dict) and isinstance(p.get("text"), str)
            and not p.get("thought")]


def _user_text(contents: list[dict[str, Any]]) -> str:
    for content in reversed(contents):
        if content.get("role", "user") == "user" and _texts(content):
            return strip_directives(" ".join(_texts(content))).strip()
    return ""


def _declaration(body: dict[str, Any]) -> dict[str, Any] | None:
    declarations = [fd for tool in body.get("tools") or [] for fd in tool.get("functionDeclarations", [])]
    calling = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    last = body["contents"][-1]
    if not declarations or calling.get("mode") == "NONE" or any("functionResponse" in p for p in last["parts"]):
        return None
    allowed = calling.get("allowedFunctionNames")
    if allowed:
        return next(fd for fd in declarations if fd["name"] == allowed[0])
    return declarations[0]


def plan_generation(body: dict[str, Any], fault: Fault, model: str) -> GeminiPlan:
    contents: list[dict[str, Any]] = body["contents"]
    config = body.get("generationConfig") or {}
    user_text = _user_text(contents)
    n = config.get("candidateCount") or 1
    thinking = config.get("thinkingConfig") or {}
    thought = f"Thinking about: {user_text}" if thinking.get("includeThoughts") else None
    declaration = _declaration(body)
    text: str | None = None
    call: dict[str, Any] | None = None
    if declaration is not None:
        arguments = arguments_for(declaration.get("parameters"), user_text)
        call = {"functionCall": {"name": declaration["name"], "args": json.loads(arguments)}}
        if signs_calls(model):
            call["thoughtSignature"] = base64.b64encode(f"emu-sig-{declaration['name']}".encode()).decode()
        per_choice, finish = max(1, count_words(arguments)), "STOP"
    else:
        if fault.content is not None:
            text = fault.content
        elif config.get("responseMimeType") == "application/json":
            text = json.dumps({"echo": user_text})
        else:
            text = "Echo: " + user_text
        text, _ = apply_stop(text, config.get("stopSequences"))
        text, truncated = truncate_words(text, config.get("maxOutputTokens"))
        per_choice, finish = count_words(text), "MAX_TOKENS" if truncated else "STOP"
    usage = None if fault.omit_usage else fault.usage or _usage(body, n * per_choice, n * count_words(thought))
    return GeminiPlan(response_id=uuid.uuid4().hex[:20], model=model, n=n, text=text, call=call, thought=thought,
                      finish=finish, usage=usage)


def _usage(body: dict[str, Any], candidates: int, thoughts: int) -> dict[str, Any]:
    turns = [*([body["systemInstruction"]] if "systemInstruction" in body else []), *body["contents"]]
    prompt = 3 + sum(count_words(" ".join(_texts(t))) + 3 for t in turns)
    usage: dict[str, Any] = {"promptTokenCount": prompt, "candidatesTokenCount": candidates,
                             "totalTokenCount": prompt + candidates + thoughts,
                             "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]}
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def _parts(plan: GeminiPlan) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"text": plan.thought, "thought": True}] if plan.thought else []
    parts.append(plan.call if plan.call is not None else {"text": plan.text or ""})
    return parts


def response_body(plan: GeminiPlan) -> dict[str, Any]:
    candidates = [{"content": {"parts": _parts(plan), "role": "model"}, "finishReason": plan.finish, "index": i}
                  for i in range(plan.n)]
    body: dict[str, Any] = {"candidates": candidates, "modelVersion": plan.model, "responseId": plan.response_id}
    if plan.usage is not None:
        body["usageMetadata"] = plan.usage
    return body


def stream_events(plan: GeminiPlan) -> Iterator[dict[str, Any]]:
    """The GenerateContentResponse events of a streamed answer."""
    events: list[dict[str, Any]] = []
    for index in range(plan.n):
        pieces: list[dict[str, Any]] = [{"text": plan.thought, "thought": True}] if plan.thought else []
        if plan.call is not None:
            pieces.append(plan.call)
        else:
            pieces.extend({"text": piece} for piece in word_pieces(plan.text or "") or [""])
        for k, part in enumerate(pieces):
            candidate: dict[str, Any] = {"content": {"parts": [part], "role": "model"}, "index": index}
            if k == len(pieces) - 1:
                candidate["finishReason"] = plan.finish
            events.append({"candidates": [candidate], "modelVersion": plan.model, "responseId": plan.response_id})
    if plan.usage is not None:
        events[-1]["usageMetadata"] = plan.usage
    yield from events
