"""Prometheus metrics for the gateway: one `Metrics` object, owned by the Container, with its own registry.

Served as the Prometheus text format 0.0.4, or as OpenMetrics (with trace-id exemplars on the request
duration histogram) when the scraper asks for application/openmetrics-text. With several worker processes,
give every worker the same `multiprocess_dir` (and clear it once before they start, with
`reset_multiprocess_dir`): each worker writes its own memory-mapped files and whichever worker is scraped
renders the sum of all of them.

Only what happened is counted: every value comes from a finished request or an event that was reported.
Nothing is read from a database or Redis at scrape time, so an unreachable dependency can never turn
into an invented value (a zero balance, a closed breaker); a histogram without observations reports no
percentiles."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable
from typing import Any, TypeGuard

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as openmetrics

from gatewayz.observability.multiproc import Binding, ExemplarStore, MultiprocessSource, reset_multiprocess_dir
from gatewayz.observability.snapshot import snapshot

__all__ = ["Metrics", "LabelGuard", "reset_multiprocess_dir"]

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
HTTP_BUCKETS = (0.001, 0.0025, *DURATION_BUCKETS)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0)
OPENMETRICS = "application/openmetrics-text"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
NANOS_PER_USD = 1_000_000_000
OTHER = "other"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_TRACE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")


class LabelGuard:
    """Caps the distinct values each label takes (per process): the first `cap` values pass, later new
    ones become "other", so a stream of unexpected model names cannot grow the series without bound."""

    def __init__(self, cap: int = 500, max_length: int = 128) -> None:
        self.cap = cap
        self.max_length = max_length
        self._seen: dict[str, set[str]] = {}

    def __call__(self, label: str, value: object, default: str) -> str:
        text = default if value is None or value == "" else str(value)[: self.max_length]
        seen = self._seen.setdefault(label, set())
        if text in seen:
            return text
        if len(seen) >= self.cap:
            return OTHER
        seen.add(text)
        return text


class LocalSource:
    """This process's metrics, without the `_created` series (timestamps, not data; multiprocess mode has
    none either, so both modes expose the same series)."""

    def __init__(self, metrics: list[MetricWrapperBase]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        for metric in self._metrics:
            for family in metric.collect():
                family.samples = [s for s in family.samples if not s.name.endswith("_created")]
                yield family


def wants_openmetrics(accept: str | None) -> bool:
    return any(part.split(";", 1)[0].strip().lower() == OPENMETRICS for part in (accept or "").split(","))


class Metrics:
    def __init__(self, multiprocess_dir: str | None = None, *, max_label_values: int = 500) -> None:
        self._bind = Binding(multiprocess_dir)
        self._label = LabelGuard(max_label_values)
        self._exemplars = ExemplarStore()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.registry = CollectorRegistry()
        # The metrics register nowhere: the registry collects them through a source (this process's
        # values, or in multiprocess mode every worker's files).
        with self._bind():
            self._requests = Counter("inference_requests_total", "Finished inference requests.",
                                     ("endpoint", "model", "provider", "status"), registry=None)
            self._duration = Histogram("inference_request_duration_seconds",
                                       "Inference request duration, to the last byte.",
                                       ("endpoint", "model", "provider"), buckets=DURATION_BUCKETS, registry=None)
            self._ttft = Histogram("inference_ttft_seconds", "Time to the first streamed token.",
                                   ("model", "provider"), buckets=TTFT_BUCKETS, registry=None)
            self._tokens = Counter("tokens_total",
                                   "Tokens billed, by kind (prompt, completion; cached, reasoning: parts of them).",
                                   ("model", "provider", "kind"), registry=None)
            self._cost = Counter("cost_usd_total", "Cost charged for inference, in USD.",
                                 ("model", "provider"), registry=None)
            self._overhead = Histogram("gateway_overhead_seconds",
                                       "Time spent in the gateway itself (request time minus upstream time).",
                                       buckets=OVERHEAD_BUCKETS, registry=None)
            self._upstream_errors = Counter("upstream_errors_total", "Failed upstream attempts, by error class.",
                                            ("provider", "error"), registry=None)
            self._failovers = Counter("failovers_total", "Requests that needed more than one attempt.",
                                      ("model",), registry=None)
            self._in_flight = Gauge("inference_requests_in_flight", "Inference requests being served.",
                                    ("endpoint",), registry=None, multiprocess_mode="livesum")
            self._http = Counter("http_requests_total", "HTTP requests answered.",
                                 ("route", "method", "status"), registry=None)
            self._http_duration = Histogram("http_request_duration_seconds", "HTTP request duration.",
                                            ("route", "method"), buckets=HTTP_BUCKETS, registry=None)
            self._breaker = Counter("circuit_breaker_state_transitions_total", "Circuit breaker transitions.",
                                    ("provider", "from_state", "to_state"), registry=None)
            self._rate_limited = Counter("rate_limit_rejections_total", "Requests refused by a rate limit.",
                                         ("reason",), registry=None)
            self._cache_hits = Counter("cache_hits_total",
                                       "Cache hits, by cache (provider_prompt: a provider's prompt cache served "
                                       "part of the prompt).", ("kind",), registry=None)
            self._credits = Counter("credits_usd_total", "Credits reserved, settled and refunded, in USD.",
                                    ("kind",), registry=None)
            self._stream_problems = Counter("stream_chunk_problems_total",
                                            "Upstream stream chunks that were malformed, or streams interrupted.",
                                            ("provider", "kind"), registry=None)
        if self._bind.directory is not None:
            self.registry.register(MultiprocessSource(self._bind.directory, self._exemplars))
        else:
            self.registry.register(LocalSource([v for v in vars(self).values() if isinstance(v, MetricWrapperBase)]))

    @property
    def multiprocess(self) -> bool:
        return self._bind.multiprocess

    # ---- recording -------------------------------------------------------------------------------------

    def request_done(self, ctx: Any, trace_id: str | None = None, duration_s: float | None = None) -> None:
        """One finished inference request. `duration_s` defaults to the time since `ctx.started`;
        `trace_id` (or `ctx.trace_id`) becomes the exemplar of the duration observation."""
        label, child = self._label, self._child
        endpoint = label("endpoint", getattr(ctx, "endpoint", None), "unknown")
        model = label("model", getattr(getattr(ctx, "entry", None), "id", None), "unknown")
        provider = label("provider", getattr(ctx, "provider", None), "none")
        status = getattr(ctx, "status", None)
        child(self._requests, endpoint, model, provider, "unknown" if status is None else str(status)).inc()
        if duration_s is None:
            started = getattr(ctx, "started", None)
            duration_s = time.perf_counter() - started if _number(started) else None
        if _number(duration_s):
            trace = trace_id if trace_id is not None else getattr(ctx, "trace_id", None)
            self._observe_duration((endpoint, model, provider), duration_s, trace)
        ttft_ms = getattr(ctx, "ttft_ms", None)
        if getattr(ctx, "stream", False) and _number(ttft_ms):
            child(self._ttft, model, provider).observe(ttft_ms / 1000)
        usage = getattr(ctx, "usage", None)
        if usage is not None:
            for kind in ("prompt", "completion", "cached", "reasoning"):
                tokens = getattr(usage, f"{kind}_tokens", 0)
                if _number(tokens) and tokens > 0:
                    child(self._tokens, model, provider, kind).inc(tokens)
            cached = getattr(usage, "cached_tokens", 0)
            if _number(cached) and cached > 0:
                self.cache_hit("provider_prompt")  # the provider served part of the prompt from its cache
        cost = getattr(ctx, "cost_nanos", 0)
        if _number(cost) and cost > 0:
            child(self._cost, model, provider).inc(cost / NANOS_PER_USD)
        overhead_ms = getattr(ctx, "overhead_ms", None)
        if callable(overhead_ms):
            value = overhead_ms()
            if _number(value):
                self._overhead.observe(value / 1000)
        attempts = list(getattr(ctx, "attempts", None) or ())
        for a in attempts:
            error = getattr(a, "error", "ok")
            if error != "ok":
                child(self._upstream_errors, label("provider", getattr(a, "provider", None), "none"),
                      label("error", error, "unknown")).inc()
        if len(attempts) > 1:
            child(self._failovers, model).inc()

    def in_flight(self, endpoint: str, delta: int) -> None:
        """+1 when an inference request starts, -1 when it ends (summed over live workers)."""
        self._child(self._in_flight, self._label("endpoint", endpoint, "unknown")).inc(delta)

    def http_request(self, route: str, method: str, status: int, duration_s: float) -> None:
        """`route` should be the route template ("/v1/keys/{key_id}"), never the raw path."""
        route = self._label("route", route, "unmatched")
        method = method.upper() if method.upper() in _METHODS else OTHER
        self._child(self._http, route, method, str(status)).inc()
        if _number(duration_s):
            self._child(self._http_duration, route, method).observe(duration_s)

    def breaker_transition(self, key: str, before: str, after: str) -> None:
        provider = self._label("provider", key.split("|", 1)[0], "none")
        self._child(self._breaker, provider, self._label("state", before, "unknown"),
                    self._label("state", after, "unknown")).inc()

    def rate_limited(self, reason: str) -> None:
        self._child(self._rate_limited, self._label("reason", reason, "unknown")).inc()

    def cache_hit(self, kind: str) -> None:
        self._child(self._cache_hits, self._label("cache", kind, "unknown")).inc()

    def credits(self, kind: str, nanos: int) -> None:
        """kind: reserved, settled or refunded; amounts are nanodollars (zero and negative are ignored)."""
        if nanos > 0:
            self._child(self._credits, self._label("credit_kind", kind, "unknown")).inc(nanos / NANOS_PER_USD)

    def stream_chunk_problem(self, provider: str, kind: str) -> None:
        """kind: malformed (a chunk that did not parse) or interrupted (the stream broke off)."""
        self._child(self._stream_problems, self._label("provider", provider, "none"),
                    self._label("problem", kind, "unknown")).inc()

    def _child(self, metric: Any, *values: str) -> Any:
        """The labelled child, created (once) with this object's value class bound."""
        key = (id(metric), values)
        found = self._children.get(key)
        if found is None:
            with self._bind():
                found = self._children[key] = metric.labels(*values)
        return found

    def _observe_duration(self, values: tuple[str, str, str], seconds: float, trace_id: object) -> None:
        exemplar = {"trace_id": trace_id} if isinstance(trace_id, str) and _TRACE_ID.match(trace_id) else None
        child = self._child(self._duration, *values)
        if not self._bind.multiprocess:
            child.observe(seconds, exemplar=exemplar)
            return
        child.observe(seconds)
        if exemplar is not None:
            labels = dict(zip(("endpoint", "model", "provider"), values, strict=True))
            self._exemplars.record("inference_request_duration_seconds", labels, DURATION_BUCKETS, seconds,
                                   exemplar, time.time())

    # ---- exposition ------------------------------------------------------------------------------------

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The body and its content type: OpenMetrics (with exemplars) when `accept` asks for it, else the
        Prometheus text format 0.0.4."""
        if wants_openmetrics(accept):
            body: bytes = openmetrics.generate_latest(self.registry)  # type: ignore[no-untyped-call]
            return body, OPENMETRICS_CONTENT_TYPE
        return generate_latest(self.registry), PROMETHEUS_CONTENT_TYPE

    def snapshot(self) -> dict[str, Any]:
        """Per metric name: type, help, samples ({name, labels, value}); histograms also get per-series and
        overall count, sum and p50/p95/p99 (None when nothing was observed)."""
        return snapshot(self.registry.collect())

    def close(self) -> None:
        """At worker shutdown: this worker's live gauges leave the multiprocess sum."""
        self._bind.remove_live_files()


def _number(value: object) -> TypeGuard[float]:
    """A real, finite, non-negative number (a missing or garbled field is skipped, never recorded)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
