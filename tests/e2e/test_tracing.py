"""OpenTelemetry traces end to end: one trace per inference request with a span per stage and per upstream
attempt, the W3C trace context continued from the client, returned on the response and sent upstream; spans
exported over OTLP/HTTP to a collector (a receiver run here); trace ids in logs and metric exemplars; and
with tracing off, none of it (nor an OpenTelemetry import)."""

from __future__ import annotations

import gzip
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import openai
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gatewayz.observability.logging import JsonFormatter
from gatewayz.settings import ModelConfig, ModelRoute, Pricing, TracingConfig
from tests.conftest import GatewayFactory
from tests.emulator import Emulator, Fault
from tests.gateway_server import ADMIN_KEY, GatewayServer

STAGES = ["authenticate", "rate_limits", "plan", "reserve", "upstream emu-a", "settle"]
HELLO = [{"role": "user", "content": "hello tracing"}]
PARENT_TRACE, PARENT_SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


class OtlpReceiver:
    """A collector's OTLP/HTTP traces endpoint: decodes every export (protobuf) into plain dicts."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        self.spans: list[dict[str, Any]] = []
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers["content-length"]))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest.FromString(body)
                receiver.paths.append(self.path)
                for rs in request.resource_spans:
                    resource = {a.key: a.value.string_value for a in rs.resource.attributes}
                    for ss in rs.scope_spans:
                        for s in ss.spans:
                            receiver.spans.append({"name": s.name, "trace_id": s.trace_id.hex(),
                                                   "span_id": s.span_id.hex(), "parent": s.parent_span_id.hex(),
                                                   "resource": resource})
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def otlp() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    yield receiver
    receiver.server.shutdown()


MODELS = [ModelConfig(id="test/echo", pricing=Pricing(input=Decimal("1"), output=Decimal("2")), max_output_tokens=100,
                      providers=[ModelRoute(provider="emu-a", model="ok-model"),
                                 ModelRoute(provider="emu-b", model="ok-model")]),
          ModelConfig(id="test/embed", mode="embedding", pricing=Pricing(input=Decimal("0.02")),
                      providers=[ModelRoute(provider="emu-a", model="up-embed")])]


@pytest.fixture
def traced(gateway_factory: GatewayFactory, emu_a: Emulator, emu_b: Emulator,
           otlp: OtlpReceiver) -> tuple[GatewayServer, InMemorySpanExporter]:
    gw = gateway_factory([emu_a, emu_b], models=MODELS,
                         tracing=TracingConfig(exporter="otlp", endpoint=otlp.url, service_name="gw-under-test"))
    spans = InMemorySpanExporter()
    assert gw.container.tracing is not None
    gw.container.tracing.add_exporter(spans)
    return gw, spans


def sdk(gw: GatewayServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=20)


def trace_of(traceparent: str) -> tuple[str, str]:
    version, trace_id, span_id, flags = traceparent.split("-")
    assert version == "00" and len(trace_id) == 32 and len(span_id) == 16, traceparent
    assert int(flags, 16) & 1, traceparent  # sampled (bit 2, "random trace id", may be set too)
    return trace_id, span_id


def spans_of(exporter: InMemorySpanExporter, trace_id: str, timeout: float = 10) -> list[ReadableSpan]:
    """The trace's spans once its server span (the last to end, after the response) has ended."""
    deadline = time.time() + timeout
    while True:
        spans = [s for s in exporter.get_finished_spans() if s.context and f"{s.context.trace_id:032x}" == trace_id]
        if any(s.kind == SpanKind.SERVER for s in spans) or time.time() > deadline:
            return spans
        time.sleep(0.02)


def by_name(spans: list[ReadableSpan]) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for s in sorted(spans, key=lambda s: s.start_time or 0):
        out.setdefault(s.name, []).append(s)
    return out


def span_id(s: ReadableSpan) -> str:
    assert s.context is not None
    return f"{s.context.span_id:016x}"


def parent_id(s: ReadableSpan) -> str | None:
    return f"{s.parent.span_id:016x}" if s.parent is not None else None


