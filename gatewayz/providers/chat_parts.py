"""Reading parts of OpenAI chat answers (messages, deltas, choices) whose shape varies between upstreams."""

from __future__ import annotations

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
