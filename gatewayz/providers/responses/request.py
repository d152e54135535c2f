"""A POST /v1/responses body -> the OpenAI chat.completions body the pipeline routes, and what the answer echoes.

Translated: model; input (a string, or items: messages with role user / assistant / system / developer, the
last sent as system, which every chat upstream knows; input_text, input_image, input_file (file_data),
input_audio, output_text or refusal parts; function_call items join the assistant turn before them,
function_call_output items become tool messages; reasoning items are skipped: chat has no place for them);
instructions (the first system message); function tools; tool_choice (auto, none, required, a function,
allowed_tools); parallel_tool_calls; max_output_tokens (max_completion_tokens); temperature; top_p;
top_logprobs (logprobs); text.format (response_format); text.verbosity; reasoning.effort (reasoning_effort);
user; safety_identifier; prompt_cache_key; service_tier; stream; and the gateway's routing fields (models,
provider, session_id).
Accepted, not sent upstream: metadata (echoed), store (the gateway is stateless: nothing is stored), include,
truncation, max_tool_calls, stream_options, reasoning.summary, background false.
Refused (400): previous_response_id, conversation and prompt (state the gateway does not keep: send the full
input), background true, built-in tools (web_search, file_search, ...), item_reference and other items, and
files or images given by file_id.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

from gatewayz.errors import InvalidRequest
from gatewayz.routing.planner import GATEWAY_FIELDS

JSON = dict[str, Any]

_STATEFUL = {"previous_response_id": "previous responses", "conversation": "conversations",
             "prompt": "prompt templates"}
_PASSED = ("user", "safety_identifier", "prompt_cache_key", "service_tier")
_TEXT_PARTS = frozenset({"input_text", "output_text", "text"})
_CHOICES = frozenset({"auto", "none", "required"})
_DETAILS = frozenset({"auto", "low", "high"})


def _fail(param: str, problem: str, code: str = "invalid_value") -> NoReturn:
    raise InvalidRequest(f"Invalid '{param}': {problem}", param=param, code=code)


def _unsupported(param: str, problem: str) -> NoReturn:
    raise InvalidRequest(problem, param=param, code="unsupported_parameter")


def _str(obj: JSON, key: str, param: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        _fail(f"{param}.{key}", "required, a string")
    return value


def _number(body: JSON, key: str) -> float | None:
    value = body.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        _fail(key, "must be a number")
    return value


def _count(body: JSON, key: str, low: int, high: int) -> int | None:
    value = body.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high):
        _fail(key, f"must be an integer from {low} to {high}")
    return value


def responses_to_chat(body: JSON) -> tuple[JSON, JSON]:
    """-> (the chat.completions body, the request fields the Response object echoes)."""
    for key, what in _STATEFUL.items():
        if body.get(key) is not None:
            _unsupported(key, f"`{key}` is not supported: this gateway is stateless and keeps no {what}; "
                              "send the full conversation in `input`.")
    if body.get("background"):
        _unsupported("background", "Background responses are not supported: this gateway is stateless.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("`model` is required and must be a string.", param="model", code="missing_model")
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        _fail("instructions", "must be a string")
    messages: list[JSON] = [{"role": "system", "content": instructions}] if instructions else []
    messages.extend(input_messages(body.get("input")))
    chat: JSON = {"model": model, "messages": messages}
    chat.update((k, body[k]) for k in GATEWAY_FIELDS if k in body)
    chat.update((k, body[k]) for k in _PASSED if isinstance(body.get(k), str))
    echo = _sampling(body, chat)
    echo.update(_tooling(body, chat))
    echo.update(_text_format(body.get("text"), chat))
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        _fail("stream", "must be a boolean")
    if stream:
        chat["stream"] = True
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        _fail("metadata", "must be an object")
    echo.update(instructions=instructions, metadata=metadata or {}, user=body.get("user"),
                store=False, truncation="disabled", background=False,
                previous_response_id=None, max_tool_calls=None, service_tier=body.get("service_tier"))
    return chat, echo


def _sampling(body: JSON, chat: JSON) -> JSON:
    echo: JSON = {"temperature": _number(body, "temperature"), "top_p": _number(body, "top_p"),
                  "max_output_tokens": _count(body, "max_output_tokens", 1, 100_000_000),
                  "top_logprobs": _count(body, "top_logprobs", 0, 20), "reasoning": None}
    for key in ("temperature", "top_p"):
        if echo[key] is not None:
            chat[key] = echo[key]
    if echo["max_output_tokens"] is not None:
        chat["max_completion_tokens"] = echo["max_output_tokens"]
    if echo["top_logprobs"] is not None:
        chat["logprobs"] = True
        chat["top_logprobs"] = echo["top_logprobs"]
    reasoning = body.get("reasoning")
    if reasoning is not None:
        if not isinstance(reasoning, dict):
            _fail("reasoning", "must be an object")
        effort = reasoning.get("effort")
        if effort is not None and not isinstance(effort, str):
            _fail("reasoning.effort", "must be a string")
        if effort:
            chat["reasoning_effort"] = effort
        echo["reasoning"] = {"effort": effort, "summary": reasoning.get("summary")}
    return echo


def _tooling(body: JSON, chat: JSON) -> JSON:
    tools, echoed = _tools(body.get("tools"))
    choice = body.get("tool_choice")
    if choice is None:
        choice = "auto"
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        _fail("parallel_tool_calls", "must be a boolean")
    if isinstance(choice, str):
        if choice not in _CHOICES:
            _fail("tool_choice", "must be 'auto', 'none', 'required' or an object")
        chat_choice: str | JSON = choice
    elif isinstance(choice, dict) and choice.get("type") == "function":
        chat_choice = {"type": "function", "function": {"name": _str(choice, "name", "tool_choice")}}
    elif isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        chat_choice, tools = _allowed(choice, tools)
    else:
        kind = choice.get("type") if isinstance(choice, dict) else None
        _unsupported("tool_choice", f"tool_choice {kind!r} is not supported: use auto, none, required, "
                                    "a function or allowed_tools.")
    if tools:  # chat upstreams refuse tool_choice and parallel_tool_calls without tools
        chat["tools"] = tools
        if choice != "auto":
            chat["tool_choice"] = chat_choice
        if parallel is False:
            chat["parallel_tool_calls"] = False
    return {"tools": echoed, "tool_choice": choice, "parallel_tool_calls": parallel is not False}


def _tools(tools: Any) -> tuple[list[JSON], list[JSON]]:
    """-> (chat tools, the tools as the Response object echoes them)."""
    if tools is None:
        return [], []
    if not isinstance(tools, list):
        _fail("tools", "must be a list")
    chat: list[JSON] = []
    echoed: list[JSON] = []
    for i, tool in enumerate(tools):
        param = f"tools[{i}]"
        if not isinstance(tool, dict):
            _fail(param, "must be an object")
        if tool.get("type") != "function":
            _unsupported(f"{param}.type", f"Built-in tool {tool.get('type')!r} is not supported by this gateway; "
                                          "only function tools are.")
        function: JSON = {"name": _str(tool, "name", param)}
        for key, kind in (("description", str), ("parameters", dict), ("strict", bool)):
            value = tool.get(key)
            if value is not None and not isinstance(value, kind):
                _fail(f"{param}.{key}", f"must be a {kind.__name__}")
            if value is not None:
                function[key] = value
        chat.append({"type": "function", "function": function})
        echoed.append({"type": "function", "name": function["name"], "description": function.get("description"),
                       "parameters": function.get("parameters"), "strict": function.get("strict")})
    return chat, echoed


def _allowed(choice: JSON, tools: list[JSON]) -> tuple[str, list[JSON]]:
    mode = choice.get("mode")
    if mode not in ("auto", "required"):
        _fail("tool_choice.mode", "must be 'auto' or 'required'")
    listed = choice.get("tools")
    if not isinstance(listed, list):
        _fail("tool_choice.tools", "must be a list")
    names = {t.get("name") for t in listed if isinstance(t, dict) and t.get("type") == "function"}
    return mode, [t for t in tools if t["function"]["name"] in names]


def _text_format(text: Any, chat: JSON) -> JSON:
    if text is None:
        return {"text": {"format": {"type": "text"}}}
    if not isinstance(text, dict):
        _fail("text", "must be an object")
    fmt = text.get("format") or {"type": "text"}
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "json_object":
        chat["response_format"] = {"type": "json_object"}
    elif kind == "json_schema":
        schema = fmt.get("schema")
        if not isinstance(schema, dict):
            _fail("text.format.schema", "required, a JSON schema object")
        spec: JSON = {"name": _str(fmt, "name", "text.format"), "schema": schema}
        for key in ("description", "strict"):
            if fmt.get(key) is not None:
                spec[key] = fmt[key]
        chat["response_format"] = {"type": "json_schema", "json_schema": spec}
    elif kind != "text":
        _fail("text.format.type", "must be 'text', 'json_object' or 'json_schema'")
    verbosity = text.get("verbosity")
    if verbosity is not None:
        if not isinstance(verbosity, str):
            _fail("text.verbosity", "must be a string")
        chat["verbosity"] = verbosity
    return {"text": {"format": fmt, "verbosity": verbosity}}


def input_messages(value: Any) -> list[JSON]:
    """The `input` as chat messages."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        _fail("input", "required, a string or a non-empty list of input items")
    builder = _Messages()
    for i, item in enumerate(value):
        builder.add(item, f"input[{i}]")
    return builder.finish()


