"""One error event: built from a failed request's context or an unexpected exception, classified, and
fingerprinted so that recurrences of the same problem count against one pattern.

Classes: `client` (a 4xx: the caller's request, key, credits or rate limit), `upstream` (a 5xx after the
request reached the providers: every attempt failed, a stream broke, every breaker was open), `gateway`
(any other 5xx), `exception` (an unhandled exception: a bug). All but `client` are critical."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

CLASSES = ("client", "upstream", "gateway", "exception")
MESSAGE_CHARS = 1000
_UPSTREAM_CODES = ("providers_unavailable", "unsupported_operation")
_STRIP = (
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<id>"),
    (re.compile(r"\b[A-Za-z]{2,12}[_-][A-Za-z0-9]{12,}\b"), "<id>"),        # req_6f1c..., chatcmpl-AbC123...
    (re.compile(r"\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b"), "<id>"),  # hex digests
    (re.compile(r"(?<![A-Za-z])\d+(?:\.\d+)?"), "<n>"),
    (re.compile(r"\s+"), " "),
)


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    at: datetime
    request_id: str | None
    error_class: str
    status: int
    code: str | None
    provider: str | None
    model: str | None
    endpoint: str | None
    user_id: int | None
    message: str
    pattern: str          # the message normalized
    fingerprint: str

    @property
    def critical(self) -> bool:
        return self.error_class != "client"

    def row(self) -> dict[str, Any]:
        return {"at": self.at, "request_id": self.request_id, "error_class": self.error_class,
                "critical": self.critical, "status": self.status, "code": self.code, "provider": self.provider,
                "model": self.model, "endpoint": self.endpoint, "user_id": self.user_id, "message": self.message,
                "fingerprint": self.fingerprint}


def normalize(message: str) -> str:
    """The message with ids, hex strings and numbers replaced, so recurrences compare equal."""
    out = message
    for pattern, repl in _STRIP:
        out = pattern.sub(repl, out)
    return out.strip()[:MESSAGE_CHARS]


def fingerprint(code: str | None, provider: str | None, model: str | None, pattern: str) -> str:
    return hashlib.sha256(orjson.dumps([code, provider, model, pattern])).hexdigest()


def classify(status: int, code: str | None, reached_upstream: bool) -> str:
    if status < 500:
        return "client"
    if reached_upstream or (code or "").startswith("upstream") or code in _UPSTREAM_CODES:
        return "upstream"
    return "gateway"


def make_event(*, status: int, code: str | None, error_class: str, message: str, provider: str | None = None,
               model: str | None = None, endpoint: str | None = None, request_id: str | None = None,
               user_id: int | None = None, at: datetime | None = None) -> ErrorEvent:
    message = message.strip()[:MESSAGE_CHARS] or f"HTTP {status}"
    pattern = normalize(message)
    return ErrorEvent(at=at or datetime.now(UTC), request_id=request_id, error_class=error_class, status=status,
                      code=code, provider=provider, model=model, endpoint=endpoint, user_id=user_id,
                      message=message, pattern=pattern, fingerprint=fingerprint(code, provider, model, pattern))


def upstream_message(body: bytes) -> str:
    """The `error.message` of a provider's error body (OpenAI and Anthropic shapes), else its text."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:MESSAGE_CHARS].decode("utf-8", "replace")
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        return str(err["message"])
    if isinstance(err, str):
        return err
    return body[:MESSAGE_CHARS].decode("utf-8", "replace")


def from_request(ctx: Any) -> ErrorEvent:
    """A failed request (gatewayz.pipeline.context.RequestContext with status >= 400)."""
    attempts = ctx.attempts
    provider = ctx.provider or (attempts[-1].provider if attempts else None)
    model = ctx.entry.id if ctx.entry is not None else (ctx.requested_model or None)
    message = ctx.error_message or "; ".join(f"{a.provider}: {a.error}" for a in attempts)
    principal = ctx.principal
    return make_event(status=ctx.status, code=ctx.error_code, error_class=classify(ctx.status, ctx.error_code,
                                                                                   bool(attempts)),
                      message=message, provider=provider, model=model, endpoint=ctx.endpoint,
                      request_id=ctx.request_id, user_id=principal.user_id if principal is not None else None)


def from_exception(exc: BaseException, route: str | None, request_id: str | None) -> ErrorEvent:
    return make_event(status=500, code="unhandled_exception", error_class="exception",
                      message=f"{type(exc).__name__}: {exc}", endpoint=route, request_id=request_id)
