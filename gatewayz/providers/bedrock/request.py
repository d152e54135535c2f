"""OpenAI chat.completions request -> Bedrock Converse request body.

Translated: messages (system/developer -> `system`; user, assistant and tool turns -> alternating user /
assistant messages, consecutive same-role turns merged), text, images and files given as data: URLs,
tool calls -> toolUse, tool messages -> toolResult, max_tokens / max_completion_tokens, temperature, top_p,
stop -> inferenceConfig, tools -> toolConfig.tools, tool_choice auto / required / named -> toolChoice
auto / any / tool, top_k -> additionalModelRequestFields, response_format (json_object / json_schema) ->
a tool named JSON_TOOL whose input the response translation turns back into the message text (forced
when it is the only tool; next to the client's tools it is one more choice, under their tool_choice).

tool_choice "none", or no tools at all, sends no toolConfig (bar the JSON tool); Converse refuses toolUse /
toolResult blocks without one, so those turns are then written out as text. Dropped (no Converse
equivalent): n=1, presence / frequency penalties, logit_bias, seed, logprobs, user, parallel_tool_calls,
tool `strict`, image `detail`.

`Unsupported` (-> AttemptFailed, so another provider may serve the request): n > 1, image or file URLs
that are not data: URLs (Converse takes bytes only, and fetching on the request path is not an option),
audio, non-function tools. Malformed input raises InvalidRequest (400)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any, NoReturn

from gatewayz.errors import InvalidRequest

JSON = dict[str, Any]
JSON_TOOL = "gatewayz_json_response"
_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                  "image/webp": "webp"}
_DOC_FORMATS = {"application/pdf": "pdf", "text/csv": "csv", "application/msword": "doc",
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
                "application/vnd.ms-excel": "xls",
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
                "text/html": "html", "text/plain": "txt", "text/markdown": "md"}
_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)(?:;[^,;]*)*;base64,(.*)$", re.S)
_TOOL_ID_BAD = re.compile(r"[^a-zA-Z0-9_.:-]")
_DOC_NAME_BAD = re.compile(r"[^a-zA-Z0-9\s\-()\[\]]")


class Unsupported(Exception):
    """Bedrock cannot take this request as sent; another provider may. The message is a fixed phrase (it
    becomes the attempt's error class, a metrics label)."""


def _bad(param: str, problem: str) -> NoReturn:
    raise InvalidRequest(f"`{param}` {problem}", param=param, code="invalid_value")


def converse_body(body: JSON, model_id: str) -> JSON:
    """The Converse body (without modelId, which goes in the URL) for an OpenAI chat request."""
    n = body.get("n")
    if isinstance(n, int) and n > 1:
        raise Unsupported("n > 1")
    choice = body.get("tool_choice")
    tools = _tools(body.get("tools"))
    if choice == "none":
        tools = []
    json_tool = _json_tool(body.get("response_format"))
    system, messages = _messages(body.get("messages"), tools_on=bool(tools) or json_tool is not None)
    out: JSON = {"messages": messages}
    if system:
        out["system"] = system
    config = _inference_config(body)
    if config:
        out["inferenceConfig"] = config
    if tools:
        tool_config: JSON = {"tools": tools + ([json_tool] if json_tool else [])}
        forced = _tool_choice(choice)
        if forced is not None:
            tool_config["toolChoice"] = forced
        out["toolConfig"] = tool_config
    elif json_tool is not None:  # JSON mode alone: the model must answer through the JSON tool
        out["toolConfig"] = {"tools": [json_tool], "toolChoice": {"tool": {"name": JSON_TOOL}}}
    extra = _additional_fields(body, model_id)
    if extra:
        out["additionalModelRequestFields"] = extra
    return out


def _inference_config(body: JSON) -> JSON:
    config: JSON = {}
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens is not None:
        config["maxTokens"] = max_tokens
    for src, dst in (("temperature", "temperature"), ("top_p", "topP")):
        value = body.get(src)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                _bad(src, "must be a number.")
            config[dst] = value
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            _bad("stop", "must be a string or a list of strings.")
        if any(stops):
            config["stopSequences"] = [s for s in stops if s]
    return config


def _additional_fields(body: JSON, model_id: str) -> JSON:
    top_k = body.get("top_k")
    if top_k is None:
        return {}
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        _bad("top_k", "must be a positive integer.")
    if "amazon.nova" in model_id:  # Nova reads its own inferenceConfig inside the additional fields
        return {"inferenceConfig": {"topK": top_k}}
    return {"top_k": top_k}


# ----------------------------------------------------------------------------------------------- tools

def _tools(tools: Any) -> list[JSON]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        _bad("tools", "must be a list.")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            _bad(f"tools[{i}]", "must be an object.")
        if tool.get("type", "function") != "function":
            raise Unsupported("non-function tools")
        function = tool.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            _bad(f"tools[{i}].function.name", "is required.")
        spec: JSON = {"name": function["name"]}
        if isinstance(function.get("description"), str) and function["description"]:
            spec["description"] = function["description"]
        params = function.get("parameters")
        spec["inputSchema"] = {"json": params if isinstance(params, dict) else {"type": "object", "properties": {}}}
        out.append({"toolSpec": spec})
    return out


def _tool_choice(choice: Any) -> JSON | None:
    if choice is None:
        return None
    if choice == "auto":
        return {"auto": {}}
    if choice == "required":
        return {"any": {}}
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name")
        if isinstance(name, str) and name:
            return {"tool": {"name": name}}
    _bad("tool_choice", "must be 'none', 'auto', 'required' or {\"type\": \"function\", \"function\": {\"name\"}}.")


def _json_tool(response_format: Any) -> JSON | None:
    if not isinstance(response_format, dict) or response_format.get("type") not in ("json_object", "json_schema"):
        return None
    schema: Any = {"type": "object"}
    description = "Respond with your answer as this tool's input, a JSON object."
    spec = response_format.get("json_schema")
    if response_format["type"] == "json_schema" and isinstance(spec, dict):
        if isinstance(spec.get("schema"), dict):
            schema = spec["schema"]
        if isinstance(spec.get("description"), str) and spec["description"]:
            description = spec["description"]
    return {"toolSpec": {"name": JSON_TOOL, "description": description, "inputSchema": {"json": schema}}}


def tool_use_id(call_id: Any) -> str:
    """An id Converse accepts ([a-zA-Z0-9_.:-], 1-64 chars); the same input always maps to the same id."""
    text = _TOOL_ID_BAD.sub("_", call_id if isinstance(call_id, str) else "")[:64]
    return text or "call_0"


# -------------------------------------------------------------------------------------------- messages

def _messages(messages: Any, tools_on: bool) -> tuple[list[JSON], list[JSON]]:
    if not isinstance(messages, list) or not messages:
        _bad("messages", "must be a non-empty array.")
    system: list[JSON] = []
    turns: list[JSON] = []
    for i, message in enumerate(messages):
        param = f"messages[{i}]"
        if not isinstance(message, dict):
            _bad(param, "must be an object.")
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend({"text": t} for t in _texts(message.get("content"), f"{param}.content") if t)
            continue
        if role == "user":
            blocks = _user_content(message.get("content"), f"{param}.content")
            _append(turns, "user", blocks)
        elif role == "assistant":
            _append(turns, "assistant", _assistant(message, param, tools_on))
        elif role == "tool":
            _append(turns, "user", [_tool_result(message, param, tools_on)])
        else:
            _bad(f"{param}.role", f"{role!r} is not supported (system, developer, user, assistant, tool).")
    if not turns:
        _bad("messages", "must contain at least one user or assistant message with content.")
    return system, turns


def _append(turns: list[JSON], role: str, blocks: list[JSON]) -> None:
    """Converse wants strictly alternating roles: consecutive turns of one role become one message."""
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def _texts(content: Any, param: str) -> list[str]:
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        _bad(param, "must be a string or a list of content parts.")
    out = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            _bad(f"{param}[{j}]", "must be a text part.")
        out.append(part["text"])
    return out


def _user_content(content: Any, param: str) -> list[JSON]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        _bad(param, "must be a string or a list of content parts.")
    blocks: list[JSON] = []
    for j, part in enumerate(content):
        pp = f"{param}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            if part["text"]:
                blocks.append({"text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image(part.get("image_url"), pp))
        elif kind == "file":
            blocks.append(_document(part.get("file"), pp))
        elif kind == "input_audio":
            raise Unsupported("audio input")
        else:
            _bad(pp, f"has an unknown content part type {kind!r}.")
    return blocks


def _data_url(url: Any, param: str) -> tuple[str, str]:
    if not isinstance(url, str) or not url:
        _bad(param, "must be a URL string.")
    match = _DATA_URL.match(url)
    if match is None:
        if url.startswith(("http://", "https://")):
            raise Unsupported("http(s) image or file URL, Bedrock takes data: URLs")
        _bad(param, "must be a base64 data: URL.")
    media_type, data = match.group(1).lower(), match.group(2)
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        _bad(param, "is not valid base64.")
    return media_type, data


def _image(image_url: Any, param: str) -> JSON:
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    media_type, data = _data_url(url, f"{param}.image_url.url")
    fmt = _IMAGE_FORMATS.get(media_type)
    if fmt is None:
        _bad(f"{param}.image_url.url", f"has type {media_type}; Bedrock takes png, jpeg, gif and webp.")
    return {"image": {"format": fmt, "source": {"bytes": data}}}


def _document(file: Any, param: str) -> JSON:
    if not isinstance(file, dict) or not isinstance(file.get("file_data"), str):
        raise Unsupported("file reference, Bedrock takes inline file_data")
    media_type, data = _data_url(file["file_data"], f"{param}.file.file_data")
    fmt = _DOC_FORMATS.get(media_type)
    if fmt is None:
        _bad(f"{param}.file.file_data", f"has type {media_type}, which Bedrock does not take as a document.")
    filename = file.get("filename")
    raw_name = filename if isinstance(filename, str) else "document"
    stem = raw_name.rsplit(".", 1)[0] if "." in raw_name else raw_name
    name = " ".join(_DOC_NAME_BAD.sub(" ", stem).split())[:200] or "document"
    return {"document": {"format": fmt, "name": name, "source": {"bytes": data}}}


def _assistant(message: JSON, param: str, tools_on: bool) -> list[JSON]:
    blocks: list[JSON] = []
    content = message.get("content")
    if isinstance(content, list):  # assistant parts: text (and refusal) only
        content = "".join(p.get("text") or p.get("refusal") or "" for p in content if isinstance(p, dict))
    if content is not None and not isinstance(content, str):
        _bad(f"{param}.content", "must be a string, a list of text parts, or null.")
    if content:
        blocks.append({"text": content})
    calls = message.get("tool_calls")
    if calls is not None and not isinstance(calls, list):
        _bad(f"{param}.tool_calls", "must be a list.")
    for k, call in enumerate(calls or []):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            _bad(f"{param}.tool_calls[{k}].function", "must be an object with a name.")
        arguments = function.get("arguments")
        if tools_on:
            blocks.append({"toolUse": {"toolUseId": tool_use_id(call.get("id")), "name": function["name"],
                                       "input": _arguments(arguments)}})
        else:
            args = arguments if isinstance(arguments, str) else json.dumps(arguments)
            blocks.append({"text": f"[tool call {call.get('id')}: {function['name']}({args})]"})
    return blocks


def _arguments(arguments: Any) -> Any:
    if isinstance(arguments, dict):
        return arguments
    if isinstance(arguments, str) and arguments.strip():
        try:
            parsed = json.loads(arguments)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def _tool_result(message: JSON, param: str, tools_on: bool) -> JSON:
    content = message.get("content")
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        _bad(f"{param}.tool_call_id", "is required.")
    parts: list[JSON] = ([{"json": content}] if isinstance(content, dict)
                         else [{"text": t} for t in _texts(content, f"{param}.content") if t])
    if not tools_on:
        text = " ".join(p["text"] if "text" in p else json.dumps(p["json"]) for p in parts)
        return {"text": f"[tool result {call_id}: {text}]"}
    # Converse refuses blank text blocks: an empty result says so in words.
    return {"toolResult": {"toolUseId": tool_use_id(call_id), "content": parts or [{"text": "(empty)"}]}}
