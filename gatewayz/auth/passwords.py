"""Password hashing (argon2id, off the event loop) and the password policy."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gatewayz.errors import InvalidRequest
from gatewayz.settings import Argon2Config

MAX_PASSWORD_CHARS = 1024
_CLASSES = (str.islower, str.isupper, str.isdigit, lambda ch: not ch.isalnum())


def check_policy(password: str, email: str, min_length: int) -> None:
    """At least `min_length` characters, two kinds of characters (lower, upper, digit, other), five distinct
    characters, and not the e-mail's name. Length matters most; the rest refuses the obvious."""
    def refuse(why: str) -> InvalidRequest:
        return InvalidRequest(f"Password refused: {why}.", param="password", code="weak_password")

    if len(password) < min_length:
        raise refuse(f"use at least {min_length} characters")
    if sum(any(kind(ch) for ch in password) for kind in _CLASSES) < 2:
        raise refuse("mix at least two of lower-case letters, upper-case letters, digits and other characters")
    if len(set(password)) < 5:
        raise refuse("use at least five different characters")
    name = email.partition("@")[0].lower()
    if len(name) >= 3 and name in password.lower():
        raise refuse("it must not contain your e-mail address")


class Passwords:
    """argon2id with the configured cost. Hashing takes tens of milliseconds and tens of MiB, so it runs in
    threads, a few at a time."""

    def __init__(self, cfg: Argon2Config, concurrency: int = 4) -> None:
        self._hasher = PasswordHasher(time_cost=cfg.time_cost, memory_cost=cfg.memory_cost_kib,
                                      parallelism=cfg.parallelism)
        self._slots = asyncio.Semaphore(concurrency)
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        """Whether `password` matches. Without a stored hash (unknown e-mail, no password set) the same work
        is done against a dummy hash, so the answer takes as long as for a wrong password."""
        if stored is None:
            if self._dummy is None:
                self._dummy = await self.hash("dummy password, never matches")
            await self._check(self._dummy, password)
            return False
        return await self._check(stored, password)

    async def _check(self, stored: str, password: str) -> bool:
        async with self._slots:
            try:
                return await asyncio.to_thread(self._hasher.verify, stored, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

    def needs_rehash(self, stored: str) -> bool:
        """True when the hash was made with other parameters than the configured ones."""
        try:
            return self._hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return True
