"""The Grafana dashboard in deploy/grafana only queries metrics (and labels) that the gateway really exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.metrics import MetricWrapperBase

from gatewayz.observability.metrics import Metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "gatewayz-dashboard.json"
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
                "offset"}


def exported() -> dict[str, set[str]]:
    """Every sample name the registry renders, with the label names it carries."""
    metrics = Metrics()
    labels = {w._name: set(w._labelnames) for w in vars(metrics).values() if isinstance(w, MetricWrapperBase)}
    out: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        for suffix in SUFFIXES[family.type]:
            out[family.name + suffix] = labels[family.name] | ({"le"} if suffix == "_bucket" else set())
    return out


def references(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) used by a PromQL expression or a `label_values(metric, label)` query."""
    found = re.fullmatch(r"\s*label_values\(\s*(\w+)\s*,\s*(\w+)\s*\)\s*", expr)
    if found:
        return {found.group(1)}, {found.group(2)}
    labels: set[str] = set()
    for block in re.findall(r"\{([^}]*)\}", expr):
        labels |= set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", block))
    rest = re.sub(r"\{[^}]*\}", " ", expr)
    for block in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", rest):
        labels |= {name.strip() for name in block.split(",") if name.strip()}
    rest = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", " ", rest)
    rest = re.sub(r"\[[^\]]*\]|\$\w+|\"[^\"]*\"", " ", rest)  # ranges, Grafana variables, strings
    names = set()
    for m in re.finditer(r"[A-Za-z_:][\w:]*", rest):
        if rest[m.end():].lstrip().startswith("(") or m.group() in PROMQL_WORDS:
            continue  # a function or a keyword
        if m.start() > 0 and (rest[m.start() - 1].isdigit() or rest[m.start() - 1] == "."):
            continue  # the exponent of a number
        names.add(m.group())
    return names, labels


def problems(expr: str, known: dict[str, set[str]]) -> list[str]:
    names, labels = references(expr)
    out = [f"unknown metric {n!r} in {expr!r}" for n in sorted(names - set(known))]
    if not names:
        out.append(f"no metric in {expr!r}")
    allowed = set().union(*(known.get(n, set()) for n in names))
    out += [f"label {lab!r} not on {sorted(names)} in {expr!r}" for lab in sorted(labels - allowed)]
    return out


def queries(dashboard: dict[str, Any]) -> Iterator[str]:
    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for p in items:
            yield p
            yield from panels(p.get("panels", []))

    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield target["expr"]
    for var in dashboard.get("templating", {}).get("list", []):
        if var["type"] == "query":
            q = var["query"]
            yield q["query"] if isinstance(q, dict) else q


def test_every_expression_uses_exported_metrics_and_labels() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    known = exported()
    exprs = list(queries(dashboard))
    assert len(exprs) > 20
    assert [p for e in exprs for p in problems(e, known)] == []
    used = set().union(*(references(e)[0] for e in exprs))
    assert {"inference_requests_total", "inference_request_duration_seconds_bucket", "inference_ttft_seconds_bucket",
            "tokens_total", "cost_usd_total", "upstream_errors_total"} <= used


def test_the_check_catches_wrong_names() -> None:
    known = exported()
    assert problems('sum by (provider) (rate(inference_requests_total{status=~"5.."}[5m]))', known) == []
    assert problems("histogram_quantile(0.95, sum by (le) (rate(inference_request_duration_seconds_bucket[1m])))",
                    known) == []
    assert problems("rate(inference_requests[5m])", known) == [
        "unknown metric 'inference_requests' in 'rate(inference_requests[5m])'"]
    assert problems("sum by (tenant) (rate(cost_usd_total[5m]))", known) == [
        "label 'tenant' not on ['cost_usd_total'] in 'sum by (tenant) (rate(cost_usd_total[5m]))'"]
    assert problems("sum(rate(gateway_requests_total[5m])) / 1e3", known) != []
    assert problems("label_values(inference_requests_total, provider)", known) == []
    assert problems("label_values(inference_requests_total, team)", known) != []
