"""`router:general:{quality,cost,latency,balanced}` and `router:code:{auto,price,quality,agentic}`.

Each router chooses among the catalog's servable models that have benchmark priors (the data file
`data/model_priors.json`, or a model's `priors` in the config), blending them with live state: models whose
every provider has an open breaker are out, and scores are scaled by the recent success rate. Everything
is in memory: no database or Redis is needed to route."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gatewayz.catalog.service import Catalog, CatalogEntry
from gatewayz.errors import InvalidRequest, ServiceUnavailable
from gatewayz.routing.breaker_store import MemoryBreakers
from gatewayz.routing.stats import ProviderStats

GENERAL_MODES = ("quality", "cost", "latency", "balanced")
CODE_MODES = ("auto", "price", "quality", "agentic")
PRIORS_FILE = Path(__file__).parent / "data" / "model_priors.json"
# SWE-bench Verified thresholds of the four code tiers (1 is the strongest).
CODE_TIERS = ((1, 60.0), (2, 45.0), (3, 30.0), (4, 0.0))
_HARD_WORDS = re.compile(r"\b(refactor|architecture|design|migrat\w*|concurren\w*|race condition|distributed|"
                         r"optimi[sz]\w*|security|multi-?file|across files|debug\w*|traceback|deadlock)\b", re.I)


@dataclass(frozen=True, slots=True)
class Prior:
    quality: float
    swe_bench: float | None = None
    humaneval: float | None = None
    agentic: float | None = None


@dataclass(slots=True)
class Choice:
    entry: CatalogEntry
    router: str
    reason: str
    scores: list[dict[str, Any]] = field(default_factory=list)


def load_priors(path: Path = PRIORS_FILE) -> dict[str, Prior]:
    raw = json.loads(path.read_text())
    return {k: Prior(**v) for k, v in raw.items() if not k.startswith("_")}


def code_tier(p: Prior) -> int:
    score = p.swe_bench if p.swe_bench is not None else (p.humaneval or 0) / 2
    return next(tier for tier, floor in CODE_TIERS if score >= floor)


def prompt_complexity(messages: Any) -> int:
    """1 (hard) to 4 (trivial), from length, code and the words of the task."""
    text = ""
    if isinstance(messages, list):
        for m in messages:
            content = m.get("content") if isinstance(m, dict) else None
            if isinstance(content, str):
                text += content + "\n"
            elif isinstance(content, list):
                text += "\n".join(p.get("text", "") for p in content if isinstance(p, dict)) + "\n"
    hard = len(_HARD_WORDS.findall(text))
    code_blocks = text.count("```") // 2
    if len(text) > 6000 or hard >= 2 or (hard and code_blocks):
        return 1
    if len(text) > 1500 or hard or code_blocks >= 2:
        return 2
    if code_blocks or len(text) > 300:
        return 3
    return 4


class Routers:
    def __init__(self, catalog: Catalog, stats: ProviderStats, breakers: MemoryBreakers,
                 priors: dict[str, Prior]) -> None:
        self._catalog = catalog
        self._stats = stats
        self._breakers = breakers
        self.priors = priors

    def pool(self) -> list[tuple[CatalogEntry, Prior]]:
        out = []
        for e in self._catalog.entries:
            prior = self.priors.get(e.id)
            if prior is not None and self._usable(e):
                out.append((e, prior))
        return out

    def _usable(self, e: CatalogEntry) -> bool:
        return any(self._breakers.allows(r.provider) and self._breakers.allows(f"{r.provider}|{r.upstream_model}")
                   for r in e.routes)

    def _success(self, e: CatalogEntry) -> float:
        rates = [s.success.value for r in e.routes
                 if (s := self._stats.get(r.provider, r.upstream_model)) is not None and s.success.value is not None]
        return max(rates) if rates else 1.0

    def _latency(self, e: CatalogEntry) -> float | None:
        known = [v for r in e.routes if (v := self._stats.latency(r.provider, r.upstream_model)) is not None]
        return min(known) if known else None

    def choose(self, name: str, body: dict[str, Any]) -> Choice:
        parts = name.split(":")
        if len(parts) != 3 or parts[1] not in ("general", "code"):
            raise InvalidRequest(f"Unknown router {name!r}: use router:general:{{{','.join(GENERAL_MODES)}}} or "
                                 f"router:code:{{{','.join(CODE_MODES)}}}.", param="model", code="model_not_found")
        kind, mode = parts[1], parts[2]
        modes = GENERAL_MODES if kind == "general" else CODE_MODES
        if mode not in modes:
            raise InvalidRequest(f"router:{kind} modes are {', '.join(modes)}.", param="model", code="model_not_found")
        pool = self.pool()
        if not pool:
            raise ServiceUnavailable("No model with routing priors is available right now.",
                                     code="router_no_candidates", headers={"retry-after": "30"})
        return self._general(mode, pool) if kind == "general" else self._code(mode, pool, body)

    def _general(self, mode: str, pool: list[tuple[CatalogEntry, Prior]]) -> Choice:
        prices = {e.id: e.input_picos + e.output_picos for e, _ in pool}
        top_price = max(prices.values()) or 1
        lat = {e.id: self._latency(e) for e, _ in pool}
        known = [v for v in lat.values() if v is not None]
        top_lat = max(known) if known else 1.0
        scored = []
        for e, p in pool:
            q = p.quality * self._success(e)
            cheap = 100 * (1 - prices[e.id] / top_price)
            measured = lat[e.id]
            fast = 100 * (1 - (measured if measured is not None else top_lat) / (top_lat or 1.0))
            score = {"quality": q, "cost": cheap + q / 100, "latency": fast + q / 100,
                     "balanced": 0.5 * q + 0.3 * cheap + 0.2 * fast}[mode]
            scored.append((score, e, {"model": e.id, "quality": round(q, 1), "price_per_million": str(
                e.input_per_million + e.output_per_million), "latency_ms": lat[e.id], "score": round(score, 2)}))
        scored.sort(key=lambda t: -t[0])
        best = scored[0][1]
        reason = {"quality": "highest quality prior, scaled by live success rate",
                  "cost": "lowest price (quality breaks ties)",
                  "latency": "lowest live latency (unmeasured models count as the slowest)",
                  "balanced": "0.5 quality + 0.3 cheapness + 0.2 speed"}[mode]
        return Choice(best, f"router:general:{mode}", reason, [s for _, _, s in scored])

    def _code(self, mode: str, pool: list[tuple[CatalogEntry, Prior]], body: dict[str, Any]) -> Choice:
        coded = [(e, p) for e, p in pool if p.swe_bench is not None or p.humaneval is not None]
        if not coded:
            raise ServiceUnavailable("No model with code benchmarks is available right now.",
                                     code="router_no_candidates", headers={"retry-after": "30"})
        scores = [{"model": e.id, "tier": code_tier(p), "swe_bench": p.swe_bench, "humaneval": p.humaneval,
                   "agentic": p.agentic, "price_per_million": str(e.input_per_million + e.output_per_million)}
                  for e, p in coded]
        price = {e.id: e.input_picos + e.output_picos for e, _ in coded}
        strength = {e.id: (p.swe_bench or 0) * self._success(e) for e, p in coded}
        if mode == "quality":
            best = max(coded, key=lambda t: strength[t[0].id])[0]
            reason = "highest SWE-bench score, scaled by live success rate"
        elif mode == "agentic":
            best = max(coded, key=lambda t: ((t[1].agentic or 0) * self._success(t[0]), strength[t[0].id]))[0]
            reason = "highest tool-use (agentic) score"
        elif mode == "price":
            capable = [t for t in coded if code_tier(t[1]) <= 3] or coded
            best = min(capable, key=lambda t: (price[t[0].id], -strength[t[0].id]))[0]
            reason = "cheapest model of tier 3 or better"
        else:
            need = prompt_complexity(body.get("messages"))
            fit = [t for t in coded if code_tier(t[1]) <= need] or coded
            best = min(fit, key=lambda t: (price[t[0].id], -strength[t[0].id]))[0]
            reason = f"prompt complexity needs tier {need} or better; the cheapest such model"
        return Choice(best, f"router:code:{mode}", reason, scores)

    def tiers(self) -> list[dict[str, Any]]:
        out = []
        for e in self._catalog.entries:
            p = self.priors.get(e.id)
            if p is not None and (p.swe_bench is not None or p.humaneval is not None):
                out.append({"model": e.id, "tier": code_tier(p), "swe_bench": p.swe_bench, "humaneval": p.humaneval,
                            "agentic": p.agentic, "available": self._usable(e)})
        return sorted(out, key=lambda m: (m["tier"], -(m["swe_bench"] or 0)))
