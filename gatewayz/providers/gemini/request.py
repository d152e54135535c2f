"""OpenAI chat.completions request -> Gemini generateContent request (the same body for AI Studio and Vertex).

Messages: system / developer -> `systemInstruction` (in order); user -> role "user" with text, inlineData
(data: URLs of images, input_audio, file parts) and fileData (http(s) and gs:// image URLs, mimeType from the
extension, else the `image_mime_type` option, default image/jpeg); assistant -> role "model" with text and one
functionCall part per tool call (its thought signature, given back in the tool call's
extra_content.google.thought_signature, is restored; Gemini 3+ models and -latest aliases get Google's
documented "skip_thought_signature_validator" placeholder on the first call of a turn that has none); tool -> a
functionResponse part of a "user" turn, named after the matching call, the result as the response object when
it is a JSON object, else {"content": text}. Consecutive turns of one role are merged (parallel tool results
become one turn, as Gemini expects). Assistant reasoning_content is not sent back.

Parameters: temperature, top_p (topP), top_k (topK), max_completion_tokens / max_tokens (maxOutputTokens), stop
(stopSequences), n (candidateCount), seed, presence_penalty / frequency_penalty, response_format json_object
(responseMimeType application/json) and json_schema (plus responseSchema), reasoning_effort (thinkingConfig,
see THINKING), tools (functionDeclarations, schema converted by `schema.to_gemini`), tool_choice
(functionCallingConfig: auto AUTO, required ANY, none NONE, a named function ANY + allowedFunctionNames).
Ignored: parallel_tool_calls (Gemini has no switch), logprobs, user, metadata, store, stream_options,
service_tier and any other field.

Errors: a malformed message is InvalidRequest (400, no upstream could take it); an input Gemini cannot take
but another provider might (an OpenAI file_id, a non-function tool, an unknown content part) is
AttemptFailed("unsupported_input"), so the next provider is tried."""

from __future__ import annotations

import json
import mimetypes
import re
from typing import Any, NoReturn
from urllib.parse import urlparse

from gatewayz.errors import InvalidRequest
from gatewayz.providers.engine import AttemptFailed
from gatewayz.providers.gemini.schema import to_gemini

JSON = dict[str, Any]

SKIP_SIGNATURE = "skip_thought_signature_validator"
DEFAULT_IMAGE_MIME = "image/jpeg"
# reasoning_effort -> thinkingConfig. Gemini 2.x takes a token budget (Google's own OpenAI compatibility layer
# uses these budgets); Gemini 3+ takes a level: Flash has minimal..high, Pro only low and high.
THINKING_BUDGET = {"none": 0, "minimal": 1024, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 24576}
THINKING_LEVEL_FLASH = {"none": "minimal", "minimal": "minimal", "low": "low", "medium": "medium", "high": "high",
                        "xhigh": "high"}
THINKING_LEVEL_PRO = {"none": "low", "minimal": "low", "low": "low", "medium": "high", "high": "high",
                      "xhigh": "high"}
_GENERATION = re.compile(r"gemini-(\d+)")
_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?(?:;[\w-]+=[^;,]*)*;base64,(.*)$", re.S)


def _fail(param: str, problem: str) -> NoReturn:
    raise InvalidRequest(f"`{param}` {problem}", param=param, code="invalid_value")


def _unsupported() -> NoReturn:
    raise AttemptFailed("unsupported_input")


def generation(model: str) -> int:
    """The Gemini generation named in a model id (gemini-2.5-flash -> 2), 0 when it names none."""
    m = _GENERATION.search(model)
    return int(m.group(1)) if m else 0


def build_request(body: JSON, model: str, options: dict[str, str]) -> JSON:
    system, contents = _contents(body.get("messages"), model, options)
    out: JSON = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    declarations = _declarations(body.get("tools"))
    if declarations:
        out["tools"] = [{"functionDeclarations": declarations}]
        calling = _calling_config(body.get("tool_choice"))
        if calling:
            out["toolConfig"] = {"functionCallingConfig": calling}
    config = _generation_config(body, model)
    if config:
        out["generationConfig"] = config
    return out


# ----------------------------------------------------------------------------------------------- messages
class _Turns:
    """Gemini contents under construction: consecutive turns of one role are merged."""

    def __init__(self) -> None:
        self.contents: list[JSON] = []

    def add(self, role: str, parts: list[JSON]) -> None:
        if not parts:
            return
        if self.contents and self.contents[-1]["role"] == role:
            self.contents[-1]["parts"].extend(parts)
        else:
            self.contents.append({"role": role, "parts": parts})


