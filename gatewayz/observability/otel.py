"""OpenTelemetry tracing (imported only when tracing is on; needs the `otel` extra).

One trace per inference request: a server span opened by `TracedApp` around the whole exchange (continuing
the client's W3C `traceparent` / `tracestate`, returned to it in `traceparent`), with a child span per
pipeline stage and per upstream attempt (RequestTrace). The Engine sends the attempt's context upstream
(`Tracing.inject`), so a traced provider joins the trace. Spans go to a BatchSpanProcessor and the
configured exporter (OTLP over HTTP, or the console). Log records made inside a span carry its ids."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from opentelemetry import context as otel_context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace import sampling as samplers
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import (
    Span,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
    format_span_id,
    format_trace_id,
    get_current_span,
    set_span_in_context,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gatewayz import __version__
from gatewayz.observability.tracing import NO_TRACE, AttrValue, InferenceMiddleware, ResponseWatch

if TYPE_CHECKING:
    from gatewayz.api.asgi import Endpoint, Receive, Scope, Send
    from gatewayz.pipeline.context import RequestContext
    from gatewayz.settings import TracingConfig

Describe = Callable[["RequestContext"], dict[str, Any]]


def _iso(ts: float | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class CountingExporter(SpanExporter):
    """Wraps the configured exporter to report what it did (GET /api/instrumentation/health)."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.exported = 0
        self.failed = 0
        self.last_export: float | None = None
        self.last_failure: float | None = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self.inner.export(spans)
        if result is SpanExportResult.SUCCESS:
            self.exported += len(spans)
            self.last_export = time.time()
        else:
            self.failed += len(spans)
            self.last_failure = time.time()
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def _sampler(cfg: TracingConfig) -> samplers.Sampler:
    ratio = samplers.TraceIdRatioBased(cfg.sampler_arg)
    root = {"always_on": samplers.ALWAYS_ON, "always_off": samplers.ALWAYS_OFF, "traceidratio": ratio}
    name = cfg.sampler.removeprefix("parentbased_")
    return samplers.ParentBased(root[name]) if cfg.sampler.startswith("parentbased_") else root[name]


def _exporter(cfg: TracingConfig) -> SpanExporter:
    if cfg.exporter == "console":
        return ConsoleSpanExporter(service_name=cfg.service_name)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    return OTLPSpanExporter(endpoint=cfg.endpoint, headers=cfg.headers or None)


def public_url(url: str) -> str:
    """The URL without credentials (user:password@) for display."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    return urlunsplit(parts._replace(netloc=host if parts.port is None else f"{host}:{parts.port}"))


class Tracing:
    """The process's tracer provider for one gateway (not the global one, so several can coexist)."""

    def __init__(self, cfg: TracingConfig) -> None:
        self.cfg = cfg
        attributes: dict[str, Any] = {"service.name": "gatewayz", "service.version": __version__,
                                      **cfg.resource_attributes}
        if cfg.service_name:
            attributes["service.name"] = cfg.service_name
        self.provider = TracerProvider(sampler=_sampler(cfg), resource=Resource(attributes), shutdown_on_exit=False)
        self.exporter = CountingExporter(_exporter(cfg))
        self.provider.add_span_processor(BatchSpanProcessor(self.exporter))
        self.tracer: Tracer = self.provider.get_tracer("gatewayz", __version__)
        self.propagator = TraceContextTextMapPropagator()
        install_log_ids()

    def wrap(self, app: Endpoint, paths: Collection[str]) -> TracedApp:
        """The ASGI app with a trace around every request to one of `paths` (the inference routes)."""
        return TracedApp(app, self, paths)

    def inject(self, headers: dict[str, str]) -> dict[str, str]:
        """A copy of an upstream request's headers with the current span's `traceparent` (and `tracestate`)."""
        out = dict(headers)
        self.propagator.inject(out)
        return out

    def add_exporter(self, exporter: SpanExporter) -> None:
        """Also send every span to `exporter`, synchronously as each ends (tests use an in-memory one)."""
        self.provider.add_span_processor(SimpleSpanProcessor(exporter))

    def flush(self, timeout_s: float = 10.0) -> bool:
        return self.provider.force_flush(int(timeout_s * 1000))

    def shutdown(self) -> None:
        """Export what is queued, then stop (blocking: call it off the event loop)."""
        self.provider.shutdown()

    def status(self) -> dict[str, Any]:
        e = self.exporter
        return {"enabled": True, "exporter": self.cfg.exporter,
                "endpoint": public_url(self.cfg.endpoint) if self.cfg.exporter == "otlp" else None,
                "service_name": self.provider.resource.attributes.get("service.name"),
                "sampler": self.cfg.sampler, "sampler_arg": self.cfg.sampler_arg,
                "spans_exported": e.exported, "spans_failed": e.failed,
                "last_export_at": _iso(e.last_export), "last_failure_at": _iso(e.last_failure)}


