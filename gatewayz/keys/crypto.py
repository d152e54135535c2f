"""Key material: gw_live_ keys, Fernet encryption at rest, HMAC-SHA256 lookup hashes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_PREFIX = "gw_live_"
KEY_RANDOM_CHARS = 43  # token_urlsafe(32) is 43 URL-safe characters: 256 bits


def generate_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def looks_like_api_key(key: str) -> bool:
    return key.startswith("gw_") and 8 <= len(key) <= 128


class KeyCipher:
    """Encrypts keys for storage and derives the lookup hash; both from one master secret."""

    def __init__(self, master_key: str) -> None:
        try:
            self._fernet = Fernet(master_key.encode())
        except (ValueError, TypeError):
            raise ValueError("encryption_key must be a Fernet key (32 url-safe base64-encoded bytes); "
                             "make one with `gatewayz keys new-secret`") from None
        raw = base64.urlsafe_b64decode(master_key.encode())
        self._hmac_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                              info=b"gatewayz api-key lookup").derive(raw)

    def lookup_hash(self, api_key: str) -> str:
        return hmac.new(self._hmac_key, api_key.encode(), hashlib.sha256).hexdigest()

    def encrypt(self, api_key: str) -> str:
        return self._fernet.encrypt(api_key.encode()).decode()

    def decrypt(self, token: str) -> str | None:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            return None


def new_master_key() -> str:
    return Fernet.generate_key().decode()


def load_or_create_master_key(configured: str | None, data_dir: Path) -> tuple[str, bool]:
    """The configured key, else the one kept in data_dir/secret.key (made on first run). Returns (key, created)."""
    if configured:
        return configured, False
    path = data_dir / "secret.key"
    if path.exists():
        return path.read_text().strip(), False
    data_dir.mkdir(parents=True, exist_ok=True)
    key = new_master_key()
    path.touch(mode=0o600)
    path.write_text(key + "\n")
    return key, True
