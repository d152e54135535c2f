"""Session tokens: `gws_` and 256 random bits. Only their SHA-256 is stored; the prefix tells them apart from
API keys (`gw_live_`), so each route knows at a glance which kind of credential it was given."""

from __future__ import annotations

import hashlib
import secrets

SESSION_PREFIX = "gws_"


def new_session_token() -> str:
    return SESSION_PREFIX + secrets.token_urlsafe(32)


def is_session_token(token: str) -> bool:
    return token.startswith(SESSION_PREFIX)


def token_hash(token: str) -> str:
    # A plain hash is enough: the token is random and long, so there is nothing to guess or precompute.
    return hashlib.sha256(token.encode()).hexdigest()
