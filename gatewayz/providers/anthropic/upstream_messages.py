"""OpenAI chat messages -> Anthropic Messages `system` blocks and user/assistant turns.

- system and developer messages, wherever they stand, become the top-level `system` text blocks, in order
  (Anthropic has no system turn inside the conversation).
- user content: text parts, image_url parts (a `data:` URL becomes a base64 source, an http(s) URL a url
  source) and PDF `file` parts with inline `file_data` (a base64 document). Audio and uploaded-file ids
  cannot be sent to Anthropic: 400.
- assistant: text (and refusal) parts become text blocks; `tool_calls` become tool_use blocks whose input is
  the parsed JSON arguments (unparsable or non-object arguments: 400).
- tool messages become tool_result blocks of a user turn, consecutive ones grouped in that turn.
- consecutive turns of the same role are merged into one (Anthropic alternates user and assistant).
- empty text is left out (Anthropic refuses empty text blocks); a turn left without blocks is dropped; the
  final assistant turn (a prefill) loses its trailing whitespace, which Anthropic refuses.
- tool call ids keep only the characters Anthropic accepts ([A-Za-z0-9_-], others become "_"), the same way
  in the tool_use block and its tool_result, so pairs still match.
- `cache_control` on a text part is kept on its block (prompt caching through an OpenAI client).
"""

from __future__ import annotations

import json
import re
from typing import Any, NoReturn

from gatewayz.errors import InvalidRequest

JSON = dict[str, Any]

_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def _fail(param: str, problem: str) -> NoReturn:
    raise InvalidRequest(f"`{param}` {problem}", param=param, code="unsupported_for_anthropic")


def tool_id(value: Any, param: str) -> str:
    if not isinstance(value, str) or not value:
        _fail(param, "must be a non-empty string.")
    return _ID_UNSAFE.sub("_", value)


def convert_messages(messages: list[Any]) -> tuple[list[JSON], list[JSON]]:
    """-> (system text blocks, Anthropic turns). Raises InvalidRequest for what Anthropic cannot take."""
    system: list[JSON] = []
    turns: list[JSON] = []
    for i, message in enumerate(messages):
        param = f"messages[{i}]"
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            system.extend(_text_blocks(content, f"{param}.content"))
            continue
        if role == "user":
            blocks = _user_blocks(content, f"{param}.content")
        elif role == "assistant":
            blocks = _assistant_blocks(message, param)
        elif role == "tool":
            role, blocks = "user", [_tool_result(message, param)]
        else:
            _fail(f"{param}.role", f"{role!r} cannot be sent to Anthropic (use system, user, assistant or tool).")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if turns and turns[-1]["role"] == "assistant":
        _trim_prefill(turns)
    if not turns:
        _fail("messages", "must hold at least one user or assistant message with content for Anthropic.")
    return system, turns


def _trim_prefill(turns: list[JSON]) -> None:
    blocks = turns[-1]["content"]
    if blocks[-1]["type"] == "text":
        blocks[-1]["text"] = blocks[-1]["text"].rstrip()
        if not blocks[-1]["text"]:
            blocks.pop()
            if not blocks:
                turns.pop()


def _text_block(text: str, part: JSON | None = None) -> JSON:
    block: JSON = {"type": "text", "text": text}
    cache = part.get("cache_control") if part else None
    if isinstance(cache, dict):
        block["cache_control"] = cache
    return block


def _text_blocks(content: Any, param: str) -> list[JSON]:
    """Text-only content (system, developer, assistant): a string or text / refusal parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [_text_block(content)] if content else []
    if not isinstance(content, list):
        _fail(param, "must be a string or a list of text parts.")
    blocks = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        key = "refusal" if kind == "refusal" else "text"
        if kind not in ("text", "refusal") or not isinstance(part.get(key), str):
            _fail(f"{param}[{j}]", "must be a text part here.")
        if part[key]:
            blocks.append(_text_block(part[key], part))
    return blocks


def _user_blocks(content: Any, param: str) -> list[JSON]:
    if content is None or isinstance(content, str):
        return _text_blocks(content, param)
    if not isinstance(content, list):
        _fail(param, "must be a string or a list of content parts.")
    blocks = []
    for j, part in enumerate(content):
        pp = f"{param}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if not isinstance(part.get("text"), str):
                _fail(f"{pp}.text", "must be a string.")
            if part["text"]:
                blocks.append(_text_block(part["text"], part))
        elif kind == "image_url":
            blocks.append(_image(part.get("image_url"), f"{pp}.image_url"))
        elif kind == "file":
            blocks.append(_document(part.get("file"), f"{pp}.file"))
        else:
            _fail(f"{pp}.type", f"{kind!r} content cannot be sent to Anthropic (text, image_url and PDF files can).")
    return blocks


def _image(image: Any, param: str) -> JSON:
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        _fail(f"{param}.url", "must be a non-empty string.")
    if url.startswith("data:"):
        media_type, data = _data_url(url, f"{param}.url")
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    _fail(f"{param}.url", "must be an http(s) URL or a base64 data: URL.")


def _data_url(url: str, param: str) -> tuple[str, str]:
    header, sep, data = url[5:].partition(",")
    media_type, _, encoding = header.partition(";")
    if not sep or encoding != "base64" or not media_type or not data:
        _fail(param, "must be a base64 data URL (data:<media type>;base64,<data>).")
    return media_type, data


def _document(file: Any, param: str) -> JSON:
    data_url = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(data_url, str) or not data_url.startswith("data:"):
        _fail(f"{param}.file_data", "is required for Anthropic: the file inline as a base64 data URL (file ids "
                                    "cannot be sent).")
    media_type, data = _data_url(data_url, f"{param}.file_data")
    if media_type != "application/pdf":
        _fail(f"{param}.file_data", f"has media type {media_type!r}; Anthropic takes PDF documents.")
    block: JSON = {"type": "document", "source": {"type": "base64", "media_type": media_type, "data": data}}
    filename = file.get("filename")
    if isinstance(filename, str) and filename:
        block["title"] = filename
    return block


def _assistant_blocks(message: JSON, param: str) -> list[JSON]:
    blocks = _text_blocks(message.get("content"), f"{param}.content")
    calls = message.get("tool_calls")
    if calls is None:
        return blocks
    if not isinstance(calls, list):
        _fail(f"{param}.tool_calls", "must be a list.")
    for k, call in enumerate(calls):
        cp = f"{param}.tool_calls[{k}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            _fail(f"{cp}.function", "must be an object with a name.")
        blocks.append({"type": "tool_use", "id": tool_id(call.get("id"), f"{cp}.id"), "name": function["name"],
                       "input": _arguments(function.get("arguments"), f"{cp}.function.arguments")})
    return blocks


def _arguments(arguments: Any, param: str) -> JSON:
    if isinstance(arguments, dict):
        return arguments
    if arguments is None or isinstance(arguments, str) and not arguments.strip():
        return {}
    if not isinstance(arguments, str):
        _fail(param, "must be a JSON string.")
    try:
        parsed = json.loads(arguments)
    except ValueError:
        _fail(param, "is not valid JSON; Anthropic needs the tool input as a JSON object.")
    if not isinstance(parsed, dict):
        _fail(param, "must encode a JSON object for Anthropic.")
    return parsed


def _tool_result(message: JSON, param: str) -> JSON:
    block: JSON = {"type": "tool_result", "tool_use_id": tool_id(message.get("tool_call_id"), f"{param}.tool_call_id")}
    text = "".join(b["text"] for b in _text_blocks(message.get("content"), f"{param}.content"))
    if text:
        block["content"] = text
    return block
