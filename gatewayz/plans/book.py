"""The plans, trials and partner trials of the configuration, and what they mean for one user at one moment:
the allowance period, the per-user rate limits and the daily spend cap. Pure functions of the settings, the
user's plan and trial, and a clock (injectable, so tests can move time)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from gatewayz.billing.allowance import SUBSCRIPTION_ALLOWANCE, TRIAL, TRIAL_PREFIX, Account, Period
from gatewayz.billing.money import nanos_to_json, usd_to_nanos
from gatewayz.keys.service import Principal
from gatewayz.settings import Settings, TrialConfig

STANDARD = "standard"
PARTNER = "partner:"


def _nanos(usd: Decimal | None) -> int | None:
    return usd_to_nanos(usd) if usd is not None else None


def _usd(nanos: int | None) -> float | None:
    return nanos_to_json(nanos) if nanos is not None else None


@dataclass(frozen=True, slots=True)
class Plan:
    id: str
    name: str
    price_usd_month: Decimal | None
    allowance: int
    rpm: int | None
    tpm: int | None
    daily_cap: int | None

    @property
    def paid(self) -> bool:
        """Paid or priced by contract: such an account does not take trials."""
        return self.price_usd_month != 0

    def json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name,
                "price_usd_month": float(self.price_usd_month) if self.price_usd_month is not None else None,
                "monthly_allowance_usd": nanos_to_json(self.allowance), "rpm": self.rpm, "tpm": self.tpm,
                "daily_cap_usd": _usd(self.daily_cap)}


@dataclass(frozen=True, slots=True)
class TrialTerms:
    source: str              # "standard" or "partner:CODE" (the users.trial_source value)
    credits: int
    days: int
    daily_cap: int | None
    rpm: int | None = None

    @classmethod
    def of(cls, source: str, cfg: TrialConfig, rpm: int | None = None) -> TrialTerms:
        return cls(source, usd_to_nanos(cfg.credits_usd), cfg.days, _nanos(cfg.daily_cap_usd), rpm)

    def json(self) -> dict[str, Any]:
        return {"credits_usd": nanos_to_json(self.credits), "days": self.days,
                "daily_cap_usd": _usd(self.daily_cap), "rpm": self.rpm}


def utc_now() -> datetime:
    return datetime.now(UTC)


def next_midnight(now: datetime) -> datetime:
    return datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)


class PlanBook:
    def __init__(self, settings: Settings, clock: Callable[[], datetime] = utc_now) -> None:
        self.plans = {p.id: Plan(p.id, p.name, p.price_usd_month, usd_to_nanos(p.monthly_allowance_usd), p.rpm,
                                 p.tpm, _nanos(p.daily_cap_usd)) for p in settings.plans}
        self.free = self.plans["free"]
        self.trial = TrialTerms.of(STANDARD, settings.trials)
        self.partners = {t.code.lower(): TrialTerms.of(PARTNER + t.code, t, t.rpm) for t in settings.partner_trials}
        self.clock = clock
        self._default_user_rpm = settings.limits.user_requests_per_minute or None

    def plan(self, plan_id: str) -> Plan:
        """A plan id no longer configured counts as the free plan."""
        return self.plans.get(plan_id, self.free)

    def partner(self, code: str) -> TrialTerms | None:
        return self.partners.get(code.strip().lower())

    def terms(self, source: str) -> TrialTerms:
        if source.startswith(PARTNER):
            return self.partner(source[len(PARTNER):]) or self.trial
        return self.trial

    def active_trial(self, source: str | None, expires_at: datetime | None) -> TrialTerms | None:
        if source is None or expires_at is None or self.clock() >= expires_at:
            return None
        return self.terms(source)

    def today(self) -> tuple[date, datetime, datetime]:
        """(today, its 00:00 UTC, the next 00:00 UTC)."""
        now = self.clock()
        start = datetime.combine(now.date(), datetime.min.time(), UTC)
        return now.date(), start, start + timedelta(days=1)

    # -- the allowance period (billing.allowance.PeriodPolicy) --

    def period(self, account: Account) -> Period:
        trial = self.active_trial(account.trial_source, account.trial_expires_at)
        if trial is not None:
            return Period(TRIAL_PREFIX + trial.source, trial.credits, TRIAL)
        plan = self.plan(account.plan)
        return Period(f"{self.clock():%Y-%m}/{plan.id}", plan.allowance, SUBSCRIPTION_ALLOWANCE)

    def period_of(self, p: Principal) -> str:
        return self.period(Account(p.plan, p.trial_source, p.trial_expires_at)).key

    # -- what applies to one caller now --

    def user_limits(self, p: Principal) -> tuple[int | None, int | None]:
        """Per-user requests and tokens per minute: a partner trial's rpm while it runs, else the plan's,
        else the gateway's `limits.user_requests_per_minute`."""
        plan = self.plan(p.plan)
        trial = self.active_trial(p.trial_source, p.trial_expires_at)
        rpm = (trial.rpm if trial is not None else None) or plan.rpm or self._default_user_rpm
        return rpm, plan.tpm

    def user_cap(self, p: Principal) -> int | None:
        """The user's daily cap: the trial's while a trial runs, else the plan's."""
        trial = self.active_trial(p.trial_source, p.trial_expires_at)
        return trial.daily_cap if trial is not None else self.plan(p.plan).daily_cap