def test_a_request_is_one_trace_with_a_span_per_stage(traced: tuple[GatewayServer, InMemorySpanExporter],
                                                      emu_a: Emulator) -> None:
    gw, exporter = traced
    user = gw.create_user("10")
    raw = sdk(gw, user["api_key"]).chat.completions.with_raw_response.create(model="test/echo", messages=HELLO)
    answer = raw.parse()
    trace_id, root_id = trace_of(raw.headers["traceparent"])
    spans = spans_of(exporter, trace_id)
    named = by_name(spans)
    root = named["POST /v1/chat/completions"][0]
    assert root.kind == SpanKind.SERVER and root.parent is None and span_id(root) == root_id
    assert sorted(named) == sorted(["POST /v1/chat/completions", *STAGES])
    stages = [n for n in named if n != root.name]
    for name in stages:  # every stage is a child of the request's span, and they ran in order
        assert parent_id(named[name][0]) == root_id, name
    assert [s.name for s in sorted(spans, key=lambda s: s.start_time or 0)][1:] == STAGES
    a = root.attributes or {}
    assert a["gatewayz.request_id"] == raw.headers["x-request-id"]
    assert a["gen_ai.request.model"] == "test/echo" and a["gatewayz.model"] == "test/echo"
    assert a["gatewayz.provider"] == "emu-a" and a["gen_ai.response.model"] == "ok-model"
    assert answer.usage is not None
    assert a["gen_ai.usage.input_tokens"] == answer.usage.prompt_tokens
    assert a["gen_ai.usage.output_tokens"] == answer.usage.completion_tokens
    # $1 and $2 per million tokens: 1,000 and 2,000 nanodollars a token
    assert a["gatewayz.cost_nanos"] == 1000 * answer.usage.prompt_tokens + 2000 * answer.usage.completion_tokens
    assert a["http.response.status_code"] == 200 and a["gatewayz.attempts"] == 1
    assert 0 < a["gatewayz.overhead_ms"] < a["gatewayz.latency_ms"]
    assert (root.resource.attributes or {})["service.name"] == "gw-under-test"
    attempt = named["upstream emu-a"][0]
    assert attempt.kind == SpanKind.CLIENT
    assert (attempt.attributes or {})["http.response.status_code"] == 200
    assert (attempt.attributes or {})["gen_ai.request.model"] == "ok-model"
    assert (named["authenticate"][0].attributes or {})["gatewayz.user_id"] == user["id"]
    assert (named["plan"][0].attributes or {})["gatewayz.candidates"] == ("emu-a/ok-model", "emu-b/ok-model")
    assert (named["reserve"][0].attributes or {})["gatewayz.hold_nanos"] > 0
    assert (named["settle"][0].attributes or {})["gatewayz.cost_nanos"] == a["gatewayz.cost_nanos"]
    assert all(s.status.status_code != StatusCode.ERROR for s in spans)
    # The upstream request carried the attempt's context: a traced provider's span would be its child.
    upstream_trace, upstream_parent = trace_of(emu_a.requests[-1].headers["traceparent"])
    assert (upstream_trace, upstream_parent) == (trace_id, span_id(attempt))


def test_the_clients_trace_is_continued(traced: tuple[GatewayServer, InMemorySpanExporter], emu_a: Emulator) -> None:
    gw, exporter = traced
    user = gw.create_user("10")
    r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "test/echo", "messages": HELLO}, timeout=20,
                   headers={"Authorization": f"Bearer {user['api_key']}",
                            "traceparent": f"00-{PARENT_TRACE}-{PARENT_SPAN}-01", "tracestate": "vendor=abc"})
    assert r.status_code == 200, r.text
    trace_id, root_id = trace_of(r.headers["traceparent"])
    assert trace_id == PARENT_TRACE and root_id != PARENT_SPAN
    assert r.headers["tracestate"] == "vendor=abc"
    root = by_name(spans_of(exporter, trace_id))["POST /v1/chat/completions"][0]
    assert parent_id(root) == PARENT_SPAN and root.parent is not None and root.parent.is_remote
    sent = emu_a.requests[-1].headers
    assert trace_of(sent["traceparent"])[0] == PARENT_TRACE and sent["tracestate"] == "vendor=abc"
    # A malformed traceparent is ignored: a new trace starts.
    r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "test/echo", "messages": HELLO}, timeout=20,
                   headers={"Authorization": f"Bearer {user['api_key']}", "traceparent": "00-zz-yy-01"})
    assert r.status_code == 200 and trace_of(r.headers["traceparent"])[0] not in (PARENT_TRACE, "0" * 32)


