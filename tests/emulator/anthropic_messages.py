"""Deterministic Anthropic Messages answers (non-streamed bodies and stream events), and request validation.

What the "model" answers (the OpenAI format's semantics, see ``openai_chat.py``)
------------------------------------------------------------------------------
* The user text is the text of the last user message that has text (a turn of only ``tool_result`` blocks
  is what OpenAI calls tool messages, so it is skipped), fault directives removed.
* Text: ``"Echo: " + user text`` (``Fault.content`` replaces it; with ``output_config.format`` json_schema
  it is ``{"echo": "<user text>"}``). ``stop_sequences`` cut it at the earliest one (stop_reason
  ``stop_sequence``, ``stop_sequence`` set), then ``max_tokens`` keeps that many words (``max_tokens``).
* Tools: with ``tools`` and ``tool_choice`` not ``none``, and unless the last message carries
  ``tool_result`` blocks and no text (so tool loops end), the answer is a ``tool_use`` of the named tool
  (``tool``), of the first tool (``auto`` / absent), or - the one addition to the OpenAI semantics, for
  parallel calls - of every tool in order with ``any`` (only the first with ``disable_parallel_tool_use``).
  Each input is an object with the user text as the value of every schema property; stop_reason
  ``tool_use``.
* ``thinking`` enabled: a first thinking block ``"Thinking about: <user text>"`` with a signature.

Token accounting (one token = one whitespace-separated word)
------------------------------------------------------------
* ``input_tokens = 3 + (words(system) + 3 if system) + sum(words(message text) + 3 for each message)``;
  a message's text is its text blocks and the text of its tool_result blocks (images count 0). The same
  number answers ``/v1/messages/count_tokens``.
* ``output_tokens`` = words of the thinking, the text, and of each tool input's JSON (at least 1 each).
* Cache counts are 0. ``Fault.usage`` replaces the usage object verbatim (stream: in message_start and
  message_delta), ``Fault.omit_usage`` removes it.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .faults import Fault, strip_directives
from .textgen import arguments_for, count_words, truncate_words, word_pieces

FIELDS = frozenset({
    "model", "messages", "max_tokens", "system", "stop_sequences", "stream", "temperature", "top_p", "top_k",
    "tools", "tool_choice", "metadata", "thinking", "output_config", "service_tier", "container",
    "mcp_servers", "context_management", "inference_geo", "speed", "cache_control",
})
COUNT_FIELDS = frozenset({"model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers",
                          "output_config", "context_management", "cache_control"})
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_USER_BLOCKS = frozenset({"text", "image", "document", "tool_result", "search_result"})
_ASSISTANT_BLOCKS = frozenset({"text", "tool_use", "thinking", "redacted_thinking"})
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


@dataclass(frozen=True)
class Block:
    kind: str  # thinking | text | tool_use
    text: str = ""  # thinking / text, or the tool input as JSON
    name: str = ""
    id: str = ""


@dataclass(frozen=True)
class MessagePlan:
    message_id: str
    model: str
    blocks: tuple[Block, ...]
    stop_reason: str
    stop_sequence: str | None
    usage: dict[str, Any] | None
    verbatim_usage: bool = False  # Fault.usage: sent as is, in message_start and message_delta alike


# ------------------------------------------------------------------ validation
def _int(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _blocks(content: Any) -> list[Any]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def _check_block(block: Any, role: str, where: str) -> str | None:
    kind = block.get("type") if isinstance(block, dict) else None
    if kind not in (_USER_BLOCKS if role == "user" else _ASSISTANT_BLOCKS):
        return f"{where}.type: Input tag '{kind}' found using 'type' does not match any of the expected tags"
    if kind == "text" and (not isinstance(block.get("text"), str) or not block["text"]):
        return f"{where}: text content blocks must be non-empty"
    if kind == "image":
        source = block.get("source") if isinstance(block.get("source"), dict) else {}
        if source.get("type") == "base64" and source.get("media_type") not in _IMAGE_TYPES:
            return f"{where}.source.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"
        if source.get("type") not in ("base64", "url") or not (source.get("data") or source.get("url")):
            return f"{where}.source: an image needs a base64 (media_type, data) or url source"
    if kind == "tool_use" and not (isinstance(block.get("id"), str) and isinstance(block.get("name"), str)
                                   and isinstance(block.get("input"), dict)):
        return f"{where}: tool_use blocks need an id, a name and an input object"
    if kind == "tool_result" and not isinstance(block.get("tool_use_id"), str):
        return f"{where}.tool_use_id: Field required"
    return None


def _check_messages(messages: Any) -> str | None:
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    previous_uses: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role == "system":
            return ('messages: Unexpected role "system". The Messages API accepts a top-level `system` parameter, '
                    'not "system" as an input message role.')
        if role not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        content = message.get("content")
        if not isinstance(content, str | list) or not content and i < len(messages) - 1:
            return f"messages.{i}: all messages must have non-empty content"
        blocks = _blocks(content)
        for j, block in enumerate(blocks):
            problem = _check_block(block, role, f"messages.{i}.content.{j}")
            if problem:
                return problem
        results = {b["tool_use_id"] for b in blocks if b["type"] == "tool_result"}
        if results - previous_uses:
            return (f"messages.{i}.content: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{sorted(results - previous_uses)[0]}. Each `tool_result` block must have a corresponding "
                    "`tool_use` block in the previous message.")
        if previous_uses - results:
            return (f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                    f"{sorted(previous_uses - results)[0]}. Each `tool_use` block must have a corresponding "
                    "`tool_result` block in the next message.")
        previous_uses = {b["id"] for b in blocks if b["type"] == "tool_use"}
    last = messages[-1]
    if last["role"] == "assistant" and isinstance(last["content"], str) and last["content"] != \
            last["content"].rstrip():
        return "messages: final assistant content cannot end with trailing whitespace"
    return None


def _check_tools(body: dict[str, Any]) -> str | None:
    tools = body.get("tools") or []
    if not isinstance(tools, list):
        return "tools: Input should be a valid list"
    names = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type", "custom") != "custom":
            continue  # server tools: accepted, never used
        if not isinstance(tool.get("name"), str) or not _TOOL_NAME.match(tool["name"]):
            return f"tools.{i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'"
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            return f"tools.{i}.custom.input_schema.type: Input should be 'object'"
        names.append(tool["name"])
    if len(set(names)) != len(names):
        return "tools: Tool names must be unique."
    choice = body.get("tool_choice")
    if choice is not None:
        if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
            return "tool_choice: Input tag does not match any of the expected tags: 'auto', 'any', 'tool', 'none'"
        if choice["type"] == "tool" and choice.get("name") not in names:
            return f"tool_choice: Tool '{choice.get('name')}' not found in tools"
    return None


def _check_thinking(body: dict[str, Any]) -> str | None:
    thinking = body.get("thinking")
    if thinking is None or isinstance(thinking, dict) and thinking.get("type") in ("disabled", "adaptive"):
        return None
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        return "thinking.type: Input should be 'enabled', 'disabled' or 'adaptive'"
    budget = thinking.get("budget_tokens")
    if not _int(budget, 1024):
        return "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
    if _int(body.get("max_tokens"), 1) and budget >= body["max_tokens"]:
        return "`max_tokens` must be greater than `thinking.budget_tokens`."
    if body.get("temperature") not in (None, 1):
        return "`temperature` may only be set to 1 when thinking is enabled."
    if body.get("top_k") is not None:
        return "`top_k` must be unset when thinking is enabled."
    if isinstance(body.get("tool_choice"), dict) and body["tool_choice"].get("type") in ("any", "tool"):
        return "Thinking may not be enabled when tool_choice forces tool use."
    return None


def validate(body: Any, count_only: bool = False) -> str | None:
    """An error message (Anthropic's wording where known) if ``body`` is not an acceptable request."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    extra = sorted(set(body) - (COUNT_FIELDS if count_only else FIELDS))
    if extra:
        return f"{extra[0]}: Extra inputs are not permitted"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required"
    if not count_only and not _int(body.get("max_tokens"), 1):
        return "max_tokens: Field required (an integer >= 1)"
    for key, high in (("temperature", 1), ("top_p", 1)):
        value = body.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or not 0 <= value <= high):
            return f"{key}: Input should be a number between 0 and {high}"
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops)):
        return "stop_sequences: Input should be a list of non-empty strings"
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        return "system: Input should be a string or a list of text blocks"
    return _check_messages(body.get("messages")) or _check_tools(body) or _check_thinking(body)


