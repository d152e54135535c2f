"""What browsers need from the gateway: CORS (for every route, the raw inference routes too) and security headers
on the management routes. Both are built once from the settings; per response they add a precomputed list."""

from __future__ import annotations

from starlette.datastructures import Headers as StarletteHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from gatewayz.api.asgi import Endpoint, Message, Receive, Scope, Send
from gatewayz.errors import InvalidRequest
from gatewayz.settings import CorsConfig, SecurityHeadersConfig

Headers = list[tuple[bytes, bytes]]
# JSON answers load nothing and may not be framed; HTML (the /docs page) keeps the framing and sniffing rules
# but not this policy, which would block the page's own scripts.
_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")


class _Cors(CORSMiddleware):
    """Starlette's CORS handling, with a refused preflight answered in the gateway's JSON error body."""

    def preflight_response(self, request_headers: StarletteHeaders) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code == 200:
            return response
        detail = bytes(response.body).decode()
        err = InvalidRequest(f"CORS preflight refused: {detail.removeprefix('Disallowed CORS ')} not allowed.",
                             code="cors_not_allowed")
        kept = {k: v for k, v in response.headers.items() if k.startswith("access-control-") or k == "vary"}
        return Response(err.body_bytes(), status_code=err.status, media_type="application/json", headers=kept)


def with_cors(app: Endpoint, cfg: CorsConfig) -> Endpoint:
    """CORS around `app` when origins are configured (else `app` itself, at no cost)."""
    if not cfg.allow_origins:
        return app
    return _Cors(app, allow_origins=cfg.allow_origins, allow_methods=cfg.allow_methods,
                 allow_headers=cfg.allow_headers, allow_credentials=cfg.allow_credentials,
                 expose_headers=cfg.expose_headers, max_age=cfg.max_age)


class SecurityHeaders:
    """Adds X-Content-Type-Options, X-Frame-Options, Referrer-Policy, a Content-Security-Policy on non-HTML
    answers, and Strict-Transport-Security when configured, to every answer of the wrapped app."""

    def __init__(self, app: Endpoint, cfg: SecurityHeadersConfig) -> None:
        self.app = app
        common: Headers = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                           (b"referrer-policy", b"no-referrer")]
        if cfg.hsts_max_age_s:
            value = f"max-age={cfg.hsts_max_age_s}" + ("; includeSubDomains" if cfg.hsts_include_subdomains else "")
            common.append((b"strict-transport-security", value.encode()))
        self._html = common
        self._other = [*common, _CSP]
        self.enabled = cfg.enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.enabled or scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                html = any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in headers)
                message["headers"] = [*headers, *(self._html if html else self._other)]
            await send(message)

        await self.app(scope, receive, send_secured)