def test_a_trace_the_client_did_not_sample_is_propagated_but_not_recorded(
        traced: tuple[GatewayServer, InMemorySpanExporter], emu_a: Emulator) -> None:
    gw, exporter = traced
    user = gw.create_user("10")
    r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "test/echo", "messages": HELLO}, timeout=20,
                   headers={"Authorization": f"Bearer {user['api_key']}",
                            "traceparent": f"00-{PARENT_TRACE}-{PARENT_SPAN}-00"})
    assert r.status_code == 200
    version, trace_id, _, flags = r.headers["traceparent"].split("-")
    assert (trace_id, int(flags, 16) & 1) == (PARENT_TRACE, 0)
    version, trace_id, _, flags = emu_a.requests[-1].headers["traceparent"].split("-")
    assert (trace_id, int(flags, 16) & 1) == (PARENT_TRACE, 0)  # the provider is told not to sample either
    time.sleep(0.2)
    assert spans_of(exporter, PARENT_TRACE, timeout=0) == []


def test_failover_and_a_429_retry_are_separate_attempt_spans(traced: tuple[GatewayServer, InMemorySpanExporter],
                                                              emu_a: Emulator, emu_b: Emulator) -> None:
    gw, exporter = traced
    user = gw.create_user("10")
    emu_a.push_fault(Fault(status=503))
    raw = sdk(gw, user["api_key"]).chat.completions.with_raw_response.create(model="test/echo", messages=HELLO)
    assert raw.headers["x-gateway-provider"] == "emu-b"
    trace_id, root_id = trace_of(raw.headers["traceparent"])
    named = by_name(spans_of(exporter, trace_id))
    failed, served = named["upstream emu-a"][0], named["upstream emu-b"][0]
    assert parent_id(failed) == parent_id(served) == root_id
    assert (failed.attributes or {})["http.response.status_code"] == 503
    assert (failed.attributes or {})["error.type"] == "http_503" and failed.status.status_code == StatusCode.ERROR
    assert (served.attributes or {})["http.response.status_code"] == 200
    assert (served.attributes or {})["gatewayz.attempt"] == 2
    assert (named["POST /v1/chat/completions"][0].attributes or {})["gatewayz.attempts"] == 2
    assert trace_of(emu_b.requests[-1].headers["traceparent"])[1] == span_id(served)
    assert trace_of(emu_a.requests[-1].headers["traceparent"])[1] == span_id(failed)

    emu_a.push_fault(Fault(status=429, retry_after=0.05))
    raw = sdk(gw, user["api_key"]).chat.completions.with_raw_response.create(model="test/echo", messages=HELLO)
    assert raw.headers["x-gateway-provider"] == "emu-a"
    attempts = by_name(spans_of(exporter, trace_of(raw.headers["traceparent"])[0]))["upstream emu-a"]
    assert [(s.attributes or {})["gatewayz.retry"] for s in attempts] == [False, True]
    assert [(s.attributes or {})["http.response.status_code"] for s in attempts] == [429, 200]


def test_a_stream_has_a_first_token_event_then_settles(traced: tuple[GatewayServer, InMemorySpanExporter]) -> None:
    gw, exporter = traced
    user = gw.create_user("10")
    with sdk(gw, user["api_key"]).chat.completions.with_streaming_response.create(
            model="test/echo", messages=HELLO, stream=True, stream_options={"include_usage": True}) as resp:
        trace_id, root_id = trace_of(resp.headers["traceparent"])
        text = "".join(c.choices[0].delta.content or "" for c in resp.parse() if c.choices)
    assert text == "Echo: hello tracing"
    named = by_name(spans_of(exporter, trace_id))
    stream = named["stream"][0]
    assert parent_id(stream) == root_id and parent_id(named["settle"][0]) == root_id
    events = [e for e in stream.events if e.name == "first_token"]
    assert len(events) == 1 and (events[0].attributes or {})["gatewayz.ttft_ms"] > 0
    assert (stream.end_time or 0) <= (named["settle"][0].start_time or 0)
    root = named["POST /v1/chat/completions"][0].attributes or {}
    assert root["gatewayz.stream"] is True and root["gatewayz.ttft_ms"] > 0 and root["gen_ai.usage.output_tokens"] > 0


