"""Self-service accounts: registration, login sessions, passwords. Session tokens are credentials for the account
and admin routes only; inference takes API keys."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from gatewayz.auth.emails import DisposableDomains, normalize_email
from gatewayz.auth.passwords import Passwords, check_policy
from gatewayz.auth.store import AccountStore, Credentials, SessionStore
from gatewayz.auth.tokens import new_session_token, token_hash
from gatewayz.errors import AuthenticationFailed, Conflict, PermissionDenied
from gatewayz.keys.service import Principal
from gatewayz.limits.limiter import MemoryLimiter
from gatewayz.limits.quota import enforce, optional_limit
from gatewayz.settings import AuthConfig
from gatewayz.users.store import EmailTaken, User, UserStore

log = logging.getLogger("gatewayz.auth")
TOUCH_EVERY = timedelta(seconds=60)  # last_used_at is approximate, so using a session is not a write each time
BAD_LOGIN = "Invalid e-mail or password."


@dataclass(frozen=True, slots=True)
class NewSession:
    token: str
    session_id: int
    expires_at: datetime
    user: Credentials


class AuthService:
    def __init__(self, cfg: AuthConfig, engine: AsyncEngine, users: UserStore, limiter: MemoryLimiter) -> None:
        self.cfg = cfg
        self.accounts = AccountStore(engine)
        self.sessions = SessionStore(engine)
        self.passwords = Passwords(cfg.argon2)
        self.disposable = DisposableDomains(cfg.disposable_domains)
        self._users = users
        self._limiter = limiter
        self._login_limit = optional_limit(cfg.login_attempts, cfg.login_window_s)
        self._register_limit = optional_limit(cfg.registrations, cfg.registration_window_s)

    async def register(self, email: str, password: str, ip: str) -> User:
        """Checks that reveal nothing (syntax, disposable domain, password policy) come first and are free;
        then the attempt counts against the address's registration limit, whatever its outcome."""
        if not self.cfg.registration_open:
            raise PermissionDenied("Registration is closed on this gateway; ask an admin for an account.",
                                   code="registration_closed")
        email = normalize_email(email)
        self.disposable.check(email)
        check_policy(password, email, self.cfg.password_min_length)
        await enforce(self._limiter, f"auth:register:{ip}", self._register_limit, "registration",
                      "registrations from your address")
        password_hash = await self.passwords.hash(password)
        try:
            return await self._users.create(email, "user", 0, actor="register", password_hash=password_hash)
        except EmailTaken:
            raise Conflict("An account with this e-mail address already exists; log in instead.",
                           param="email", code="email_taken") from None

    async def login(self, email: str, password: str, ip: str) -> NewSession:
        await self.check_login_attempt(ip)
        # Looked up as stored (lower case) without a syntax check: a malformed address is an unknown one.
        creds = await self.accounts.by_email(email.strip().lower())
        stored = creds.password_hash if creds is not None else None
        if not await self.passwords.verify(stored, password) or creds is None or stored is None:
            log.info("login failed", extra={"ip": ip})
            raise AuthenticationFailed(BAD_LOGIN, code="invalid_credentials")
        if not creds.is_active:
            raise PermissionDenied("This account is disabled.", code="account_disabled")
        if self.passwords.needs_rehash(stored):
            await self.accounts.set_password(creds.user_id, await self.passwords.hash(password), stored, check=True)
        now = datetime.now(UTC)
        await self.sessions.purge_expired(now)
        token = new_session_token()
        expires = now + timedelta(seconds=self.cfg.session_ttl_s)
        session_id = await self.sessions.create(creds.user_id, token_hash(token), now, expires)
        return NewSession(token, session_id, expires, creds)

    async def check_login_attempt(self, ip: str) -> None:
        """Every password check (a login, or a password change) counts against the address's login limit."""
        await enforce(self._limiter, f"auth:login:{ip}", self._login_limit, "login", "login attempts from your address")

    async def logout(self, token: str) -> int | None:
        """Revoke a session at once; returns its user id, or None for an unknown or expired token."""
        return await self.sessions.revoke(token_hash(token))

    async def session_principal(self, token: str) -> Principal:
        now = datetime.now(UTC)
        found = await self.sessions.lookup(token_hash(token), now)
        if found is None or not found.is_active:
            raise AuthenticationFailed("Invalid or expired session; log in again.", code="invalid_session")
        if now - found.last_used_at >= TOUCH_EVERY:
            await self.sessions.touch(found.session_id, now)
        return Principal(user_id=found.user_id, key_id=None, role=found.role, session_id=found.session_id)

    async def set_password(self, principal: Principal, new: str, current: str | None, ip: str) -> bool:
        """Set the first password (any credential of the account will do), or change it (the current password
        is required, so a leaked API key or session cannot take the account over). Every other session of the
        user ends. Returns True when a password was replaced."""
        assert principal.user_id is not None
        creds = await self.accounts.by_id(principal.user_id)
        if creds is None:
            raise AuthenticationFailed("This account no longer exists.", code="invalid_session")
        if creds.password_hash is not None:
            if current is None:
                raise PermissionDenied("Send `current_password` to change the password.", code="current_password")
            await self.check_login_attempt(ip)
            if not await self.passwords.verify(creds.password_hash, current):
                raise PermissionDenied("The current password is wrong.", code="wrong_password")
        check_policy(new, creds.email, self.cfg.password_min_length)
        if not await self.accounts.set_password(creds.user_id, await self.passwords.hash(new),
                                                creds.password_hash, check=True):
            raise Conflict("The password changed meanwhile; try again.", code="password_changed")
        await self.sessions.revoke_user(creds.user_id, keep=principal.session_id)
        return creds.password_hash is not None
