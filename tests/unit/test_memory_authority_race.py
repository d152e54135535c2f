"""A credit committed while the in-memory credit authority is loading the account is not lost."""

from __future__ import annotations

import asyncio

from gatewayz.billing.allowance import Funds
from gatewayz.billing.credits import MemoryAuthority


class _SlowStore:
    """The database: funds() reads the balance, then takes a while to answer (a loaded machine)."""

    def __init__(self) -> None:
        self.balance = 100
        self.reads = 0
        self.gate = asyncio.Event()

    async def funds(self, user_id: int) -> Funds:
        snapshot, self.reads = self.balance, self.reads + 1
        if self.reads == 1:
            await self.gate.wait()
        return Funds(snapshot, 0, 0, None)


async def test_a_credit_during_the_first_load_is_counted() -> None:
    store = _SlowStore()
    authority = MemoryAuthority(store, writer=None)  # type: ignore[arg-type]
    loading = asyncio.create_task(authority.balance(7))
    await asyncio.sleep(0.01)
    store.balance += 10              # the purchase commits in the database...
    authority.credited(7, 10)        # ...and tells the authority, which has no account loaded yet
    store.gate.set()
    assert await loading == 110
    assert store.reads == 2          # the stale first read was taken again
    authority.credited(7, 5)         # once loaded, credits apply to the account directly
    assert await authority.balance(7) == 115


async def test_no_credit_means_one_read() -> None:
    store = _SlowStore()
    store.gate.set()
    authority = MemoryAuthority(store, writer=None)  # type: ignore[arg-type]
    assert await authority.balance(3) == 100
    assert store.reads == 1
