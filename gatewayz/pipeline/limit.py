"""Stage: rate limits, before anything costs money. Layer 1: per IP for requests without a valid key (failed
authentication and anonymous ones). Layer 2: per API key (requests and tokens per minute) and per user. Layer 3:
per IP for anonymous access to the free models, stricter than a key. In velocity mode (see limits.velocity) every
one of them applies at its multiplier. Tokens are counted from an estimate before the call and corrected with
the real usage after it. Every refusal is a 429 that says when to retry, why, and in which mode; every answer
carries OpenAI's x-ratelimit-* headers."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from gatewayz.errors import RateLimited
from gatewayz.keys.service import Principal
from gatewayz.limits.limiter import Decision, Limit, MemoryLimiter
from gatewayz.limits.quota import limit_headers
from gatewayz.limits.velocity import Velocity
from gatewayz.pipeline.context import RequestContext
from gatewayz.pipeline.parse import requested_output_tokens
from gatewayz.settings import AnonymousConfig, LimitsConfig

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


def _refusal(d: Decision, reason: str, what: str, mode: str) -> RateLimited:
    after = max(1, math.ceil(d.retry_after_s))
    tightened = " (velocity mode: limits are reduced while the gateway sees many errors)" if mode != "normal" else ""
    return RateLimited(f"Rate limit reached for {what}: {d.limit} per minute{tightened}. Retry after {after}s.",
                       code="rate_limit_exceeded", extra={"reason": reason},
                       headers=limit_headers(d.limit, d.remaining, d.reset_s, after, reason, mode))


def complete_refusal(exc: RateLimited, state: RateState | None, mode: str) -> None:
    """A 429 not from these limits (every upstream rate limiting): add the X-RateLimit-* headers it lacks,
    from the caller's own request budget when it has one."""
    if "x-ratelimit-limit" in exc.headers:
        return
    after = int(exc.headers.get("retry-after", "1"))
    d = state.requests if state is not None else None
    exc.headers.update(limit_headers(d.limit if d else 0, 0, after, after, str(exc.extra.get("reason", "upstream")),
                                     mode))


def estimate_tokens(ctx: RequestContext) -> int:
    """About four bytes a token for the prompt, plus the completion the client allows (as OpenAI counts)."""
    return len(ctx.raw) // 4 + (requested_output_tokens(ctx.body) or 0)


UserLimits = Callable[[Principal], tuple[int | None, int | None]]


