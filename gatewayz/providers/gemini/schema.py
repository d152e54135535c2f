"""JSON Schema (as OpenAI tools and json_schema response formats carry it) -> Gemini's Schema object.

Gemini takes "a select subset of an OpenAPI 3.0 schema object": type (STRING, NUMBER, INTEGER, BOOLEAN, ARRAY,
OBJECT), format, description, nullable, enum (strings only), properties, required, items, anyOf, minItems/maxItems,
minLength/maxLength, minimum/maximum, minProperties/maxProperties, pattern, default, example, propertyOrdering.
Anything else is an "Unknown name" 400 there, so it is dropped here:

- `$ref` to `#/$defs/X` or `#/definitions/X` is inlined (a recursive reference, beyond MAX_DEPTH, becomes a
  plain OBJECT); `allOf` is merged into one schema; `oneOf` becomes `anyOf`.
- `type: [T, "null"]` and `anyOf` with a `{"type": "null"}` member become `nullable: true`; a list of several
  types becomes an `anyOf` of those types.
- `const` becomes a one-value enum; enums of non-strings move to the description ("Allowed values: ...")
  with the type inferred from the values; a node without any type gets one (OBJECT with properties, ARRAY
  with items, else STRING), as Gemini wants a type on every node.
- `format` is kept only where Gemini accepts it (STRING: enum, date-time; NUMBER: float, double; INTEGER:
  int32, int64); `examples` gives `example` its first value.
- Dropped: $schema, $id, $comment, title, additionalProperties, patternProperties, unevaluatedProperties,
  multipleOf, exclusiveMinimum/Maximum, uniqueItems, readOnly, writeOnly, deprecated, contentEncoding, not,
  if/then/else, dependent*, strict... (every key not in the list above).
- An OBJECT without properties loses its empty `properties` (Gemini rejects an empty map) and `required`
  only names properties that exist."""

from __future__ import annotations

import json
from typing import Any

JSON = dict[str, Any]

MAX_DEPTH = 24
_TYPES = {"string": "STRING", "number": "NUMBER", "integer": "INTEGER", "boolean": "BOOLEAN", "array": "ARRAY",
          "object": "OBJECT"}
_FORMATS = {"STRING": {"enum", "date-time"}, "NUMBER": {"float", "double"}, "INTEGER": {"int32", "int64"}}
_COPIED = ("description", "minItems", "maxItems", "minLength", "maxLength", "minimum", "maximum", "minProperties",
           "maxProperties", "pattern", "default", "example", "propertyOrdering")


def to_gemini(schema: Any) -> JSON:
    """The Gemini Schema for a JSON schema (a non-object schema converts to {})."""
    if not isinstance(schema, dict):
        return {}
    defs: JSON = {}
    for key in ("definitions", "$defs"):
        if isinstance(schema.get(key), dict):
            defs.update(schema[key])
    return _convert(schema, defs, 0)


def _convert(schema: JSON, defs: JSON, depth: int) -> JSON:
    if depth > MAX_DEPTH:
        return {"type": "OBJECT"}
    schema = _resolve(schema, defs, depth)
    if isinstance(schema.get("allOf"), list):
        schema = _merge_all_of(schema, defs, depth)
    out: JSON = {}
    variants_key = "anyOf" if isinstance(schema.get("anyOf"), list) else "oneOf"
    variants = schema.get(variants_key)
    if isinstance(variants, list) and variants:
        return _union(schema, variants, defs, depth)

    kind, nullable = _type_of(schema)
    if isinstance(kind, list):  # several types: an anyOf of each
        out["anyOf"] = [{"type": t} for t in kind]
    elif kind:
        out["type"] = kind
    for key in _COPIED:
        if key in schema and schema[key] is not None:
            out[key] = schema[key]
    if "example" not in out and isinstance(schema.get("examples"), list) and schema["examples"]:
        out["example"] = schema["examples"][0]
    _enum(schema, out)
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS.get(out.get("type", ""), ()):
        out["format"] = fmt
    _object_fields(schema, out, defs, depth)
    items = schema.get("items")
    if isinstance(items, dict):
        out["items"] = _convert(items, defs, depth + 1)
    elif isinstance(items, list) and items:  # a tuple: any of its item schemas
        converted = [_convert(i, defs, depth + 1) for i in items if isinstance(i, dict)]
        out["items"] = converted[0] if len(converted) == 1 else {"anyOf": converted}
    if "type" not in out and "anyOf" not in out and depth > 0:
        # Gemini wants a type on every node ("must be specified when not using one_of, any_of or all_of")
        out["type"] = "OBJECT" if "properties" in out else "ARRAY" if "items" in out else "STRING"
    elif "type" not in out and "properties" in out:
        out["type"] = "OBJECT"
    if nullable:
        out["nullable"] = True
    return out


