"""Usage retention: a background task that deletes usage records older than `usage.retention_days`."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from gatewayz.analytics.store import UsageStore

log = logging.getLogger("gatewayz.analytics")


class UsageRetention:
    """Purges once at start, then every `every_s`. Each worker runs its own; the deletes are idempotent, so
    several at once only repeat a little work."""

    def __init__(self, store: UsageStore, retention_days: int, every_s: float = 3600.0) -> None:
        self._store = store
        self.retention_days = retention_days
        self._every_s = every_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.retention_days > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def purge_once(self, now: datetime | None = None) -> int:
        """Delete what is past retention now; 0 (and nothing deleted) when retention is off."""
        if self.retention_days <= 0:
            return 0
        cutoff = (now or datetime.now(UTC)) - timedelta(days=self.retention_days)
        return await self._store.purge(cutoff)

    async def _run(self) -> None:
        while True:
            try:
                deleted = await self.purge_once()
            except Exception:  # noqa: BLE001 - the database may be down for a while: try again next round
                log.exception("purging old usage records failed; trying again later")
            else:
                if deleted:
                    log.info("purged %d usage records older than %d days", deleted, self.retention_days)
            await asyncio.sleep(self._every_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
