"""The IP allowlist: which client addresses may run inference, for everyone (global entries) or for one user.

A request is checked against the global entries plus its user's own; when there are none, any address passes
(the per-key `allowed_ips` still apply on top). The check reads an in-memory snapshot of the whole table (no
I/O). A change reloads the snapshot here at once and is announced on a Redis channel (the key revocation bus,
on a channel of its own) so every other worker and instance reloads too; without Redis, or while the channel
is down, several workers reload every `REFRESH_S` seconds instead. Until the table has been read once, checks
fail closed (503) rather than let an address through unchecked."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from gatewayz.allowlist.store import AllowlistStore, Entry
from gatewayz.api.client_ip import parse_address
from gatewayz.errors import PermissionDenied, ServiceUnavailable
from gatewayz.keys.revocations import RevocationBus

log = logging.getLogger("gatewayz.allowlist")
CHANNEL = "gatewayz:ip-allowlist:changed"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Rule = tuple[Network, Entry]


def normalize(text: str) -> str:
    """An address or CIDR range (IPv4 or IPv6) in canonical form; ValueError when it is neither."""
    return str(ipaddress.ip_network(text.strip(), strict=False))


@dataclass(frozen=True, slots=True)
class _Snapshot:
    everyone: tuple[Rule, ...] = ()
    by_user: dict[int, tuple[Rule, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    enforced: bool          # some entry applies to this request (else every address passes)
    entry: Entry | None     # the entry that admitted it

    def json(self) -> dict[str, Any]:
        return {"allowed": self.allowed, "enforced": self.enforced,
                "entry": self.entry.json() if self.entry else None}


class IpAllowlist:
    REFRESH_S = 2.0

    def __init__(self, store: AllowlistStore, bus: RevocationBus) -> None:
        self.store = store
        self._bus = bus
        self._snap = _Snapshot()
        self._loaded = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    async def start(self) -> None:
        self._bus.start(lambda _: self._wake.set())
        await self.reload()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._bus.close()

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.REFRESH_S)
            except TimeoutError:
                if self._loaded and self._bus.reliable:
                    continue
            self._wake.clear()
            await self.reload()

    async def reload(self) -> None:
        try:
            entries = await self.store.all()
        except (SQLAlchemyError, OSError) as exc:
            if not self._failing:
                log.warning("cannot read the IP allowlist (%s); %s", type(exc).__name__,
                            "keeping the last copy" if self._loaded else "inference is refused until it is read")
            self._failing = True
            return
        self._failing = False
        everyone: list[Rule] = []
        by_user: dict[int, list[Rule]] = {}
        for e in entries:
            rule = (ipaddress.ip_network(e.cidr, strict=False), e)
            (everyone if e.user_id is None else by_user.setdefault(e.user_id, [])).append(rule)
        self._snap = _Snapshot(tuple(everyone), {u: tuple(r) for u, r in by_user.items()})
        self._loaded = True

    def verdict(self, user_id: int | None, ip: str) -> Verdict:
        snap = self._snap
        rules = snap.everyone + snap.by_user.get(user_id, ()) if user_id is not None else snap.everyone
        if not rules:
            return Verdict(True, False, None)
        addr = parse_address(ip)
        if addr is not None:
            for net, entry in rules:
                if addr in net:
                    return Verdict(True, True, entry)
        return Verdict(False, True, None)

    def check(self, user_id: int | None, ip: str) -> None:
        """For each inference request: 403 unless the address is allowed (no I/O)."""
        if not self._loaded:
            raise ServiceUnavailable("The IP allowlist could not be read yet; retry shortly.",
                                     code="allowlist_unavailable", headers={"retry-after": "2"})
        snap = self._snap
        if not snap.everyone and (user_id is None or user_id not in snap.by_user):
            return
        if not self.verdict(user_id, ip).allowed:
            raise PermissionDenied("Requests from your address are not allowed (IP allowlist).",
                                   code="ip_not_allowlisted")

    async def _changed(self) -> None:
        await self.reload()
        await self._bus.publish(None)

    async def create(self, cidr: str, user_id: int | None, description: str | None) -> Entry:
        entry = await self.store.insert(normalize(cidr), user_id, description, datetime.now(UTC))
        await self._changed()
        return entry

    async def update(self, entry_id: int, values: dict[str, Any]) -> Entry | None:
        if "cidr" in values:
            values = {**values, "cidr": normalize(values["cidr"])}
        entry = await self.store.update(entry_id, values)
        if entry is not None and values:
            await self._changed()
        return entry

    async def delete(self, entry_id: int) -> Entry | None:
        entry = await self.store.delete(entry_id)
        if entry is not None:
            await self._changed()
        return entry
