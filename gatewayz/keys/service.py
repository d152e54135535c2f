"""Authentication and key management. Verified keys are cached in process (TTL + LRU) and evicted at once
when deleted or deactivated."""

from __future__ import annotations

import hmac
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gatewayz.errors import AuthenticationFailed, NotFound
from gatewayz.keys.crypto import KeyCipher, generate_api_key, looks_like_api_key
from gatewayz.keys.restrictions import Restrictions
from gatewayz.keys.revocations import RevocationBus
from gatewayz.keys.store import KeyRecord, KeyStore

ADMIN_ROLE = "admin"
ANONYMOUS_ROLE = "anonymous"   # no credential at all: layer 3 access to the free models (pipeline.anonymous)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling. The configured admin key has no user (and no balance); a login session has no key."""

    user_id: int | None
    key_id: int | None
    role: str
    expires_at: float | None = None  # epoch seconds
    restrictions: Restrictions = Restrictions()
    session_id: int | None = None
    # The user's plan and trial (gatewayz.plans): their limits, daily cap and allowance period.
    plan: str = "free"
    trial_source: str | None = None
    trial_expires_at: datetime | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN_ROLE

    @property
    def is_anonymous(self) -> bool:
        return self.role == ANONYMOUS_ROLE


@dataclass(frozen=True, slots=True)
class CreatedKey:
    id: int
    name: str
    api_key: str
    last4: str
    created_at: datetime
    expires_at: datetime | None


class _TTLCache:
    """A small LRU with a per-entry deadline; single event loop, so no locking is needed."""

    def __init__(self, size: int, ttl_s: float) -> None:
        self._size, self._ttl = size, ttl_s
        self._data: OrderedDict[str, tuple[float, Principal | None]] = OrderedDict()

    def get(self, key: str, now: float) -> tuple[bool, Principal | None]:
        hit = self._data.get(key)
        if hit is None:
            return False, None
        if hit[0] < now:
            del self._data[key]
            return False, None
        self._data.move_to_end(key)
        return True, hit[1]

    def put(self, key: str, value: Principal | None, now: float, ttl_s: float | None = None) -> None:
        self._data[key] = (now + (ttl_s if ttl_s is not None else self._ttl), value)
        self._data.move_to_end(key)
        while len(self._data) > self._size:
            self._data.popitem(last=False)

    def pop(self, key: str) -> None:
        self._data.pop(key, None)

    def evict(self, key_id: int) -> None:
        for k in [k for k, (_, p) in self._data.items() if p is not None and p.key_id == key_id]:
            del self._data[k]

    def clear(self) -> None:
        self._data.clear()


class KeyService:
    CACHE_TTL_S = 300.0
    SHORT_TTL_S = 2.0     # while revocations cannot reach every worker at once
    CACHE_SIZE = 512
    NEGATIVE_TTL_S = 30.0

    def __init__(self, store: KeyStore, cipher: KeyCipher, admin_key: str | None,
                 revocations: RevocationBus | None = None) -> None:
        self._store = store
        self._cipher = cipher
        self._admin_key = admin_key
        self._revocations = revocations or RevocationBus(None, local_only=True)
        self._cache = _TTLCache(self.CACHE_SIZE, self.CACHE_TTL_S)
        # Unknown keys are remembered briefly so a flood of bad keys does not become a flood of queries.
        self._unknown = _TTLCache(4096, self.NEGATIVE_TTL_S)

    async def authenticate(self, api_key: str) -> Principal:
        if self._admin_key is not None and hmac.compare_digest(api_key.encode(), self._admin_key.encode()):
            return Principal(user_id=None, key_id=None, role=ADMIN_ROLE)
        if not looks_like_api_key(api_key):
            raise AuthenticationFailed("Invalid API key.")
        now = time.monotonic()
        # Cached by the presented key itself, so a hit costs one dict lookup (no HMAC).
        hit, principal = self._cache.get(api_key, now)
        if not hit:
            hit, principal = self._unknown.get(api_key, now)
        if not hit:
            record = await self._store.by_hash(self._cipher.lookup_hash(api_key))
            principal = self._principal(record)
            if principal is None:
                self._unknown.put(api_key, None, now)
            else:
                ttl = self.CACHE_TTL_S if self._revocations.reliable else self.SHORT_TTL_S
                self._cache.put(api_key, principal, now, ttl)
        if principal is None:
            raise AuthenticationFailed("Invalid API key.")
        if principal.expires_at is not None and principal.expires_at <= time.time():
            raise AuthenticationFailed("This API key has expired.", code="expired_api_key")
        return principal

    @staticmethod
    def _principal(record: KeyRecord | None) -> Principal | None:
        if record is None or not record.is_active or not record.user_active:
            return None
        expires = record.expires_at.timestamp() if record.expires_at else None
        return Principal(user_id=record.user_id, key_id=record.id, role=record.role, expires_at=expires,
                         restrictions=Restrictions.from_row(record.restrictions or {}), plan=record.plan,
                         trial_source=record.trial_source, trial_expires_at=record.trial_expires_at)

    async def create(self, user_id: int, name: str, expires_at: datetime | None = None,
                     restrictions: dict[str, Any] | None = None, replaces: int | None = None) -> CreatedKey:
        api_key = generate_api_key()
        now = datetime.now(UTC)
        key_hash = self._cipher.lookup_hash(api_key)
        key_id = await self._store.insert(user_id=user_id, name=name, key_hash=key_hash,
                                          encrypted_key=self._cipher.encrypt(api_key), last4=api_key[-4:],
                                          expires_at=expires_at, now=now, restrictions=restrictions,
                                          replaces=replaces)
        self._unknown.pop(api_key)
        if replaces is not None:
            await self._revocations.publish(replaces)
        return CreatedKey(id=key_id, name=name, api_key=api_key, last4=api_key[-4:], created_at=now,
                          expires_at=expires_at)

    async def list(self, user_id: int) -> list[KeyRecord]:
        return await self._store.list_for_user(user_id)

    async def get(self, user_id: int, key_id: int) -> KeyRecord:
        record = await self._store.get(user_id, key_id)
        if record is None:
            raise NotFound(f"No API key {key_id} for this user.", code="api_key_not_found")
        return record

    async def update(self, user_id: int, key_id: int, values: dict[str, Any]) -> KeyRecord:
        """Change a key's name or restrictions; every worker drops its cached copy at once."""
        if values and not await self._store.update(user_id, key_id, values):
            raise NotFound(f"No API key {key_id} for this user.", code="api_key_not_found")
        await self._revocations.publish(key_id)
        return await self.get(user_id, key_id)

    async def rotate(self, user_id: int, key_id: int) -> CreatedKey:
        """A new secret with the same name and restrictions; the old one stops working at once."""
        old = await self.get(user_id, key_id)
        return await self.create(user_id, old.name, old.expires_at, old.restrictions, replaces=key_id)

    async def user_changed(self, user_id: int) -> None:
        """The user's plan or trial changed: every worker drops its cached copies of the user's keys."""
        for record in await self._store.list_for_user(user_id):
            await self._revocations.publish(record.id)

    async def delete(self, user_id: int, key_id: int) -> None:
        if await self._store.deactivate(user_id, key_id) is None:
            raise NotFound(f"No API key {key_id} for this user.", code="api_key_not_found")
        await self._revocations.publish(key_id)

    def start(self) -> None:
        self._revocations.start(self._revoked)

    def _revoked(self, key_id: int | None) -> None:
        if key_id is None:
            self._cache.clear()
        else:
            self._cache.evict(key_id)