def test_a_refused_request_is_traced_with_the_failing_stage(
        traced: tuple[GatewayServer, InMemorySpanExporter]) -> None:
    gw, exporter = traced
    r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "test/echo", "messages": HELLO},
                   headers={"Authorization": "Bearer gw_live_notakey0000000000000000"}, timeout=20)
    assert r.status_code == 401
    named = by_name(spans_of(exporter, trace_of(r.headers["traceparent"])[0]))
    auth = named["authenticate"][0]
    assert auth.status.status_code == StatusCode.ERROR and (auth.attributes or {})["error.type"] == "invalid_api_key"
    assert sorted(named) == ["POST /v1/chat/completions", "authenticate"]
    assert (named["POST /v1/chat/completions"][0].attributes or {})["http.response.status_code"] == 401

    poor = gw.create_user("0.000001")
    r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "test/echo", "messages": HELLO},
                   headers={"Authorization": f"Bearer {poor['api_key']}"}, timeout=20)
    assert r.status_code == 402
    named = by_name(spans_of(exporter, trace_of(r.headers["traceparent"])[0]))
    assert named["reserve"][0].status.status_code == StatusCode.ERROR and "upstream emu-a" not in named
    assert (named["POST /v1/chat/completions"][0].attributes or {})["error.type"] == r.json()["error"]["code"]


def test_media_requests_run_the_same_stages(traced: tuple[GatewayServer, InMemorySpanExporter],
                                            emu_a: Emulator) -> None:
    gw, exporter = traced
    user = gw.create_user("10")
    raw = sdk(gw, user["api_key"]).embeddings.with_raw_response.create(model="test/embed", input="one two three")
    assert raw.parse().usage.prompt_tokens == 3
    trace_id, root_id = trace_of(raw.headers["traceparent"])
    named = by_name(spans_of(exporter, trace_id))
    assert sorted(named) == sorted(["POST /v1/embeddings", *STAGES])
    assert all(parent_id(named[n][0]) == root_id for n in STAGES)
    root = named["POST /v1/embeddings"][0].attributes or {}
    assert root["gen_ai.operation.name"] == "embeddings" and root["gen_ai.usage.input_tokens"] == 3
    assert trace_of(emu_a.requests[-1].headers["traceparent"])[1] == span_id(named["upstream emu-a"][0])


