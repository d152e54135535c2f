"""Daily spend counters for the daily caps, per UTC day and per scope ("u:ID" a user, "k:ID" an API key).

A request counts its whole hold before the upstream call, and gives back what it did not spend when it
settles, so a counter is today's spend plus the requests in flight and the sum of what is finally charged can
never pass a cap. Taking from several scopes at once is atomic: all of them or none.

Backends: in process (one worker), the database (several workers sharing it, no Redis), Redis (shared by
every worker and instance; if it fails, the process counts on its own until it is back). A counter a day has
not seen yet starts from the usage records of that day, so a cap set in the middle of a day counts what was
already spent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import redis.asyncio as aioredis
import sqlalchemy as sa
from redis.exceptions import RedisError
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from gatewayz.storage.schema import daily_spend

log = logging.getLogger("gatewayz.plans")


@dataclass(frozen=True, slots=True)
class Scope:
    name: str              # "u:12", "k:34"
    user_id: int
    key_id: int | None     # set for a key's scope
    cap: int               # nanodollars per UTC day


@dataclass(frozen=True, slots=True)
class Refusal:
    scope: Scope
    spent: int             # counted today, requests in flight included


Seed = Callable[[Scope, datetime], Awaitable[int]]   # what a scope spent since the given day start
Spawn = Callable[[Callable[[], Awaitable[Any]]], None]   # run a write in a tracked, retried task
GiveBack = Callable[[int], None]   # after a take: return this many nanodollars (what was not spent)


class DailySpend(Protocol):
    async def take(self, scopes: list[Scope], day: str, since: datetime, amount: int) -> Refusal | GiveBack:
        """Count `amount` on every scope, or on none when one of them would pass its cap."""
        ...

    async def spent(self, scope: Scope, day: str, since: datetime) -> int: ...


class MemoryDailySpend:
    """One process's counters; each take runs without awaiting once seeded, so it is atomic on the loop."""

    def __init__(self, seed: Seed) -> None:
        self._seed = seed
        self._spent: dict[tuple[str, str], int] = {}
        self._day = ""

    async def _load(self, scope: Scope, day: str, since: datetime) -> None:
        if day != self._day:
            self._day = max(day, self._day)
            for old in [k for k in self._spent if k[1] < self._day]:
                del self._spent[old]
        if (scope.name, day) not in self._spent:
            seeded = await self._seed(scope, since)
            self._spent.setdefault((scope.name, day), seeded)

    async def take(self, scopes: list[Scope], day: str, since: datetime, amount: int) -> Refusal | GiveBack:
        for s in scopes:
            await self._load(s, day, since)
        counts = [self._spent.get((s.name, day), 0) for s in scopes]
        for s, spent in zip(scopes, counts, strict=True):
            if spent + amount > s.cap:
                return Refusal(s, spent)
        for s, spent in zip(scopes, counts, strict=True):
            self._spent[(s.name, day)] = spent + amount
        return lambda unspent: self.give_back(scopes, day, unspent)

    def give_back(self, scopes: list[Scope], day: str, amount: int) -> None:
        for s in scopes:
            key = (s.name, day)
            if key in self._spent:
                self._spent[key] -= amount

    async def spent(self, scope: Scope, day: str, since: datetime) -> int:
        # Only a take creates a counter: one made here would miss the uncapped requests that follow.
        counted = self._spent.get((scope.name, day))
        return counted if counted is not None else await self._seed(scope, since)


class _Refused(Exception):
    def __init__(self, refusal: Refusal) -> None:
        self.refusal = refusal


class _Unseeded(Exception):
    """The counter is missing (it is created, then the take retried), or it appeared after the UPDATE
    began (PostgreSQL: another transaction created it meanwhile; the take is retried)."""

    def __init__(self, scope: Scope | None) -> None:
        self.scope = scope


