"""What one API key may do: models, scopes, client addresses (IPv4, IPv6, CIDR), referrers, its own rate
limits and daily spend. Validated when set; checked on every request from the cached principal (no I/O)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gatewayz.errors import PermissionDenied

SCOPES = ("inference", "read")
_HOST = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*(:\d{1,5})?$")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class RestrictionsIn(BaseModel):
    """The restriction fields accepted on POST and PUT /user/api-keys (null clears one)."""

    model_config = ConfigDict(extra="forbid")
    allowed_models: list[str] | None = Field(default=None, max_length=500)
    scopes: list[str] | None = Field(default=None, max_length=len(SCOPES))
    allowed_ips: list[str] | None = Field(default=None, max_length=200)
    allowed_referrers: list[str] | None = Field(default=None, max_length=100)
    rpm_limit: int | None = Field(default=None, ge=1, le=10_000_000)
    tpm_limit: int | None = Field(default=None, ge=1, le=10_000_000_000)
    # USD this key may spend per UTC day (stored as daily_spend_limit_nanos).
    daily_spend_limit: Decimal | None = Field(default=None, gt=0, le=Decimal(1_000_000), decimal_places=9)

    @field_validator("allowed_models")
    @classmethod
    def _models(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and any(not m or len(m) > 200 for m in v):
            raise ValueError("model ids are 1 to 200 characters")
        return v

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and (not v or any(s not in SCOPES for s in v)):
            raise ValueError(f"scopes are a non-empty list of {', '.join(SCOPES)}")
        return v

    @field_validator("allowed_ips")
    @classmethod
    def _ips(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return None
        out = []
        for item in v:
            try:
                out.append(str(ipaddress.ip_network(item.strip(), strict=False)))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR range") from None
        return out

    @field_validator("allowed_referrers")
    @classmethod
    def _referrers(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return None
        out = []
        for item in v:
            host = item.strip().lower()
            if "://" in host:
                host = urlsplit(host).netloc
            if not _HOST.match(host):
                raise ValueError(f"{item!r} is not a host name (example.com, *.example.com, host:port)")
            out.append(host)
        return out


@dataclass(frozen=True, slots=True)
class Restrictions:
    allowed_models: frozenset[str] | None = None
    scopes: frozenset[str] | None = None
    networks: tuple[Network, ...] | None = None
    referrers: tuple[str, ...] | None = None
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    daily_spend_limit_nanos: int | None = None

    @classmethod
    def from_row(cls, m: Any) -> Restrictions:
        def get(name: str) -> Any:
            return m.get(name) if hasattr(m, "get") else getattr(m, name, None)
        ips = get("allowed_ips")
        return cls(allowed_models=frozenset(get("allowed_models")) if get("allowed_models") is not None else None,
                   scopes=frozenset(get("scopes")) if get("scopes") is not None else None,
                   networks=tuple(ipaddress.ip_network(i, strict=False) for i in ips) if ips is not None else None,
                   referrers=tuple(get("allowed_referrers")) if get("allowed_referrers") is not None else None,
                   rpm_limit=get("rpm_limit"), tpm_limit=get("tpm_limit"),
                   daily_spend_limit_nanos=get("daily_spend_limit_nanos"))

    def check_scope(self, scope: str) -> None:
        if self.scopes is not None and scope not in self.scopes:
            raise PermissionDenied(f"This API key lacks the {scope!r} scope.", code="key_scope")

    def check_ip(self, ip: str) -> None:
        if self.networks is None:
            return
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            addr = None
        if addr is None or not any(addr in net for net in self.networks):
            raise PermissionDenied("This API key may not be used from your address.", code="key_ip_not_allowed")

    def check_referrer(self, referrer: str | None) -> None:
        """Requests without a Referer (server-side use) pass; browser requests must come from a listed host."""
        if self.referrers is None or not referrer:
            return
        host = (urlsplit(referrer).netloc or referrer).lower()
        bare = host.split(":")[0]
        for allowed in self.referrers:
            if allowed.startswith("*."):
                if bare.endswith(allowed[1:]):
                    return
            elif host == allowed or bare == allowed:
                return
        raise PermissionDenied("This API key may not be used from this site.", code="key_referrer_not_allowed")

    def check_model(self, *names: str) -> None:
        if self.allowed_models is not None and not any(n in self.allowed_models for n in names):
            raise PermissionDenied(f"This API key may not use the model {names[0]!r}.", code="key_model_not_allowed")
