"""The allowance: money spent before purchased credits that belongs to one period and never rolls over.

A period is a subscription month of one plan ("2025-06/pro", its monthly allowance) or a trial
("trial/standard", the trial credit). Which period a user is in follows from their plan, their trial and the
clock (a `PeriodPolicy`, supplied by gatewayz.plans). When it changes, the first request (or an eager change
such as a new plan) resets the allowance in one locked transaction: the unused rest expires with a ledger row,
the new period's grant is credited with another. Purchased credits (balance_nanos) are never touched.

Every ledger row carries both parts: amount_nanos changes the purchased balance, allowance_nanos the
allowance, so each pool's rows sum to its column.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gatewayz.storage.schema import credit_transactions, users

TRIAL_PREFIX = "trial/"
SUBSCRIPTION_ALLOWANCE = "subscription_allowance"
TRIAL = "trial"


@dataclass(frozen=True, slots=True)
class Period:
    key: str           # "2025-06/pro", "trial/standard", "trial/partner:CODE"
    grant: int         # nanodollars credited to the allowance when the period starts
    grant_type: str    # ledger type of that grant: subscription_allowance or trial


@dataclass(frozen=True, slots=True)
class Account:
    """What decides a user's period (from the users row, or from the cached key principal)."""

    plan: str
    trial_source: str | None
    trial_expires_at: datetime | None


PeriodPolicy = Callable[[Account], Period]


@dataclass(frozen=True, slots=True)
class Funds:
    balance: int            # purchased credits
    allowance: int          # this period's allowance left
    held: int               # open database holds (the SQL credit authority)
    period: str | None


@dataclass(frozen=True, slots=True)
class Reset:
    period: str
    delta: int              # change of the allowance (new grant minus what expired)
    balance: int
    allowance: int


def expiry_type(old_period: str | None) -> str:
    return "trial_expired" if old_period and old_period.startswith(TRIAL_PREFIX) else "allowance_expired"


def kept_for_holds(leftover: int, balance: int, grant: int, held: int) -> int:
    """How much of the old allowance stays: only what requests already holding money still need, so a
    request in flight at the reset is paid as it was promised (never more than was left)."""
    return min(leftover, max(0, held - balance - grant))


async def reset_in(conn: AsyncConnection, user_id: int, policy: PeriodPolicy, in_flight: int,
                   now: datetime) -> Reset | None:
    """Inside a transaction: lock the user's row; when its period is no longer the policy's, expire the
    rest and grant the new period. None for an unknown user."""
    u = users.c
    row = (await conn.execute(
        users.update().where(u.id == user_id).values(allowance_nanos=u.allowance_nanos)
        .returning(u.balance_nanos, u.allowance_nanos, u.held_nanos, u.allowance_period, u.plan, u.trial_source,
                   u.trial_expires_at))).first()
    if row is None:
        return None
    balance, leftover, held, old = int(row[0]), int(row[1]), int(row[2]), row[3]
    period = policy(Account(row[4], row[5], row[6]))
    if period.key == old:
        return Reset(old, 0, balance, leftover)
    keep = kept_for_holds(leftover, balance, period.grant, held + in_flight)
    allowance = keep + period.grant
    await conn.execute(users.update().where(u.id == user_id)
                       .values(allowance_nanos=allowance, allowance_period=period.key))
    rows: list[dict[str, Any]] = []
    if leftover - keep:
        rows.append(_row(user_id, expiry_type(old), balance, -(leftover - keep), keep, f"unused allowance of {old}",
                         now))
    if period.grant:
        rows.append(_row(user_id, period.grant_type, balance, period.grant, allowance, period.key, now))
    if rows:
        await conn.execute(credit_transactions.insert(), rows)
    return Reset(period.key, allowance - leftover, balance, allowance)


def _row(user_id: int, kind: str, balance: int, change: int, after: int, description: str,
         now: datetime) -> dict[str, Any]:
    return {"user_id": user_id, "type": kind, "amount_nanos": 0, "balance_after_nanos": balance,
            "allowance_nanos": change, "allowance_after_nanos": after, "description": description[:500],
            "created_at": now}


async def change_account(conn: AsyncConnection, user_id: int, changes: dict[str, Any],
                         require: list[sa.ColumnElement[bool]]) -> bool:
    """Change plan or trial columns when `require` holds (atomically: the check and the write are one
    statement); False when it does not or the user is unknown."""
    res = await conn.execute(users.update().where(users.c.id == user_id, *require).values(**changes))
    return bool(res.rowcount == 1)
