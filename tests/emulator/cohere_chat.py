"""Deterministic Cohere v2 Chat answers (non-streamed bodies and stream events), and request validation.

What the "model" answers (the OpenAI format's semantics, see ``openai_chat.py``)
------------------------------------------------------------------------------
* The user text is the text of the last user message (text parts joined by a space), fault directives removed.
* Text: ``"Echo: " + user text`` (``Fault.content`` replaces it; with ``response_format`` json_object it is
  ``{"echo": "<user text>"}``). ``stop_sequences`` cut it at the earliest one (finish_reason STOP_SEQUENCE),
  then ``max_tokens`` keeps that many words (MAX_TOKENS); else COMPLETE.
* Tools: with ``tools`` and ``tool_choice`` not NONE, and unless the last message is a tool result (so tool
  loops end), the answer calls the first tool, or - with ``tool_choice: REQUIRED``, the parallel case - every
  tool in order. Each call's arguments are a JSON object with the user text as the value of every schema
  property; ids are ``<name>_<12 hex>``; ``tool_plan`` is ``"I will use <names joined by ', '>."``;
  finish_reason TOOL_CALL.
* ``thinking`` {type: enabled}: a first thinking content item ``"Thinking about: <user text>"``.

Token accounting (one token = one whitespace-separated word)
------------------------------------------------------------
* ``billed_units.input_tokens = 3 + sum(words(message text) + 3 for each message)`` (a message's text is its
  string content or its text parts, tool results included; images and tool calls count 0) - the OpenAI
  format's prompt count for the same conversation.
* ``billed_units.output_tokens`` = words of the thinking and the text, or of the tool plan plus each call's
  arguments (at least 1 each).
* ``tokens`` (what the model processed) adds ``TEMPLATE_TOKENS`` to the input, as Cohere's prompt template
  does: a client billed from ``tokens`` would be overcharged. ``Fault.usage`` replaces the usage object
  verbatim, ``Fault.omit_usage`` removes it.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .faults import Fault
from .openai_chat import last_user_text, prompt_tokens
from .textgen import apply_stop, arguments_for, count_words, truncate_words, word_pieces

TEMPLATE_TOKENS = 200
FIELDS = frozenset({
    "model", "messages", "tools", "strict_tools", "documents", "citation_options", "response_format",
    "safety_mode", "max_tokens", "stop_sequences", "temperature", "seed", "frequency_penalty", "presence_penalty",
    "k", "p", "logprobs", "tool_choice", "thinking", "stream", "priority",
})
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_RANGES = (("temperature", 0.0, 5.0), ("p", 0.01, 0.99), ("frequency_penalty", 0.0, 1.0),
           ("presence_penalty", 0.0, 1.0))


@dataclass(frozen=True)
class Call:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ChatPlan:
    reply_id: str
    thinking: str | None
    text: str | None
    tool_plan: str | None
    calls: tuple[Call, ...]
    finish_reason: str
    usage: dict[str, Any] | None


# ------------------------------------------------------------------ validation
def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_parts(content: Any, allowed: frozenset[str], where: str) -> str | None:
    if isinstance(content, str):
        return None
    if not isinstance(content, list):
        return f"invalid request: {where}.content must be a string or a list of content items"
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in allowed:
            return f"invalid request: {where}.content[{j}]: unsupported content type {kind!r}"
        if kind == "text" and not isinstance(part.get("text"), str):
            return f"invalid request: {where}.content[{j}].text must be a string"
        if kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else None
            if not isinstance(url, str) or not url.startswith(("http://", "https://", "data:image/")):
                return f"invalid request: {where}.content[{j}].image_url.url must be an image URL or data URI"
            if image.get("detail") not in (None, "auto", "low", "high"):
                return f"invalid request: {where}.content[{j}].image_url.detail must be auto, low or high"
    return None


def _check_assistant(message: dict[str, Any], where: str) -> str | None:
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        return f"invalid request: {where}.tool_calls must be a list"
    if not calls and not message.get("content"):
        return f"invalid request: {where}: an assistant message needs content or tool calls"
    for k, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not (isinstance(function, dict) and isinstance(call.get("id"), str) and call["id"]
                and isinstance(function.get("name"), str) and isinstance(function.get("arguments"), str)):
            return f"invalid request: {where}.tool_calls[{k}] needs an id and a function with name and arguments"
        try:
            json.loads(function["arguments"])
        except ValueError:
            return f"invalid request: {where}.tool_calls[{k}].function.arguments must be valid JSON"
    if message.get("tool_plan") is not None and not isinstance(message["tool_plan"], str):
        return f"invalid request: {where}.tool_plan must be a string"
    return _check_parts(message.get("content") or [], frozenset({"text", "thinking"}), where)


def _check_messages(messages: Any) -> str | None:
    if not isinstance(messages, list) or not messages:
        return "invalid request: messages must be a non-empty list"
    pending: set[str] = set()  # tool call ids still waiting for their result
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        role = message.get("role") if isinstance(message, dict) else None
        if role != "tool" and pending:
            return f"invalid request: {where}: tool call {sorted(pending)[0]!r} has no tool result before it"
        if role == "system":
            problem = _check_parts(message.get("content"), frozenset({"text"}), where)
        elif role == "user":
            problem = _check_parts(message.get("content"), frozenset({"text", "image_url"}), where)
        elif role == "assistant":
            problem = _check_assistant(message, where)
            pending = {c["id"] for c in message.get("tool_calls") or []}
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in pending:
                return f"invalid request: {where}.tool_call_id {call_id!r} does not match a tool call awaiting a result"
            pending.discard(call_id)
            problem = _check_parts(message.get("content"), frozenset({"text", "document"}), where)
        else:
            return f"invalid request: {where}.role must be one of system, user, assistant, tool"
        if problem:
            return problem
    return None


def _check_tools(body: dict[str, Any]) -> str | None:
    tools = body.get("tools") or []
    if not isinstance(tools, list):
        return "invalid request: tools must be a list"
    names = []
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or tool.get("type") != "function":
            return f"invalid request: tools[{i}] must be {{type: function, function: {{...}}}}"
        unknown = sorted(set(function) - {"name", "description", "parameters"})
        if unknown:
            return f"invalid request: tools[{i}].function: unknown field {unknown[0]!r}"
        if not isinstance(function.get("name"), str) or not _TOOL_NAME.match(function["name"]):
            return f"invalid request: tools[{i}].function.name must match {_TOOL_NAME.pattern}"
        if not isinstance(function.get("parameters"), dict):
            return f"invalid request: tools[{i}].function.parameters must be a JSON schema object"
        names.append(function["name"])
    if len(set(names)) != len(names):
        return "invalid request: tool names must be unique"
    choice = body.get("tool_choice")
    if choice is not None and choice not in ("REQUIRED", "NONE"):
        return "invalid request: tool_choice must be REQUIRED or NONE"
    if choice == "REQUIRED" and not tools:
        return "invalid request: tool_choice REQUIRED needs tools"
    return None


def _check_options(body: dict[str, Any]) -> str | None:
    if body.get("max_tokens") is not None and (not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1):
        return "invalid request: max_tokens must be a positive integer"
    for key, low, high in _RANGES:
        value = body.get(key)
        if value is not None and (not _number(value) or not low <= value <= high):
            return f"invalid request: {key} must be a number between {low} and {high}"
    k = body.get("k")
    if k is not None and (not isinstance(k, int) or not 0 <= k <= 500):
        return "invalid request: k must be an integer between 0 and 500"
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list) or len(stops) > 5
                              or not all(isinstance(s, str) and s for s in stops)):
        return "invalid request: stop_sequences must be a list of at most 5 non-empty strings"
    fmt = body.get("response_format")
    if fmt is not None:
        if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object"):
            return "invalid request: response_format.type must be text or json_object"
        schema = fmt.get("json_schema")
        if schema is not None and (fmt["type"] == "text" or not isinstance(schema, dict)
                                   or schema.get("type") != "object"):
            return "invalid request: response_format.json_schema must be an object schema with type json_object"
    thinking = body.get("thinking")
    if thinking is not None and (not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled")):
        return "invalid request: thinking.type must be enabled or disabled"
    return None


def validate(body: Any) -> str | None:
    """An error message if ``body`` is not an acceptable v2 chat request."""
    if not isinstance(body, dict):
        return "invalid request: the body must be a JSON object"
    extra = sorted(set(body) - FIELDS)
    if extra:
        return f"invalid request: unknown field {extra[0]!r}"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "invalid request: model must be a non-empty string"
    return _check_messages(body.get("messages")) or _check_tools(body) or _check_options(body)


# -------------------------------------------------------------------- planning
def _pick_tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    tools = [t["function"] for t in body.get("tools") or []]
    choice = body.get("tool_choice")
    if not tools or choice == "NONE" or body["messages"][-1].get("role") == "tool":
        return []
    return tools if choice == "REQUIRED" else tools[:1]


def _text(body: dict[str, Any], fault: Fault, user: str) -> tuple[str, str]:
    fmt = body.get("response_format")
    echo = json.dumps({"echo": user}) if isinstance(fmt, dict) and fmt.get("type") == "json_object" else "Echo: " + user
    text, cut = apply_stop(echo if fault.content is None else fault.content, body.get("stop_sequences"))
    if cut:
        return text, "STOP_SEQUENCE"
    text, truncated = truncate_words(text, body.get("max_tokens"))
    return text, "MAX_TOKENS" if truncated else "COMPLETE"


def _usage(prompt: int, output: int) -> dict[str, Any]:
    return {"billed_units": {"input_tokens": prompt, "output_tokens": output},
            "tokens": {"input_tokens": prompt + TEMPLATE_TOKENS, "output_tokens": output}}


def plan_chat(body: dict[str, Any], fault: Fault) -> ChatPlan:
    messages = body["messages"]
    user = last_user_text(messages)
    thinking_on = isinstance(body.get("thinking"), dict) and body["thinking"].get("type") == "enabled"
    thinking = "Thinking about: " + user if thinking_on else None
    tools = _pick_tools(body)
    text = tool_plan = None
    calls: tuple[Call, ...] = ()
    if tools:
        tool_plan = "I will use " + ", ".join(t["name"] for t in tools) + "."
        calls = tuple(Call(f"{t['name']}_{uuid.uuid4().hex[:12]}", t["name"], arguments_for(t.get("parameters"), user))
                      for t in tools)
        finish, output = "TOOL_CALL", count_words(tool_plan) + sum(max(1, count_words(c.arguments)) for c in calls)
    else:
        text, finish = _text(body, fault, user)
        output = count_words(text)
    output += count_words(thinking)
    usage = None if fault.omit_usage else fault.usage or _usage(prompt_tokens(messages), output)
    return ChatPlan(str(uuid.uuid4()), thinking, text, tool_plan, calls, finish, usage)


# ------------------------------------------------------------------- rendering
def _content(plan: ChatPlan) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = [{"type": "thinking", "thinking": plan.thinking}] if plan.thinking else []
    if plan.text is not None:
        items.append({"type": "text", "text": plan.text})
    return items


def chat_body(plan: ChatPlan) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant"}
    if plan.calls:
        message["tool_plan"] = plan.tool_plan
        message["tool_calls"] = [{"id": c.id, "type": "function", "function": {"name": c.name,
                                                                              "arguments": c.arguments}}
                                 for c in plan.calls]
    content = _content(plan)
    if content:
        message["content"] = content
    body: dict[str, Any] = {"id": plan.reply_id, "message": message, "finish_reason": plan.finish_reason}
    if plan.usage is not None:
        body["usage"] = plan.usage
    return body


def _content_events(index: int, kind: str, text: str) -> Iterator[dict[str, Any]]:
    yield {"type": "content-start", "index": index, "delta": {"message": {"content": {"type": kind, kind: ""}}}}
    for piece in word_pieces(text):
        yield {"type": "content-delta", "index": index, "delta": {"message": {"content": {kind: piece}}}}
    yield {"type": "content-end", "index": index}


def _call_events(index: int, call: Call) -> Iterator[dict[str, Any]]:
    head = {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}
    yield {"type": "tool-call-start", "index": index, "delta": {"message": {"tool_calls": head}}}
    for piece in word_pieces(call.arguments):
        yield {"type": "tool-call-delta", "index": index,
               "delta": {"message": {"tool_calls": {"function": {"arguments": piece}}}}}
    yield {"type": "tool-call-end", "index": index}


def stream_events(plan: ChatPlan) -> Iterator[dict[str, Any]]:
    """The events of a streamed answer, message-start to message-end (each data's type is its event name)."""
    start = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
    yield {"id": plan.reply_id, "type": "message-start", "delta": {"message": start}}
    index = 0
    if plan.thinking:
        yield from _content_events(index, "thinking", plan.thinking)
        index += 1
    if plan.text is not None:
        yield from _content_events(index, "text", plan.text)
    for piece in word_pieces(plan.tool_plan or ""):
        yield {"type": "tool-plan-delta", "delta": {"message": {"tool_plan": piece}}}
    for k, call in enumerate(plan.calls):
        yield from _call_events(k, call)
    end: dict[str, Any] = {"finish_reason": plan.finish_reason}
    if plan.usage is not None:
        end["usage"] = plan.usage
    yield {"type": "message-end", "delta": end}

