"""Tells every worker and instance at once that a key was revoked, so their auth caches drop it.

With Redis: a pub/sub channel. Without it (or while Redis is unreachable) the bus is not `reliable`,
and the key service caches verifications only briefly, so a revocation still reaches every worker
within that short TTL. A single worker needs no bus: it evicts locally. Other caches that must drop
everything on a change (the IP allowlist) use a bus of their own on another channel."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import redis.asyncio as aioredis

log = logging.getLogger("gatewayz.keys")
CHANNEL = "gatewayz:keys:revoked"


class RevocationBus:
    def __init__(self, client: aioredis.Redis | None, local_only: bool, channel: str = CHANNEL) -> None:
        self._client = client
        self._channel = channel
        self._local_only = local_only
        self._connected = False
        self._task: asyncio.Task[None] | None = None
        self._on_revoke: Callable[[int | None], None] = lambda _: None

    @property
    def reliable(self) -> bool:
        """True when a revocation reaches every cache at once."""
        return self._local_only or self._connected

    def start(self, on_revoke: Callable[[int | None], None]) -> None:
        self._on_revoke = on_revoke
        if self._client is not None:
            self._task = asyncio.get_running_loop().create_task(self._listen())

    async def publish(self, key_id: int | None) -> None:
        """key_id None means "forget everything" (a user was deactivated or changed role)."""
        self._on_revoke(key_id)
        if self._client is None:
            return
        try:
            await self._client.publish(self._channel, "*" if key_id is None else str(key_id))
        except (aioredis.RedisError, OSError):
            log.warning("could not broadcast a key revocation; other workers' caches expire shortly")

    async def _listen(self) -> None:
        assert self._client is not None
        backoff = 0.5
        while True:
            try:
                async with self._client.pubsub() as pubsub:
                    await pubsub.subscribe(self._channel)
                    self._connected = True
                    self._on_revoke(None)  # messages may have been missed while disconnected
                    backoff = 0.5
                    while True:
                        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                        if msg is not None:
                            data = msg["data"].decode() if isinstance(msg["data"], bytes) else str(msg["data"])
                            self._on_revoke(None if data == "*" else int(data))
            except asyncio.CancelledError:
                raise
            except (aioredis.RedisError, OSError, ValueError):
                if self._connected:
                    log.warning("lost the key revocation channel; caching verifications briefly until it is back")
                self._connected = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
