"""The error monitor: takes failed requests and unexpected exceptions on the request path at the cost of an
append, keeps the latest of this worker in a ring, and writes them to the database from a background task
(every `errors.flush_interval_s`; while the database is down it keeps them, up to `errors.max_buffer`, and
retries). Stopping writes what is left."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from datetime import UTC, datetime, timedelta
from typing import Any

from gatewayz.error_monitor.events import ErrorEvent, from_exception, from_request
from gatewayz.error_monitor.store import ErrorStore
from gatewayz.settings import ErrorMonitorConfig

log = logging.getLogger("gatewayz.errors")
PURGE_EVERY_S = 3600.0


class ErrorMonitor:
    BATCH = 1000

    def __init__(self, store: ErrorStore, cfg: ErrorMonitorConfig) -> None:
        self.store = store
        self.cfg = cfg
        self.recent: deque[ErrorEvent] = deque(maxlen=cfg.recent_per_worker)
        self.seen: Counter[str] = Counter()     # by class, this worker, since start
        self._buffer: list[ErrorEvent] = []
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.started_at: datetime | None = None
        self.written = 0
        self.dropped = 0
        self.sampled_out = 0
        self.failures = 0
        self.last_flush: datetime | None = None
        self.last_failure: str | None = None

    # ---- the request path: no I/O --------------------------------------------------------------------------

    def observe(self, ctx: Any) -> None:
        """A finished inference request. Successes return at once; so do requests that ended in an unexpected
        exception (no `error_code`), which the request middleware reports through `exception()`."""
        if ctx.status < 400 or ctx.error_code is None:
            return
        self.record(from_request(ctx))

    def exception(self, exc: BaseException, route: str | None, request_id: str | None) -> None:
        self.record(from_exception(exc, route, request_id))

    def record(self, event: ErrorEvent) -> None:
        self.recent.append(event)
        self.seen[event.error_class] += 1
        self._buffer.append(event)
        over = len(self._buffer) - self.cfg.max_buffer
        if over > 0:
            del self._buffer[:over]
            self.dropped += over

    # ---- the background writer -----------------------------------------------------------------------------

    def start(self) -> None:
        self.started_at = datetime.now(UTC)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def flush(self) -> int:
        """Write everything buffered now; returns how many events were written. Raises when the database
        fails (the events stay buffered)."""
        written = 0
        async with self._lock:
            while self._buffer:
                batch, self._buffer = self._buffer[: self.BATCH], self._buffer[self.BATCH:]
                try:
                    self.sampled_out += await self.store.write(batch, self.cfg.events_per_pattern_per_batch)
                except BaseException:
                    self._buffer[:0] = batch
                    raise
                written += len(batch)
                self.written += len(batch)
            self.last_flush = datetime.now(UTC)
        return written

    async def _run(self) -> None:
        delay = self.cfg.flush_interval_s
        next_purge = 0.0
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(delay)
            try:
                await self.flush()
                if self.cfg.retention_days and loop.time() >= next_purge:
                    next_purge = loop.time() + PURGE_EVERY_S
                    await self.store.purge(datetime.now(UTC) - timedelta(days=self.cfg.retention_days))
            except Exception as exc:  # noqa: BLE001 - the database may be down for a while: keep, retry
                self.failures += 1
                self.last_failure = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("writing %d error events failed; retrying: %s", len(self._buffer), self.last_failure)
                delay = min(delay * 2, 30.0)
            else:
                delay = self.cfg.flush_interval_s

    async def close(self, timeout_s: float = 10.0) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await asyncio.wait_for(self.flush(), timeout_s)
        except Exception as exc:  # noqa: BLE001 - shutting down: say what could not be written, then go
            log.error("shutting down with %d error events unwritten (%s)", len(self._buffer), type(exc).__name__)

    def status(self) -> dict[str, Any]:
        """This worker's monitor (each worker answers for itself)."""
        return {"running": self._task is not None and not self._task.done(), "started_at": self.started_at,
                "flush_interval_s": self.cfg.flush_interval_s, "buffered": len(self._buffer),
                "written": self.written, "dropped": self.dropped, "sampled_out": self.sampled_out,
                "write_failures": self.failures,
                "last_flush_at": self.last_flush, "last_failure": self.last_failure,
                "recent_kept": len(self.recent), "recent_capacity": self.recent.maxlen,
                "seen_by_class": dict(self.seen), "retention_days": self.cfg.retention_days}
