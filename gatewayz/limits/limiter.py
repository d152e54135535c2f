"""Rate limits by GCRA (the generic cell rate algorithm), kept in process.

A key's whole state is its theoretical arrival time (TAT): the moment its bucket would be full again.
With emission interval T = window_s / amount, a call costing n units moves the TAT to max(TAT, now) + n*T and
is allowed when that lands no more than window_s after now, so a full bucket holds `amount` units and refills
at amount/window_s per second. A TAT at or before now is a full bucket, the same as no entry at all, which is
what keeps memory bounded: such entries are dropped by an occasional sweep, and a least-recently-used cap
bounds the number of keys (a flood of new IPs evicts old, idle keys first).

The decision arithmetic (`decide`, `tolerance`) is shared with the Redis store so both answer the same."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limit:
    amount: int  # allowed units (requests, or tokens) per window
    window_s: float  # e.g. 60.0

    def __post_init__(self) -> None:
        if self.amount <= 0 or not self.window_s > 0 or math.isinf(self.window_s):
            raise ValueError(f"a limit needs amount > 0 and a finite window_s > 0, not {self.amount}/{self.window_s}")

    @property
    def interval_s(self) -> float:
        """The emission interval: seconds for one unit to refill."""
        return self.window_s / self.amount


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int  # Limit.amount
    remaining: int  # units left right now after this call (0 when refused), never negative
    reset_s: float  # seconds until the window fully resets (for X-RateLimit-Reset)
    retry_after_s: float  # 0 when allowed; when refused: seconds until `cost` units would be allowed


def tolerance(limit: Limit) -> float:
    """Seconds of float rounding forgiven at the boundary (a thousandth of one unit's refill time), so that
    exactly `amount` units pass in a burst even when T is not exactly representable."""
    return limit.interval_s * 1e-3


def check_cost(cost: int) -> None:
    if cost < 0:
        raise ValueError(f"cost must not be negative, not {cost}")


def decide(limit: Limit, tat: float, now: float, cost: int, allowed: bool) -> Decision:
    """The decision for a key whose TAT is `tat` after the call (unchanged when refused)."""
    t = limit.interval_s
    backlog = max(tat - now, 0.0)
    if not allowed:
        retry = max(backlog + cost * t - limit.window_s, 0.0)
        return Decision(False, limit.amount, 0, backlog, retry)
    left = math.floor((limit.window_s - backlog + tolerance(limit)) / t)
    return Decision(True, limit.amount, min(max(left, 0), limit.amount), backlog, 0.0)


def fits(limit: Limit, tat: float, now: float, cost: int) -> bool:
    """Whether `cost` units are allowed now for a key whose TAT is `tat`."""
    return max(tat, now) + cost * limit.interval_s - limit.window_s - now <= tolerance(limit)


class MemoryLimiter:
    """Limits for one process. Each call runs without awaiting, so it is atomic on the event loop."""

    def __init__(self, max_keys: int = 100_000, sweep_interval_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_keys <= 0:
            raise ValueError("max_keys must be positive")
        self._max_keys = max_keys
        self._sweep_interval_s = sweep_interval_s
        self._clock = clock
        self._tat: OrderedDict[str, float] = OrderedDict()
        self._last_sweep: float | None = None

    def __len__(self) -> int:
        """Keys held in memory (idle keys may linger until the next sweep)."""
        return len(self._tat)

    async def consume(self, key: str, limit: Limit, cost: int = 1, now: float | None = None) -> Decision:
        check_cost(cost)
        return self._consume_local(key, limit, cost, now)

    async def peek(self, key: str, limit: Limit, now: float | None = None) -> Decision:
        t = self._now(now)
        tat = self._load(key, t)
        return decide(limit, tat, t, 1, fits(limit, tat, t, 1))

    async def refund(self, key: str, limit: Limit, cost: int, now: float | None = None) -> None:
        check_cost(cost)
        self._shift_local(key, limit, -cost, now)

    async def adjust(self, key: str, limit: Limit, delta: int, now: float | None = None) -> None:
        self._shift_local(key, limit, delta, now)

    async def reset(self, key: str) -> None:
        self._tat.pop(key, None)

    async def close(self) -> None:
        self._tat.clear()

    def _consume_local(self, key: str, limit: Limit, cost: int, now: float | None) -> Decision:
        t = self._now(now)
        tat = self._load(key, t)
        if not fits(limit, tat, t, cost):
            return decide(limit, tat, t, cost, False)  # a refused call consumes nothing
        tat += cost * limit.interval_s
        self._save(key, tat, t)
        return decide(limit, tat, t, cost, True)

    def _shift_local(self, key: str, limit: Limit, delta: int, now: float | None) -> None:
        """Charge (delta > 0, may go into debt) or give back (delta < 0, never past a full bucket) units."""
        t = self._now(now)
        self._save(key, max(self._load(key, t) + delta * limit.interval_s, t), t)

    def _now(self, now: float | None) -> float:
        t = self._clock() if now is None else now
        last = self._last_sweep
        if last is None or t < last:
            self._last_sweep = t
        elif t - last >= self._sweep_interval_s:
            self._last_sweep = t
            self._sweep(t)
        return t

    def _load(self, key: str, now: float) -> float:
        tat = self._tat.get(key)
        return now if tat is None or tat < now else tat

    def _save(self, key: str, tat: float, now: float) -> None:
        if tat <= now:
            self._tat.pop(key, None)  # a full bucket is the same as no entry
            return
        self._tat[key] = tat
        self._tat.move_to_end(key)
        while len(self._tat) > self._max_keys:
            self._tat.popitem(last=False)

    def _sweep(self, now: float) -> None:
        for key in [k for k, tat in self._tat.items() if tat <= now]:
            del self._tat[key]