class RateLimits:
    def __init__(self, cfg: LimitsConfig, limiter: MemoryLimiter, velocity: Velocity,
                 user_limits: UserLimits | None = None, anonymous: AnonymousConfig | None = None) -> None:
        """`user_limits`: a user's requests and tokens per minute across their keys (their plan's, see
        gatewayz.plans); by default `user_requests_per_minute` and no token limit. `anonymous`: layer 3."""
        self.limiter = limiter
        self.velocity = velocity
        self._rpm = Limit(cfg.requests_per_minute, MINUTE) if cfg.requests_per_minute else None
        self._tpm = Limit(cfg.tokens_per_minute, MINUTE) if cfg.tokens_per_minute else None
        default_user = (cfg.user_requests_per_minute or None, None)
        self._user_limits: UserLimits = user_limits or (lambda _: default_user)
        self._per_minute: dict[int, Limit] = {}
        self._ip = Limit(cfg.ip_requests_per_minute, MINUTE) if cfg.ip_requests_per_minute else None
        anon = anonymous or AnonymousConfig()
        self._anon_rpm = Limit(anon.requests_per_minute_per_ip, MINUTE)
        self._anon_tpm = Limit(anon.tokens_per_minute_per_ip, MINUTE)
        self._scaled: dict[Limit, Limit] = {}

    def applied(self, limit: Limit) -> Limit:
        """The limit as it applies now: itself, or tightened in velocity mode (never below one unit)."""
        m = self.velocity.multiplier
        if m == 1.0:
            return limit
        scaled = self._scaled.get(limit)
        if scaled is None:
            if len(self._scaled) > 10_000:
                self._scaled.clear()  # keys' own limits vary; keep the memo bounded
            scaled = self._scaled[limit] = Limit(max(1, int(limit.amount * m)), limit.window_s)
        return scaled

    async def _consume(self, key: str, limit: Limit, reason: str, what: str, cost: int = 1) -> Decision:
        d = await self.limiter.consume(key, self.applied(limit), cost)
        if not d.allowed:
            raise _refusal(d, reason, what, self.velocity.mode)
        return d

    def _minute(self, amount: int | None) -> Limit | None:
        if not amount:
            return None
        limit = self._per_minute.get(amount)
        if limit is None:
            limit = self._per_minute[amount] = Limit(amount, MINUTE)
        return limit

    async def unauthenticated(self, ip: str) -> None:
        """Layer 1, for a request without a valid key: too many of those from one address become 429s."""
        if self._ip is not None:
            await self._consume(f"ip:{ip}", self._ip, "ip", "unauthenticated requests from your address")

    async def check(self, ctx: RequestContext) -> RateState:
        p = ctx.principal
        assert p is not None
        if p.is_anonymous:
            return await self._anonymous(ctx)
        assert p.user_id is not None
        rpm_amount, tpm_amount = self._user_limits(p)
        spent = await self._user_budget(ctx, p.user_id, self._minute(rpm_amount), self._minute(tpm_amount))
        rpm, tpm = self.key_limits(p.restrictions.rpm_limit, p.restrictions.tpm_limit)
        try:
            state = await self._requests_and_tokens(ctx, f"k{p.key_id}", rpm, tpm, "key", "this API key")
        except RateLimited:
            await self._refund(spent)  # a refusal costs no budget of any layer
            raise
        state.user_tokens = [s for s in spent if s[0].endswith(":tpm")]
        return state

    async def _user_budget(self, ctx: RequestContext, user_id: int, rpm: Limit | None,
                           tpm: Limit | None) -> list[tuple[str, Limit, int]]:
        """The user's requests and tokens per minute across their keys; what was taken, to give back or correct."""
        spent: list[tuple[str, Limit, int]] = []
        try:
            if rpm is not None:
                await self._consume(f"u{user_id}:rpm", rpm, "user_requests", "requests of this account")
                spent.append((f"u{user_id}:rpm", self.applied(rpm), 1))
            if tpm is not None:
                estimate = min(estimate_tokens(ctx), self.applied(tpm).amount)
                await self._consume(f"u{user_id}:tpm", tpm, "user_tokens", "tokens of this account", estimate)
                spent.append((f"u{user_id}:tpm", self.applied(tpm), estimate))
        except RateLimited:
            await self._refund(spent)
            raise
        return spent

    async def _refund(self, spent: list[tuple[str, Limit, int]]) -> None:
        for key, limit, cost in spent:
            await self.limiter.refund(key, limit, cost)

    async def _anonymous(self, ctx: RequestContext) -> RateState:
        """Layers 1 and 3: an anonymous request is unauthenticated traffic, and has its own stricter budget."""
        await self.unauthenticated(ctx.client_ip)
        try:
            return await self._requests_and_tokens(ctx, f"anon:{ctx.client_ip}", self._anon_rpm, self._anon_tpm,
                                                   "anonymous", "anonymous use from your address")
        except RateLimited:
            if self._ip is not None:
                await self.limiter.refund(f"ip:{ctx.client_ip}", self.applied(self._ip), 1)
            raise

    async def _requests_and_tokens(self, ctx: RequestContext, key: str, rpm: Limit | None, tpm: Limit | None,
                                   reason: str, whose: str) -> RateState:
        state = RateState()
        if rpm is not None:
            state.requests = await self._consume(f"{key}:rpm", rpm, f"{reason}_requests", f"requests of {whose}")
        if tpm is not None:
            state.token_key, state.token_limit = f"{key}:tpm", self.applied(tpm)
            # A request larger than the whole budget is charged the whole budget (it could never fit).
            state.estimate = min(estimate_tokens(ctx), state.token_limit.amount)
            try:
                state.tokens = await self._consume(state.token_key, tpm, f"{reason}_tokens", f"tokens of {whose}",
                                                   state.estimate)
            except RateLimited:
                if state.requests is not None and rpm is not None:
                    await self.limiter.refund(f"{key}:rpm", self.applied(rpm), 1)
                raise
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
