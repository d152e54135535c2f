"""Provider specs: everything that differs between upstreams, as data."""

from __future__ import annotations

from dataclasses import dataclass, field

from gatewayz.providers.registry import BY_NAME
from gatewayz.settings import ProviderConfig, Settings


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


def builtin_specs(settings: Settings) -> dict[str, ProviderSpec]:
    """Specs of the built-in providers whose key (or local URL) is in the environment."""
    env = settings.provider_env
    out = {}
    for name in settings.builtin_enabled():
        info = BY_NAME[name]
        base_url = env.get(info.base_url_env, "") if info.base_url_env else ""
        base_url = (base_url or info.base_url).replace("${CLOUDFLARE_ACCOUNT_ID}", env.get("CLOUDFLARE_ACCOUNT_ID", ""))
        out[name] = spec_from_config(ProviderConfig(name=name, base_url=base_url, api_key=env.get(info.env_key)))
    return out
