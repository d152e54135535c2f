"""create_app(settings): routes, middleware, error rendering, and a lifespan that owns the Container."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from gatewayz import __version__
from gatewayz.api.chat import ChatCompletions
from gatewayz.api.middleware import RequestIdMiddleware
from gatewayz.billing.routes import router as credits_router
from gatewayz.catalog.routes import router as models_router
from gatewayz.container import Container
from gatewayz.errors import GatewayError, InvalidRequest, status_error
from gatewayz.health.routes import router as health_router
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


def create_app(settings: Settings) -> FastAPI:
    container = Container(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await container.start()
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

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else "Request failed."
        if exc.status_code == 404 and message == "Not Found":
            message = "No such route."
        return _error_response(status_error(exc.status_code, message))

    chat = ChatCompletions(container)
    for path in ("/v1/chat/completions", "/chat/completions"):
        app.router.add_route(path, chat, methods=["POST"], include_in_schema=False)
    for router in (health_router, models_router, users_router, credits_router):
        app.include_router(router)
    app.add_middleware(RequestIdMiddleware)
    return app


def app_factory() -> FastAPI:
    """For `uvicorn --factory` and multi-worker serving: settings come from the environment."""
    return create_app(load_settings())
