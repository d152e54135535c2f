"""OpenAI chat messages -> Cohere v2 Chat messages (roles system / user / assistant / tool).

- system and developer messages become `system` messages where they stand (Cohere takes system turns in the
  list; its docs recommend the first place, which is where clients put them).
- user content: a string stays a string; parts become Cohere parts: text, and image_url (url and detail kept;
  http(s) and base64 data: URLs alike, for the vision models). Audio and files cannot be sent: 400.
- assistant: the text (text and refusal parts joined) is the `content`; with `tool_calls` it is the
  `tool_plan` instead (the reflection Cohere writes before calling tools, which the response translation
  turns into text: see response.py), and the calls keep their ids, names and argument strings. An assistant
  message left with neither text nor calls is dropped.
- tool: role tool, `tool_call_id`, the result text as content.
"""

from __future__ import annotations

from typing import Any, NoReturn

import orjson

from gatewayz.errors import InvalidRequest

JSON = dict[str, Any]


def fail(param: str, problem: str, code: str = "unsupported_for_cohere") -> NoReturn:
    raise InvalidRequest(f"`{param}` {problem}", param=param, code=code)


def convert_messages(messages: list[Any]) -> list[JSON]:
    out: list[JSON] = []
    for i, message in enumerate(messages):
        param = f"messages[{i}]"
        role = message.get("role") if isinstance(message, dict) else None
        if role in ("system", "developer"):
            out.append({"role": "system", "content": _system_content(message.get("content"), f"{param}.content")})
        elif role == "user":
            out.append({"role": "user", "content": _user_content(message.get("content"), f"{param}.content")})
        elif role == "assistant":
            turn = _assistant(message, param)
            if turn is not None:
                out.append(turn)
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                fail(f"{param}.tool_call_id", "must be a non-empty string.", "invalid_value")
            out.append({"role": "tool", "tool_call_id": call_id,
                        "content": joined_text(message.get("content"), f"{param}.content")})
        else:
            fail(f"{param}.role", f"{role!r} cannot be sent to Cohere (use system, user, assistant or tool).")
    if not out:
        fail("messages", "must hold at least one message for Cohere.", "invalid_value")
    return out


def joined_text(content: Any, param: str) -> str:
    """Text-only content (a string, or text / refusal parts) as one string."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        fail(param, "must be a string or a list of text parts.", "invalid_value")
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        key = "refusal" if kind == "refusal" else "text"
        if kind not in ("text", "refusal") or not isinstance(part.get(key), str):
            fail(f"{param}[{j}]", "must be a text part here.")
        texts.append(part[key])
    return "".join(texts)


def _system_content(content: Any, param: str) -> str | list[JSON]:
    if isinstance(content, list):
        joined_text(content, param)  # validates: text parts only
        return [{"type": "text", "text": p.get("text") or p.get("refusal") or ""} for p in content]
    return joined_text(content, param)


def _user_content(content: Any, param: str) -> str | list[JSON]:
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        fail(param, "must be a string or a list of content parts.", "invalid_value")
    parts: list[JSON] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            parts.append(_image(part.get("image_url"), f"{param}[{j}].image_url"))
        else:
            fail(f"{param}[{j}].type", f"{kind!r} content cannot be sent to Cohere (text and image_url can).")
    return parts


def _image(image: Any, param: str) -> JSON:
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url.startswith(("https://", "http://", "data:")):
        fail(f"{param}.url", "must be an http(s) URL or a base64 data: URL.", "invalid_value")
    out: JSON = {"url": url}
    detail = image.get("detail") if isinstance(image, dict) else None
    if detail in ("auto", "low", "high"):
        out["detail"] = detail
    return {"type": "image_url", "image_url": out}


def _assistant(message: JSON, param: str) -> JSON | None:
    text = joined_text(message.get("content"), f"{param}.content")
    calls = message.get("tool_calls")
    if not calls:
        return {"role": "assistant", "content": text} if text else None
    if not isinstance(calls, list):
        fail(f"{param}.tool_calls", "must be a list.", "invalid_value")
    turn: JSON = {"role": "assistant", "tool_calls": [_call(c, f"{param}.tool_calls[{k}]") for k, c in
                                                      enumerate(calls)]}
    if text:
        turn["tool_plan"] = text
    return turn


def _call(call: Any, param: str) -> JSON:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
        fail(f"{param}.function", "must be an object with a name.", "invalid_value")
    call_id = call.get("id")
    if not isinstance(call_id, str) or not call_id:
        fail(f"{param}.id", "must be a non-empty string.", "invalid_value")
    arguments = function.get("arguments")
    if isinstance(arguments, dict):
        arguments = orjson.dumps(arguments).decode()
    elif arguments is None or isinstance(arguments, str) and not arguments.strip():
        arguments = "{}"
    elif not isinstance(arguments, str):
        fail(f"{param}.function.arguments", "must be a JSON string.", "invalid_value")
    return {"id": call_id, "type": "function", "function": {"name": function["name"], "arguments": arguments}}
