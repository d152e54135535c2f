"""Stage: hold the most this request can cost before any upstream call; refuse with 402 if it can't be paid,
or if it could pass a daily spending cap of the user or the key."""

from __future__ import annotations

from collections.abc import Callable

from gatewayz.billing.credits import CreditAuthority, duplicate
from gatewayz.billing.money import token_cost_nanos
from gatewayz.billing.store import LedgerStore
from gatewayz.catalog.service import CatalogEntry, Route
from gatewayz.errors import InsufficientCredits
from gatewayz.pipeline.context import RequestContext
from gatewayz.pipeline.parse import requested_output_tokens
from gatewayz.plans.service import PlanService

# A prompt never has more tokens than it has bytes of text, except images: bound each by a generous
# per-image count (a high-detail image is under 2,000 tokens at the providers we know).
TOKENS_PER_IMAGE_BOUND = 2_000


def max_prompt_tokens(raw: bytes, entry: CatalogEntry) -> int:
    images = raw.count(b'"image_url"') + raw.count(b'"input_audio"')
    return min(len(raw) + TOKENS_PER_IMAGE_BOUND * images, entry.context_length)


def max_output_tokens(ctx: RequestContext, entry: CatalogEntry) -> int:
    asked = requested_output_tokens(ctx.body)
    per_choice = min(asked, entry.max_output_tokens) if asked else entry.max_output_tokens
    n = ctx.body.get("n") or 1
    return per_choice * int(n)


def hold_amount(ctx: RequestContext, entry: CatalogEntry, input_picos: int | None = None,
                output_picos: int | None = None) -> int:
    return token_cost_nanos(max_prompt_tokens(ctx.raw, entry), max_output_tokens(ctx, entry),
                            entry.input_picos if input_picos is None else input_picos,
                            entry.output_picos if output_picos is None else output_picos)


def chat_hold(ctx: RequestContext, entry: CatalogEntry, route: Route | None) -> int:
    if route is None:
        return hold_amount(ctx, entry)
    return hold_amount(ctx, entry, route.input_picos, route.output_picos)


HoldFn = Callable[[RequestContext, CatalogEntry, "Route | None"], int]


def worst_case(ctx: RequestContext, hold: HoldFn = chat_hold) -> int:
    """The hold covers whichever candidate (fallback model, provider price) ends up serving."""
    if not ctx.candidates:
        assert ctx.entry is not None
        return hold(ctx, ctx.entry, None)
    return max(hold(ctx, c.entry, c.route) for c in ctx.candidates)


async def reserve(ctx: RequestContext, authority: CreditAuthority, ledger: LedgerStore, plans: PlanService,
                  hold: HoldFn = chat_hold) -> None:
    entry, principal = ctx.entry, ctx.principal
    assert entry is not None and principal is not None
    if principal.is_anonymous:
        return  # a listed free model and no account: nothing to hold, nothing will be charged (no hold, no settle)
    assert principal.user_id is not None
    if ctx.client_request_id and await ledger.charged(principal.user_id, ctx.request_id):
        raise duplicate(ctx.request_id)
    amount = worst_case(ctx, hold)
    daily = await plans.count_daily(principal, amount)
    try:
        # The allowance of the caller's current period is spent first (a new period resets it first).
        ctx.hold = await authority.reserve(principal.user_id, ctx.request_id, amount,
                                           plans.book.period_of(principal))
    except InsufficientCredits as exc:
        if daily is not None:
            daily.settle(0)
        raise plans.explain(principal, exc) from None
    except BaseException:
        if daily is not None:
            daily.settle(0)
        raise
    ctx.daily = daily
