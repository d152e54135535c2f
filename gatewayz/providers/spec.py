"""Provider specs: everything that differs between upstreams, as data."""

from __future__ import annotations

from dataclasses import dataclass, field

from gatewayz.providers.registry import BY_NAME
from gatewayz.settings import ProviderConfig, Settings


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    name: str
    wire: str                 # the wire format: "openai" or a native adapter (see providers/adapter.py WIRES)
    base_url: str
    api_key: str | None = None
    headers: dict[str, str] = field(default_factory=dict)   # extra headers from the config
    options: dict[str, str] = field(default_factory=dict)   # adapter settings (api_version, region, ...)
    timeout_s: float = 60.0
    connect_timeout_s: float = 10.0
    unsupported_params: frozenset[str] = frozenset()


def spec_from_config(cfg: ProviderConfig) -> ProviderSpec:
    return ProviderSpec(name=cfg.name, wire=cfg.type, base_url=cfg.base_url, api_key=cfg.api_key,
                        headers={k.lower(): v for k, v in cfg.headers.items()}, options=dict(cfg.options),
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
        options = {opt: env[var] for opt, var in info.option_env if env.get(var)}
        out[name] = spec_from_config(ProviderConfig(name=name, base_url=base_url, api_key=env.get(info.env_key),
                                                    options=options))
    return out
