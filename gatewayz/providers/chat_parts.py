"""Reading parts of OpenAI chat answers (messages, deltas, choices) whose shape varies between upstreams."""

from __future__ import annotations

import time
from typing import Any


def content_text(content: Any) -> str:
    """A message's or delta's content: a string, or (some upstreams) a list of text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def logprob_entries(choice: dict[str, Any]) -> list[dict[str, Any]]:
    """A choice's per-token logprobs entries ({token, logprob, bytes, top_logprobs}); [] when there are none."""
    logprobs = choice.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    return [e for e in content if isinstance(e, dict)] if isinstance(content, list) else []


def single_choice_completion(completion_id: str, model: str, text: str, thoughts: list[str],
                             calls: list[dict[str, Any]], finish_reason: str) -> dict[str, Any]:
    """An OpenAI chat.completion with one choice, from what a native answer said: its text (None as the
    content when the answer is only tool calls), its reasoning, its tool calls and why it stopped."""
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None, "refusal": None}
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    if calls:
        message["tool_calls"] = calls
    return {"id": completion_id, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}]}
