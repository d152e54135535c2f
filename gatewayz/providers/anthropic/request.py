"""Anthropic Messages request -> OpenAI chat.completions request body, and the count_tokens estimate.

Translated: model, system, messages (text, image, document, tool_use, tool_result blocks), max_tokens,
stop_sequences, temperature, top_p, metadata.user_id, stream, tools, tool_choice, and `thinking` (enabled
with a budget) as OpenAI's `reasoning_effort`: under 2,048 tokens low, under 8,192 medium, else high (every
upstream adapter maps the effort back to its own reasoning setting).
Dropped, because OpenAI chat completions has no equivalent: top_k, thinking / redacted_thinking blocks in
assistant history (their signatures cannot cross providers), cache_control, tool `strict`, service_tier, container,
and any other top-level field. Server tools (tools with a `type` other than "custom") are rejected.
"""

from __future__ import annotations

import json
import math
from typing import Any, NoReturn

JSON = dict[str, Any]

_USER_BLOCKS = frozenset({"text", "image", "document", "tool_result"})
_ASSISTANT_BLOCKS = frozenset({"text", "tool_use", "thinking", "redacted_thinking"})
_TOOL_CHOICES = frozenset({"auto", "any", "tool", "none"})


class TranslationError(ValueError):
    """Invalid Anthropic request: the message says which field, also given as `.param`."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def _fail(param: str, problem: str) -> NoReturn:
    raise TranslationError(f"{param}: {problem}", param)


def messages_to_openai(body: JSON) -> JSON:
    """Translate an Anthropic Messages request body into an OpenAI chat.completions request body.

    Raises TranslationError for a request Anthropic would reject (missing model / max_tokens /
    messages, an unknown role or content block type, malformed blocks, tools or tool_choice)."""
    if not isinstance(body, dict):
        raise TranslationError("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        _fail("model", "required, a non-empty string")
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        _fail("max_tokens", "required, a positive integer")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        _fail("messages", "required, a non-empty list")

    out_messages: list[JSON] = []
    system = _system_text(body.get("system"), "system")
    if system:
        out_messages.append({"role": "system", "content": system})
    for i, message in enumerate(messages):
        out_messages.extend(_message(message, f"messages[{i}]"))

    out: JSON = {"model": model, "messages": out_messages, "max_tokens": max_tokens}
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            _fail("stop_sequences", "must be a list of strings")
        if stops:
            out["stop"] = list(stops)
    for key in ("temperature", "top_p"):
        value = body.get(key)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                _fail(key, "must be a number")
            out[key] = value
    effort = _reasoning_effort(body.get("thinking"))
    if effort is not None:
        out["reasoning_effort"] = effort
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        out["user"] = metadata["user_id"]
    stream = body.get("stream")
    if stream is not None:
        if not isinstance(stream, bool):
            _fail("stream", "must be a boolean")
        out["stream"] = stream
        if stream:
            out["stream_options"] = {"include_usage": True}

    tools = _tools(body.get("tools"))
    choice = body.get("tool_choice")
    translated_choice = _tool_choice(choice) if choice is not None else None
    if tools:  # OpenAI rejects tool_choice / parallel_tool_calls without tools
        out["tools"] = tools
        if translated_choice is not None:
            out["tool_choice"], parallel = translated_choice
            if not parallel:
                out["parallel_tool_calls"] = False
    return out


def _reasoning_effort(thinking: Any) -> str | None:
    if thinking is None:
        return None
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled", "adaptive"):
        _fail("thinking", 'must be {"type": "enabled", "budget_tokens": N} or {"type": "disabled"}')
    if thinking["type"] == "disabled":
        return None
    budget = thinking.get("budget_tokens")
    if thinking["type"] == "adaptive" or budget is None:
        return "medium"
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        _fail("thinking.budget_tokens", "must be a positive integer")
    return "low" if budget < 2048 else "medium" if budget < 8192 else "high"


def _system_text(value: Any, param: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if not isinstance(value, list):
        _fail(param, "must be a string or a list of text blocks")
    texts = []
    for i, block in enumerate(value):
        if not isinstance(block, dict) or block.get("type") != "text":
            _fail(f"{param}[{i}]", "must be a text block")
        texts.append(_str(block, "text", f"{param}[{i}]"))
    return "\n".join(texts)


def _message(message: Any, param: str) -> list[JSON]:
    if not isinstance(message, dict):
        _fail(param, "must be an object")
    role = message.get("role")
    content = message.get("content")
    if role not in ("user", "assistant", "system"):
        _fail(f"{param}.role", f"must be 'user' or 'assistant', got {role!r}")
    if role == "system":  # the SDK's SystemMessageParam: text only
        return [{"role": "system", "content": _system_text(content, f"{param}.content") or ""}]
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        _fail(f"{param}.content", "must be a string or a list of content blocks")
    allowed = _USER_BLOCKS if role == "user" else _ASSISTANT_BLOCKS
    for j, block in enumerate(content):
        if not isinstance(block, dict):
            _fail(f"{param}.content[{j}]", "must be an object")
        if block.get("type") not in allowed:
            _fail(f"{param}.content[{j}].type", f"unknown content block type {block.get('type')!r} for role {role}")
    if role == "user":
        return _user_blocks(content, param)
    return [_assistant_blocks(content, param)]


def _user_blocks(blocks: list[JSON], param: str) -> list[JSON]:
    """Tool results become `tool` messages, placed before whatever else the turn says."""
    tool_messages: list[JSON] = []
    parts: list[JSON] = []
    for j, block in enumerate(blocks):
        bp = f"{param}.content[{j}]"
        kind = block["type"]
        if kind == "tool_result":
            text, images = _tool_result_content(block, bp)
            tool_messages.append(
                {"role": "tool", "tool_call_id": _str(block, "tool_use_id", bp), "content": text}
            )
            parts.extend(images)  # tool messages carry text only; their images go with the user turn
        elif kind == "text":
            parts.append({"type": "text", "text": _str(block, "text", bp)})
        elif kind == "image":
            parts.append(_image(block, bp))
        else:
            parts.append(_document(block, bp))
    if not parts:
        return tool_messages or [{"role": "user", "content": ""}]
    if len(parts) == 1 and parts[0]["type"] == "text":
        return [*tool_messages, {"role": "user", "content": parts[0]["text"]}]
    return [*tool_messages, {"role": "user", "content": parts}]


def _assistant_blocks(blocks: list[JSON], param: str) -> JSON:
    texts: list[str] = []
    calls: list[JSON] = []
    for j, block in enumerate(blocks):
        bp = f"{param}.content[{j}]"
        if block["type"] == "text":
            texts.append(_str(block, "text", bp))
        elif block["type"] == "tool_use":
            tool_input = block.get("input", {})
            if not isinstance(tool_input, dict):
                _fail(f"{bp}.input", "must be an object")
            calls.append({
                "id": _str(block, "id", bp),
                "type": "function",
                "function": {"name": _str(block, "name", bp), "arguments": json.dumps(tool_input, ensure_ascii=False)},
            })
    # consecutive text blocks of one response (e.g. split around citations) concatenate without separator
    out: JSON = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        out["tool_calls"] = calls
    return out


def _tool_result_content(block: JSON, param: str) -> tuple[str, list[JSON]]:
    content = block.get("content")
    texts: list[str] = []
    images: list[JSON] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for k, item in enumerate(content):
            ip = f"{param}.content[{k}]"
            kind = item.get("type") if isinstance(item, dict) else None
            if kind == "text":
                texts.append(_str(item, "text", ip))
            elif kind == "image":
                images.append(_image(item, ip))
            elif kind == "document":
                part = _document(item, ip)
                if part["type"] == "text":
                    texts.append(part["text"])
                else:
                    images.append(part)
            else:
                _fail(f"{ip}.type", f"unknown content block type {kind!r} in tool_result")
    elif content is not None:
        _fail(f"{param}.content", "must be a string or a list of content blocks")
    text = "\n".join(texts)
    if block.get("is_error") is True:
        text = "Error: " + text
    return text, images


def _image(block: JSON, param: str) -> JSON:
    source = block.get("source")
    if not isinstance(source, dict):
        _fail(f"{param}.source", "required, an object")
    if source.get("type") == "base64":
        media_type = _str(source, "media_type", f"{param}.source")
        data = _str(source, "data", f"{param}.source")
        return {"type": "image_url", "image_url": {"url": f"data:{media_type};base64,{data}"}}
    if source.get("type") == "url":
        return {"type": "image_url", "image_url": {"url": _str(source, "url", f"{param}.source")}}
    _fail(f"{param}.source.type", f"unsupported image source {source.get('type')!r} (use base64 or url)")


def _document(block: JSON, param: str) -> JSON:
    """Plain-text documents become text; base64 PDFs become an OpenAI `file` part."""
    source = block.get("source")
    if not isinstance(source, dict):
        _fail(f"{param}.source", "required, an object")
    if source.get("type") == "text":
        return {"type": "text", "text": _str(source, "data", f"{param}.source")}
    if source.get("type") == "base64" and source.get("media_type") == "application/pdf":
        data = _str(source, "data", f"{param}.source")
        title = block.get("title")
        filename = title if isinstance(title, str) and title else "document.pdf"
        return {"type": "file", "file": {"filename": filename, "file_data": f"data:application/pdf;base64,{data}"}}
    _fail(f"{param}.source.type", "unsupported document source (use text, or base64 application/pdf)")


def _tools(tools: Any) -> list[JSON]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        _fail("tools", "must be a list")
    out: list[JSON] = []
    for i, tool in enumerate(tools):
        tp = f"tools[{i}]"
        if not isinstance(tool, dict):
            _fail(tp, "must be an object")
        if tool.get("type") not in (None, "custom"):
            _fail(f"{tp}.type", f"server tool {tool.get('type')!r} is not supported")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            _fail(f"{tp}.input_schema", "required, a JSON schema object")
        function: JSON = {"name": _str(tool, "name", tp)}
        description = tool.get("description")
        if isinstance(description, str):
            function["description"] = description
        function["parameters"] = schema
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any) -> tuple[str | JSON, bool]:
    """-> (OpenAI tool_choice, parallel tool calls allowed)."""
    if not isinstance(choice, dict) or choice.get("type") not in _TOOL_CHOICES:
        _fail("tool_choice.type", "must be one of 'auto', 'any', 'tool', 'none'")
    parallel = choice.get("disable_parallel_tool_use") is not True
    kind = choice["type"]
    if kind == "tool":
        return {"type": "function", "function": {"name": _str(choice, "name", "tool_choice")}}, parallel
    return {"auto": "auto", "any": "required", "none": "none"}[kind], parallel


def _str(obj: JSON, key: str, param: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        _fail(f"{param}.{key}", "required, a string")
    return value


def count_tokens_estimate(body: JSON) -> int:
    """A deterministic estimate of a Messages request's input tokens, for POST /v1/messages/count_tokens.

    ceil(B / 4) + 4 per message + 1000 per image or non-text document, where B is the UTF-8 byte length
    of all text: the system prompt, text blocks, tool_use names and JSON inputs, tool_result contents,
    thinking text, and each tool's name, description and JSON input_schema (any other block counts as
    its JSON). No tokenizer is involved: it is a budget estimate, not the upstream's exact count."""
    if not isinstance(body, dict):
        raise TranslationError("the request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        _fail("messages", "required, a non-empty list")
    texts: list[str] = []
    images = _measure(body.get("system"), texts)
    for message in messages:
        if isinstance(message, dict):
            images += _measure(message.get("content"), texts)
    tools = body.get("tools")
    for tool in tools if isinstance(tools, list) else []:
        if isinstance(tool, dict):
            texts.extend(str(tool.get(k, "")) for k in ("name", "description"))
            texts.append(_dumps(tool.get("input_schema", tool)))
    size = sum(len(t.encode("utf-8")) for t in texts)
    return math.ceil(size / 4) + 4 * len(messages) + 1000 * images


def _measure(content: Any, texts: list[str]) -> int:
    """Appends the text of `content` (a string or blocks) to `texts`; returns its image count."""
    if content is None:
        return 0
    if isinstance(content, str):
        texts.append(content)
        return 0
    if not isinstance(content, list):
        texts.append(_dumps(content))
        return 0
    images = 0
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "image":
            images += 1
        elif kind == "document":
            source = block.get("source")
            if isinstance(source, dict) and source.get("type") == "text":
                texts.append(str(source.get("data", "")))
            else:
                images += 1
        elif kind == "tool_use":
            texts.extend((str(block.get("name", "")), _dumps(block.get("input", {}))))
        elif kind == "tool_result":
            images += _measure(block.get("content"), texts)
        elif kind == "thinking":
            texts.append(str(block.get("thinking", "")))
        else:
            texts.append(_dumps(block))
    return images


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