class _Messages:
    """Collects chat messages: function calls join the assistant turn before them, function outputs become tool
    messages, and the images or files of those outputs follow them in one user message (tool messages take
    text only, and must follow their assistant turn directly)."""

    def __init__(self) -> None:
        self.messages: list[JSON] = []
        self.held: list[JSON] = []

    def add(self, item: Any, param: str) -> None:
        if not isinstance(item, dict):
            _fail(param, "must be an object")
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "function_call_output":
            self._output(item, param)
            return
        if kind == "reasoning":
            return
        self._release()
        if kind == "message":
            self.messages.append(_message(item, param))
        elif kind == "function_call":
            self._call(item, param)
        elif kind == "item_reference":
            _unsupported(param, "item_reference is not supported: this gateway is stateless; send the items "
                                "themselves.")
        else:
            _unsupported(f"{param}.type", f"Input item type {kind!r} is not supported by this gateway.")

    def finish(self) -> list[JSON]:
        self._release()
        return self.messages

    def _call(self, item: JSON, param: str) -> None:
        arguments = item.get("arguments", "")
        if isinstance(arguments, dict):
            arguments = json.dumps(arguments, ensure_ascii=False)
        if not isinstance(arguments, str):
            _fail(f"{param}.arguments", "must be a JSON string")
        call = {"id": _str(item, "call_id", param), "type": "function",
                "function": {"name": _str(item, "name", param), "arguments": arguments}}
        last = self.messages[-1] if self.messages else None
        if last is not None and last["role"] == "assistant":
            last.setdefault("tool_calls", []).append(call)
        else:
            self.messages.append({"role": "assistant", "content": None, "tool_calls": [call]})

    def _output(self, item: JSON, param: str) -> None:
        output = item.get("output")
        if isinstance(output, str):
            text = output
        elif isinstance(output, list):
            texts = []
            for j, part in enumerate(output):
                converted = _part(part, f"{param}.output[{j}]")
                if converted["type"] == "text":
                    texts.append(converted["text"])
                else:
                    self.held.append(converted)
            text = "\n".join(texts)
        else:
            _fail(f"{param}.output", "required, a string or a list of content parts")
        self.messages.append({"role": "tool", "tool_call_id": _str(item, "call_id", param), "content": text})

    def _release(self) -> None:
        if self.held:
            self.messages.append({"role": "user", "content": self.held})
            self.held = []


