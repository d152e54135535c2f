"""E-mail addresses for self-service accounts: syntax (email-validator, no DNS lookups) and disposable
domains (a bundled list plus the configured extras; a subdomain of a listed domain is refused too)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from email_validator import EmailNotValidError, validate_email

from gatewayz.errors import InvalidRequest

BUNDLED = Path(__file__).parent / "data" / "disposable_domains.txt"


def normalize_email(address: str) -> str:
    """The address as stored (lower case), or a 400 that says what is wrong with it."""
    try:
        checked = validate_email(address.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidRequest(f"Not a valid e-mail address: {exc}", param="email", code="invalid_email") from None
    return checked.normalized.lower()


def load_domains(path: Path = BUNDLED) -> set[str]:
    lines = (line.split("#", 1)[0].strip().lower() for line in path.read_text().splitlines())
    return {line for line in lines if line}


class DisposableDomains:
    def __init__(self, extra: Iterable[str] = ()) -> None:
        self._domains = load_domains() | {d.lower() for d in extra}

    def __len__(self) -> int:
        return len(self._domains)

    def __contains__(self, domain: object) -> bool:
        if not isinstance(domain, str):
            return False
        labels = domain.lower().rstrip(".").split(".")
        return any(".".join(labels[i:]) in self._domains for i in range(len(labels) - 1))

    def check(self, email: str) -> None:
        if email.rpartition("@")[2] in self:
            raise InvalidRequest("Disposable e-mail addresses cannot register; use a permanent address.",
                                 param="email", code="disposable_email")
