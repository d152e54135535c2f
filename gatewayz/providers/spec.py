"""Provider specs: everything that differs between upstreams, as data."""

from __future__ import annotations

from dataclasses import dataclass, field

from gatewayz.settings import ProviderConfig


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    name: str
    wire: str                 # the wire format: "openai" (more come with the provider layer)
    base_url: str
    headers: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 60.0
    connect_timeout_s: float = 10.0
    unsupported_params: frozenset[str] = frozenset()

    @property
    def chat_url(self) -> str:
        return self.base_url + "/chat/completions"


def spec_from_config(cfg: ProviderConfig) -> ProviderSpec:
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    if cfg.api_key:
        headers["authorization"] = f"Bearer {cfg.api_key}"
    headers.update({k.lower(): v for k, v in cfg.headers.items()})
    return ProviderSpec(name=cfg.name, wire=cfg.type, base_url=cfg.base_url, headers=headers,
                        timeout_s=cfg.timeout_s, connect_timeout_s=cfg.connect_timeout_s,
                        unsupported_params=frozenset(cfg.unsupported_params))
