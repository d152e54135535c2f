"""Active health probes by tier (critical, popular, standard): a one-token chat request to each provider of
each model when its interval is due. Results feed the same statistics and circuit breakers as real traffic.
With Redis, one worker in the whole cluster probes each provider and model per interval (a lock with the
interval as its expiry); without it each worker probes on its own."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from gatewayz.catalog.service import Catalog, CatalogEntry, Route
from gatewayz.providers.adapter import Adapter
from gatewayz.providers.engine import AttemptFailed, ClientError, Engine
from gatewayz.routing.breaker_store import MemoryBreakers
from gatewayz.routing.stats import ProviderStats
from gatewayz.settings import ProbeConfig

log = logging.getLogger("gatewayz.probes")
TICK_S = 1.0


@dataclass(slots=True)
class ProbeResult:
    model: str
    provider: str
    ok: bool
    status: str
    latency_ms: float
    at: float


class Prober:
    def __init__(self, cfg: ProbeConfig, catalog: Catalog, adapters: dict[str, Adapter], tiers: dict[str, str],
                 breakers: MemoryBreakers, stats: ProviderStats, redis: aioredis.Redis | None) -> None:
        self._cfg = cfg
        self._catalog = catalog
        self._adapters = adapters
        self._tiers = tiers
        self._breakers = breakers
        self._stats = stats
        self._redis = redis
        self.namespace = ""  # the deployment's Redis namespace (set by the container)
        self._engine: Engine | None = None
        self._task: asyncio.Task[None] | None = None
        self._due: dict[tuple[str, str], float] = {}
        self.results: dict[str, ProbeResult] = {}
        self.probes_sent = 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def interval(self, entry: CatalogEntry) -> float:
        tier = self._tiers.get(entry.id, "standard")
        return {"critical": self._cfg.critical_s, "popular": self._cfg.popular_s}.get(tier, self._cfg.standard_s)

    def start(self, engine: Engine) -> None:
        self._engine = engine
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        while True:
            now = time.monotonic()
            due = [(e, r) for e in self._catalog.entries for r in e.routes
                   if self._due.get((e.id, r.provider), 0.0) <= now]
            for entry, route in due:
                self._due[(entry.id, route.provider)] = now + self.interval(entry)
            if due:
                await asyncio.gather(*(self._probe(e, r) for e, r in due))
            await asyncio.sleep(TICK_S)

    async def _claim(self, entry: CatalogEntry, route: Route) -> bool:
        if self._redis is None:
            return True
        try:
            got = await self._redis.set(f"gwprobe:{self.namespace}{entry.id}|{route.provider}", "1", nx=True,
                                        ex=max(1, int(self.interval(entry))))
            return bool(got)
        except (aioredis.RedisError, OSError):
            return True  # Redis down: probe locally rather than not at all

    async def _probe(self, entry: CatalogEntry, route: Route) -> None:
        assert self._engine is not None
        if not await self._claim(entry, route):
            return
        adapter = self._adapters[route.provider]
        body = {"max_tokens": 1, "messages": [{"role": "user", "content": "ping"}]}
        t0 = time.perf_counter()
        status = "ok"
        try:
            out = await adapter.request(body, route.upstream_model, False)
            reply: Any = await self._engine.chat(adapter, out, False, self._cfg.timeout_s)
            if isinstance(reply, ClientError):
                status = f"http_{reply.status}"
        except AttemptFailed as exc:
            status = exc.kind
        latency = (time.perf_counter() - t0) * 1000
        ok = status == "ok"
        self.probes_sent += 1
        self._stats.record(route.provider, route.upstream_model, ok, latency_ms=latency)
        self._breakers.report(route.provider, route.upstream_model, "success" if ok else "failure",
                              model_only=status == "http_404")
        self.results[f"{entry.id}|{route.provider}"] = ProbeResult(entry.id, route.provider, ok, status,
                                                                   round(latency, 2), time.time())
        if not ok:
            log.warning("probe of %s via %s failed: %s", entry.id, route.provider, status)