# -------------------------------------------------------------------- planning
def block_text(content: Any) -> str:
    """The text of a content (string, or text blocks and tool_result texts), words joined by a space."""
    if isinstance(content, str):
        return content
    texts = []
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif block.get("type") == "tool_result":
            texts.append(block_text(block.get("content")))
    return " ".join(t for t in texts if t)


def _has_text(content: Any) -> bool:
    return isinstance(content, str) or any(isinstance(b, dict) and b.get("type") == "text" for b in content or [])


def _has_tool_result(content: Any) -> bool:
    return isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)


def user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user" and _has_text(message.get("content")):
            texts = [b["text"] for b in _blocks(message["content"]) if b.get("type") == "text"]
            return strip_directives(" ".join(texts)).strip()
    return ""


def input_tokens(body: dict[str, Any]) -> int:
    system = body.get("system")
    total = 3 + (count_words(block_text(system)) + 3 if system else 0)
    return total + sum(count_words(block_text(m.get("content"))) + 3 for m in body["messages"])


def _pick_tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type", "custom") == "custom"]
    choice = body.get("tool_choice") if isinstance(body.get("tool_choice"), dict) else {"type": "auto"}
    last = body["messages"][-1].get("content")
    if not tools or choice["type"] == "none" or _has_tool_result(last) and not _has_text(last):
        return []
    if choice["type"] == "tool":
        return [t for t in tools if t["name"] == choice["name"]]
    if choice["type"] == "any" and not choice.get("disable_parallel_tool_use"):
        return tools
    return tools[:1]


