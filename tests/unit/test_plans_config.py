"""Plans, trials and partner trials come from one place: the settings (built-in defaults, YAML overrides)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from gatewayz.billing.allowance import Account
from gatewayz.keys.restrictions import Restrictions
from gatewayz.keys.service import Principal
from gatewayz.plans.book import PlanBook
from gatewayz.settings import ConfigError, Settings, load_settings

YAML = """
limits: {user_requests_per_minute: 30}
plans:
  - {id: free, name: Free, price_usd_month: 0, daily_cap_usd: 0.5}
  - {id: team, name: Team, price_usd_month: 99.99, monthly_allowance_usd: 120.000000001, rpm: 900, tpm: 90000}
trials: {credits_usd: 2.5, days: 3}
partner_trials:
  - {code: Redbeard, credits_usd: 100, days: 14, daily_cap_usd: 20, rpm: 120}
"""


def _load(tmp_path: Path, text: str) -> Settings:
    p = tmp_path / "gw.yaml"
    p.write_text(text)
    return load_settings(p, env={})


def test_yaml_replaces_the_builtin_plans_and_keeps_amounts_exact(tmp_path: Path) -> None:
    s = _load(tmp_path, YAML)
    assert [p.id for p in s.plans] == ["free", "team"]
    assert s.plans[1].price_usd_month == Decimal("99.99")
    assert s.plans[1].monthly_allowance_usd == Decimal("120.000000001")
    assert s.trials.credits_usd == Decimal("2.5") and s.trials.days == 3
    assert s.trials.daily_cap_usd == Decimal(1)   # the default where the file says nothing
    book = PlanBook(s)
    assert book.plan("team").allowance == 120_000_000_001
    assert book.plan("gone").id == "free"          # a plan removed from the config counts as free
    assert book.partner(" REDBEARD ") is not None and book.partner("x") is None


def test_defaults_without_a_file() -> None:
    s = Settings()
    assert [(p.id, p.price_usd_month, p.monthly_allowance_usd, p.daily_cap_usd) for p in s.plans] == [
        ("free", 0, 0, None), ("starter", 10, 10, 25), ("pro", 50, 50, 200), ("enterprise", None, 0, None)]
    assert (s.trials.credits_usd, s.trials.days, s.trials.daily_cap_usd) == (5, 14, 1)
    assert s.partner_trials == []


@pytest.mark.parametrize(("text", "message"), [
    ("plans: [{id: pro, name: Pro, price_usd_month: 1}]", "'free' is required"),
    ("plans: [{id: free, name: F, price_usd_month: 0}, {id: free, name: G, price_usd_month: 0}]", "duplicate plan"),
    ("plans: [{id: free, name: F, price_usd_month: 0, daily_cap_usd: 0.0000000001}]", "9 decimal places"),
    ("plans: [{id: Free!, name: F, price_usd_month: 0}]", "plans.0.id"),
    ("trials: {days: 0}", "trials.days"),
    ("partner_trials: [{code: ab, credits_usd: 1}, {code: AB, credits_usd: 2}]", "duplicate code"),
])
def test_invalid_plan_settings_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, text)


def test_what_applies_to_a_user_now(tmp_path: Path) -> None:
    now = datetime(2025, 6, 30, 23, 0, tzinfo=UTC)
    book = PlanBook(_load(tmp_path, YAML), clock=lambda: now)
    team = Principal(user_id=1, key_id=1, role="user", plan="team")
    assert book.period_of(team) == "2025-06/team"
    assert book.user_limits(team) == (900, 90000) and book.user_cap(team) is None
    free = Principal(user_id=2, key_id=2, role="user", restrictions=Restrictions(daily_spend_limit_nanos=5))
    assert book.user_limits(free) == (30, None) and book.user_cap(free) == 500_000_000
    partner = Principal(user_id=3, key_id=3, role="user", trial_source="partner:Redbeard",
                        trial_expires_at=now + timedelta(hours=2))
    assert book.period(Account("free", "partner:Redbeard", now + timedelta(hours=2))).grant == 100 * 10**9
    assert book.period_of(partner) == "trial/partner:Redbeard"
    assert book.user_limits(partner) == (120, None) and book.user_cap(partner) == 20 * 10**9
    ended = Principal(user_id=4, key_id=4, role="user", trial_source="standard", trial_expires_at=now)
    assert book.period_of(ended) == "2025-06/free" and book.user_cap(ended) == 500_000_000
    day, start, end = book.today()
    assert (day.isoformat(), start.hour, end - start) == ("2025-06-30", 0, timedelta(days=1))
