"""One error tree. Each error knows its HTTP status and its OpenAI error body."""

from __future__ import annotations

from typing import Any

import orjson


class GatewayError(Exception):
    status = 500
    type = "server_error"
    code: str | None = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.param = param
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"message": self.message, "type": self.type, "param": self.param,
                               "code": self.code}
        err.update(self.extra)
        return {"error": err}

    def body_bytes(self) -> bytes:
        return orjson.dumps(self.body())


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class AuthenticationFailed(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class InsufficientCredits(GatewayError):
    status = 402
    type = "insufficient_quota"
    code = "insufficient_credits"


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_error"
    code = "forbidden"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class Conflict(GatewayError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class UpstreamFailed(GatewayError):
    """Every candidate provider failed; the message lists each attempt."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"


class UpstreamTimeout(UpstreamFailed):
    status = 504
    code = "upstream_timeout"


class ServiceUnavailable(GatewayError):
    status = 503
    type = "server_error"
    code = "service_unavailable"


class UpstreamResponse(Exception):
    """An upstream answer to hand back to the client as it is (for example its 400)."""

    def __init__(self, status: int, body: bytes, content_type: str, headers: dict[str, str]) -> None:
        super().__init__(f"upstream answered {status}")
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers


def status_error(status: int, message: str) -> GatewayError:
    """The error class for a plain HTTP status (framework errors such as 404 on an unknown route)."""
    cls: type[GatewayError] = {
        400: InvalidRequest, 401: AuthenticationFailed, 402: InsufficientCredits, 403: PermissionDenied,
        404: NotFound, 409: Conflict, 413: PayloadTooLarge, 429: RateLimited, 503: ServiceUnavailable,
    }.get(status, GatewayError)
    err = cls(message)
    if cls is GatewayError:
        err.status = status
        err.type = "invalid_request_error" if status < 500 else "server_error"
        err.code = "method_not_allowed" if status == 405 else ("invalid_request" if status < 500 else "internal_error")
    return err
