"""Anomaly detection over `usage_records`: the recent window compared with the baseline window before it.

Two adjacent windows ending now: the current one (`window_minutes`, default 5) and the baseline just
before it (`baseline_minutes`, default 60). Three rules, every threshold a query parameter:

1. Error-rate spike, per provider and per model. With n requests and e errors (status >= 400) in each
   window, flag when the current window has at least `min_requests` (5) requests, an error rate of at
   least `min_error_rate` (0.2), and either the baseline has fewer than `min_requests` requests (nothing to
   compare with: the absolute rate decides) or the two-proportion z-score
       z = (p_cur - p_base) / sqrt(p (1 - p) (1/n_cur + 1/n_base)),  p = (e_cur + e_base) / (n_cur + n_base)
   is at least `z_threshold` (3). Requests that no provider served (every attempt failed) have no
   provider: they count under their model.
2. Latency spike, per provider: the p95 latency of successful requests in the current window is at least
   `latency_ratio` (3) times the baseline's p95 and at least 100 ms above it, both windows having at least
   `min_requests` successful requests.
3. Cost spike, per user: the user's cost in the current window is at least `min_cost_usd` ($1) and either
   the baseline had no cost or the current cost is at least `cost_ratio` (5) times the baseline's cost
   scaled to the current window's length (baseline cost x window / baseline).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gatewayz.billing.money import nanos_to_json
from gatewayz.monitoring.sql import IS_ERROR, IS_OK, U, Window, percentiles, rate, reading

MIN_LATENCY_DELTA_MS = 100.0


@dataclass(frozen=True)
class Rules:
    window_minutes: float = 5.0
    baseline_minutes: float = 60.0
    min_requests: int = 5
    min_error_rate: float = 0.2
    z_threshold: float = 3.0
    latency_ratio: float = 3.0
    cost_ratio: float = 5.0
    min_cost_nanos: int = 1_000_000_000  # $1


def error_z(e_cur: int, n_cur: int, e_base: int, n_base: int) -> float | None:
    """The pooled two-proportion z-score of the current error rate against the baseline's (None without
    requests on either side; 0 when both windows agree entirely, all failures or none)."""
    if n_cur == 0 or n_base == 0:
        return None
    p = (e_cur + e_base) / (n_cur + n_base)
    se = math.sqrt(p * (1 - p) * (1 / n_cur + 1 / n_base))
    if se == 0:
        return 0.0
    return (e_cur / n_cur - e_base / n_base) / se


def error_anomaly(rules: Rules, cur: tuple[int, int], base: tuple[int, int]) -> tuple[bool, float | None]:
    """Rule 1 for one group; cur and base are (requests, errors). Returns (flagged, z)."""
    (n1, e1), (n0, e0) = cur, base
    z = error_z(e1, n1, e0, n0)
    if n1 < rules.min_requests or e1 / n1 < rules.min_error_rate:
        return False, z
    if n0 < rules.min_requests:
        return True, z
    return z is not None and z >= rules.z_threshold, z


class AnomalyDetector:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def detect(self, rules: Rules, now: datetime | None = None) -> dict[str, Any]:
        now = now or datetime.now(UTC)
        current = Window.last(timedelta(minutes=rules.window_minutes), now)
        baseline = Window.last(timedelta(minutes=rules.baseline_minutes), current.start)
        both = sa.and_(U.c.created_at >= baseline.start, U.c.created_at < current.end)
        period = sa.case((U.c.created_at >= current.start, 1), else_=0)
        found: list[dict[str, Any]] = []
        checked: dict[str, int] = {}
        async with reading(self.engine) as conn:
            for scope, column in (("provider", U.c.provider), ("model", U.c.model)):
                rows = (await conn.execute(
                    sa.select(column.label("key"), period.label("cur"), sa.func.count().label("n"),
                              sa.func.sum(sa.case((IS_ERROR, 1), else_=0)).label("e"))
                    .where(both, column.is_not(None)).group_by(column, period))).all()
                found += self._errors(rules, scope, rows)
                checked[scope + "s"] = len({r.key for r in rows if r.cur == 1})
            lat = await percentiles(conn, U.c.latency_ms, [both, IS_OK, U.c.provider.is_not(None)],
                                    [U.c.provider, period], ps=(95,))
            found += self._latency(rules, lat)
            costs = (await conn.execute(sa.select(U.c.user_id, period.label("cur"),
                                                  sa.func.sum(U.c.cost_nanos).label("cost"))
                                        .where(both).group_by(U.c.user_id, period))).all()
            found += self._costs(rules, costs, current.seconds / baseline.seconds)
            checked["users"] = len({r.user_id for r in costs if r.cur == 1})
        return {"window": current.json(), "baseline": baseline.json(), "rules": asdict(rules),
                "checked": checked, "anomalies": found}

    @staticmethod
    def _errors(rules: Rules, scope: str, rows: Sequence[Any]) -> list[dict[str, Any]]:
        stats: dict[str, dict[int, tuple[int, int]]] = {}
        for r in rows:
            stats.setdefault(r.key, {})[int(r.cur)] = (int(r.n), int(r.e or 0))
        out = []
        for key, by in sorted(stats.items()):
            cur, base = by.get(1, (0, 0)), by.get(0, (0, 0))
            flagged, z = error_anomaly(rules, cur, base)
            if flagged:
                reason = (f"error rate {cur[1]}/{cur[0]} in the last {rules.window_minutes:g} min against "
                          + (f"{base[1]}/{base[0]} before (z = {z:.2f})" if base[0] >= rules.min_requests
                             else "too few baseline requests to compare"))
                out.append({"type": "error_rate", "scope": scope, "key": key,
                            "current": {"requests": cur[0], "errors": cur[1], "error_rate": rate(cur[1], cur[0])},
                            "baseline": {"requests": base[0], "errors": base[1],
                                         "error_rate": rate(base[1], base[0])},
                            "z_score": None if z is None else round(z, 3), "reason": reason})
        return out

    @staticmethod
    def _latency(rules: Rules, lat: dict[tuple[Any, ...], dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for provider in sorted({k[0] for k in lat}):
            cur, base = lat.get((provider, 1)), lat.get((provider, 0))
            if cur is None or base is None or min(cur["count"], base["count"]) < rules.min_requests:
                continue
            p_cur, p_base = cur["p95"], base["p95"]
            if p_cur >= rules.latency_ratio * p_base and p_cur - p_base >= MIN_LATENCY_DELTA_MS:
                out.append({"type": "latency_p95", "scope": "provider", "key": provider,
                            "current": {"requests": cur["count"], "p95_ms": p_cur},
                            "baseline": {"requests": base["count"], "p95_ms": p_base},
                            "ratio": round(p_cur / p_base, 3) if p_base else None,
                            "reason": f"p95 latency {p_cur:g} ms against {p_base:g} ms before"})
        return out

    @staticmethod
    def _costs(rules: Rules, rows: Sequence[Any], scale: float) -> list[dict[str, Any]]:
        spend: dict[int, dict[int, int]] = {}
        for r in rows:
            spend.setdefault(int(r.user_id), {})[int(r.cur)] = int(r.cost or 0)
        out = []
        for user_id, by in sorted(spend.items()):
            cur, base = by.get(1, 0), by.get(0, 0)
            expected = base * scale
            if cur < rules.min_cost_nanos or (base > 0 and cur < rules.cost_ratio * expected):
                continue
            out.append({"type": "cost", "scope": "user", "key": user_id,
                        "current": {"cost_usd": nanos_to_json(cur), "cost_nanos": cur},
                        "baseline": {"cost_usd": nanos_to_json(base), "cost_nanos": base,
                                     "expected_in_window_usd": nanos_to_json(round(expected))},
                        "ratio": round(cur / expected, 3) if expected else None,
                        "reason": "spend in the window " + ("with none before" if base == 0 else
                                                          f"{cur / expected:.1f}x the baseline rate")})
        return out
