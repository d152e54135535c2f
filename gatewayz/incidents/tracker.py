"""Turns health signals into incidents. The rules:

- A circuit breaker opening (closed or half-open -> open) opens an incident for its key if none is open:
  kind `provider` (severity critical) for a provider's breaker, kind `model` (severity major) for a
  provider + model breaker ("provider|upstream model"). Further transitions while it is open are events
  of that incident. The breaker closing again resolves it (`resolved_by: auto`). A breaker this worker saw
  open that is found closed (an admin reset it) resolves it too.
- Error rate (`incidents.error_rate`): every `check_interval_s` each worker compares the attempts it sent to
  each provider over the last `error_rate_window_s` (the passive statistics, gatewayz.routing.stats). At
  least `error_rate_min_requests` attempts of which `error_rate_threshold` or more failed opens an incident
  for the provider (cause `error_rate`, severity major); enough attempts below the threshold resolve it.
  After any automatic resolution the provider's window starts again, so old failures do not reopen it.

Breaker transitions arrive on the request path (a callback): they are queued and written by a background
task, in order; a failed write is retried."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gatewayz.incidents.store import IncidentStore
from gatewayz.routing.breaker_store import MemoryBreakers
from gatewayz.routing.stats import ProviderStats
from gatewayz.settings import IncidentsConfig

log = logging.getLogger("gatewayz.incidents")
MAX_PENDING = 10_000


@dataclass(frozen=True, slots=True)
class Transition:
    at: datetime
    key: str
    before: str
    after: str


class IncidentTracker:
    def __init__(self, store: IncidentStore, cfg: IncidentsConfig, breakers: MemoryBreakers,
                 stats: ProviderStats) -> None:
        self.store = store
        self.cfg = cfg
        self._breakers = breakers
        self._stats = stats
        self._pending: deque[Transition] = deque(maxlen=MAX_PENDING)
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._seen_open: set[str] = set()                  # breaker keys this worker opened an incident for
        self._rate_high: set[str] = set()
        self._history: dict[str, deque[tuple[float, int, int]]] = {}   # provider -> (time, attempts, failures)
        self.failures = 0

    def watch(self, breakers: MemoryBreakers) -> None:
        """Chain onto the breakers' transition callback (keeping the one already set)."""
        previous = breakers.on_transition

        def both(key: str, before: str, after: str) -> None:
            previous(key, before, after)
            self.breaker_transition(key, before, after)
        breakers.on_transition = both

    def breaker_transition(self, key: str, before: str, after: str) -> None:
        self._pending.append(Transition(datetime.now(UTC), key, before, after))
        self._wake.set()

    # ---- the background task -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_check = loop.time()
        backoff = 0.5
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), max(next_check - loop.time(), 0.0))
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.drain()
                if loop.time() >= next_check:
                    next_check = loop.time() + self.cfg.check_interval_s
                    await self.check()
            except Exception as exc:  # noqa: BLE001 - the database may be down: keep the signals, retry
                self.failures += 1
                log.warning("incident bookkeeping failed (%s: %s); retrying", type(exc).__name__, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
            else:
                backoff = 0.5

    async def drain(self) -> None:
        """Apply every queued transition, oldest first (one stays queued if its write fails)."""
        async with self._lock:
            while self._pending:
                await self._apply(self._pending[0])
                self._pending.popleft()

    async def close(self, timeout_s: float = 10.0) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await asyncio.wait_for(self.drain(), timeout_s)
        except Exception as exc:  # noqa: BLE001 - shutting down: say what was not recorded, then go
            log.error("shutting down with %d breaker transitions unrecorded (%s)", len(self._pending),
                      type(exc).__name__)

    # ---- rules ---------------------------------------------------------------------------------------------

    async def _apply(self, t: Transition) -> None:
        detail = f"circuit breaker {t.key}: {t.before} -> {t.after}"
        if t.after == "open":
            model = "|" in t.key
            await self.store.open(kind="model" if model else "provider", target=t.key,
                                  severity="major" if model else "critical", cause="breaker_open",
                                  notes=f"The circuit breaker of {t.key} opened: requests skip it until it recovers.",
                                  at=t.at, event=("breaker", detail))
            self._seen_open.add(t.key)
        elif t.after == "closed":
            await self._recovered(t.key, t.at, detail, "the circuit breaker closed again")
        else:
            await self.store.add_event(t.key, t.at, "breaker", detail)

    async def _recovered(self, key: str, at: datetime, detail: str, why: str,
                         causes: tuple[str, ...] | None = None) -> None:
        if await self.store.auto_resolve(key, at, detail, f"Resolved automatically: {why}.", causes) is not None:
            log.info("incident of %s resolved automatically: %s", key, why)
        self._seen_open.discard(key)
        provider = key.split("|", 1)[0]
        self._rate_high.discard(provider)
        self._restart_window(provider)

    async def check(self) -> None:
        """The periodic rules: breakers reset by hand, and error rates. Reads the database only when a rule
        has something to decide."""
        readings: dict[str, tuple[int, int]] = {}
        if self.cfg.error_rate:
            for provider in [k for k in self._stats.keys() if "|" not in k]:
                attempts, failures = self._window(provider)
                if attempts >= self.cfg.error_rate_min_requests:
                    readings[provider] = (attempts, failures)
        if not readings and not self._seen_open:
            return
        open_now = await self.store.open_targets()
        for key in sorted(self._seen_open):
            if key in open_now and self._breakers.get(key)["state"] == "closed":
                await self._recovered(key, datetime.now(UTC), f"circuit breaker {key}: closed (reset)",
                                      "the circuit breaker was reset")
            elif key not in open_now:
                self._seen_open.discard(key)
        for provider, (attempts, failures) in readings.items():
            await self._error_rate(provider, attempts, failures, open_now.get(provider))

    def _counters(self, provider: str) -> tuple[int, int]:
        s = self._stats.get(provider)
        return (s.requests, s.failures) if s is not None else (0, 0)

    def _restart_window(self, provider: str) -> None:
        self._history[provider] = deque([(time.monotonic(), *self._counters(provider))])

    def _window(self, provider: str) -> tuple[int, int]:
        """Attempts and failures this worker sent to `provider` in the window. A provider seen for the first
        time starts from zero: its attempts all came since the previous check."""
        now = time.monotonic()
        history = self._history.setdefault(provider, deque([(now, 0, 0)]))
        history.append((now, *self._counters(provider)))
        while len(history) > 1 and history[1][0] <= now - self.cfg.error_rate_window_s:
            history.popleft()
        base, last = history[0], history[-1]
        return last[1] - base[1], last[2] - base[2]

    async def _error_rate(self, provider: str, attempts: int, failures: int, open_cause: str | None) -> None:
        rate = failures / attempts
        reading = (f"error rate {rate:.0%}: {failures} of {attempts} attempts failed in the last "
                   f"{self.cfg.error_rate_window_s:g} s (threshold {self.cfg.error_rate_threshold:.0%})")
        if rate >= self.cfg.error_rate_threshold:
            if provider not in self._rate_high:
                self._rate_high.add(provider)
                await self.store.open(kind="provider", target=provider, severity="major", cause="error_rate",
                                      notes=f"{provider}: {reading}.", at=datetime.now(UTC),
                                      event=("error_rate", reading))
            return
        self._rate_high.discard(provider)
        if open_cause == "error_rate":
            await self._recovered(provider, datetime.now(UTC), reading, f"the {reading}", ("error_rate",))

    def status(self) -> dict[str, Any]:
        return {"running": self._task is not None and not self._task.done(), "pending": len(self._pending),
                "failures": self.failures, "watching": sorted(self._seen_open),
                "error_rate_high": sorted(self._rate_high)}
