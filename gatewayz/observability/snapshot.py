"""A JSON-friendly view of collected metric families, with percentiles estimated from histogram buckets.

Percentiles come only from real observations: a histogram series with no observations reports None. An
estimate interpolates linearly inside the bucket that holds the rank (as Prometheus' histogram_quantile
does); a rank that falls in the +Inf bucket reports the highest finite bound, which is a lower bound of
the truth, again as Prometheus does."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client.metrics_core import Metric

QUANTILES = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))


def quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """`buckets`: (upper bound, cumulative count), sorted by bound and ending with +Inf."""
    if not buckets:
        return None
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank:
            if math.isinf(bound):
                return lower
            inside = cumulative - below
            return lower + (bound - lower) * (rank - below) / inside
        if not math.isinf(bound):
            lower = bound
        below = cumulative
    return None


def _estimates(buckets: dict[float, float]) -> dict[str, float | None]:
    ordered = sorted(buckets.items())
    return {name: quantile(q, ordered) for name, q in QUANTILES}


def _histogram(family: Metric) -> dict[str, Any]:
    series: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    overall: dict[float, float] = {}
    for s in family.samples:
        labels = {k: v for k, v in s.labels.items() if k != "le"}
        entry = series.setdefault(tuple(sorted(labels.items())),
                                  {"labels": labels, "count": 0.0, "sum": 0.0, "buckets": {}})
        if s.name.endswith("_bucket"):
            bound = float(s.labels["le"])
            entry["buckets"][bound] = s.value
            overall[bound] = overall.get(bound, 0.0) + s.value
        elif s.name.endswith("_count"):
            entry["count"] = s.value
        elif s.name.endswith("_sum"):
            entry["sum"] = s.value
    out = []
    for entry in series.values():
        buckets = entry.pop("buckets")
        out.append({**entry, **_estimates(buckets)})
    count = sum(e["count"] for e in out)
    total = {"count": count, "sum": sum(e["sum"] for e in out), **_estimates(overall)}
    return {"series": out, "all": total}


def family_name(family: Metric) -> str:
    """The name as exposed in the text format (counters carry `_total`)."""
    return family.name + "_total" if family.type == "counter" else family.name


def snapshot(families: Iterable[Metric]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for family in families:
        samples = [{"name": s.name, "labels": dict(s.labels), "value": s.value}
                   for s in family.samples if not s.name.endswith("_created")]
        view: dict[str, Any] = {"type": family.type, "help": family.documentation, "samples": samples}
        if family.type == "histogram":
            view.update(_histogram(family))
        out[family_name(family)] = view
    return out