def _message(item: JSON, param: str) -> JSON:
    role = item.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        _fail(f"{param}.role", "must be 'user', 'assistant', 'system' or 'developer'")
    content = item.get("content")
    chat_role = "system" if role == "developer" else role
    if isinstance(content, str):
        return {"role": chat_role, "content": content}
    if not isinstance(content, list):
        _fail(f"{param}.content", "required, a string or a list of content parts")
    parts = [_part(part, f"{param}.content[{j}]") for j, part in enumerate(content)]
    if role == "user":
        if len(parts) == 1 and parts[0]["type"] == "text":
            return {"role": "user", "content": parts[0]["text"]}
        return {"role": "user", "content": parts}
    if any(p["type"] != "text" for p in parts):
        _unsupported(f"{param}.content", f"A {role} message takes text parts only.")
    joiner = "" if role == "assistant" else "\n"  # an answer's parts are one text; instructions are paragraphs
    return {"role": chat_role, "content": joiner.join(p["text"] for p in parts)}


def _part(part: Any, param: str) -> JSON:
    if not isinstance(part, dict):
        _fail(param, "must be an object")
    kind = part.get("type")
    if kind in _TEXT_PARTS:
        return {"type": "text", "text": _str(part, "text", param)}
    if kind == "refusal":
        return {"type": "text", "text": _str(part, "refusal", param)}
    if kind == "input_image":
        return _image(part, param)
    if kind == "input_file":
        return _file(part, param)
    if kind == "input_audio":
        audio = part.get("input_audio")
        if not isinstance(audio, dict):
            _fail(f"{param}.input_audio", "required, an object with data and format")
        return {"type": "input_audio", "input_audio": {"data": _str(audio, "data", f"{param}.input_audio"),
                                                       "format": _str(audio, "format", f"{param}.input_audio")}}
    _unsupported(f"{param}.type", f"Content part type {kind!r} is not supported.")


def _image(part: JSON, param: str) -> JSON:
    url = part.get("image_url")
    if not isinstance(url, str) or not url:
        if part.get("file_id"):
            _unsupported(f"{param}.file_id", "Images by file_id are not supported: send image_url (a URL or "
                                             "a data: URL).")
        _fail(f"{param}.image_url", "required, a URL or a data: URL")
    image: JSON = {"url": url}
    if part.get("detail") in _DETAILS:
        image["detail"] = part["detail"]
    return {"type": "image_url", "image_url": image}


def _file(part: JSON, param: str) -> JSON:
    data = part.get("file_data")
    if not isinstance(data, str) or not data:
        _unsupported(param, "Files are supported as file_data only (a data: URL), not by file_id or file_url.")
    filename = part.get("filename")
    return {"type": "file", "file": {"filename": filename if isinstance(filename, str) and filename
                                     else "document", "file_data": data}}
