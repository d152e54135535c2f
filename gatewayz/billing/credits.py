"""Credit authorities: hold the most a request can cost before the upstream call, settle the exact cost after.

Two implementations share one contract (tests/billing/test_credit_contract.py):
- MemoryAuthority: one worker owns its users' available balance in process; holds cost no I/O, settlements
  are written in batches (ledger + balance + usage in one transaction). The default for one worker.
- SqlAuthority: holds are rows and a held_nanos column changed by conditional UPDATEs, so any number of
  workers sharing the database agree. Used when several workers run without a shared in-memory store.

Both spend the allowance (billing.allowance) before purchased credits: a hold is taken against the sum, the
written charge says which part paid. Given the period a request belongs to, they first reset an allowance
left from an earlier period (one locked transaction; the policy comes from gatewayz.plans).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.exc import IntegrityError

from gatewayz.billing.allowance import PeriodPolicy, Reset
from gatewayz.billing.journal import SettlementJournal
from gatewayz.billing.store import DuplicateHold, LedgerStore, Settlement
from gatewayz.billing.writer import SettlementWriter
from gatewayz.errors import Conflict, InsufficientCredits, NotFound

log = logging.getLogger("gatewayz.billing")


@dataclass(slots=True)
class Hold:
    user_id: int
    request_id: str
    amount: int
    remaining: int = 0   # what the user could still spend once this hold was taken


class CreditAuthority(Protocol):
    async def reserve(self, user_id: int, request_id: str, amount: int, period: str | None = None) -> Hold: ...
    def settle(self, hold: Hold, settlement: Settlement) -> int: ...
    def release(self, hold: Hold) -> None: ...
    async def balance(self, user_id: int) -> int: ...
    async def funds(self, user_id: int, period: str | None = None) -> tuple[int, int]: ...
    async def reset(self, user_id: int, changes: dict[str, Any] | None = None,
                    require: list[Any] | None = None) -> Reset | None: ...
    def credited(self, user_id: int, amount: int) -> None: ...
    async def drain(self) -> None: ...


def insufficient(available: int, needed: int) -> InsufficientCredits:
    from gatewayz.billing.money import nanos_to_usd

    have, need = nanos_to_usd(available), nanos_to_usd(needed)
    return InsufficientCredits(
        f"Insufficient credits: this request may cost up to ${need:.6f} and your available balance is "
        f"${have:.6f}. Add credits, or lower max_tokens to reduce the amount held for the request.",
        extra={"balance": float(have), "required": float(need)})


def duplicate(request_id: str) -> Conflict:
    return Conflict(f"X-Request-ID {request_id!r} is already in progress or was already processed; "
                    "use a new request id for a new request.", code="duplicate_request_id")


def _policy_of(policy: PeriodPolicy | None) -> PeriodPolicy:
    if policy is None:
        raise RuntimeError("this credit authority was built without a period policy")
    return policy


@dataclass(slots=True)
class _Account:
    balance: int                 # durable balance as last known (this process applies every change it makes)
    allowance: int = 0           # durable allowance as last known
    period: str | None = None    # the allowance's period as last known
    held: int = 0                # sum of open holds
    pending: int = 0             # settled here but not yet written
    generation: int = 0          # bumps on every change, so a reload never overwrites a newer state
    # Held while the allowance is reset: no hold is taken against the state being replaced, and a reload
    # meanwhile is discarded.
    resetting: asyncio.Lock = field(default_factory=asyncio.Lock)
    loaded_at: float = field(default_factory=time.monotonic)

    def spendable(self) -> int:
        return self.balance + self.allowance - self.held - self.pending


class MemoryAuthority:
    RELOAD_AFTER_S = 30.0
    RECENT_S = 10.0      # how long a written settlement's request id is remembered here
    RECENT_MAX = 50_000

    def __init__(self, store: LedgerStore, writer: SettlementWriter, policy: PeriodPolicy | None = None,
                 journal: SettlementJournal | None = None) -> None:
        self._store = store
        self._writer = writer
        self._policy = policy
        self._journal = journal
        self._accounts: dict[int, _Account] = {}
        self._credited_unloaded: dict[int, int] = {}  # credits to users whose account was not loaded
        self._open: dict[tuple[int, str], int] = {}  # holds and settlements not yet durable
        # Closes the gap between the database check for a reused request id and the hold: a settlement that
        # becomes durable in between is still known here.
        self._recent: OrderedDict[tuple[int, str], float] = OrderedDict()

    async def _account(self, user_id: int) -> _Account:
        acct = self._accounts.get(user_id)
        if acct is not None:
            if acct.held == 0 and acct.pending == 0 and time.monotonic() - acct.loaded_at > self.RELOAD_AFTER_S:
                await self._reload(user_id, acct)
            return acct
        while True:
            # A credit committed while the balance is being read (a purchase, a bonus) finds no account to add
            # to: it bumps the user's counter, and the read is taken again so the credit is not lost.
            seen = self._credited_unloaded.get(user_id, 0)
            funds = await self._store.funds(user_id)
            if funds is None:
                raise NotFound("User not found.", code="user_not_found")
            acct = self._accounts.get(user_id)  # another request may have loaded it meanwhile
            if acct is not None:
                return acct
            if self._credited_unloaded.get(user_id, 0) == seen:
                self._credited_unloaded.pop(user_id, None)
                acct = self._accounts[user_id] = _Account(funds.balance, funds.allowance, funds.period)
                return acct

    async def _reload(self, user_id: int, acct: _Account) -> None:
        """Pick up changes made outside this process (say, the CLI) while nothing is in flight."""
        gen = acct.generation
        funds = await self._store.funds(user_id)
        if funds is not None and acct.generation == gen and acct.held == 0 and acct.pending == 0 \
                and not acct.resetting.locked():
            acct.balance, acct.allowance, acct.period = funds.balance, funds.allowance, funds.period
        acct.loaded_at = time.monotonic()

    async def _reset(self, user_id: int, acct: _Account, changes: dict[str, Any] | None = None,
                     require: list[Any] | None = None, unless_in: str | None = None) -> Reset | None:
        """Reset the allowance in the database, keeping what this process's holds and unwritten charges
        still need, and apply the same change here."""
        async with acct.resetting:
            if unless_in is not None and acct.period == unless_in:
                return None   # another request reset it meanwhile
            r = await self._store.reset_allowance(user_id, _policy_of(self._policy), acct.held + acct.pending,
                                                  changes=changes, require=require)
            if r is not None:
                acct.allowance += r.delta
                acct.period = r.period
                acct.generation += 1
        return r

    async def _in_period(self, user_id: int, acct: _Account, period: str | None) -> None:
        """Wait out a reset in progress; reset the allowance when it belongs to another period."""
        if acct.resetting.locked():
            async with acct.resetting:
                pass
        if period is not None and acct.period != period and self._policy is not None:
            await self._reset(user_id, acct, unless_in=period)

    async def reset(self, user_id: int, changes: dict[str, Any] | None = None,
                    require: list[Any] | None = None) -> Reset | None:
        """Change plan or trial columns (when `require` holds) and reset the allowance; None when the
        user is unknown or `require` failed."""
        try:
            acct = await self._account(user_id)
        except NotFound:
            return None
        return await self._reset(user_id, acct, changes, require)

    async def reserve(self, user_id: int, request_id: str, amount: int, period: str | None = None) -> Hold:
        acct = await self._account(user_id)
        await self._in_period(user_id, acct, period)
        # From here to the hold nothing awaits: the check and the hold are one step on the event loop.
        key = (user_id, request_id)
        if key in self._open or key in self._recent:
            raise duplicate(request_id)
        available = acct.spendable()
        if amount > available:
            raise insufficient(available, amount)
        acct.held += amount
        acct.generation += 1
        self._open[key] = amount
        return Hold(user_id, request_id, amount, available - amount)

    def settle(self, hold: Hold, settlement: Settlement) -> int:
        acct = self._accounts[hold.user_id]
        cost = min(settlement.cost_nanos, hold.amount)
        settlement.cost_nanos = cost
        acct.held -= hold.amount
        acct.pending += cost
        acct.generation += 1
        key = (hold.user_id, hold.request_id)
        journal = self._journal
        seq = journal.append(settlement) if journal is not None else 0

        def done(charged: int) -> None:
            if journal is not None:
                journal.applied(seq)
            acct.pending -= cost
            acct.allowance -= settlement.from_allowance
            acct.balance -= charged - settlement.from_allowance
            acct.generation += 1
            self._open.pop(key, None)
            now = time.monotonic()
            self._recent[key] = now
            recent = self._recent
            while recent and (len(recent) > self.RECENT_MAX or next(iter(recent.values())) < now - self.RECENT_S):
                recent.popitem(last=False)

        self._writer.submit(settlement, done)
        return cost

    def release(self, hold: Hold) -> None:
        acct = self._accounts.get(hold.user_id)
        if acct is not None and self._open.pop((hold.user_id, hold.request_id), None) is not None:
            acct.held -= hold.amount
            acct.generation += 1

    async def balance(self, user_id: int) -> int:
        """The purchased balance after every settled charge (open holds are not deducted)."""
        return (await self.funds(user_id))[0]

    async def funds(self, user_id: int, period: str | None = None) -> tuple[int, int]:
        """(purchased balance, allowance) after every settled charge; charges not yet written are taken
        from the allowance first, as they will be."""
        acct = await self._account(user_id)
        await self._in_period(user_id, acct, period)
        from_allowance = min(acct.pending, max(acct.allowance, 0))
        return acct.balance - (acct.pending - from_allowance), acct.allowance - from_allowance

    def credited(self, user_id: int, amount: int) -> None:
        acct = self._accounts.get(user_id)
        if acct is not None:
            acct.balance += amount
            acct.generation += 1
        else:
            self._credited_unloaded[user_id] = self._credited_unloaded.get(user_id, 0) + 1

    async def drain(self) -> None:
        await self._writer.drain()


class SqlAuthority:
    def __init__(self, store: LedgerStore, writer: SettlementWriter, hold_ttl_s: int,
                 policy: PeriodPolicy | None = None, journal: SettlementJournal | None = None) -> None:
        self._store = store
        self._writer = writer
        self._ttl = timedelta(seconds=hold_ttl_s)
        self._policy = policy
        self._journal = journal

    async def reserve(self, user_id: int, request_id: str, amount: int, period: str | None = None) -> Hold:
        """One conditional UPDATE. Given a period, the hold also requires the allowance to belong to it;
        when it does not, the allowance is reset first and the hold tried once more."""
        if self._policy is None:
            period = None
        expires = datetime.now(UTC) + self._ttl
        try:
            remaining = await self._store.hold(user_id, request_id, amount, expires, period)
            if remaining is None and period is not None:
                state = await self._store.funds(user_id)
                if state is not None and state.period != period:
                    r = await self.reset(user_id)
                    period = r.period if r else period
                # Tried again even when the period now matches: a concurrent request may have reset the
                # allowance between the failed hold and the read (refusing then was a spurious 402).
                remaining = await self._store.hold(user_id, request_id, amount, expires, period)
        except (IntegrityError, DuplicateHold):
            raise duplicate(request_id) from None
        if remaining is None:
            funds = await self._store.funds(user_id)
            if funds is None:
                raise NotFound("User not found.", code="user_not_found")
            raise insufficient(max(funds.balance + funds.allowance - funds.held, 0), amount)
        return Hold(user_id, request_id, amount, remaining)

    async def reset(self, user_id: int, changes: dict[str, Any] | None = None,
                    require: list[Any] | None = None) -> Reset | None:
        # The database knows every hold (held_nanos): nothing in flight outside it.
        return await self._store.reset_allowance(user_id, _policy_of(self._policy), 0, changes=changes,
                                                  require=require)

    def settle(self, hold: Hold, settlement: Settlement) -> int:
        cost = min(settlement.cost_nanos, hold.amount)
        settlement.cost_nanos = cost
        settlement.hold_nanos = hold.amount
        journal = self._journal
        if journal is None:
            self._writer.submit_one(lambda: self._store.settle_hold(settlement))
            return cost
        seq = journal.append(settlement)

        async def write() -> None:
            await self._store.settle_hold(settlement)
            journal.applied(seq)   # a write given up on stays journaled: the next start applies it

        self._writer.submit_one(write)
        return cost

    def release(self, hold: Hold) -> None:
        self._writer.submit_one(lambda: self._store.release(hold.user_id, hold.request_id))

    async def balance(self, user_id: int) -> int:
        return (await self.funds(user_id))[0]

    async def funds(self, user_id: int, period: str | None = None) -> tuple[int, int]:
        state = await self._store.funds(user_id)
        if state is None:
            raise NotFound("User not found.", code="user_not_found")
        if period is not None and state.period != period and self._policy is not None:
            r = await self.reset(user_id)
            if r is not None:
                return r.balance, r.allowance
        return state.balance, state.allowance

    def credited(self, user_id: int, amount: int) -> None:
        return None  # the database is the authority: nothing cached here

    async def drain(self) -> None:
        await self._writer.drain()

    async def sweep_forever(self, every_s: float | None = None) -> None:
        """Release the holds of requests whose worker died before settling them (they expire after
        hold_ttl_s), so no balance stays blocked. Sweeps every half TTL (at most every minute)."""
        if every_s is None:
            every_s = min(60.0, max(1.0, self._ttl.total_seconds() / 2))
        while True:
            await asyncio.sleep(every_s)
            try:
                released = await self._store.sweep_expired_holds()
            except Exception:
                log.exception("sweeping expired credit holds failed; trying again later")
                continue
            if released:
                log.warning("released %d expired credit holds", released)


def make_authority(kind: str, workers: int, store: LedgerStore, writer: SettlementWriter,
                   hold_ttl_s: int, policy: PeriodPolicy | None = None,
                   journal: SettlementJournal | None = None) -> CreditAuthority:
    if kind == "memory" or (kind == "auto" and workers == 1):
        return MemoryAuthority(store, writer, policy, journal)
    return SqlAuthority(store, writer, hold_ttl_s, policy, journal)