def _resolve(schema: JSON, defs: JSON, depth: int) -> JSON:
    """Inline a local $ref (siblings of the $ref, such as a description, win over the target's)."""
    seen = 0
    while isinstance(schema.get("$ref"), str) and seen <= MAX_DEPTH - depth:
        ref: str = schema["$ref"]
        name = ref.rsplit("/", 1)[-1] if ref.startswith(("#/$defs/", "#/definitions/")) else None
        target = defs.get(name) if name else None
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        if not isinstance(target, dict):
            return rest or {"type": "object"}
        schema = {**target, **rest}
        seen += 1
    return schema


def _merge_all_of(schema: JSON, defs: JSON, depth: int) -> JSON:
    merged: JSON = {k: v for k, v in schema.items() if k != "allOf"}
    properties: JSON = dict(merged.get("properties") or {})
    required: list[Any] = list(merged.get("required") or [])
    for part in schema["allOf"]:
        if not isinstance(part, dict):
            continue
        part = _resolve(part, defs, depth)
        for key, value in part.items():
            if key == "properties" and isinstance(value, dict):
                properties.update(value)
            elif key == "required" and isinstance(value, list):
                required.extend(r for r in value if r not in required)
            else:
                merged.setdefault(key, value)
    if properties:
        merged["properties"] = properties
    if required:
        merged["required"] = required
    return merged


def _union(schema: JSON, variants: list[Any], defs: JSON, depth: int) -> JSON:
    nullable = False
    converted: list[JSON] = []
    for variant in variants:
        if not isinstance(variant, dict):
            continue
        if variant.get("type") == "null":
            nullable = True
            continue
        converted.append(_convert(variant, defs, depth + 1))
    base = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
    shared = _convert(base, defs, depth + 1) if base else {}
    shared.pop("type", None)  # the variants carry the types
    if len(converted) == 1:
        out = {**shared, **converted[0]}
        if "description" in shared:
            out["description"] = shared["description"]
    else:
        out = {**shared, "anyOf": converted}
    if nullable:
        out["nullable"] = True
    return out


def _type_of(schema: JSON) -> tuple[str | list[str] | None, bool]:
    """(Gemini type, or a list of them, or None; whether null is allowed)."""
    raw = schema.get("type")
    names = raw if isinstance(raw, list) else [raw] if isinstance(raw, str) else []
    nullable = "null" in names or schema.get("nullable") is True
    kinds = [_TYPES[n] for n in names if isinstance(n, str) and n in _TYPES]
    if not kinds:
        return None, nullable
    return (kinds[0] if len(kinds) == 1 else kinds), nullable


def _enum(schema: JSON, out: JSON) -> None:
    values = schema.get("enum")
    if "const" in schema:
        values = [schema["const"]]
    if not isinstance(values, list) or not values:
        return
    if None in values:
        out["nullable"] = True
        values = [v for v in values if v is not None]
    if values and all(isinstance(v, str) for v in values):
        out["enum"] = values
        out.setdefault("type", "STRING")
    elif values:  # Gemini takes string enums only: the values go to the description, the type is inferred
        allowed = "Allowed values: " + ", ".join(json.dumps(v) for v in values) + "."
        out["description"] = f"{out['description']} {allowed}" if out.get("description") else allowed
        kinds = {type(v) for v in values}
        inferred = {bool: "BOOLEAN", int: "INTEGER", float: "NUMBER"}.get(kinds.pop()) if len(kinds) == 1 else None
        if inferred and "anyOf" not in out:
            out.setdefault("type", inferred)


def _object_fields(schema: JSON, out: JSON, defs: JSON, depth: int) -> None:
    properties = schema.get("properties")
    if isinstance(properties, dict) and properties:
        out["properties"] = {name: _convert(sub if isinstance(sub, dict) else {}, defs, depth + 1)
                             for name, sub in properties.items()}
        required = schema.get("required")
        if isinstance(required, list):
            kept = [r for r in required if isinstance(r, str) and r in properties]
            if kept:
                out["required"] = kept
        ordering = out.get("propertyOrdering")
        if isinstance(ordering, list):
            out["propertyOrdering"] = [p for p in ordering if p in properties]
    else:
        out.pop("propertyOrdering", None)
