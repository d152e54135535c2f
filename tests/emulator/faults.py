"""Fault description and in-band fault directives.

A :class:`Fault` says how the emulator should misbehave for one request.  Faults
reach the emulator three ways (highest precedence first):

1. a *directive* embedded in the request's text, e.g.
   ``[[fault:status=503,retry_after=1]]`` (any emulator) or
   ``[[fault@a:status=503]]`` (only the emulator named ``a``);
2. a fault queued with ``Emulator.push_fault``;
3. the emulator's default fault (``Emulator.set_default_fault``).

Directive syntax: ``[[fault(@NAME)?:key=value(,key=value)*]]``.  Keys are
:class:`Fault` field names; values are ``true``/``false``, integers, floats or
strings (optionally double-quoted, which allows commas and ``]``).  Dict-valued
fields (``body``, ``usage``) can only be set from Python.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from typing import Any

DIRECTIVE_RE = re.compile(r"\[\[fault(?:@([\w.\-]+))?:((?:\"[^\"]*\"|[^\]\"])*)\]\]")
_PAIR_RE = re.compile(r"\s*([A-Za-z_]\w*)\s*=\s*(\"[^\"]*\"|[^,]*)\s*(?:,|$)")
_INT_RE = re.compile(r"[+-]?\d+")
_FLOAT_RE = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?")


class FaultSyntaxError(ValueError):
    """A fault directive could not be parsed."""


@dataclass(frozen=True)
class Fault:
    """How to misbehave for one request.  Every field is optional."""

    status: int | None = None
    """Answer with this HTTP status (>= 400: a wire-format error body)."""
    retry_after: float | None = None
    """Add a ``Retry-After`` header (seconds)."""
    retry_after_ms: int | None = None
    """Add a ``retry-after-ms`` header."""
    latency_ms: float | None = None
    """Sleep this long before answering (before any header is sent)."""
    chunk_delay_ms: float | None = None
    """Sleep this long between stream events."""
    hang: bool = False
    """Accept the request and never answer (until the client leaves or the server stops)."""
    malformed_chunk_at: int | None = None
    """Replace stream event number N (0-based) by invalid JSON."""
    drop_after_chunks: int | None = None
    """Close the connection after N stream events (no terminator); non-stream: close without answering."""
    body: dict[str, Any] | None = field(default=None, hash=False)
    """Return this JSON body verbatim (status 200 unless ``status`` is given)."""
    raw_body: bytes | None = None
    """Return these bytes verbatim (status 200 unless ``status`` is given)."""
    usage: dict[str, Any] | None = field(default=None, hash=False)
    """Report this usage object verbatim instead of the computed one."""
    omit_usage: bool = False
    """Never report usage, even when the client asks for it."""
    content: str | None = None
    """Assistant text to produce instead of the default echo."""
    error_message: str | None = None
    """Message of the error body produced for ``status`` (default: a generic one)."""
    error_code: str | None = None
    """``code`` of the error body produced for ``status`` (default: derived from the status)."""

    def is_error(self) -> bool:
        """True when this fault turns the answer into an error response."""
        return self.status is not None and self.status >= 400 and self.body is None and self.raw_body is None

    def merged(self, override: Fault) -> Fault:
        """A copy of ``self`` with every field set in ``override`` taking precedence."""
        changes = {f.name: getattr(override, f.name) for f in fields(Fault) if _is_set(override, f.name)}
        return replace(self, **changes)

    def retry_headers(self) -> dict[str, str]:
        """The retry hint headers this fault adds to the response."""
        headers: dict[str, str] = {}
        if self.retry_after is not None:
            headers["Retry-After"] = _format_number(self.retry_after)
        if self.retry_after_ms is not None:
            headers["retry-after-ms"] = str(int(self.retry_after_ms))
        return headers


def _is_set(fault: Fault, name: str) -> bool:
    default = next(f.default for f in fields(Fault) if f.name == name)
    return getattr(fault, name) != default


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _parse_scalar(text: str) -> bool | int | float | str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if _INT_RE.fullmatch(text):
        return int(text)
    if _FLOAT_RE.fullmatch(text):
        return float(text)
    return text


def _coerce(name: str, type_text: str, value: bool | int | float | str) -> Any:
    """Convert a parsed directive value to the type of the Fault field ``name``."""
    if type_text.startswith("dict"):
        raise FaultSyntaxError(f"fault field {name!r} cannot be set from a directive")
    if type_text == "bool":
        if not isinstance(value, bool):
            raise FaultSyntaxError(f"fault field {name!r} needs true/false, got {value!r}")
        return value
    if isinstance(value, bool):
        raise FaultSyntaxError(f"fault field {name!r} does not take a boolean")
    if type_text.startswith("int"):
        if not isinstance(value, int):
            raise FaultSyntaxError(f"fault field {name!r} needs an integer, got {value!r}")
        return value
    if type_text.startswith("float"):
        if isinstance(value, str):
            raise FaultSyntaxError(f"fault field {name!r} needs a number, got {value!r}")
        return float(value)
    if type_text.startswith("bytes"):
        return str(value).encode()
    return str(value)


def parse_fault_spec(spec: str) -> Fault:
    """Parse ``key=value,key=value`` into a :class:`Fault`."""
    types = {f.name: str(f.type) for f in fields(Fault)}
    values: dict[str, Any] = {}
    position = 0
    spec = spec.strip()
    while position < len(spec):
        match = _PAIR_RE.match(spec, position)
        if match is None or match.end() == position:
            raise FaultSyntaxError(f"bad fault directive near {spec[position:]!r}")
        key, raw_value = match.group(1), match.group(2)
        if key not in types:
            raise FaultSyntaxError(f"unknown fault field {key!r}")
        values[key] = _coerce(key, types[key], _parse_scalar(raw_value))
        position = match.end()
    return Fault(**values)


def directive_fault(text: str, emulator_name: str) -> Fault | None:
    """The fault the directives in ``text`` ask of ``emulator_name``, or None.

    Untargeted directives apply first, then the ones naming this emulator, so a
    targeted directive wins field by field.  Directives for other emulators are
    ignored (and not parsed).
    """
    generic: list[Fault] = []
    targeted: list[Fault] = []
    for match in DIRECTIVE_RE.finditer(text):
        target = match.group(1)
        if target is None:
            generic.append(parse_fault_spec(match.group(2)))
        elif target == emulator_name:
            targeted.append(parse_fault_spec(match.group(2)))
    found = generic + targeted
    if not found:
        return None
    result = Fault()
    for fault in found:
        result = result.merged(fault)
    return result


def strip_directives(text: str) -> str:
    """``text`` without any fault directive, with the surrounding whitespace tidied."""
    return " ".join(DIRECTIVE_RE.sub(" ", text).split()) if DIRECTIVE_RE.search(text) else text


def iter_strings(value: Any) -> Iterator[str]:
    """Every string found anywhere inside a parsed JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from iter_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from iter_strings(item)