def _contents(messages: Any, model: str, options: dict[str, str]) -> tuple[list[JSON], list[JSON]]:
    if not isinstance(messages, list) or not messages:
        _fail("messages", "must be a non-empty array.")
    system: list[JSON] = []
    turns = _Turns()
    call_names: dict[str, str] = {}
    sign = generation(model) >= 3 or model.endswith("-latest")  # -latest aliases follow the newest generation
    for i, m in enumerate(messages):
        param = f"messages[{i}]"
        if not isinstance(m, dict):
            _fail(param, "must be an object.")
        role = m.get("role")
        if role in ("system", "developer"):
            system.extend({"text": t} for t in _texts(m.get("content"), f"{param}.content") if t)
        elif role == "user":
            turns.add("user", _user_parts(m.get("content"), f"{param}.content", options))
        elif role == "assistant":
            turns.add("model", _assistant_parts(m, param, call_names, sign))
        elif role in ("tool", "function"):
            turns.add("user", [_function_response(m, param, call_names)])
        else:
            _fail(f"{param}.role", f"must be system, developer, user, assistant or tool, not {role!r}.")
    contents = turns.contents
    if not contents:
        if not system:
            _fail("messages", "has no content to send.")
        contents, system = [{"role": "user", "parts": system}], []
    return system, contents


