"""OpenAI chat request -> Anthropic Messages request body (the native Anthropic upstream, outbound half).

Only fields Anthropic knows are sent (it refuses unknown ones). Mapping and decisions:
- messages / system: see upstream_messages.
- max_tokens: `max_completion_tokens`, else `max_tokens`, else the provider option `max_tokens` (default
  4096): Anthropic requires a value, OpenAI does not.
- stop -> stop_sequences; temperature, top_p, top_k passed through; user -> metadata.user_id.
- tools -> name / description / input_schema (no parameters: an empty object schema); tool_choice auto, none,
  required (-> any), a named function (-> tool); parallel_tool_calls false -> disable_parallel_tool_use.
  Only function tools exist on this side; the tool name `json_response` is reserved (below).
- response_format json_object / json_schema. By default (provider option json_mode=tool, every Claude
  model) a tool `json_response` whose input_schema is the wanted schema (json_object: any object) is added
  and forced (tool_choice tool; `any` when the client's own tools are offered too, so the model may still
  call them); the answer's json_response call comes back as the message content, JSON text, finish_reason
  stop. json_mode=native sends a json_schema format as output_config.format (structured outputs, newer
  models only); json_object keeps the tool technique there. The schema's root must be an object.
- reasoning_effort (or OpenRouter-style reasoning.effort / reasoning.max_tokens) -> thinking enabled with
  budget_tokens: low 1024, medium 4096, high 16384, xhigh 32768; none / minimal: no thinking. Without a
  client max_tokens, the budget is added to the default; with one, the budget is capped at 3/4 of it (as at
  OpenAI, max tokens include reasoning), and below Anthropic's minimum of 1024 thinking is left off.
  With thinking on, temperature and top_k are dropped and top_p is kept only from 0.95 (Anthropic refuses
  them otherwise); a forced tool (required, a named function, JSON mode) wins over thinking, which is then
  left off (Anthropic refuses forced tool use while thinking), as it is while the last assistant turn called
  tools (Anthropic then wants that turn's signed thinking block, which OpenAI clients do not send back).
- n > 1: 400 (Anthropic answers one choice). logprobs, penalties, seed, logit_bias, service_tier and other
  OpenAI-only fields are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn

from gatewayz.errors import InvalidRequest
from gatewayz.pipeline.parse import requested_output_tokens
from gatewayz.providers.anthropic.upstream_messages import convert_messages

JSON = dict[str, Any]
JSON_TOOL = "json_response"
THINKING_BUDGETS = {"low": 1024, "medium": 4096, "high": 16384, "xhigh": 32768}
MIN_THINKING_BUDGET = 1024


@dataclass(frozen=True, slots=True)
class RequestOptions:
    max_tokens: int = 4096
    json_mode: str = "tool"  # "tool" | "native"


def _fail(param: str, problem: str, code: str = "unsupported_for_anthropic") -> NoReturn:
    raise InvalidRequest(f"`{param}` {problem}", param=param, code=code)


def build_body(body: JSON, upstream_model: str, stream: bool, options: RequestOptions) -> JSON:
    n = body.get("n")
    if n is not None and n != 1:
        _fail("n", "must be 1: Anthropic returns a single choice.")
    system, turns = convert_messages(body["messages"])
    requested = requested_output_tokens(body)
    out: JSON = {"model": upstream_model, "messages": turns, "max_tokens": requested or options.max_tokens}
    if system:
        out["system"] = system
    stops = _stops(body.get("stop"))
    if stops:
        out["stop_sequences"] = stops
    for key in ("temperature", "top_p", "top_k"):
        value = body.get(key)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                _fail(key, "must be a number.", "invalid_value")
            out[key] = value
    user = body.get("user")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    forced = _tools(body, out, options)
    if not forced:
        _thinking(body, out, requested)
    if stream:
        out["stream"] = True
    return out


def _stops(stop: Any) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop] if stop else []
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        _fail("stop", "must be a string or a list of strings.", "invalid_value")
    return [s for s in stop if s]


def _tools(body: JSON, out: JSON, options: RequestOptions) -> bool:
    """Sets tools / tool_choice / output_config on `out`; True when tool use is forced."""
    tools = [_tool(t, f"tools[{i}]") for i, t in enumerate(_list(body.get("tools"), "tools"))]
    choice = _tool_choice(body.get("tool_choice")) if tools else None
    schema = _json_schema(body.get("response_format"))
    if schema is not None:
        if options.json_mode == "native" and body["response_format"].get("type") == "json_schema":
            out["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
        else:
            if choice is None or choice["type"] != "tool":  # a tool the client named stays forced
                offer_client_tools = bool(tools) and (choice is None or choice["type"] != "none")
                choice = {"type": "any"} if offer_client_tools else {"type": "tool", "name": JSON_TOOL}
            tools.append({"name": JSON_TOOL, "description": "Give the answer as a JSON object with this tool.",
                          "input_schema": schema})
    if not tools:
        return False
    out["tools"] = tools
    if body.get("parallel_tool_calls") is False and (choice is None or choice["type"] != "none"):
        choice = dict(choice or {"type": "auto"})
        choice["disable_parallel_tool_use"] = True
    if choice is not None:
        out["tool_choice"] = choice
    return choice is not None and choice["type"] in ("any", "tool")


def _list(value: Any, param: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        _fail(param, "must be a list.", "invalid_value")
    return value


def _tool(tool: Any, param: str) -> JSON:
    function = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(function, dict) or tool.get("type", "function") != "function":
        _fail(param, "must be a function tool for Anthropic.")
    name = function.get("name")
    if not isinstance(name, str) or not name:
        _fail(f"{param}.function.name", "is required.", "invalid_value")
    if name == JSON_TOOL:
        _fail(f"{param}.function.name", f"{JSON_TOOL!r} is reserved by the gateway for JSON mode.")
    schema = function.get("parameters")
    if schema is None:
        schema = {"type": "object", "properties": {}}
    elif not isinstance(schema, dict):
        _fail(f"{param}.function.parameters", "must be a JSON schema object.", "invalid_value")
    out: JSON = {"name": name}
    if isinstance(function.get("description"), str) and function["description"]:
        out["description"] = function["description"]
    out["input_schema"] = schema
    return out


def _tool_choice(choice: Any) -> JSON | None:
    if choice is None:
        return None
    if choice in ("auto", "none"):
        return {"type": choice}
    if choice == "required":
        return {"type": "any"}
    function = choice.get("function") if isinstance(choice, dict) and choice.get("type") == "function" else None
    if isinstance(function, dict) and isinstance(function.get("name"), str) and function["name"]:
        return {"type": "tool", "name": function["name"]}
    _fail("tool_choice", "must be auto, none, required or {\"type\": \"function\", \"function\": {\"name\"}}.",
          "invalid_value")


def _json_schema(response_format: Any) -> JSON | None:
    """The JSON schema the answer must follow, or None when the client did not ask for JSON."""
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind != "json_schema":
        _fail("response_format.type", "must be text, json_object or json_schema.", "invalid_value")
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if schema is None:
        return {"type": "object"}
    if not isinstance(schema, dict) or schema.get("type", "object") != "object":
        _fail("response_format.json_schema.schema", "must describe a JSON object (its root type object) for "
                                                    "Anthropic.")
    return schema


def _thinking(body: JSON, out: JSON, requested: int | None) -> None:
    budget = _budget(body)
    if budget is None or _amid_tool_use(out["messages"]):
        return
    if requested is None:
        out["max_tokens"] += budget
    else:
        budget = min(budget, requested * 3 // 4)
        if budget < MIN_THINKING_BUDGET:
            return
    out["thinking"] = {"type": "enabled", "budget_tokens": budget}
    out.pop("temperature", None)
    out.pop("top_k", None)
    if out.get("top_p", 1) < 0.95:
        del out["top_p"]


def _amid_tool_use(turns: list[JSON]) -> bool:
    """True when the last assistant turn called tools: with thinking on, Anthropic wants that turn to start
    with its signed thinking block, which an OpenAI client never sends back."""
    last = next((t for t in reversed(turns) if t["role"] == "assistant"), None)
    return last is not None and any(b["type"] == "tool_use" for b in last["content"])


def _budget(body: JSON) -> int | None:
    reasoning = body.get("reasoning")
    reasoning = reasoning if isinstance(reasoning, dict) else {}
    explicit = reasoning.get("max_tokens")
    if isinstance(explicit, int) and not isinstance(explicit, bool):
        if explicit < MIN_THINKING_BUDGET:
            _fail("reasoning.max_tokens", f"must be at least {MIN_THINKING_BUDGET} for Anthropic.", "invalid_value")
        return explicit
    effort = body.get("reasoning_effort", reasoning.get("effort"))
    if effort is None or effort in ("none", "minimal"):
        return None
    if effort not in THINKING_BUDGETS:
        _fail("reasoning_effort", "must be none, minimal, low, medium, high or xhigh.", "invalid_value")
    return THINKING_BUDGETS[effort]
