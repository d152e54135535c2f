"""Gemini generateContent request validation: 400 INVALID_ARGUMENT with Google's wording where it is known.

`contents` must be a non-empty list of contents with role user / model (or none) and non-empty parts; every
part holds exactly one of text, inlineData {mimeType, data (base64)}, fileData {fileUri}, functionCall {name,
args object}, functionResponse {name, response object}, plus optional thought / thoughtSignature; unknown
fields at the top level, in a part, in generationConfig or in a schema are refused ("Unknown name ... Cannot
find field"); a schema node needs a type (or anyOf), one of Gemini's; an OBJECT's properties must not be
empty and its `required` must name its properties; function names must match Gemini's pattern; toolConfig must use
AUTO / ANY / NONE and name declared functions; thinkingBudget and thinkingLevel are exclusive; the turn after
a model turn with N function calls must hold N function responses; Gemini 3+ models refuse a model turn whose
function calls carry no thoughtSignature."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

TOP_LEVEL = {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "safetySettings",
             "cachedContent", "labels", "model"}
PART_DATA = {"text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode",
             "codeExecutionResult"}
PART_EXTRA = {"thought", "thoughtSignature", "videoMetadata"}
GENERATION = {"temperature", "topP", "topK", "candidateCount", "maxOutputTokens", "stopSequences", "seed",
              "presencePenalty", "frequencyPenalty", "responseMimeType", "responseSchema", "responseJsonSchema",
              "thinkingConfig", "responseLogprobs", "logprobs", "responseModalities", "mediaResolution"}
SCHEMA = {"type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems", "properties",
          "required", "minProperties", "maxProperties", "minLength", "maxLength", "pattern", "example", "anyOf",
          "propertyOrdering", "default", "items", "minimum", "maximum"}
TYPES = {"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"}
FUNCTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-:]{0,127}$")
_GENERATION_RE = re.compile(r"gemini-(\d+)")


class Invalid(ValueError):
    """The request is refused with this message (400 INVALID_ARGUMENT)."""


def _unknown(name: str, where: str) -> Invalid:
    return Invalid(f'Invalid JSON payload received. Unknown name "{name}" at \'{where}\': Cannot find field.')


def signs_calls(model: str) -> bool:
    m = _GENERATION_RE.search(model)
    return bool(m) and int(m.group(1)) >= 3  # type: ignore[union-attr]


def validate(body: Any, model: str) -> None:
    if not isinstance(body, dict):
        raise Invalid("The request body must be a JSON object.")
    for key in body:
        if key not in TOP_LEVEL:
            raise _unknown(key, "")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise Invalid("* GenerateContentRequest.contents: contents is not specified")
    for i, content in enumerate(contents):
        _content(content, f"contents[{i}]")
    if "systemInstruction" in body:
        _content(body["systemInstruction"], "system_instruction")
    _calls_answered(contents, model)
    names = _tools(body.get("tools"))
    _tool_config(body.get("toolConfig"), names)
    config = body.get("generationConfig", {})
    if not isinstance(config, dict):
        raise Invalid("generationConfig must be an object")
    for key in config:
        if key not in GENERATION:
            raise _unknown(key, "generation_config")
    thinking = config.get("thinkingConfig")
    if isinstance(thinking, dict) and "thinkingBudget" in thinking and "thinkingLevel" in thinking:
        raise Invalid("You can only set only one of thinking budget and thinking level.")
    if "responseSchema" in config:
        _schema(config["responseSchema"], "generation_config.response_schema")


def _content(content: Any, where: str) -> None:
    if not isinstance(content, dict):
        raise Invalid(f"{where} must be an object")
    if content.get("role") not in (None, "user", "model"):
        raise Invalid("Please use a valid role: user, model.")
    parts = content.get("parts")
    if not isinstance(parts, list) or not parts:
        raise Invalid(f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty.")
    for j, part in enumerate(parts):
        _part(part, f"{where}.parts[{j}]")


def _part(part: Any, where: str) -> None:
    if not isinstance(part, dict):
        raise Invalid(f"{where} must be an object")
    for key in part:
        if key not in PART_DATA and key not in PART_EXTRA:
            raise _unknown(key, where)
    data = [k for k in part if k in PART_DATA]
    if len(data) != 1:
        raise Invalid(f"* GenerateContentRequest.{where}.data: required oneof field 'data' must have one "
                      "initialized field")
    kind = data[0]
    value = part[kind]
    if kind == "text" and not isinstance(value, str):
        raise Invalid(f"{where}.text must be a string")
    if kind == "inlineData":
        if not isinstance(value, dict) or not value.get("mimeType") or not isinstance(value.get("data"), str):
            raise Invalid(f"{where}.inline_data: mime_type and data are required")
        try:
            base64.b64decode(value["data"], validate=True)
        except ValueError:
            raise Invalid(f"Invalid value at '{where}.inline_data.data' (TYPE_BYTES), Base64 decoding failed") \
                from None
    if kind == "fileData" and (not isinstance(value, dict) or not value.get("fileUri")):
        raise Invalid(f"{where}.file_data.file_uri is required")
    if kind == "functionCall" and (not isinstance(value, dict) or not value.get("name")
                                   or not isinstance(value.get("args", {}), dict)):
        raise Invalid(f"{where}.function_call: name is required and args must be an object")
    if kind == "functionResponse" and (not isinstance(value, dict) or not value.get("name")
                                       or not isinstance(value.get("response"), dict)):
        raise Invalid(f"{where}.function_response: name is required and response must be an object")


def _calls_answered(contents: list[dict[str, Any]], model: str) -> None:
    for i, content in enumerate(contents):
        calls = [p for p in content["parts"] if "functionCall" in p]
        if not calls:
            continue
        if signs_calls(model) and not calls[0].get("thoughtSignature"):
            raise Invalid(f"Function call is missing a thought_signature in functionCall parts. This is required "
                          f"for tools to work correctly. Additional data, function call "
                          f"`default_api:{calls[0]['functionCall']['name']}`, position {i + 1}.")
        if i + 1 < len(contents):
            answers = [p for p in contents[i + 1]["parts"] if "functionResponse" in p]
            if len(answers) != len(calls):
                raise Invalid("Please ensure that the number of function response parts is equal to the number "
                              "of function call parts of the function call turn.")


def _tools(tools: Any) -> list[str]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise Invalid("tools must be a list")
    names = []
    for i, tool in enumerate(tools):
        declarations = tool.get("functionDeclarations", []) if isinstance(tool, dict) else None
        if not isinstance(declarations, list):
            raise Invalid(f"tools[{i}].function_declarations must be a list")
        for j, fd in enumerate(declarations):
            where = f"tools[{i}].function_declarations[{j}]"
            if not isinstance(fd, dict) or not isinstance(fd.get("name"), str) or not FUNCTION_NAME.match(fd["name"]):
                raise Invalid(f"* GenerateContentRequest.{where}.name: Invalid function name. Must start with a "
                              "letter or an underscore. Must be alphameric (a-z, A-Z, 0-9), underscores (_), "
                              "dots (.), colons (:) or dashes (-), with a maximum length of 128.")
            for key in fd:
                if key not in ("name", "description", "parameters", "response", "behavior"):
                    raise _unknown(key, where)
            if "parameters" in fd:
                _schema(fd["parameters"], f"{where}.parameters")
            names.append(fd["name"])
    return names


def _schema(schema: Any, where: str) -> None:
    if not isinstance(schema, dict):
        raise Invalid(f"{where} must be an object")
    for key in schema:
        if key not in SCHEMA:
            raise _unknown(key, where)
    kind = schema.get("type")
    if kind is None and "anyOf" not in schema:
        raise Invalid(f"* GenerateContentRequest.{where}.type: must be specified when not using one_of, any_of "
                      "or all_of fields")
    if kind is not None and (not isinstance(kind, str) or kind.upper() not in TYPES):
        raise Invalid(f"Invalid value at '{where}.type' (type.googleapis.com/google.ai.generativelanguage.v1beta."
                      f"Type), {json.dumps(kind)}")
    properties = schema.get("properties", {})
    if isinstance(kind, str) and kind.upper() == "OBJECT" and "properties" in schema and not properties:
        raise Invalid(f"* GenerateContentRequest.{where}.properties: should be non-empty for OBJECT type")
    for name, sub in properties.items():
        _schema(sub, f"{where}.properties[{name}].value")
    for name in schema.get("required", []):
        if name not in properties:
            raise Invalid(f"* GenerateContentRequest.{where}.required[{name}]: property is not defined")
    if "items" in schema:
        _schema(schema["items"], f"{where}.items")
    for k, sub in enumerate(schema.get("anyOf", [])):
        _schema(sub, f"{where}.any_of[{k}]")


def _tool_config(config: Any, names: list[str]) -> None:
    if config is None:
        return
    calling = config.get("functionCallingConfig", {}) if isinstance(config, dict) else None
    if not isinstance(calling, dict) or calling.get("mode", "AUTO") not in ("AUTO", "ANY", "NONE", "VALIDATED"):
        raise Invalid("tool_config.function_calling_config.mode must be AUTO, ANY, NONE or VALIDATED")
    allowed = calling.get("allowedFunctionNames")
    if allowed is not None:
        if calling.get("mode") != "ANY":
            raise Invalid("allowed_function_names may only be set when mode is ANY.")
        for name in allowed:
            if name not in names:
                raise Invalid(f"allowed_function_names contains {name!r}, which is not a declared function.")
