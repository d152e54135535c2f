"""Plans, trials and daily caps: assigning a plan, starting a trial, what a user's trial and plan look like
now, and the two checks of the inference path (the daily caps, and why a 402 happened)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from gatewayz.audit.store import AuditLog
from gatewayz.billing.credits import CreditAuthority
from gatewayz.billing.money import nanos_to_json, nanos_to_usd
from gatewayz.errors import Conflict, InsufficientCredits, InvalidRequest, NotFound
from gatewayz.keys.service import KeyService, Principal
from gatewayz.plans.book import PARTNER, PlanBook, TrialTerms
from gatewayz.plans.caps import DailySpend, GiveBack, Refusal, Scope
from gatewayz.plans.store import PlanStore
from gatewayz.storage.schema import users

PLANS_URL = "/plans"


class DailyCapExceeded(InsufficientCredits):
    code = "daily_cap_exceeded"


@dataclass(slots=True)
class DailyHold:
    """What one request counted against its daily caps; settles once."""

    amount: int
    give_back: GiveBack
    done: bool = False

    def settle(self, cost: int) -> None:
        if not self.done:
            self.done = True
            if self.amount - cost > 0:
                self.give_back(self.amount - cost)


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


class PlanService:
    def __init__(self, book: PlanBook, store: PlanStore, credits: CreditAuthority, counters: DailySpend,
                 keys: KeyService, audit: AuditLog) -> None:
        self.book = book
        self.store = store
        self.credits = credits
        self.counters = counters
        self.keys = keys
        self.audit = audit

    # -- the inference path --

    def scopes(self, p: Principal) -> list[Scope]:
        assert p.user_id is not None
        out = []
        user_cap = self.book.user_cap(p)
        if user_cap is not None:
            out.append(Scope(f"u:{p.user_id}", p.user_id, None, user_cap))
        key_cap = p.restrictions.daily_spend_limit_nanos
        if key_cap is not None and p.key_id is not None:
            out.append(Scope(f"k:{p.key_id}", p.user_id, p.key_id, key_cap))
        return out

    async def count_daily(self, p: Principal, amount: int) -> DailyHold | None:
        """Count a request's hold against the caller's daily caps, or refuse it (402 daily_cap_exceeded)
        before any upstream call. Nothing to count for a request that cannot cost anything."""
        scopes = self.scopes(p) if amount > 0 else []
        if not scopes:
            return None
        day, start, end = self.book.today()
        got = await self.counters.take(scopes, day.isoformat(), start, amount)
        if isinstance(got, Refusal):
            raise self._cap_error(got, amount, end)
        return DailyHold(amount, got)

    def _cap_error(self, r: Refusal, amount: int, resets_at: datetime) -> DailyCapExceeded:
        whose = "this API key" if r.scope.key_id is not None else "this account"
        fix = "raise the key's daily_spend_limit" if r.scope.key_id is not None else "choose another plan (GET /plans)"
        after = max(1, math.ceil((resets_at - self.book.clock()).total_seconds()))
        return DailyCapExceeded(
            f"Daily spending cap of {whose} reached: ${nanos_to_usd(r.spent):.6f} of ${nanos_to_usd(r.scope.cap):.6f} "
            f"spent today (UTC, requests in flight included) and this request may cost up to "
            f"${nanos_to_usd(amount):.6f}. The cap resets at {resets_at:%Y-%m-%d %H:%M} UTC; until then lower "
            f"max_tokens or {fix}.",
            headers={"retry-after": str(after)},
            extra={"scope": "key" if r.scope.key_id is not None else "user", "daily_cap": nanos_to_json(r.scope.cap),
                   "spent_today": nanos_to_json(r.spent), "required": nanos_to_json(amount),
                   "resets_at": resets_at.isoformat(), "plans_url": PLANS_URL})

    def explain(self, p: Principal, exc: InsufficientCredits) -> InsufficientCredits:
        """A 402 says what to do: an ended trial says so; every refusal points at the plans."""
        ended = p.trial_source is not None and p.trial_expires_at is not None \
            and self.book.clock() >= p.trial_expires_at
        extra = {**exc.extra, "plans_url": PLANS_URL}
        if not ended:
            return InsufficientCredits(exc.message, code=exc.code, extra=extra, headers=exc.headers)
        assert p.trial_expires_at is not None
        return InsufficientCredits(
            f"Your free trial ended on {p.trial_expires_at:%Y-%m-%d %H:%M} UTC and its unused credit expired with "
            f"it. This model is paid: add credits or choose a plan (GET /plans). Free models (ids ending in "
            f":free) still work. {exc.message}",
            code="trial_expired", extra={**extra, "trial_expired_at": p.trial_expires_at.isoformat()})

    # -- plans --

    async def assign(self, user_id: int, plan_id: str, actor: str) -> dict[str, Any]:
        """Move a user to a plan at once: the old allowance expires, the new plan's full allowance is granted
        (no proration), a running trial ends when the plan is paid. Purchased credits are not touched."""
        plan = self.book.plans.get(plan_id)
        if plan is None:
            raise InvalidRequest(f"No plan {plan_id!r}; GET /plans lists them.", param="plan", code="unknown_plan")
        before = await self.store.account(user_id)
        if before is None:
            raise NotFound(f"No user {user_id}.", code="user_not_found")
        now = self.book.clock()
        changes: dict[str, Any] = {"plan": plan.id}
        if plan.paid:
            col = users.c.trial_expires_at
            changes["trial_expires_at"] = sa.case((col > sa.literal(now, col.type), sa.literal(now, col.type)),
                                                  else_=col)
        r = await self.credits.reset(user_id, changes)
        if r is None:
            raise NotFound(f"No user {user_id}.", code="user_not_found")
        await self.keys.user_changed(user_id)
        await self.audit.append(actor, "plan.assign", f"user:{user_id}",
                                {"plan": plan.id, "previous": before.plan, "period": r.period,
                                 "allowance_nanos": r.allowance})
        return {"user_id": user_id, "plan": plan.json(), "previous_plan": before.plan, "period": r.period,
                "allowance": nanos_to_json(r.allowance), "balance": nanos_to_json(r.balance)}

    async def plan_status(self, p: Principal) -> dict[str, Any]:
        assert p.user_id is not None
        balance, allowance = await self.credits.funds(p.user_id, self.book.period_of(p))
        plan = self.book.plan(p.plan)
        return {"plan": plan.json(), "period": self.book.period_of(p), "allowance": nanos_to_json(allowance),
                "allowance_nanos": allowance, "balance": nanos_to_json(balance), "balance_nanos": balance,
                "available": nanos_to_json(balance + allowance), **await self._today(p)}

    async def _today(self, p: Principal) -> dict[str, Any]:
        assert p.user_id is not None
        day, start, end = self.book.today()
        cap = self.book.user_cap(p)
        scope = Scope(f"u:{p.user_id}", p.user_id, None, cap or 0)
        spent = await self.counters.spent(scope, day.isoformat(), start)
        return {"daily_cap": nanos_to_json(cap) if cap is not None else None,
                "spent_today": nanos_to_json(spent), "spent_today_nanos": spent, "day_resets_at": end.isoformat()}

    # -- trials --

    async def start_trial(self, user_id: int, code: str | None = None, actor: str = "system") -> dict[str, Any]:
        """The configured trial (or a partner's, by code) for an account without a paid plan: its credit is
        spent first and expires with the trial. The standard trial is given once; a partner trial once too,
        and it replaces a standard trial still running."""
        terms = self.book.trial if code is None else self.book.partner(code)
        if terms is None:
            raise NotFound(f"No partner trial has the code {code!r}.", param="code", code="partner_code_not_found")
        now = self.book.clock()
        col = users.c.trial_source
        used = col.is_(None) if code is None else sa.or_(col.is_(None), sa.not_(col.like(PARTNER + "%")))
        free = [p.id for p in self.book.plans.values() if not p.paid]
        r = await self.credits.reset(user_id, {"trial_source": terms.source, "trial_started_at": now,
                                               "trial_expires_at": now + timedelta(days=terms.days)},
                                     [used, users.c.plan.in_(free)])
        if r is None:
            await self._why_no_trial(user_id, code)
        await self.keys.user_changed(user_id)
        await self.audit.append(actor, "trial.start", f"user:{user_id}",
                                {"source": terms.source, "credits_nanos": terms.credits, "days": terms.days})
        return await self.trial_status(user_id)

    async def _why_no_trial(self, user_id: int, code: str | None) -> None:
        account = await self.store.account(user_id)
        if account is None:
            raise NotFound(f"No user {user_id}.", code="user_not_found")
        if self.book.plan(account.plan).paid:
            raise Conflict(f"Trials are for accounts without a paid plan; this one is on {account.plan!r}.",
                           code="trial_not_available")
        which = "a partner trial" if code is not None else "a trial"
        raise Conflict(f"This account already had {which}; each is given once.", code="trial_already_used")

    async def trial_status(self, user_id: int) -> dict[str, Any]:
        account = await self.store.account(user_id)
        if account is None:
            raise NotFound(f"No user {user_id}.", code="user_not_found")
        p = Principal(user_id=user_id, key_id=None, role="user", plan=account.plan,
                      trial_source=account.trial_source, trial_expires_at=account.trial_expires_at)
        terms = self.book.active_trial(account.trial_source, account.trial_expires_at)
        _, allowance = await self.credits.funds(user_id, self.book.period_of(p))
        left = allowance if terms is not None else 0
        now = self.book.clock()
        remaining_s = (account.trial_expires_at - now).total_seconds() if terms and account.trial_expires_at else 0
        state = "none" if account.trial_source is None else ("active" if terms is not None else "expired")
        out = {"status": state, "active": terms is not None, "source": account.trial_source,
               "started_at": _iso(account.trial_started_at), "expires_at": _iso(account.trial_expires_at),
               "days_remaining": math.ceil(remaining_s / 86400), "credits_remaining": nanos_to_json(left),
               "credits_remaining_nanos": left, "plan": account.plan, **await self._today(p)}
        out["terms"] = (terms or self._terms_of(account.trial_source)).json()
        return out

    def _terms_of(self, source: str | None) -> TrialTerms:
        return self.book.terms(source) if source else self.book.trial