class TracedApp(InferenceMiddleware):
    """Opens the server span of each inference request, makes it current while the request runs, hands it
    to the endpoint in scope["gw.trace"] and returns its `traceparent` on the response."""

    def __init__(self, app: Endpoint, tracing: Tracing, paths: Collection[str]) -> None:
        super().__init__(app, paths)
        self.tracing = tracing

    async def observe(self, scope: Scope, receive: Receive, send: Send) -> None:
        t = self.tracing
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]
                   if k in (b"traceparent", b"tracestate")}
        parent = t.propagator.extract(carrier) if carrier else None
        method, path = scope["method"], scope["path"]
        span = t.tracer.start_span(f"{method} {path}", context=parent, kind=SpanKind.SERVER,
                                   attributes={"http.request.method": method, "http.route": path, "url.path": path,
                                               "url.scheme": scope.get("scheme", "http")})
        current = set_span_in_context(span, parent)
        token = otel_context.attach(current)
        # An unsampled request keeps its context (propagated, not sampled downstream either) but opens no spans.
        scope["gw.trace"] = RequestTrace(t.tracer, span) if span.is_recording() else NO_TRACE
        returned: dict[str, str] = {}
        t.propagator.inject(returned, current)
        watch = ResponseWatch(send, [(k.encode("latin-1"), v.encode("latin-1")) for k, v in returned.items()])
        try:
            await self.app(scope, receive, watch)
        except BaseException as exc:
            span.set_attribute("error.type", type(exc).__name__)
            raise
        finally:
            span.set_attribute("http.response.status_code", watch.status)
            if watch.status >= 500:
                span.set_status(Status(StatusCode.ERROR, f"HTTP {watch.status}"))
            request_id = scope.get("gw.request_id")
            if request_id:
                span.set_attribute("gatewayz.request_id", request_id)
            otel_context.detach(token)
            span.end()


class RequestTrace:
    """One request's trace (see tracing.Trace): the server span and the spans it opens."""

    __slots__ = ("_tracer", "root", "trace_id")

    def __init__(self, tracer: Tracer, root: Span) -> None:
        self._tracer = tracer
        self.root = root
        self.trace_id = format_trace_id(root.get_span_context().trace_id)

    def stage(self, name: str, ctx: RequestContext) -> StageSpan:
        return StageSpan(self._tracer, name, SpanKind.INTERNAL, None, ctx, DESCRIBE.get(name))

    def attempt(self, ctx: RequestContext, provider: str, model: str, retry: bool) -> StageSpan:
        attributes: dict[str, AttrValue] = {"gatewayz.provider": provider, "gen_ai.request.model": model,
                                            "gatewayz.attempt": len(ctx.attempts) + 1, "gatewayz.retry": retry}
        return StageSpan(self._tracer, f"upstream {provider}", SpanKind.CLIENT, attributes, ctx,
                         _attempt_outcome(len(ctx.attempts)))

    def done(self, ctx: RequestContext) -> None:
        self.root.set_attributes(request_attributes(ctx))


class StageSpan:
    """A child span, current from __enter__ to __exit__."""

    __slots__ = ("_tracer", "_name", "_kind", "_attributes", "_ctx", "_describe", "_span", "_token")

    def __init__(self, tracer: Tracer, name: str, kind: SpanKind, attributes: dict[str, AttrValue] | None,
                 ctx: RequestContext, describe: Describe | None) -> None:
        self._tracer, self._name, self._kind, self._attributes = tracer, name, kind, attributes
        self._ctx, self._describe = ctx, describe

    def __enter__(self) -> StageSpan:
        self._span = self._tracer.start_span(self._name, kind=self._kind, attributes=self._attributes,
                                             record_exception=False, set_status_on_exception=False)
        self._token = otel_context.attach(set_span_in_context(self._span))
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        span = self._span
        try:
            recording = span.is_recording()
            attributes = self._describe(self._ctx) if self._describe is not None and recording else {}
            if ev is not None:
                attributes["error.type"] = str(getattr(ev, "kind", None) or getattr(ev, "code", None)
                                               or type(ev).__name__)
            if attributes and recording:
                span.set_attributes(attributes)
            if "error.type" in attributes and recording:
                span.set_status(Status(StatusCode.ERROR, attributes["error.type"]))
        finally:
            otel_context.detach(self._token)
            span.end()

    def set(self, key: str, value: AttrValue) -> None:
        self._span.set_attribute(key, value)

    def event(self, name: str, attributes: dict[str, AttrValue]) -> None:
        self._span.add_event(name, attributes)

    def fail(self, error_type: str) -> None:
        self._span.set_attribute("error.type", error_type)
        self._span.set_status(Status(StatusCode.ERROR, error_type))


