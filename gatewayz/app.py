"""create_app(settings): routes, middleware, error rendering, and a lifespan that owns the Container."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from gatewayz import __version__
from gatewayz.allowlist.routes import router as allowlist_router
from gatewayz.analytics.routes import router as analytics_router
from gatewayz.api.asgi import Endpoint, Receive, Scope, Send, send_error
from gatewayz.api.browser import SecurityHeaders, with_cors
from gatewayz.api.chat import ChatCompletions
from gatewayz.api.completions import Completions
from gatewayz.api.messages import CountTokens, Messages
from gatewayz.api.middleware import RequestIdMiddleware
from gatewayz.api.responses import Responses
from gatewayz.audit.routes import router as audit_router
from gatewayz.auth.role_routes import router as roles_router
from gatewayz.auth.routes import router as accounts_router
from gatewayz.billing.routes import router as credits_router
from gatewayz.catalog.routes import router as models_router
from gatewayz.container import Container
from gatewayz.coupons.routes import router as coupons_router
from gatewayz.error_monitor.routes import router as error_monitor_router
from gatewayz.errors import GatewayError, InvalidRequest, status_error
from gatewayz.health.routes import router as health_router
from gatewayz.incidents.routes import router as incidents_router
from gatewayz.limits.routes import router as velocity_router
from gatewayz.media.routes import router as media_router
from gatewayz.monitoring.routes import router as monitoring_router
from gatewayz.observability.routes import router as metrics_router
from gatewayz.payments.routes import router as stripe_router
from gatewayz.plans.routes import router as plans_router
from gatewayz.referrals.routes import router as referrals_router
from gatewayz.routing.routes import router as routing_router
from gatewayz.settings import Settings, load_settings
from gatewayz.users.routes import router as users_router

log = logging.getLogger("gatewayz")


def _error_response(exc: GatewayError) -> Response:
    return Response(exc.body_bytes(), status_code=exc.status, media_type="application/json", headers=exc.headers)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    parts, param = [], None
    for e in exc.errors():
        loc = [str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path")]
        param = param or (".".join(loc) or None)
        parts.append(f"{'.'.join(loc) or 'body'}: {e.get('msg')}")
    return "Invalid request: " + "; ".join(parts), param


def create_app(settings: Settings) -> Gateway:
    container = Container(settings, serving=True)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await container.start()
        # Everything built so far lives as long as the process: move it out of the collector's sight so
        # full collections under load walk only per-request garbage (a large cut in tail latency).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await container.stop()

    app = FastAPI(title="GatewayZ", version=__version__, lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.container = container

    @app.exception_handler(GatewayError)
    async def _gateway_error(_: Request, exc: GatewayError) -> Response:
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> Response:
        message, param = _validation_message(exc)
        return _error_response(InvalidRequest(message, param=param, code="invalid_value"))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> Response:
        # Logged with its trace, and reported to Sentry when configured, by RequestIdMiddleware (the exception
        # is re-raised to it); the client only ever sees this body.
        return _error_response(GatewayError("Internal error; quote the X-Request-ID if you report it."))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else "Request failed."
        if exc.status_code == 404 and message == "Not Found":
            message = "No such route."
        err = status_error(exc.status_code, message)
        err.headers.update(exc.headers or {})  # e.g. Allow on a 405
        return _error_response(err)

    routers = (
        health_router, models_router, users_router, credits_router, routing_router, metrics_router, audit_router,
        media_router,
        analytics_router,
        coupons_router,
        referrals_router,
        monitoring_router,
        accounts_router,
        roles_router,
        plans_router, stripe_router,
        error_monitor_router, incidents_router,
        allowlist_router, velocity_router,
    )
    for router in routers:
        app.include_router(router)
    chat = ChatCompletions(container)
    hot: dict[tuple[str, str], Endpoint] = {
        ("POST", "/v1/chat/completions"): chat, ("POST", "/chat/completions"): chat,
        ("POST", "/v1/messages"): Messages(container), ("POST", "/v1/messages/count_tokens"): CountTokens(container),
        ("POST", "/v1/responses"): Responses(container), ("POST", "/v1/completions"): Completions(container)}
    inference = {path for _, path in hot} | {getattr(r, "path", "") for r in media_router.routes}
    return Gateway(app, hot, inference)


class Gateway:
    """The ASGI entry point. Inference routes go straight to their endpoints; everything else (and the
    lifespan) goes through FastAPI. FastAPI's middleware stack costs more per request than the whole
    auth + credit path, so the hot routes skip it; the request-id middleware wraps both. With tracing on,
    the tracing middleware wraps it all (a trace per request to one of the `inference` paths), and so does
    the Sentry transaction middleware with a Sentry traces sample rate; with both off, neither is there."""

    def __init__(self, api: FastAPI, hot: Mapping[tuple[str, str], Endpoint], inference: set[str]) -> None:
        self.api = api
        self.state = api.state
        self._hot = hot
        self._hot_paths: dict[str, str] = {}
        for method, path in hot:
            self._hot_paths[path] = ", ".join(filter(None, [self._hot_paths.get(path), method]))
        c: Container = api.state.container
        self._managed = SecurityHeaders(api, c.settings.security_headers)
        hot_paths = tuple(self._hot_paths)

        def observe(route: str, method: str, status: int, seconds: float) -> None:
            c.metrics.http_request(route, method, status, seconds)
            if method == "POST" and (route in hot_paths or route.startswith("/v1/")):
                c.velocity.record(status)  # the inference error rate drives velocity mode

        entry: Endpoint = RequestIdMiddleware(with_cors(self._route, c.settings.cors), observe,
                                              c.error_monitor.exception,
                                              c.sentry.capture if c.sentry is not None else None)
        if c.sentry is not None:
            entry = c.sentry.wrap(entry, inference)
        if c.tracing is not None:
            entry = c.tracing.wrap(entry, inference)
        self._entry = entry

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            endpoint = self._hot.get((scope["method"], scope["path"]))
            if endpoint is not None:
                scope["gw.route"] = scope["path"]
                await endpoint(scope, receive, send)
                return
            allowed = self._hot_paths.get(scope["path"])
            if allowed is not None:
                err = status_error(405, "Method Not Allowed")
                err.headers["allow"] = allowed
                await send_error(send, err)
                return
        await self._managed(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._entry(scope, receive, send)


def app_factory() -> Gateway:
    """For `uvicorn --factory` and multi-worker serving: settings come from the environment."""
    return create_app(load_settings())
