"""The one object that holds settings, stores, services and the upstream HTTP client."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

import aiohttp

from gatewayz.allowlist.service import CHANNEL as ALLOWLIST_CHANNEL
from gatewayz.allowlist.service import IpAllowlist
from gatewayz.allowlist.store import AllowlistStore
from gatewayz.analytics.retention import UsageRetention
from gatewayz.analytics.store import UsageStore
from gatewayz.api.client_ip import TrustedProxies
from gatewayz.audit.store import AuditLog
from gatewayz.auth.service import AuthService
from gatewayz.billing.credits import CreditAuthority, SqlAuthority, make_authority
from gatewayz.billing.journal import SettlementJournal, journal_dir
from gatewayz.billing.money import usd_to_nanos
from gatewayz.billing.store import LedgerStore
from gatewayz.billing.writer import SettlementWriter
from gatewayz.catalog.builtin import builtin_models
from gatewayz.catalog.service import Catalog
from gatewayz.coupons.service import CouponService
from gatewayz.coupons.store import CouponStore
from gatewayz.error_monitor.monitor import ErrorMonitor
from gatewayz.error_monitor.store import ErrorStore
from gatewayz.incidents.store import IncidentStore
from gatewayz.incidents.tracker import IncidentTracker
from gatewayz.keys.crypto import KeyCipher, load_or_create_master_key
from gatewayz.keys.revocations import RevocationBus
from gatewayz.keys.service import KeyService
from gatewayz.keys.store import KeyStore
from gatewayz.limits.limiter import MemoryLimiter
from gatewayz.limits.store_redis import RedisLimiter
from gatewayz.limits.velocity import Velocity
from gatewayz.observability.metrics import Metrics
from gatewayz.observability.sentry import make_sentry
from gatewayz.observability.tracing import make_tracing
from gatewayz.payments.service import StripeService
from gatewayz.payments.store import PaymentStore
from gatewayz.payments.webhook import Webhooks
from gatewayz.pipeline.anonymous import AnonymousAccess
from gatewayz.pipeline.dispatch import Dispatcher
from gatewayz.pipeline.limit import RateLimits
from gatewayz.plans.book import PlanBook
from gatewayz.plans.caps import DailySpend, MemoryDailySpend, RedisDailySpend, Scope, SqlDailySpend
from gatewayz.plans.service import PlanService
from gatewayz.plans.store import PlanStore
from gatewayz.providers.adapter import Adapter, make_adapter
from gatewayz.providers.engine import Engine
from gatewayz.providers.spec import ProviderSpec, builtin_specs, spec_from_config
from gatewayz.referrals.service import ReferralService
from gatewayz.referrals.store import ReferralStore
from gatewayz.routing.breaker import BreakerPolicy
from gatewayz.routing.breaker_store import MemoryBreakers, RedisBreakers
from gatewayz.routing.planner import Planner
from gatewayz.routing.probes import Prober
from gatewayz.routing.routers import Prior, Routers, load_priors
from gatewayz.routing.stats import ProviderStats
from gatewayz.settings import Settings
from gatewayz.storage.db import create_engine
from gatewayz.storage.redis import connect as connect_redis
from gatewayz.users.store import UserStore

log = logging.getLogger("gatewayz")



class Container:
    def __init__(self, settings: Settings, *, serving: bool = False) -> None:
        """`serving`: the app's container, which also sets up tracing and Sentry (a CLI command's does not)."""
        self.settings = settings
        self.db = create_engine(settings.database_url)
        master, created = load_or_create_master_key(settings.encryption_key, settings.data_dir)
        if created:
            log.warning("generated an encryption key in %s; back it up, or set GATEWAYZ_ENCRYPTION_KEY",
                        settings.data_dir / "secret.key")
        self.cipher = KeyCipher(master)
        self.redis = connect_redis(settings.redis_url) if settings.redis_url else None
        # Everything this deployment keeps in Redis is namespaced by its encryption key (which every instance of
        # one deployment shares), so deployments (and test runs) sharing one Redis never share limits or breakers.
        ns = self.cipher.lookup_hash("redis-namespace")[:12] + ":"
        self.revocations = RevocationBus(self.redis, local_only=settings.workers == 1,
                                         channel=f"gatewayz:{ns}keys:revoked")
        self.keys = KeyService(KeyStore(self.db), self.cipher, settings.admin_key, self.revocations)
        self.users = UserStore(self.db)
        self.audit = AuditLog(self.db)
        self.ledger = LedgerStore(self.db)
        self.usage = UsageStore(self.db)
        self.retention = UsageRetention(self.usage, settings.usage.retention_days)
        self.writer = SettlementWriter(self.ledger, settings.credits.settle_flush_ms)
        book = PlanBook(settings)
        self.journal = SettlementJournal(journal_dir(settings.data_dir), settings.credits.journal_fsync_ms) \
            if settings.credits.journal else None
        self.credits: CreditAuthority = make_authority(settings.credits.authority, settings.workers, self.ledger,
                                                       self.writer, settings.credits.hold_ttl_s, book.period,
                                                       self.journal)
        self.plans = PlanService(book, PlanStore(self.db), self.credits, self._daily_spend(), self.keys, self.audit)
        self.low_balance_nanos = usd_to_nanos(settings.credits.low_balance_threshold_usd)
        self.coupons = CouponService(CouponStore(self.db), self.credits, self.audit, settings.coupons)
        self.referrals = ReferralService(ReferralStore(self.db), self.credits, self.audit, settings.referrals)
        self.stripe = StripeService(settings.stripe, PaymentStore(self.db), self.plans)
        self.stripe_webhooks = Webhooks(self.stripe, self.stripe.store, self.credits, self.referrals)
        self.providers: dict[str, ProviderSpec] = builtin_specs(settings)
        self.providers.update({p.name: spec_from_config(p) for p in settings.providers})
        self.adapters: dict[str, Adapter] = {name: make_adapter(spec) for name, spec in self.providers.items()}
        models = list(settings.models)
        if settings.builtin_catalog:
            taken = {n for m in settings.models for n in (m.id, *m.aliases)}
            models += builtin_models(set(self.providers), taken)
        self.catalog = Catalog(models)
        self.metrics = Metrics(str(settings.metrics_dir) if settings.metrics_dir else None)
        self.tracing = make_tracing(settings.tracing) if serving else None
        self.sentry = make_sentry(settings) if serving else None
        r = settings.routing
        policy = BreakerPolicy(r.breaker.failure_threshold, r.breaker.cooldown_s, r.breaker.half_open_successes)
        self.breakers = RedisBreakers(policy, self.redis, ns) if self.redis is not None else MemoryBreakers(policy)
        self.breakers.on_transition = self.metrics.breaker_transition
        self.provider_stats = ProviderStats(r.ewma_alpha)
        self.error_monitor = ErrorMonitor(ErrorStore(self.db), settings.errors)
        self.incidents = IncidentTracker(IncidentStore(self.db), settings.incidents, self.breakers, self.provider_stats)
        self.incidents.watch(self.breakers)
        self.planner = Planner(self.providers, self.breakers, self.provider_stats)
        limiter = RedisLimiter(self.redis, f"gwrl:{ns}") if self.redis is not None else MemoryLimiter()
        self.velocity = Velocity(settings.limits.velocity, self.redis, f"gatewayz:{ns}velocity")
        self.limits = RateLimits(settings.limits, limiter, self.velocity, book.user_limits, settings.anonymous)
        self.anonymous = AnonymousAccess(settings.anonymous, self.catalog)
        self.proxies = TrustedProxies(settings.trusted_proxies)
        self.allowlist = IpAllowlist(AllowlistStore(self.db), RevocationBus(
            self.redis, local_only=settings.workers == 1, channel=f"{ALLOWLIST_CHANNEL}:{ns}"))
        self.auth = AuthService(settings.auth, self.db, self.users, limiter)
        priors = load_priors()
        priors.update({m.id: Prior(**m.priors.model_dump()) for m in settings.models if m.priors})
        self.routers = Routers(self.catalog, self.provider_stats, self.breakers, priors)
        self.prober = Prober(r.probes, self.catalog, self.adapters, {m.id: m.tier for m in settings.models},
                             self.breakers, self.provider_stats, self.redis)
        self.prober.namespace = ns
        self._http: aiohttp.ClientSession | None = None
        self.engine: Engine
        self.dispatch: Dispatcher
        self._sweeper: asyncio.Task[None] | None = None

    def _daily_spend(self) -> DailySpend:
        """Redis when configured; else the database when several workers share it; else this process."""
        async def seed(scope: Scope, since: datetime) -> int:
            return await self.ledger.spent_since(scope.user_id, since, scope.key_id)
        if self.redis is not None:
            # Counters are named by the encryption key, which every instance of one deployment shares.
            return RedisDailySpend(self.redis, self.cipher.lookup_hash("daily-spend")[:12], seed,
                                   self.writer.submit_one)
        if isinstance(self.credits, SqlAuthority):
            return SqlDailySpend(self.db, seed, self.writer.submit_one)
        return MemoryDailySpend(seed)

    async def start(self) -> None:
        if self.journal is not None:
            # Before serving: what a killed process answered but had not written is charged now.
            await self.journal.replay(self.ledger)
            self.journal.open()
            self.journal.start()
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=60)
        self._http = aiohttp.ClientSession(connector=connector, auto_decompress=True,
                                           skip_auto_headers=("User-Agent",))
        self.engine = Engine(self._http, self.tracing.inject if self.tracing is not None else None)
        self.dispatch = Dispatcher(self.engine, self.adapters, self.breakers,
                                   self.settings.routing.retry_429_max_wait_s)
        self.keys.start()
        self.velocity.start()
        await self.allowlist.start()
        self.retention.start()
        self.error_monitor.start()
        self.incidents.start()
        if isinstance(self.breakers, RedisBreakers):
            self.breakers.start()
        if self.settings.routing.probes.enabled:
            self.prober.start(self.engine)
        if isinstance(self.credits, SqlAuthority):
            self._sweeper = asyncio.get_running_loop().create_task(self.credits.sweep_forever())

    def http_pool_stats(self) -> dict[str, int]:
        connector = self._http.connector if self._http is not None else None
        if connector is None:
            return {}
        return {"open": sum(len(v) for v in getattr(connector, "_conns", {}).values()),
                "acquired": len(getattr(connector, "_acquired", ()))}

    async def stop(self) -> None:
        """Drain pending settlements first, then close the connections."""
        await self.prober.stop()
        await self.retention.stop()
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        await self.writer.close()
        if self.journal is not None:
            await self.journal.close()
        await self.stripe.close()
        await self.error_monitor.close()
        self.ledger.close()
        await self.revocations.close()
        await self.allowlist.close()
        await self.velocity.close()
        await self.breakers.close()
        await self.incidents.close()   # after the breakers: their last transitions are recorded
        await self.limits.limiter.close()
        self.metrics.close()
        if self.redis is not None:
            await self.redis.aclose()
        if self._http is not None:
            await self._http.close()
        await self.db.dispose()
        # Last, so that what the shutdown itself did is exported and reported (both block: off the loop).
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.shutdown)
        if self.sentry is not None:
            await asyncio.to_thread(self.sentry.close)