def _texts(content: Any, param: str) -> list[str]:
    """The texts of a content that may only hold text (a string, or text / refusal parts)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        _fail(param, "must be a string or an array of content parts.")
    out = []
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            _fail(f"{param}[{j}]", "must be an object.")
        text = part.get("text") if part.get("type") == "text" else part.get("refusal")
        if not isinstance(text, str):
            _fail(f"{param}[{j}]", "must be a text part.")
        out.append(text)
    return out


def _user_parts(content: Any, param: str, options: dict[str, str]) -> list[JSON]:
    if content is None or isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        _fail(param, "must be a string or an array of content parts.")
    parts: list[JSON] = []
    for j, part in enumerate(content):
        pp = f"{param}[{j}]"
        if not isinstance(part, dict):
            _fail(pp, "must be an object.")
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                _fail(f"{pp}.text", "must be a string.")
            if text:
                parts.append({"text": text})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str) or not url:
                _fail(f"{pp}.image_url.url", "must be a URL.")
            parts.append(_media(url, f"{pp}.image_url.url", options.get("image_mime_type") or DEFAULT_IMAGE_MIME))
        elif kind == "input_audio":
            audio = part.get("input_audio")
            data = audio.get("data") if isinstance(audio, dict) else None
            fmt = audio.get("format") if isinstance(audio, dict) else None
            if not isinstance(data, str) or not isinstance(fmt, str):
                _fail(f"{pp}.input_audio", "must have `data` (base64) and `format`.")
            parts.append({"inlineData": {"mimeType": f"audio/{fmt}", "data": data}})
        elif kind == "file":
            file = part.get("file")
            data = file.get("file_data") if isinstance(file, dict) else None
            if not isinstance(data, str):
                _unsupported()  # an uploaded OpenAI file (file_id) is only readable by OpenAI
            parts.append(_media(data, f"{pp}.file.file_data", "application/pdf"))
        else:
            _unsupported()
    return parts


def _media(url: str, param: str, default_mime: str) -> JSON:
    if url.startswith("data:"):
        m = _DATA_URL.match(url)
        if m is None:
            _fail(param, "must be a base64 data URL (data:<type>;base64,<data>).")
        return {"inlineData": {"mimeType": m.group(1) or default_mime, "data": m.group(2)}}
    if not url.startswith(("http://", "https://", "gs://")):
        _fail(param, "must be an http(s) URL or a data URL.")
    guessed, _ = mimetypes.guess_type(urlparse(url).path)
    return {"fileData": {"mimeType": guessed or default_mime, "fileUri": url}}


def _assistant_parts(m: JSON, param: str, call_names: dict[str, str], sign: bool) -> list[JSON]:
    parts: list[JSON] = [{"text": t} for t in _texts(m.get("content"), f"{param}.content") if t]
    calls = m.get("tool_calls")
    if calls is not None and not isinstance(calls, list):
        _fail(f"{param}.tool_calls", "must be an array.")
    calls = list(calls or [])
    legacy = m.get("function_call")
    if isinstance(legacy, dict):
        calls.append({"id": None, "type": "function", "function": legacy})
    signed = False
    for j, call in enumerate(calls):
        cp = f"{param}.tool_calls[{j}]"
        function = call.get("function") if isinstance(call, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or not name:
            _fail(f"{cp}.function.name", "must be a non-empty string.")
        assert isinstance(function, dict)
        part: JSON = {"functionCall": {"name": name, "args": _arguments(function.get("arguments"), cp)}}
        signature = _signature(call)
        if signature:
            part["thoughtSignature"] = signature
            signed = True
        elif sign and not signed:
            part["thoughtSignature"] = SKIP_SIGNATURE
            signed = True
        parts.append(part)
        if isinstance(call.get("id"), str):
            call_names[call["id"]] = name
    return parts


def _signature(call: JSON) -> str | None:
    extra = call.get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    value = google.get("thought_signature") if isinstance(google, dict) else None
    return value if isinstance(value, str) and value else None


def _arguments(arguments: Any, param: str) -> JSON:
    if isinstance(arguments, dict):
        return arguments
    if arguments is None or isinstance(arguments, str) and not arguments.strip():
        return {}
    try:
        parsed = json.loads(arguments) if isinstance(arguments, str) else None
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        _fail(f"{param}.function.arguments", "must be a JSON object.")
    return parsed


def _function_response(m: JSON, param: str, call_names: dict[str, str]) -> JSON:
    if m.get("role") == "function":  # the legacy function-calling message names its function itself
        name = m.get("name")
    else:
        call_id = m.get("tool_call_id")
        if not isinstance(call_id, str):
            _fail(f"{param}.tool_call_id", "must be a string.")
        name = call_names.get(call_id)
        if name is None:
            _fail(f"{param}.tool_call_id", f"{call_id!r} answers no tool call of an earlier assistant message.")
    if not isinstance(name, str) or not name:
        _fail(f"{param}.name", "must name the function.")
    text = "\n".join(_texts(m.get("content"), f"{param}.content"))
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    response = parsed if isinstance(parsed, dict) else {"content": text}
    return {"functionResponse": {"name": name, "response": response}}


# -------------------------------------------------------------------------------------------------- tools
def _declarations(tools: Any) -> list[JSON]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        _fail("tools", "must be an array.")
    out: list[JSON] = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            _fail(f"tools[{i}]", "must be an object.")
        if tool.get("type", "function") != "function":
            _unsupported()
        function = tool.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or not name:
            _fail(f"tools[{i}].function.name", "must be a non-empty string.")
        assert isinstance(function, dict)
        declaration: JSON = {"name": name}
        if isinstance(function.get("description"), str) and function["description"]:
            declaration["description"] = function["description"]
        parameters = to_gemini(function.get("parameters"))
        if parameters.get("properties"):  # a function without parameters leaves them out
            declaration["parameters"] = parameters
        out.append(declaration)
    return out


def _calling_config(choice: Any) -> JSON | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        mode = {"auto": "AUTO", "required": "ANY", "none": "NONE"}.get(choice)
        if mode is None:
            _fail("tool_choice", "must be auto, required, none or a function.")
        return {"mode": mode}
    function = choice.get("function") if isinstance(choice, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str) or not name:
        _fail("tool_choice", "must be auto, required, none or {\"type\": \"function\", \"function\": {\"name\"}}.")
    return {"mode": "ANY", "allowedFunctionNames": [name]}


# --------------------------------------------------------------------------------------- generationConfig
_NUMBERS = (("temperature", "temperature"), ("top_p", "topP"), ("top_k", "topK"), ("seed", "seed"),
            ("presence_penalty", "presencePenalty"), ("frequency_penalty", "frequencyPenalty"))


def _generation_config(body: JSON, model: str) -> JSON:
    config: JSON = {}
    for src, dst in _NUMBERS:
        value = body.get(src)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                _fail(src, "must be a number.")
            config[dst] = value
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if limit is not None:
        config["maxOutputTokens"] = limit
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            _fail("stop", "must be a string or an array of strings.")
        if stop:
            config["stopSequences"] = stop
    n = body.get("n")
    if isinstance(n, int) and n > 1:
        config["candidateCount"] = n
    config.update(_response_format(body.get("response_format")))
    thinking = _thinking(body.get("reasoning_effort"), model)
    if thinking:
        config["thinkingConfig"] = thinking
    return config


def _response_format(fmt: Any) -> JSON:
    if fmt is None:
        return {}
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return {}
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        out: JSON = {"responseMimeType": "application/json"}
        if isinstance(schema, dict):
            out["responseSchema"] = to_gemini(schema)
        return out
    _fail("response_format", "must be {\"type\": \"text\" | \"json_object\" | \"json_schema\"}.")


def _thinking(effort: Any, model: str) -> JSON | None:
    if effort is None:
        return None
    if not isinstance(effort, str) or effort not in THINKING_BUDGET:
        _fail("reasoning_effort", f"must be one of {', '.join(THINKING_BUDGET)}.")
    if generation(model) >= 3:
        levels = THINKING_LEVEL_FLASH if "flash" in model else THINKING_LEVEL_PRO
        level = levels[effort]
        return {"thinkingLevel": level} if effort == "none" else {"thinkingLevel": level, "includeThoughts": True}
    budget = THINKING_BUDGET[effort]
    return {"thinkingBudget": 0} if budget == 0 else {"thinkingBudget": budget, "includeThoughts": True}