def _attempt_outcome(before: int) -> Describe:
    """The attempt span's outcome: the Attempt appended during its block (status, error class)."""
    def describe(ctx: RequestContext) -> dict[str, Any]:
        if len(ctx.attempts) <= before:
            return {}
        a = ctx.attempts[-1]
        out: dict[str, Any] = {"gatewayz.elapsed_ms": round(a.elapsed_ms, 3)}
        if a.status is not None:
            out["http.response.status_code"] = a.status
        if a.error != "ok":
            out["error.type"] = a.error
        return out
    return describe


def _usage(ctx: RequestContext) -> dict[str, Any]:
    u = ctx.usage
    if u is None:
        return {}
    return {"gen_ai.usage.input_tokens": u.prompt_tokens, "gen_ai.usage.output_tokens": u.completion_tokens,
            "gatewayz.usage.cached_tokens": u.cached_tokens, "gatewayz.usage.reasoning_tokens": u.reasoning_tokens,
            "gatewayz.usage.estimated": u.estimated}


def _authenticated(ctx: RequestContext) -> dict[str, Any]:
    p = ctx.principal
    return {} if p is None or p.user_id is None else {"gatewayz.user_id": p.user_id, "gatewayz.key_id": p.key_id}


def _limited(ctx: RequestContext) -> dict[str, Any]:
    rate, out = ctx.rate, {}
    for kind in ("requests", "tokens"):
        d = getattr(rate, kind, None)
        if d is not None:
            out[f"gatewayz.ratelimit.remaining_{kind}"] = d.remaining
    return out


def _planned(ctx: RequestContext) -> dict[str, Any]:
    if ctx.entry is None:
        return {}
    return {"gatewayz.model": ctx.entry.id,
            "gatewayz.candidates": [f"{c.route.provider}/{c.route.upstream_model}" for c in ctx.candidates]}


def _reserved(ctx: RequestContext) -> dict[str, Any]:
    return {} if ctx.hold is None else {"gatewayz.hold_nanos": ctx.hold.amount}


def _settled(ctx: RequestContext) -> dict[str, Any]:
    return {"gatewayz.cost_nanos": ctx.cost_nanos, **_usage(ctx)}


DESCRIBE: dict[str, Describe] = {"authenticate": _authenticated, "rate_limits": _limited, "plan": _planned,
                                 "reserve": _reserved, "settle": _settled}


def request_attributes(ctx: RequestContext) -> dict[str, Any]:
    """What the server span says about an inference request: model, provider, tokens, cost, latency."""
    out: dict[str, Any] = {
        "gatewayz.request_id": ctx.request_id, "gatewayz.endpoint": ctx.endpoint,
        "gen_ai.operation.name": "chat" if ctx.operation is None else ctx.endpoint,
        "gen_ai.request.model": ctx.requested_model, "gatewayz.stream": ctx.stream,
        "gatewayz.status": ctx.status, "gatewayz.attempts": len(ctx.attempts), "gatewayz.cost_nanos": ctx.cost_nanos,
        "gatewayz.latency_ms": round((time.perf_counter() - ctx.started) * 1000, 3),
        "gatewayz.upstream_ms": round(ctx.upstream_s * 1000, 3), "gatewayz.overhead_ms": round(ctx.overhead_ms(), 3),
        **_authenticated(ctx), **_usage(ctx)}
    if ctx.entry is not None:
        out["gatewayz.model"] = ctx.entry.id
    if ctx.provider:
        out["gatewayz.provider"] = ctx.provider
    if ctx.upstream_model:
        out["gen_ai.response.model"] = ctx.upstream_model
    if ctx.ttft_ms is not None:
        out["gatewayz.ttft_ms"] = round(ctx.ttft_ms, 3)
    if ctx.error_code:
        out["error.type"] = ctx.error_code
    return out


def install_log_ids() -> None:
    """Log records made while a span is current carry its trace and span ids (observability.logging
    writes them). Installed once per process, with the first tracer; without tracing nothing is installed."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "gatewayz_trace_ids", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        sc = get_current_span().get_span_context()
        if sc.is_valid:
            record._gw_trace_ids = (format_trace_id(sc.trace_id), format_span_id(sc.span_id))
        return record

    factory.gatewayz_trace_ids = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
