"""OpenAI chat request -> Cohere v2 Chat request body (the native Cohere upstream, outbound half).

Only fields Cohere v2 knows are sent. Mapping and decisions:
- messages: see messages.py.
- max_completion_tokens, else max_tokens -> max_tokens (none: Cohere's model maximum); stop -> stop_sequences;
  temperature, seed, frequency_penalty, presence_penalty as they are; top_p -> p; top_k -> k.
- tools: Cohere v2 takes OpenAI's shape ({type: function, function: {name, description, parameters}}); only
  those three function fields are sent (no parameters: an empty object schema). When every tool is
  `strict`, strict_tools is set (Cohere's switch is per request, not per tool).
- tool_choice: auto -> omitted (Cohere's default), required -> REQUIRED, none -> NONE, a named function ->
  the tools narrowed to that one and REQUIRED (Cohere cannot name a tool). Without tools it is ignored.
  parallel_tool_calls has no Cohere equivalent and is ignored.
- response_format: json_object -> {type: json_object}; json_schema -> {type: json_object, json_schema:
  <schema>} (Cohere wants an object at the root: else 400); text -> omitted.
- reasoning_effort (or OpenRouter-style reasoning.effort / reasoning.max_tokens), for Cohere's reasoning
  models: none / minimal -> thinking disabled; low .. xhigh -> thinking enabled with a token_budget (the same
  budgets as the Anthropic upstream); absent -> Cohere's default (on for reasoning models).
- n > 1: 400 (one choice only). logprobs, logit_bias, user, service_tier and other OpenAI-only fields are
  ignored.
"""

from __future__ import annotations

from typing import Any

from gatewayz.pipeline.parse import requested_output_tokens
from gatewayz.providers.anthropic.upstream_request import THINKING_BUDGETS
from gatewayz.providers.cohere.messages import JSON, convert_messages, fail
from gatewayz.providers.cohere.response import obj

_PASSED = (("temperature", "temperature"), ("top_p", "p"), ("top_k", "k"), ("seed", "seed"),
           ("frequency_penalty", "frequency_penalty"), ("presence_penalty", "presence_penalty"))


def build_body(body: JSON, upstream_model: str, stream: bool) -> JSON:
    n = body.get("n")
    if n is not None and n != 1:
        fail("n", "must be 1: Cohere returns a single choice.")
    out: JSON = {"model": upstream_model, "messages": convert_messages(body["messages"])}
    requested = requested_output_tokens(body)
    if requested:
        out["max_tokens"] = requested
    stops = _stops(body.get("stop"))
    if stops:
        out["stop_sequences"] = stops
    for ours, theirs in _PASSED:
        value = body.get(ours)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            fail(ours, "must be a number.", "invalid_value")
        out[theirs] = value
    _tools(body, out)
    response_format = _response_format(body.get("response_format"))
    if response_format is not None:
        out["response_format"] = response_format
    thinking = _thinking(body)
    if thinking is not None:
        out["thinking"] = thinking
    if stream:
        out["stream"] = True
    return out


def _stops(stop: Any) -> list[str]:
    sequences = [stop] if isinstance(stop, str) else stop if stop is not None else []
    if not isinstance(sequences, list) or not all(isinstance(s, str) for s in sequences):
        fail("stop", "must be a string or a list of strings.", "invalid_value")
    return [s for s in sequences if s]


def _tools(body: JSON, out: JSON) -> None:
    given = body.get("tools")
    if given is None:
        return
    if not isinstance(given, list):
        fail("tools", "must be a list.", "invalid_value")
    tools = [_tool(t, f"tools[{i}]") for i, t in enumerate(given)]
    if not tools:
        return
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        function = choice.get("function") if choice.get("type") == "function" else None
        name = function.get("name") if isinstance(function, dict) else None
        named = [t for t in tools if t["function"]["name"] == name]
        if not named:
            fail("tool_choice", "must name one of the function tools offered.", "invalid_value")
        tools, choice = named, "required"
    out["tools"] = tools
    if all(isinstance(t, dict) and isinstance(t.get("function"), dict) and t["function"].get("strict") is True
           for t in given):
        out["strict_tools"] = True
    if choice in ("required", "none"):
        out["tool_choice"] = choice.upper()
    elif choice not in (None, "auto"):
        fail("tool_choice", "must be auto, none, required or {\"type\": \"function\", \"function\": {\"name\"}}.",
             "invalid_value")


def _tool(tool: Any, param: str) -> JSON:
    function = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(function, dict) or tool.get("type", "function") != "function":
        fail(param, "must be a function tool for Cohere.")
    name = function.get("name")
    if not isinstance(name, str) or not name:
        fail(f"{param}.function.name", "is required.", "invalid_value")
    parameters = function.get("parameters")
    if parameters is None:
        parameters = {"type": "object", "properties": {}}
    elif not isinstance(parameters, dict):
        fail(f"{param}.function.parameters", "must be a JSON schema object.", "invalid_value")
    spec: JSON = {"name": name}
    if isinstance(function.get("description"), str) and function["description"]:
        spec["description"] = function["description"]
    spec["parameters"] = parameters
    return {"type": "function", "function": spec}


def _response_format(value: Any) -> JSON | None:
    """Cohere's response_format for OpenAI's: JSON mode, with the schema when one is given."""
    kind = value.get("type") if isinstance(value, dict) else value
    if kind in (None, "text"):
        return None
    if kind not in ("json_object", "json_schema"):
        fail("response_format.type", "must be text, json_object or json_schema.", "invalid_value")
    schema = obj(obj(value).get("json_schema")).get("schema") if kind == "json_schema" else None
    if schema is None:
        return {"type": "json_object"}
    if not isinstance(schema, dict) or schema.get("type") != "object":
        fail("response_format.json_schema.schema", "must describe a JSON object (root type object) for Cohere.")
    return {"type": "json_object", "json_schema": schema}


def _thinking(body: JSON) -> JSON | None:
    reasoning = body.get("reasoning")
    reasoning = reasoning if isinstance(reasoning, dict) else {}
    budget = reasoning.get("max_tokens")
    if isinstance(budget, int) and not isinstance(budget, bool):
        if budget < 1:
            fail("reasoning.max_tokens", "must be a positive integer.", "invalid_value")
        return {"type": "enabled", "token_budget": budget}
    effort = body.get("reasoning_effort", reasoning.get("effort"))
    if effort is None:
        return None
    if effort in ("none", "minimal"):
        return {"type": "disabled"}
    if effort not in THINKING_BUDGETS:
        fail("reasoning_effort", "must be none, minimal, low, medium, high or xhigh.", "invalid_value")
    return {"type": "enabled", "token_budget": THINKING_BUDGETS[effort]}
