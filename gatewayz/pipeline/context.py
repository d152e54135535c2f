"""The state one inference request carries through the stages."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from gatewayz.billing.credits import Hold
from gatewayz.catalog.service import CatalogEntry, Route
from gatewayz.keys.service import Principal
from gatewayz.observability.tracing import NO_TRACE, Trace


@dataclass(slots=True)
class Attempt:
    provider: str
    status: int | None       # HTTP status, None for a connection error or timeout
    error: str               # short class: "timeout", "connect", "http_503", ...
    elapsed_ms: float


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False   # True when the upstream never reported usage (a stream cut midway)
    images: int = 0           # media units, for image, transcription and speech models
    audio_ms: int = 0
    characters: int = 0


@dataclass(slots=True)
class RequestContext:
    request_id: str
    client_request_id: bool
    endpoint: str
    started: float = field(default_factory=time.perf_counter)
    principal: Principal | None = None
    client_ip: str = ""                      # api.client_ip: the socket peer, or the client behind our proxies
    raw: bytes = b""
    body: dict[str, Any] = field(default_factory=dict)
    requested_model: str = ""
    entry: CatalogEntry | None = None        # the model being served (a fallback model once one serves)
    route: Route | None = None               # the provider that served it, with its prices
    candidates: list[Any] = field(default_factory=list)  # routing.planner.Candidate, in order
    session: str | None = None               # sticky routing key, when the client gives one
    stream: bool = False
    include_usage: bool = False
    hold: Hold | None = None
    daily: Any = None                        # plans.service.DailyHold: counted against the daily caps
    provider: str | None = None
    upstream_model: str | None = None
    upstream_s: float = 0.0
    attempts: list[Attempt] = field(default_factory=list)
    usage: Usage | None = None
    cost_nanos: int = 0
    status: int = 200
    error_code: str | None = None
    error_message: str | None = None         # what the client was told (for the error monitor)
    ttft_ms: float | None = None
    rate: Any = None                         # pipeline.limit.RateState once the limits passed
    operation: str | None = None             # a non-chat operation's upstream path ("embeddings", ...)
    form: Any = None                         # providers.adapter.Form for a multipart operation
    echo: Any = None                         # what a client dialect keeps from its request for the answer
    settled: bool = False
    observed: bool = False
    trace: Trace = NO_TRACE                  # the request's spans (a no-op unless tracing is on)

    def overhead_ms(self) -> float:
        return max((time.perf_counter() - self.started - self.upstream_s) * 1000, 0.0)
