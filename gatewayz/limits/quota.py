"""Limits on account actions (logins, registrations, key creation): one unit per attempt, refused with a 429
that says when to retry and carries the X-RateLimit-* headers."""

from __future__ import annotations

import math

from gatewayz.errors import RateLimited
from gatewayz.limits.limiter import Limit, MemoryLimiter


def optional_limit(amount: int, window_s: float) -> Limit | None:
    """None for an amount of 0 (the limit is off)."""
    return Limit(amount, window_s) if amount else None


def _span(window_s: float) -> str:
    for unit, size in (("hour", 3600), ("minute", 60)):
        if window_s % size == 0:
            n = int(window_s // size)
            return unit if n == 1 else f"{n} {unit}s"
    return f"{window_s:g} seconds"


def limit_headers(limit: int, remaining: int, reset_s: float, after: int, reason: str,
                  mode: str | None = None) -> dict[str, str]:
    """The headers of every 429 the gateway sends (X-RateLimit-Mode on the request limits, which velocity mode
    tightens)."""
    headers = {"retry-after": str(after), "x-ratelimit-limit": str(limit), "x-ratelimit-remaining": str(remaining),
               "x-ratelimit-reset": str(math.ceil(reset_s)), "x-ratelimit-reason": reason}
    if mode is not None:
        headers["x-ratelimit-mode"] = mode
    return headers


async def enforce(limiter: MemoryLimiter, key: str, limit: Limit | None, reason: str, what: str,
                  code: str = "rate_limit_exceeded") -> None:
    """Count one attempt at `what` for `key`, or raise the 429 (the refused attempt is not counted)."""
    if limit is None:
        return
    d = await limiter.consume(key, limit)
    if d.allowed:
        return
    after = max(1, math.ceil(d.retry_after_s))
    raise RateLimited(f"Too many {what}: at most {limit.amount} per {_span(limit.window_s)}. Retry after {after}s.",
                      code=code, extra={"reason": reason},
                      headers=limit_headers(d.limit, 0, d.reset_s, after, reason))