def _text_answer(body: dict[str, Any], fault: Fault, text_in: str) -> tuple[str, str, str | None]:
    """(text, stop_reason, stop_sequence)."""
    if fault.content is not None:
        text = fault.content
    elif isinstance(body.get("output_config"), dict) and body["output_config"].get("format"):
        text = json.dumps({"echo": text_in})
    else:
        text = "Echo: " + text_in
    cuts = [(i, s) for s in body.get("stop_sequences") or [] if (i := text.find(s)) >= 0]
    if cuts:
        index, sequence = min(cuts)
        return text[:index], "stop_sequence", sequence
    text, truncated = truncate_words(text, body["max_tokens"])
    return text, "max_tokens" if truncated else "end_turn", None


def plan_message(body: dict[str, Any], fault: Fault) -> MessagePlan:
    text_in = user_text(body["messages"])
    blocks: list[Block] = []
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        blocks.append(Block("thinking", "Thinking about: " + text_in))
    tools = _pick_tools(body)
    stop_sequence = None
    if tools:
        stop_reason = "tool_use"
        for tool in tools:
            arguments = arguments_for(tool.get("input_schema"), text_in)
            blocks.append(Block("tool_use", arguments, tool["name"], f"toolu_{uuid.uuid4().hex[:24]}"))
    else:
        text, stop_reason, stop_sequence = _text_answer(body, fault, text_in)
        blocks.append(Block("text", text))
    output = sum(max(1, count_words(b.text)) if b.kind == "tool_use" else count_words(b.text) for b in blocks)
    usage = None if fault.omit_usage else fault.usage or {
        "input_tokens": input_tokens(body), "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
        "output_tokens": output}
    return MessagePlan(f"msg_emu{uuid.uuid4().hex[:20]}", body["model"], tuple(blocks), stop_reason,
                       stop_sequence, usage, fault.usage is not None)


# ------------------------------------------------------------------- rendering
def _signature(text: str) -> str:
    return "EmuSig" + uuid.uuid5(uuid.NAMESPACE_OID, text).hex


def _content_block(block: Block) -> dict[str, Any]:
    if block.kind == "thinking":
        return {"type": "thinking", "thinking": block.text, "signature": _signature(block.text)}
    if block.kind == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": json.loads(block.text)}
    return {"type": "text", "text": block.text}


def message_body(plan: MessagePlan) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": plan.message_id, "type": "message", "role": "assistant", "model": plan.model,
        "content": [_content_block(b) for b in plan.blocks],
        "stop_reason": plan.stop_reason, "stop_sequence": plan.stop_sequence,
    }
    if plan.usage is not None:
        body["usage"] = plan.usage
    return body


def _block_events(index: int, block: Block) -> Iterator[tuple[str, dict[str, Any]]]:
    if block.kind == "tool_use":
        start: dict[str, Any] = {"type": "tool_use", "id": block.id, "name": block.name, "input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in ["", *word_pieces(block.text)]]
    elif block.kind == "thinking":
        start = {"type": "thinking", "thinking": ""}
        deltas = [{"type": "thinking_delta", "thinking": p} for p in word_pieces(block.text)]
        deltas.append({"type": "signature_delta", "signature": _signature(block.text)})
    else:
        start = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": p} for p in word_pieces(block.text)]
    yield "content_block_start", {"type": "content_block_start", "index": index, "content_block": start}
    if index == 0:
        yield "ping", {"type": "ping"}  # where the real API sends its first keep-alive
    for delta in deltas:
        yield "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
    yield "content_block_stop", {"type": "content_block_stop", "index": index}


def stream_events(plan: MessagePlan) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event name, data) of a streamed answer, message_start to message_stop."""
    start = message_body(plan)
    start.update(content=[], stop_reason=None, stop_sequence=None)
    if plan.usage is not None and not plan.verbatim_usage:
        start["usage"] = dict(plan.usage, output_tokens=1)  # as the real API: the final count comes at the end
    yield "message_start", {"type": "message_start", "message": start}
    for index, block in enumerate(plan.blocks):
        yield from _block_events(index, block)
    delta: dict[str, Any] = {"type": "message_delta",
                             "delta": {"stop_reason": plan.stop_reason, "stop_sequence": plan.stop_sequence}}
    if plan.usage is not None:
        delta["usage"] = plan.usage if plan.verbatim_usage else {"output_tokens": plan.usage["output_tokens"]}
    yield "message_delta", delta
    yield "message_stop", {"type": "message_stop"}
