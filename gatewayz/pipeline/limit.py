"""Stage: rate limits, before anything costs money. Per API key (requests and tokens per minute), per user,
and per IP for requests that fail authentication. Tokens are counted from an estimate before the call and
corrected with the real usage after it. Every refusal is a 429 that says when to retry; every answer
carries OpenAI's x-ratelimit-* headers."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from gatewayz.errors import RateLimited
from gatewayz.keys.service import Principal
from gatewayz.limits.limiter import Decision, Limit, MemoryLimiter
from gatewayz.pipeline.context import RequestContext
from gatewayz.pipeline.parse import requested_output_tokens
from gatewayz.settings import LimitsConfig

MINUTE = 60.0


@dataclass(slots=True)
class RateState:
    """What the limiter said about this request, for its headers and the correction after it."""

    requests: Decision | None = None
    tokens: Decision | None = None
    token_key: str = ""
    token_limit: Limit | None = None
    estimate: int = 0
    user_tokens: list[tuple[str, Limit, int]] = field(default_factory=list)  # the user's bucket, its estimate


def _refusal(d: Decision, reason: str, what: str) -> RateLimited:
    after = max(1, math.ceil(d.retry_after_s))
    return RateLimited(f"Rate limit reached for {what}: {d.limit} per minute. Retry after {after}s.",
                       code="rate_limit_exceeded", extra={"reason": reason},
                       headers={"retry-after": str(after), "x-ratelimit-limit": str(d.limit),
                                "x-ratelimit-remaining": str(d.remaining),
                                "x-ratelimit-reset": str(math.ceil(d.reset_s)), "x-ratelimit-reason": reason})


def estimate_tokens(ctx: RequestContext) -> int:
    """About four bytes a token for the prompt, plus the completion the client allows (as OpenAI counts)."""
    return len(ctx.raw) // 4 + (requested_output_tokens(ctx.body) or 0)


UserLimits = Callable[[Principal], tuple[int | None, int | None]]


class RateLimits:
    def __init__(self, cfg: LimitsConfig, limiter: MemoryLimiter, user_limits: UserLimits | None = None) -> None:
        """`user_limits`: a user's requests and tokens per minute across their keys (their plan's, see
        gatewayz.plans); by default `user_requests_per_minute` and no token limit."""
        self.limiter = limiter
        self._rpm = Limit(cfg.requests_per_minute, MINUTE) if cfg.requests_per_minute else None
        self._tpm = Limit(cfg.tokens_per_minute, MINUTE) if cfg.tokens_per_minute else None
        default_user = (cfg.user_requests_per_minute or None, None)
        self._user_limits: UserLimits = user_limits or (lambda _: default_user)
        self._per_minute: dict[int, Limit] = {}
        self._ip = Limit(cfg.ip_requests_per_minute, MINUTE) if cfg.ip_requests_per_minute else None

    def _minute(self, amount: int | None) -> Limit | None:
        if not amount:
            return None
        limit = self._per_minute.get(amount)
        if limit is None:
            limit = self._per_minute[amount] = Limit(amount, MINUTE)
        return limit

    async def unauthenticated(self, ip: str) -> None:
        """Called when authentication failed: too many of those from one address become 429s."""
        if self._ip is not None:
            d = await self.limiter.consume(f"ip:{ip}", self._ip)
            if not d.allowed:
                raise _refusal(d, "ip", "unauthenticated requests from your address")

    async def check(self, ctx: RequestContext) -> RateState:
        p = ctx.principal
        assert p is not None and p.user_id is not None
        state = RateState()
        rpm_amount, tpm_amount = self._user_limits(p)
        user_rpm, user_tpm = self._minute(rpm_amount), self._minute(tpm_amount)
        if user_rpm is not None:
            d = await self.limiter.consume(f"u{p.user_id}:rpm", user_rpm)
            if not d.allowed:
                raise _refusal(d, "user_requests", "requests of this account")
        if user_tpm is not None:
            estimate = min(estimate_tokens(ctx), user_tpm.amount)
            d = await self.limiter.consume(f"u{p.user_id}:tpm", user_tpm, estimate)
            if not d.allowed:
                if user_rpm is not None:
                    await self.limiter.refund(f"u{p.user_id}:rpm", user_rpm, 1)
                raise _refusal(d, "user_tokens", "tokens of this account")
            state.user_tokens.append((f"u{p.user_id}:tpm", user_tpm, estimate))
        rpm, tpm = self.key_limits(p.restrictions.rpm_limit, p.restrictions.tpm_limit)
        if rpm is not None:
            state.requests = await self.limiter.consume(f"k{p.key_id}:rpm", rpm)
            if not state.requests.allowed:
                raise _refusal(state.requests, "key_requests", "requests of this API key")
        if tpm is not None:
            state.token_key, state.token_limit = f"k{p.key_id}:tpm", tpm
            # A request larger than the whole budget is charged the whole budget (it could never fit).
            state.estimate = min(estimate_tokens(ctx), tpm.amount)
            state.tokens = await self.limiter.consume(state.token_key, tpm, state.estimate)
            if not state.tokens.allowed:
                if rpm is not None:
                    await self.limiter.refund(f"k{p.key_id}:rpm", rpm, 1)
                raise _refusal(state.tokens, "key_tokens", "tokens of this API key")
        return state

    def key_limits(self, rpm: int | None, tpm: int | None) -> tuple[Limit | None, Limit | None]:
        """A key's own limits where it has them, else the configured defaults."""
        return (Limit(rpm, MINUTE) if rpm else self._rpm, Limit(tpm, MINUTE) if tpm else self._tpm)

    async def correct(self, ctx: RequestContext, state: RateState) -> None:
        """After the response: count the tokens really used instead of the estimate."""
        used = ctx.usage.prompt_tokens + ctx.usage.completion_tokens if ctx.usage else 0
        for key, limit, estimate in state.user_tokens:
            if used != estimate:
                await self.limiter.adjust(key, limit, used - estimate)
        if state.token_limit is None:
            return
        if used != state.estimate:
            await self.limiter.adjust(state.token_key, state.token_limit, used - state.estimate)


def success_headers(state: RateState) -> list[tuple[bytes, bytes]]:
    out = []
    for name, d in (("requests", state.requests), ("tokens", state.tokens)):
        if d is not None:
            out += [(f"x-ratelimit-limit-{name}".encode(), str(d.limit).encode()),
                    (f"x-ratelimit-remaining-{name}".encode(), str(d.remaining).encode()),
                    (f"x-ratelimit-reset-{name}".encode(), f"{d.reset_s:.3f}s".encode())]
    return out
