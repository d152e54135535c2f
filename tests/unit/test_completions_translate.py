"""Units: legacy completions <-> OpenAI chat completions translation (golden JSON), checked against the SDK's types."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest
from openai.types import Completion
from openai.types.chat import CompletionCreateParams

from gatewayz.errors import InvalidRequest
from gatewayz.providers.completions.translate import (
    CompletionChunks,
    Legacy,
    chat_to_completion,
    completions_to_chat,
)

CHAT_REQUEST = pydantic.TypeAdapter(CompletionCreateParams)


def test_golden_request() -> None:
    chat, legacy = completions_to_chat({
        "model": "test/echo", "prompt": ["Once upon"], "temperature": 0.2, "top_p": 0.5, "n": 2, "stop": ["\n"],
        "presence_penalty": 0.1, "frequency_penalty": 0.2, "logit_bias": {"50256": -100}, "seed": 7, "user": "u",
        "stream": True, "stream_options": {"include_usage": True}, "logprobs": 3, "echo": False, "suffix": None,
        "best_of": 1, "models": ["test/pricey"]})
    CHAT_REQUEST.validate_python(chat)
    assert chat == {"model": "test/echo", "messages": [{"role": "user", "content": "Once upon"}], "max_tokens": 16,
                    "temperature": 0.2, "top_p": 0.5, "n": 2, "stop": ["\n"], "presence_penalty": 0.1,
                    "frequency_penalty": 0.2, "logit_bias": {"50256": -100}, "seed": 7, "user": "u", "stream": True,
                    "stream_options": {"include_usage": True}, "models": ["test/pricey"], "logprobs": True,
                    "top_logprobs": 3}
    assert legacy == Legacy(prompt="Once upon", echo=False, logprobs=True)
    chat, legacy = completions_to_chat({"model": "m", "prompt": "x", "max_tokens": 5, "echo": True})
    assert chat == {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 5}
    assert legacy.echo and not legacy.logprobs


@pytest.mark.parametrize(("patch", "param"), [
    ({"prompt": ["a", "b"]}, "prompt"),
    ({"prompt": [1, 2, 3]}, "prompt"),
    ({"prompt": [[1, 2]]}, "prompt"),
    ({"prompt": None}, "prompt"),
    ({"suffix": "end"}, "suffix"),
    ({"best_of": 3}, "best_of"),
    ({"logprobs": 6}, "logprobs"),
    ({"logprobs": True}, "logprobs"),
    ({"logprobs": 1, "echo": True}, "logprobs"),
    ({"echo": "yes"}, "echo"),
    ({"model": None}, "model"),
])
def test_refused_with_a_clear_400(patch: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        completions_to_chat({"model": "m", "prompt": "hi", **patch})
    assert err.value.status == 400 and err.value.param == param


LOGPROBS = {"content": [
    {"token": "Echo:", "logprob": -0.5, "bytes": [69], "top_logprobs": [{"token": "Echo:", "logprob": -0.5},
                                                                        {"token": "Hi", "logprob": -1.5}]},
    {"token": " hi", "logprob": -0.25, "bytes": [32], "top_logprobs": [{"token": " hi", "logprob": -0.25}]}]}


def test_golden_response_with_echo_and_logprobs() -> None:
    chat = {"id": "chatcmpl-abc", "object": "chat.completion", "created": 1700000000, "model": "up",
            "system_fingerprint": "fp", "choices": [
                {"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": "Echo: hi"},
                 "logprobs": LOGPROBS},
                {"index": 1, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": None}}]}
    done = chat_to_completion(chat, "test/echo", Legacy("Say", echo=False, logprobs=True))
    Completion.model_validate({**done, "usage": None})
    assert done == {"id": "cmpl-abc", "object": "text_completion", "created": 1700000000, "model": "test/echo",
                    "system_fingerprint": "fp", "choices": [
                        {"text": "Echo: hi", "index": 0, "finish_reason": "length", "logprobs": {
                            "tokens": ["Echo:", " hi"], "token_logprobs": [-0.5, -0.25],
                            "top_logprobs": [{"Echo:": -0.5, "Hi": -1.5}, {" hi": -0.25}], "text_offset": [0, 5]}},
                        {"text": "", "index": 1, "finish_reason": "stop",
                         "logprobs": {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}}]}
    echoed = chat_to_completion(chat, "test/echo", Legacy("Say ", echo=True, logprobs=False))
    assert [c["text"] for c in echoed["choices"]] == ["Say Echo: hi", "Say "]
    assert echoed["choices"][0]["logprobs"] is None


def _chunk(index: int, delta: dict[str, Any], finish: str | None = None, logprobs: Any = None) -> dict[str, Any]:
    return {"id": "chatcmpl-z", "created": 5, "object": "chat.completion.chunk",
            "choices": [{"index": index, "delta": delta, "finish_reason": finish, "logprobs": logprobs}]}


def test_stream_chunks_echo_each_choice_once() -> None:
    conv = CompletionChunks("test/echo", Legacy("Q: ", echo=True, logprobs=False))
    upstream = [_chunk(0, {"role": "assistant", "content": ""}), _chunk(0, {"content": "A"}), _chunk(0, {}, "stop"),
                _chunk(1, {"content": "B"}), _chunk(1, {"content": ""}), _chunk(1, {}, "length")]
    out = [conv.convert(c) for c in upstream]
    assert out[4] is None  # nothing to say
    sent = [c for c in out if c is not None]
    for c in sent:  # OpenAI streams finish_reason null until a choice ends; the SDK's type has no null
        Completion.model_validate({**c, "choices": [{**ch, "finish_reason": ch["finish_reason"] or "stop"}
                                                    for ch in c["choices"]]})
        assert c["id"] == "cmpl-z" and c["object"] == "text_completion" and c["model"] == "test/echo"
    assert [(c["choices"][0]["index"], c["choices"][0]["text"], c["choices"][0]["finish_reason"]) for c in sent] == [
        (0, "Q: ", None), (0, "A", None), (0, "", "stop"), (1, "Q: B", None), (1, "", "length")]
    assert conv.head() == {"id": "cmpl-z", "object": "text_completion", "created": 5, "model": "test/echo"}


def test_stream_chunks_carry_legacy_logprobs_with_running_offsets() -> None:
    conv = CompletionChunks("m", Legacy("p", echo=False, logprobs=True))
    first = conv.convert(_chunk(0, {"content": "Echo:"}, logprobs={"content": LOGPROBS["content"][:1]}))
    second = conv.convert(_chunk(0, {"content": " hi"}, logprobs={"content": LOGPROBS["content"][1:]}))
    assert first is not None and second is not None
    assert first["choices"][0]["logprobs"]["text_offset"] == [0]
    assert second["choices"][0]["logprobs"] == {"tokens": [" hi"], "token_logprobs": [-0.25],
                                                "top_logprobs": [{" hi": -0.25}], "text_offset": [5]}
