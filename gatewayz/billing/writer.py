"""Writes settlements after the response: batched into one transaction every few milliseconds, retried
while the database is unreachable, and drained on shutdown so nothing settled is lost."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from gatewayz.billing.store import LedgerStore, Settlement

log = logging.getLogger("gatewayz.billing")

Done = Callable[[int], None]


class SettlementWriter:
    MAX_BATCH = 500

    def __init__(self, store: LedgerStore, flush_ms: int) -> None:
        self._store = store
        self._interval = flush_ms / 1000
        self._queue: list[tuple[Settlement, Done]] = []
        self._wake: asyncio.Event | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._idle: asyncio.Event | None = None
        self.failures = 0

    def submit(self, settlement: Settlement, done: Done) -> None:
        idle = self._idle is not None and self._idle.is_set()
        self._queue.append((settlement, done))
        self._ensure_loop()
        # An idle loop waits for a wake-up: the first settlement starts its flush interval.
        if (idle or len(self._queue) >= self.MAX_BATCH) and self._wake is not None:
            self._wake.set()

    def submit_one(self, write: Callable[[], Awaitable[Any]]) -> None:
        """Run one write in a tracked task that survives the request, retried while the database is
        unreachable, and awaited on drain."""
        task = asyncio.get_running_loop().create_task(self._retrying(write))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _retrying(self, write: Callable[[], Awaitable[Any]], attempts: int = 6) -> None:
        delay = self._interval
        for attempt in range(1, attempts + 1):
            try:
                await write()
                return
            except Exception:
                self.failures += 1
                if attempt == attempts:
                    # The hold expires and is swept; the charge of this one request is lost, and logged.
                    log.exception("settlement write failed %d times; giving up", attempts)
                    return
                log.warning("settlement write failed; retrying in %.2fs", delay, exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _ensure_loop(self) -> None:
        if self._loop_task is None or self._loop_task.done():
            self._wake = asyncio.Event()
            self._idle = asyncio.Event()
            self._loop_task = asyncio.get_running_loop().create_task(self._run())
        if self._idle is not None:
            self._idle.clear()

    async def _run(self) -> None:
        assert self._wake is not None and self._idle is not None
        backoff = self._interval
        while True:
            if not self._queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                self._wake.clear()   # woken by a first settlement: gather a batch for one interval
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), self._interval)
            except TimeoutError:
                pass
            self._wake.clear()
            batch = self._queue[: self.MAX_BATCH]
            try:
                charged = await self._store.apply([s for s, _ in batch])
            except Exception:
                # The database is down or busy: keep the batch (its money stays reserved in memory), retry.
                self.failures += 1
                log.exception("settlement batch of %d failed; retrying", len(batch))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = self._interval
            del self._queue[: len(batch)]
            for (_, done), amount in zip(batch, charged, strict=True):
                done(amount)

    async def drain(self) -> None:
        if self._queue and self._wake is not None:
            self._wake.set()
        if self._idle is not None and self._queue:
            await self._idle.wait()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self, timeout_s: float = 30.0) -> None:
        try:
            await asyncio.wait_for(self.drain(), timeout_s)
        except TimeoutError:
            # The database stayed unreachable through shutdown: say exactly what could not be written.
            log.error("shutting down with %d settlements unwritten (database unreachable)", len(self._queue))
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
            self._loop_task = None
