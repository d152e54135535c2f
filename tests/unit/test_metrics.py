"""Metrics and structured logs: exposition formats, exemplars, percentiles, several workers, label caps,
credential masking."""

from __future__ import annotations

import io
import json
import logging
import multiprocessing
import os
from pathlib import Path
from types import SimpleNamespace as NS
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from gatewayz.observability.logging import JsonFormatter, MaskingFormatter, configure_logging, mask_secrets
from gatewayz.observability.metrics import Metrics, reset_multiprocess_dir
from gatewayz.observability.snapshot import quantile

TRACE = "0af7651916cd43dd8448eb211c80319c"


def ctx(**kw: Any) -> NS:
    base: dict[str, Any] = {
        "endpoint": "chat.completions", "entry": NS(id="gpt-4o"), "provider": "openai", "status": 200,
        "stream": True, "ttft_ms": 150.0, "usage": NS(prompt_tokens=10, completion_tokens=5),
        "cost_nanos": 1_500, "attempts": [NS(provider="azure", error="timeout"), NS(provider="openai", error="ok")],
        "overhead_ms": lambda: 2.0,
    }
    base.update(kw)
    return NS(**base)


def samples(m: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    body, content_type = m.render(None)
    assert content_type.startswith("text/plain; version=0.0.4")
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


def test_request_done_in_prometheus_text() -> None:
    m = Metrics()
    m.request_done(ctx(), duration_s=0.3)
    m.request_done(ctx(attempts=[NS(provider="openai", error="ok")], usage=None, cost_nanos=0, stream=False),
                   duration_s=0.4)
    s = samples(m)
    labels = {"endpoint": "chat.completions", "model": "gpt-4o", "provider": "openai"}
    assert s[key("inference_requests_total", status="200", **labels)] == 2
    assert s[key("inference_request_duration_seconds_count", **labels)] == 2
    assert s[key("inference_request_duration_seconds_sum", **labels)] == pytest.approx(0.7)
    assert s[key("inference_ttft_seconds_count", model="gpt-4o", provider="openai")] == 1  # the stream only
    assert s[key("tokens_total", model="gpt-4o", provider="openai", kind="prompt")] == 10
    assert s[key("tokens_total", model="gpt-4o", provider="openai", kind="completion")] == 5
    assert s[key("cost_usd_total", model="gpt-4o", provider="openai")] == pytest.approx(1.5e-6)
    assert not any(name == "cache_hits_total" for name, _ in s)  # no provider cache hit reported
    m.request_done(ctx(usage=NS(prompt_tokens=100, completion_tokens=9, cached_tokens=64, reasoning_tokens=4)))
    s2 = samples(m)
    assert s2[key("tokens_total", model="gpt-4o", provider="openai", kind="cached")] == 64
    assert s2[key("tokens_total", model="gpt-4o", provider="openai", kind="reasoning")] == 4
    assert s2[key("cache_hits_total", kind="provider_prompt")] == 1
    assert s[key("gateway_overhead_seconds_count")] == 2
    assert s[key("gateway_overhead_seconds_sum")] == pytest.approx(0.004)
    assert s[key("upstream_errors_total", provider="azure", error="timeout")] == 1
    assert s[key("failovers_total", model="gpt-4o")] == 1
    assert not any(name.endswith("_created") for name, _ in s)


def test_missing_fields_are_not_invented() -> None:
    m = Metrics()
    m.request_done(NS(status=502))
    s = samples(m)
    assert s[key("inference_requests_total", endpoint="unknown", model="unknown", provider="none", status="502")] == 1
    assert not any(name.startswith(("tokens_total", "cost_usd", "failovers", "upstream_errors",
                                    "inference_request_duration_seconds_count")) for name, _ in s)
    snap = m.snapshot()
    assert snap["inference_request_duration_seconds"]["all"] == {"count": 0, "sum": 0, "p50": None, "p95": None,
                                                                 "p99": None}


def test_duration_defaults_to_time_since_started() -> None:
    import time
    m = Metrics()
    m.request_done(ctx(started=time.perf_counter() - 0.05))
    h = m.snapshot()["inference_request_duration_seconds"]["series"][0]
    assert h["count"] == 1 and 0.05 <= h["sum"] < 5


def test_openmetrics_has_exemplar_and_eof() -> None:
    m = Metrics()
    m.request_done(ctx(), trace_id=TRACE, duration_s=0.2)
    m.request_done(ctx(), trace_id="bad trace id with spaces", duration_s=3.0)  # dropped, not an error
    body, content_type = m.render("application/openmetrics-text; version=1.0.0, text/plain;q=0.5")
    text = body.decode()
    assert content_type.startswith("application/openmetrics-text")
    assert f'# {{trace_id="{TRACE}"}} 0.2' in text
    assert "bad trace" not in text
    assert text.endswith("# EOF\n")
    families = parse_openmetrics(text)  # type: ignore[no-untyped-call]
    exemplars = [s.exemplar for f in families for s in f.samples if s.exemplar]
    assert [e.labels for e in exemplars] == [{"trace_id": TRACE}]
    # the plain format carries no exemplars and still parses
    assert "trace_id" not in m.render("text/plain")[0].decode()


def test_snapshot_percentiles() -> None:
    m = Metrics()
    snap = m.snapshot()
    assert snap["http_request_duration_seconds"]["all"]["p50"] is None
    assert snap["gateway_overhead_seconds"]["series"][0]["p99"] is None  # a series with no observations
    for _ in range(100):
        m.http_request("/v1/chat/completions", "post", 200, 0.2)
    h = m.snapshot()["http_request_duration_seconds"]
    (series,) = h["series"]
    assert series["labels"] == {"route": "/v1/chat/completions", "method": "POST"}
    assert series["count"] == 100 and series["sum"] == pytest.approx(20)
    for p in ("p50", "p95", "p99"):
        assert 0.1 < series[p] <= 0.25  # inside the bucket (0.1, 0.25] that holds 0.2
    assert h["all"]["p50"] == series["p50"]
    assert m.snapshot()["http_requests_total"]["samples"] == [
        {"name": "http_requests_total", "labels": {"route": "/v1/chat/completions", "method": "POST", "status": "200"},
         "value": 100.0}]
    json.dumps(m.snapshot())  # JSON-ready


def test_quantile_edges() -> None:
    inf = float("inf")
    assert quantile(0.5, []) is None
    assert quantile(0.5, [(1.0, 0), (inf, 0)]) is None
    assert quantile(0.5, [(1.0, 4), (2.0, 8), (inf, 8)]) == 1.0
    assert quantile(0.75, [(1.0, 4), (2.0, 8), (inf, 8)]) == 1.5
    assert quantile(0.99, [(1.0, 1), (2.0, 1), (inf, 10)]) == 2.0  # beyond the last bound: that bound


def test_event_counters() -> None:
    m = Metrics()
    m.http_request("/v1/models", "get", 200, 0.01)
    m.http_request("/v1/models", "BREW", 405, 0.01)
    m.breaker_transition("openai|gpt-4o", "closed", "open")
    m.breaker_transition("openai", "open", "half_open")
    m.rate_limited("key_rpm")
    m.cache_hit("catalog")
    m.credits("reserved", 2_000_000_000)
    m.credits("refunded", 500_000_000)
    m.credits("settled", 0)
    m.stream_chunk_problem("openai", "malformed")
    m.in_flight("chat.completions", 1)
    s = samples(m)
    assert s[key("http_requests_total", route="/v1/models", method="GET", status="200")] == 1
    assert s[key("http_requests_total", route="/v1/models", method="other", status="405")] == 1
    assert s[key("circuit_breaker_state_transitions_total", provider="openai", from_state="closed",
                 to_state="open")] == 1
    assert s[key("circuit_breaker_state_transitions_total", provider="openai", from_state="open",
                 to_state="half_open")] == 1
    assert s[key("rate_limit_rejections_total", reason="key_rpm")] == 1
    assert s[key("cache_hits_total", kind="catalog")] == 1
    assert s[key("credits_usd_total", kind="reserved")] == 2.0
    assert s[key("credits_usd_total", kind="refunded")] == 0.5
    assert key("credits_usd_total", kind="settled") not in s
    assert s[key("stream_chunk_problems_total", provider="openai", kind="malformed")] == 1
    assert s[key("inference_requests_in_flight", endpoint="chat.completions")] == 1


def test_label_cardinality_cap() -> None:
    m = Metrics(max_label_values=3)
    for i in range(6):
        m.request_done(ctx(entry=NS(id=f"model-{i}"), attempts=[]), duration_s=0.1)
    m.request_done(ctx(entry=NS(id="model-0"), attempts=[]), duration_s=0.1)  # a known value still passes
    s = samples(m)
    models = {dict(labels)["model"]: v for (name, labels), v in s.items() if name == "inference_requests_total"}
    assert models == {"model-0": 2, "model-1": 1, "model-2": 1, "other": 3}


def _worker(directory: str, requests: int) -> None:
    m = Metrics(multiprocess_dir=directory)
    for _ in range(requests):
        m.request_done(ctx(), trace_id=TRACE, duration_s=0.2)
    m.rate_limited("key_rpm")
    m.in_flight("chat.completions", 1)  # exits without closing: a crashed worker's in-flight request


def test_multiprocess_sums_every_worker(tmp_path: Path) -> None:
    directory = str(tmp_path / "prom")
    reset_multiprocess_dir(directory)
    spawn = multiprocessing.get_context("spawn")
    workers = [spawn.Process(target=_worker, args=(directory, n)) for n in (3, 4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
        assert w.exitcode == 0
    before = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    try:
        scraper = Metrics(multiprocess_dir=directory)
        scraper.request_done(ctx(attempts=[]), trace_id=TRACE, duration_s=0.2)
        scraper.in_flight("chat.completions", 1)
        s = samples(scraper)
        labels = {"endpoint": "chat.completions", "model": "gpt-4o", "provider": "openai"}
        assert s[key("inference_requests_total", status="200", **labels)] == 3 + 4 + 1
        assert s[key("inference_request_duration_seconds_count", **labels)] == 8
        assert s[key("inference_request_duration_seconds_bucket", le="0.25", **labels)] == 8
        assert s[key("tokens_total", model="gpt-4o", provider="openai", kind="prompt")] == 80
        assert s[key("failovers_total", model="gpt-4o")] == 7
        assert s[key("rate_limit_rejections_total", reason="key_rpm")] == 2
        # the dead workers' in-flight requests are not counted; the live scraper's is
        assert s[key("inference_requests_in_flight", endpoint="chat.completions")] == 1
        om = scraper.render("application/openmetrics-text")[0].decode()
        assert f'# {{trace_id="{TRACE}"}}' in om and om.endswith("# EOF\n")  # the scraped worker's exemplar
        assert scraper.snapshot()["inference_request_duration_seconds"]["all"]["count"] == 8
        scraper.close()
        assert not list(Path(directory).glob("gauge_live*"))
        # an in-process Metrics in the same process stays private: it neither reads nor writes the files
        files = sorted(p.name for p in Path(directory).iterdir())
        private = Metrics()
        private.request_done(ctx(), duration_s=0.2)
        assert samples(private)[key("inference_requests_total", status="200", **labels)] == 1
        assert sorted(p.name for p in Path(directory).iterdir()) == files
        assert samples(scraper)[key("inference_requests_total", status="200", **labels)] == 8
    finally:
        if before is None:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        else:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = before


def _record(msg: str, *args: Any, **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("gatewayz.test", logging.WARNING, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


def test_json_log_masks_credentials() -> None:
    line = JsonFormatter().format(_record(
        "key %s rejected; upstream said sk-proj-abcdef0123456789; header Authorization: Bearer eyJhbGci.payload.sig",
        "gw_live_Zx9kQ2mN7pL4vR8s", request_id="req_0001", trace_id=TRACE, user={"token": "gw_live_ABCDEFGHIJ"}))
    out = json.loads(line)
    assert set(out) >= {"time", "level", "logger", "message", "request_id", "trace_id"}
    assert out["level"] == "WARNING" and out["logger"] == "gatewayz.test" and out["request_id"] == "req_0001"
    assert out["trace_id"] == TRACE and out["time"].endswith("Z")
    for secret in ("Zx9kQ2mN7pL4vR8s", "abcdef0123456789", "eyJhbGci", "ABCDEFGHIJ"):
        assert secret not in line
    assert "gw_live_***" in out["message"] and "sk-***" in out["message"] and "Bearer ***" in out["message"]
    assert "\n" not in line
    assert mask_secrets("task-force and risk-free stay") == "task-force and risk-free stay"


def test_text_log_masks_and_configure_is_idempotent() -> None:
    assert "s3cr3tvalue" not in MaskingFormatter("%(message)s").format(_record("Bearer s3cr3tvalue"))
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        configure_logging("debug", json=True)
        configure_logging("info", json=True)
        ours = [h for h in root.handlers if h not in handlers]
        assert len(ours) == 1 and root.level == logging.INFO
        stream = io.StringIO()
        ours[0].setStream(stream)  # type: ignore[attr-defined]
        logging.getLogger("gatewayz.x").info("hello %s", "gw_live_abcdefghijkl", extra={"request_id": "r1"})
        out = json.loads(stream.getvalue())
        assert out["message"] == "hello gw_live_***" and out["request_id"] == "r1"
    finally:
        for h in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(h)
        root.setLevel(level)
