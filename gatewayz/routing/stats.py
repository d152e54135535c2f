"""Live provider statistics from every request (passive health): latency, time to first token, throughput
and success rate as exponentially weighted averages per provider and model. Updated after the response,
read by the planner to order providers."""

from __future__ import annotations

from dataclasses import dataclass

from gatewayz.routing.uptime import Uptime


@dataclass(slots=True)
class Ewma:
    value: float | None = None

    def add(self, sample: float, alpha: float) -> None:
        self.value = sample if self.value is None else self.value + alpha * (sample - self.value)


@dataclass(slots=True)
class RouteStats:
    latency_ms: Ewma
    ttft_ms: Ewma
    tokens_per_s: Ewma
    success: Ewma
    requests: int = 0
    failures: int = 0


class ProviderStats:
    def __init__(self, alpha: float) -> None:
        self._alpha = alpha
        self._by_key: dict[str, RouteStats] = {}
        self.uptime = Uptime()

    def _get(self, key: str) -> RouteStats:
        s = self._by_key.get(key)
        if s is None:
            s = self._by_key[key] = RouteStats(Ewma(), Ewma(), Ewma(), Ewma())
        return s

    def record(self, provider: str, model: str, ok: bool, latency_ms: float, ttft_ms: float | None = None,
               completion_tokens: int = 0) -> None:
        a = self._alpha
        self.uptime.record(provider, ok)
        for key in (provider, f"{provider}|{model}"):
            s = self._get(key)
            s.requests += 1
            s.success.add(1.0 if ok else 0.0, a)
            if not ok:
                s.failures += 1
                continue
            s.latency_ms.add(latency_ms, a)
            if ttft_ms is not None:
                s.ttft_ms.add(ttft_ms, a)
            generation_s = (latency_ms - (ttft_ms or 0.0)) / 1000
            if completion_tokens > 0 and generation_s > 0:
                s.tokens_per_s.add(completion_tokens / generation_s, a)

    def get(self, provider: str, model: str | None = None) -> RouteStats | None:
        return self._by_key.get(provider if model is None else f"{provider}|{model}")

    def latency(self, provider: str, model: str) -> float | None:
        s = self._by_key.get(f"{provider}|{model}")
        if s is None:
            return None
        return s.ttft_ms.value if s.ttft_ms.value is not None else s.latency_ms.value

    def throughput(self, provider: str, model: str) -> float | None:
        s = self._by_key.get(f"{provider}|{model}")
        return s.tokens_per_s.value if s else None

    def health_score(self, provider: str) -> int | None:
        """0-100 from the recent success rate; None before any traffic."""
        s = self._by_key.get(provider)
        if s is None or s.success.value is None:
            return None
        return round(s.success.value * 100)

    def keys(self) -> list[str]:
        return sorted(self._by_key)
