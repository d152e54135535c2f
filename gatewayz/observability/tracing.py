"""Tracing of inference requests, and the no-op that stands in for it when tracing is off.

Every request context carries a `trace` (pipeline.context.RequestContext.trace). With tracing off it is
NO_TRACE, whose methods return at once and allocate nothing, so the hot path pays one attribute load and a
call per stage. With tracing on (an exporter configured, see settings.TracingConfig) it is an
observability.otel.RequestTrace: the request's server span, which opens a child span per stage and per
upstream attempt. OpenTelemetry is imported only then (the `otel` extra), in observability/otel.py."""

from __future__ import annotations

from collections.abc import Collection
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from gatewayz.settings import ConfigError

if TYPE_CHECKING:
    from gatewayz.api.asgi import Endpoint, Message, Receive, Scope, Send
    from gatewayz.observability.otel import Tracing
    from gatewayz.pipeline.context import RequestContext
    from gatewayz.settings import TracingConfig

AttrValue = str | bool | int | float | list[str]


class SpanScope(Protocol):
    """A stage's span, current for its `with` block: what happens inside (upstream calls, logs) is its child."""

    def __enter__(self) -> SpanScope: ...
    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        ...
    def set(self, key: str, value: AttrValue) -> None: ...
    def event(self, name: str, attributes: dict[str, AttrValue]) -> None: ...
    def fail(self, error_type: str) -> None: ...


class Trace(Protocol):
    """One request's trace, as the pipeline sees it."""

    @property
    def trace_id(self) -> str | None:
        """The sampled trace's id (32 hex digits), for exemplars; None when there is none."""
        ...

    def stage(self, name: str, ctx: RequestContext) -> SpanScope:
        """A span for one stage (authenticate, rate_limits, plan, reserve, stream, settle); on leaving it
        gets the stage's results from ctx and, when the block raised, the error."""
        ...

    def attempt(self, ctx: RequestContext, provider: str, model: str, retry: bool) -> SpanScope:
        """A client span for one upstream attempt; its outcome is the Attempt the block appends to
        ctx.attempts. The Engine propagates it to the upstream in `traceparent`."""
        ...

    def done(self, ctx: RequestContext) -> None:
        """The request is over: its model, provider, tokens, cost and latency go on the server span."""
        ...


class NoTrace:
    """Tracing off: a trace and a span in one object whose every method does nothing."""

    __slots__ = ()
    trace_id: str | None = None

    def stage(self, name: str, ctx: RequestContext) -> NoTrace:
        return self

    def attempt(self, ctx: RequestContext, provider: str, model: str, retry: bool) -> NoTrace:
        return self

    def done(self, ctx: RequestContext) -> None:
        return None

    def __enter__(self) -> NoTrace:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        return None

    def set(self, key: str, value: AttrValue) -> None:
        return None

    def event(self, name: str, attributes: dict[str, AttrValue]) -> None:
        return None

    def fail(self, error_type: str) -> None:
        return None


NO_TRACE = NoTrace()


def trace_of(scope: Any) -> Trace:
    """The trace the tracing middleware opened for this request (NO_TRACE when tracing is off)."""
    trace: Trace = scope.get("gw.trace", NO_TRACE)
    return trace


class InferenceMiddleware:
    """Base of the tracing and Sentry-transaction middlewares: `observe` sees the requests to the inference
    paths, everything else passes straight through."""

    def __init__(self, app: Endpoint, paths: Collection[str]) -> None:
        self.app = app
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        await self.observe(scope, receive, send)

    async def observe(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class ResponseWatch:
    """A `send` that remembers the response status (500 until one is sent) and adds `headers` to it."""

    __slots__ = ("_send", "_headers", "status")

    def __init__(self, send: Send, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self._send = send
        self._headers = headers
        self.status = 500

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            if self._headers:
                message["headers"] = [*message.get("headers", ()), *self._headers]
        await self._send(message)


class TracingUnavailable(ConfigError):
    """Tracing is configured but the OpenTelemetry packages are not installed."""


def make_tracing(cfg: TracingConfig) -> Tracing | None:
    """The tracer provider for `cfg`, or None when tracing is off (nothing is imported then)."""
    if not cfg.enabled:
        return None
    try:
        from gatewayz.observability.otel import Tracing
    except ImportError as exc:
        raise TracingUnavailable(f"tracing.exporter is {cfg.exporter!r} but OpenTelemetry is not installed "
                                 f"({exc.name}): pip install 'gatewayz[otel]'") from None
    return Tracing(cfg)
