"""Time-bucketed availability samples (one bucket a minute, a day kept) per provider and per model."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

BUCKET_S = 60
KEEP = 24 * 60


@dataclass(slots=True)
class Bucket:
    start: int
    ok: int = 0
    failed: int = 0


class Uptime:
    def __init__(self) -> None:
        self._series: dict[str, deque[Bucket]] = {}

    def record(self, key: str, ok: bool, at: float | None = None) -> None:
        start = int(at if at is not None else time.time()) // BUCKET_S * BUCKET_S
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = deque(maxlen=KEEP)
        if not series or series[-1].start != start:
            series.append(Bucket(start))
        b = series[-1]
        if ok:
            b.ok += 1
        else:
            b.failed += 1

    def timeline(self, key: str, hours: float, now: float | None = None) -> dict[str, Any]:
        since = (now if now is not None else time.time()) - hours * 3600
        buckets = [b for b in self._series.get(key, ()) if b.start >= since - BUCKET_S]
        ok = sum(b.ok for b in buckets)
        failed = sum(b.failed for b in buckets)
        return {"key": key, "hours": hours, "requests": ok + failed,
                "uptime_percent": round(100 * ok / (ok + failed), 3) if ok + failed else None,
                "buckets": [{"start": b.start, "ok": b.ok, "failed": b.failed} for b in buckets]}