def test_spans_reach_the_otlp_collector_and_the_health_view(traced: tuple[GatewayServer, InMemorySpanExporter],
                                                             otlp: OtlpReceiver) -> None:
    gw, _ = traced
    user = gw.create_user("10")
    raw = sdk(gw, user["api_key"]).chat.completions.with_raw_response.create(model="test/echo", messages=HELLO)
    trace_id, root_id = trace_of(raw.headers["traceparent"])
    assert gw.container.tracing is not None
    deadline = time.time() + 20
    while not any(s["span_id"] == root_id for s in otlp.spans) and time.time() < deadline:
        gw.container.tracing.flush()
        time.sleep(0.05)
    exported = [s for s in otlp.spans if s["trace_id"] == trace_id]
    assert sorted(s["name"] for s in exported) == sorted(["POST /v1/chat/completions", *STAGES])
    assert {s["parent"] for s in exported if s["span_id"] != root_id} == {root_id}
    assert exported[0]["resource"]["service.name"] == "gw-under-test" and set(otlp.paths) == {"/v1/traces"}
    health = httpx.get(gw.url + "/api/instrumentation/health", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert health.status_code == 200
    t = health.json()["tracing"]
    assert t["enabled"] is True and t["exporter"] == "otlp" and t["endpoint"] == otlp.url
    assert t["service_name"] == "gw-under-test" and t["spans_exported"] >= len(STAGES) + 1 and t["spans_failed"] == 0
    assert health.json()["sentry"] == {"enabled": False}


def test_exemplars_and_logs_carry_the_trace_id(traced: tuple[GatewayServer, InMemorySpanExporter]) -> None:
    gw, exporter = traced
    user = gw.create_user("10")
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(JsonFormatter().format(record))  # type: ignore[method-assign]
    logging.getLogger().addHandler(handler)
    try:
        raw = httpx.post(gw.url + "/v1/chat/completions", timeout=20, headers={
            "Authorization": f"Bearer {user['api_key']}"}, json={
            "model": "test/echo", "messages": [{"role": "user", "content": "hi [[fault@a:omit_usage=true]]"}]})
    finally:
        logging.getLogger().removeHandler(handler)
    trace_id, _ = trace_of(raw.headers["traceparent"])
    named = by_name(spans_of(exporter, trace_id))
    # The gateway logs the missing usage while the request is being served: inside its trace.
    logged = [json.loads(line) for line in lines if "billing an estimate" in line]
    assert len(logged) == 1 and logged[0]["trace_id"] == trace_id
    assert logged[0]["span_id"] in {span_id(s[0]) for s in named.values()}
    metrics = httpx.get(gw.url + "/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}",
                                                       "Accept": "application/openmetrics-text"}).text
    assert f'trace_id="{trace_id}"' in metrics


def test_tracing_off_means_no_trace_header_and_nothing_imported(gateway_factory: GatewayFactory,
                                                                emu_a: Emulator) -> None:
    gw = gateway_factory([emu_a])
    assert gw.container.tracing is None
    user = gw.create_user("10")
    r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "test/echo", "messages": HELLO}, timeout=20,
                   headers={"Authorization": f"Bearer {user['api_key']}",
                            "traceparent": f"00-{PARENT_TRACE}-{PARENT_SPAN}-01"})
    assert r.status_code == 200 and "traceparent" not in r.headers
    assert "traceparent" not in emu_a.requests[-1].headers  # the client's context is not forwarded either
    health = httpx.get(gw.url + "/api/instrumentation/health", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert health.json()["tracing"] == {"enabled": False, "exporter": "none"}


WITHOUT_EXTRAS = """
import importlib.abc, sys
from pathlib import Path
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        # (opentelemetry-api is FastAPI's own dependency; the SDK and the exporter are the `otel` extra)
        if name.startswith(("opentelemetry.sdk", "opentelemetry.exporter", "sentry_sdk")):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Missing())
import httpx
from tests.conftest import make_settings
from tests.emulator import Emulator
from tests.gateway_server import GatewayServer, migrate
from gatewayz.settings import ConfigError, Settings, TracingConfig
from gatewayz.app import create_app
tmp, = sys.argv[1:]
url = f"sqlite+aiosqlite:///{tmp}/gw.db"
migrate(url)
with Emulator(name="a", api_key="emu-secret-key") as emu:
    gw = GatewayServer(make_settings(Path(tmp), url, [emu])).start()
    key = gw.create_user("10")["api_key"]
    r = httpx.post(gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=20,
                   json={"model": "test/echo", "messages": [{"role": "user", "content": "hi"}]})
    gw.stop()
print("status", r.status_code, "traceparent" in r.headers)
for extra in ({"tracing": TracingConfig(exporter="console")}, {"sentry_dsn": "http://k@127.0.0.1:9/1"}):
    try:
        create_app(Settings(database_url=url, data_dir=tmp, **extra))
    except ConfigError as exc:
        print("refused:", exc)
"""


def test_the_gateway_runs_without_the_tracing_packages(tmp_path: Any) -> None:
    out = subprocess.run([sys.executable, "-c", WITHOUT_EXTRAS, str(tmp_path)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert "status 200 False" in lines
    assert any("refused: tracing.exporter is 'console' but OpenTelemetry is not installed" in x and
               "pip install 'gatewayz[otel]'" in x for x in lines), lines
    assert any("refused: sentry_dsn is set but sentry-sdk is not installed" in x for x in lines), lines