class SqlDailySpend:
    """Rows of daily_spend changed by conditional UPDATEs in one transaction, so every worker sharing the
    database agrees. Rows older than a week are deleted once a day."""

    KEEP_DAYS = 7

    def __init__(self, engine: AsyncEngine, seed: Seed, spawn: Spawn) -> None:
        self._engine = engine
        self._seed = seed
        self._spawn = spawn
        self._pruned = ""
        dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
        self._insert: Any = dialect.insert(daily_spend)

    async def take(self, scopes: list[Scope], day: str, since: datetime, amount: int) -> Refusal | GiveBack:
        t = daily_spend.c
        for _ in range(2 * len(scopes) + 3):
            try:
                async with self._engine.begin() as conn:
                    for s in sorted(scopes, key=lambda s: s.name):   # one lock order: no deadlocks
                        res = await conn.execute(
                            daily_spend.update().where(t.scope == s.name, t.day == day, t.spent_nanos + amount <= s.cap)
                            .values(spent_nanos=t.spent_nanos + amount).returning(t.spent_nanos))
                        if res.first() is None:
                            spent = (await conn.execute(sa.select(t.spent_nanos).where(
                                t.scope == s.name, t.day == day))).scalar_one_or_none()
                            if spent is not None and spent + amount > s.cap:
                                raise _Refused(Refusal(s, int(spent)))
                            raise _Unseeded(s if spent is None else None)
                await self._prune(day, since)
                return lambda unspent: self.give_back(scopes, day, unspent)
            except _Refused as exc:
                return exc.refusal
            except _Unseeded as exc:
                if exc.scope is not None:
                    await self._create(exc.scope, day, since)
        raise RuntimeError("daily spend rows could not be created")

    async def _create(self, scope: Scope, day: str, since: datetime) -> None:
        seeded = await self._seed(scope, since)
        async with self._engine.begin() as conn:
            await conn.execute(self._insert.values(scope=scope.name, day=day, spent_nanos=seeded)
                               .on_conflict_do_nothing())

    async def _prune(self, day: str, since: datetime) -> None:
        if self._pruned == day:
            return
        self._pruned = day
        cutoff = (since.date().toordinal() - self.KEEP_DAYS)
        oldest = datetime.fromordinal(cutoff).date().isoformat()
        async with self._engine.begin() as conn:
            await conn.execute(daily_spend.delete().where(daily_spend.c.day < oldest))

    def give_back(self, scopes: list[Scope], day: str, amount: int) -> None:
        async def write() -> None:
            t = daily_spend.c
            async with self._engine.begin() as conn:
                for name in sorted(s.name for s in scopes):
                    await conn.execute(daily_spend.update().where(t.scope == name, t.day == day)
                                       .values(spent_nanos=t.spent_nanos - amount))
        self._spawn(write)

    async def spent(self, scope: Scope, day: str, since: datetime) -> int:
        t = daily_spend.c
        async with self._engine.connect() as conn:
            spent = (await conn.execute(sa.select(t.spent_nanos).where(t.scope == scope.name, t.day == day))
                     ).scalar_one_or_none()
        return int(spent) if spent is not None else await self._seed(scope, since)


# KEYS: the scopes' counters. ARGV: amount, then each scope's cap. Returns {1} when counted; {0, i, spent} when
# scope i would pass its cap; {-1, i} when counter i does not exist yet (the caller seeds it and asks again).
_TAKE = """
local amount = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local v = redis.call('GET', key)
  if not v then return {-1, i} end
  if tonumber(v) + amount > tonumber(ARGV[i + 1]) then return {0, i, v} end
end
for _, key in ipairs(KEYS) do redis.call('INCRBY', key, amount) end
return {1}
"""
_GIVE_BACK = """
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then redis.call('DECRBY', key, ARGV[1]) end
end
return 1
"""


class RedisDailySpend:
    """Counters in Redis (two days' expiry). Redis failing: this process counts on its own (seeded from the
    database), logged at most every 30 s; a give-back owed to Redis is retried until it is written."""

    TTL_S = 2 * 86400
    TIMEOUT_S = 0.5
    DOWN_BACKOFF_S = 1.0

    def __init__(self, client: aioredis.Redis, namespace: str, seed: Seed, spawn: Spawn) -> None:
        self._redis = client
        self._prefix = f"gwds:{namespace}:"
        self._seed = seed
        self._spawn = spawn
        self._take = client.register_script(_TAKE)
        self._give = client.register_script(_GIVE_BACK)
        self.local = MemoryDailySpend(seed)
        self._down_until = 0.0
        self._warned_at = 0.0

    def _key(self, scope: Scope, day: str) -> str:
        return f"{self._prefix}{scope.name}:{day}"

    async def take(self, scopes: list[Scope], day: str, since: datetime, amount: int) -> Refusal | GiveBack:
        keys = [self._key(s, day) for s in scopes]
        for _ in range(len(scopes) + 1):
            if time.monotonic() < self._down_until:
                break
            try:
                async with asyncio.timeout(self.TIMEOUT_S):
                    got = await self._take(keys=keys, args=[amount, *(s.cap for s in scopes)])
                if int(got[0]) == 1:
                    return lambda unspent: self._give_back(keys, unspent)
                scope = scopes[int(got[1]) - 1]
                if int(got[0]) == 0:
                    return Refusal(scope, int(got[2]))
                seeded = await self._seed(scope, since)
                async with asyncio.timeout(self.TIMEOUT_S):
                    await self._redis.set(self._key(scope, day), seeded, nx=True, ex=self.TTL_S)
            except (RedisError, OSError, TimeoutError) as exc:
                self._failed(exc)
                break
        # Redis is failing: counted (and later given back) in this process.
        return await self.local.take(scopes, day, since, amount)

    def _give_back(self, keys: list[str], unspent: int) -> None:
        async def write() -> None:
            async with asyncio.timeout(self.TIMEOUT_S):
                await self._give(keys=keys, args=[unspent])
        self._spawn(write)

    async def spent(self, scope: Scope, day: str, since: datetime) -> int:
        try:
            async with asyncio.timeout(self.TIMEOUT_S):
                v = await self._redis.get(self._key(scope, day))
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
            return await self.local.spent(scope, day, since)
        return int(v) if v is not None else await self._seed(scope, since)

    def _failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._down_until = now + self.DOWN_BACKOFF_S
        if now - self._warned_at >= 30:
            self._warned_at = now
            log.warning("Redis daily spend counters unavailable (%s: %s); counting in this process only",
                        type(exc).__name__, exc)
