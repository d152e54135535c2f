"""Circuit breaker administration and provider/model health views."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from gatewayz.api.deps import Admin, ContainerDep, Developer, User
from gatewayz.container import Container
from gatewayz.errors import NotFound
from gatewayz.routing.routers import CODE_MODES, GENERAL_MODES, prompt_complexity

router = APIRouter(tags=["routing"])


def _provider(c: Container, name: str) -> dict[str, Any]:
    if name not in c.providers:
        raise NotFound(f"No provider named {name!r}.", code="provider_not_found")
    b = c.breakers.get(name)
    models = sorted({r.upstream_model for e in c.catalog.entries for r in e.routes if r.provider == name})
    b["models"] = {m: c.breakers.get(f"{name}|{m}") for m in models}
    b["provider"] = name
    return b


@router.get("/circuit-breakers")
async def list_breakers(_: Developer, c: ContainerDep) -> dict[str, Any]:
    p = c.breakers.policy
    return {"policy": {"failure_threshold": p.failure_threshold, "cooldown_s": p.cooldown_s,
                       "half_open_successes": p.half_open_successes},
            "data": [_provider(c, name) for name in sorted(c.providers)],
            "transitions": [{"key": k, "from": a, "to": b, "count": n}
                            for (k, a, b), n in sorted(c.breakers.transitions.items())]}


@router.get("/circuit-breakers/{provider}")
async def get_breaker(provider: str, _: Developer, c: ContainerDep) -> dict[str, Any]:
    return _provider(c, provider)


@router.post("/circuit-breakers/reset-all")
async def reset_all(_: Admin, c: ContainerDep) -> dict[str, Any]:
    await c.breakers.reset(None)
    return {"reset": "all"}


@router.post("/circuit-breakers/{provider}/reset")
async def reset_one(provider: str, _: Admin, c: ContainerDep) -> dict[str, Any]:
    _provider(c, provider)
    for key in [provider, *(k for k in c.breakers.keys() if k.startswith(provider + "|"))]:
        await c.breakers.reset(key)
    return {"reset": provider, "state": "closed"}


@router.get("/health/providers")
async def provider_health(_: Developer, c: ContainerDep) -> dict[str, Any]:
    out = []
    for name in sorted(c.providers):
        s = c.provider_stats.get(name)
        state = c.breakers.get(name)["state"]
        score = c.provider_stats.health_score(name)
        if state == "open":
            score = 0
        out.append({"provider": name, "health_score": score, "breaker": state,
                    "requests": s.requests if s else 0, "failures": s.failures if s else 0,
                    "latency_ms": round(s.latency_ms.value, 2) if s and s.latency_ms.value is not None else None,
                    "ttft_ms": round(s.ttft_ms.value, 2) if s and s.ttft_ms.value is not None else None,
                    "tokens_per_s": round(s.tokens_per_s.value, 1) if s and s.tokens_per_s.value else None})
    return {"data": out}


def model_status(c: Container, entry: Any) -> str:
    """healthy: every provider usable; degraded: some; down: none."""
    usable = [c.breakers.allows(r.provider) and c.breakers.allows(f"{r.provider}|{r.upstream_model}")
              for r in entry.routes]
    return "healthy" if all(usable) else ("degraded" if any(usable) else "down")


@router.get("/health/models")
async def model_health(c: ContainerDep) -> dict[str, Any]:
    return {"data": [{"model": e.id, "status": model_status(c, e), "providers": len(e.routes)}
                     for e in c.catalog.entries]}


@router.get("/health/providers/uptime")
async def provider_uptime(_: Developer, c: ContainerDep, hours: float = Query(24, gt=0, le=24)) -> dict[str, Any]:
    timeline = c.provider_stats.uptime.timeline
    return {"data": [timeline(name, hours) | {"provider": name} for name in sorted(c.providers)]}


@router.get("/health/models/uptime")
async def model_uptime(c: ContainerDep, hours: float = Query(24, gt=0, le=24),
                       model: str | None = Query(None, max_length=200)) -> dict[str, Any]:
    entries = [c.catalog.resolve(model)] if model else c.catalog.entries
    return {"data": [c.provider_stats.uptime.timeline("model:" + e.id, hours) | {"model": e.id} for e in entries]}


@router.get("/v1/status")
async def public_status(c: ContainerDep) -> dict[str, Any]:
    """The public status page: every model's state now and its availability over the last 24 hours."""
    models = []
    for e in c.catalog.entries:
        day = c.provider_stats.uptime.timeline("model:" + e.id, 24)
        models.append({"model": e.id, "status": model_status(c, e), "uptime_24h_percent": day["uptime_percent"],
                       "requests_24h": day["requests"]})
    worst = {m["status"] for m in models}
    overall = "down" if worst == {"down"} else ("degraded" if worst - {"healthy"} else "operational")
    return {"status": overall if models else "operational", "models": models}


class RouterTest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: str = Field(max_length=32)
    messages: list[dict[str, Any]] = Field(default_factory=list, max_length=1000)


def _explain(c: Container, kind: str, body: RouterTest) -> dict[str, Any]:
    choice = c.routers.choose(f"router:{kind}:{body.mode}", {"messages": body.messages})
    out: dict[str, Any] = {"router": choice.router, "model": choice.entry.id, "reason": choice.reason,
                           "candidates": choice.scores}
    if kind == "code":
        out["prompt_complexity_tier"] = prompt_complexity(body.messages)
    return out


@router.post("/general-router/test")
async def general_router_test(body: RouterTest, _: User, c: ContainerDep) -> dict[str, Any]:
    return _explain(c, "general", body)


@router.post("/code-router/test")
async def code_router_test(body: RouterTest, _: User, c: ContainerDep) -> dict[str, Any]:
    return _explain(c, "code", body)


@router.get("/general-router/settings/options")
async def general_router_options(c: ContainerDep) -> dict[str, Any]:
    return {"modes": list(GENERAL_MODES), "models": [e.id for e, _ in c.routers.pool()]}


@router.get("/code-router/tiers")
async def code_router_tiers(c: ContainerDep) -> dict[str, Any]:
    return {"modes": list(CODE_MODES), "data": c.routers.tiers()}


def _monitoring(c: Container) -> dict[str, Any]:
    return {"running": c.prober.running, "probes_sent": c.prober.probes_sent,
            "intervals_s": {"critical": c.settings.routing.probes.critical_s,
                            "popular": c.settings.routing.probes.popular_s,
                            "standard": c.settings.routing.probes.standard_s},
            "results": [asdict(r) for r in c.prober.results.values()]}


@router.get("/health/monitoring")
async def monitoring_status(_: Developer, c: ContainerDep) -> dict[str, Any]:
    return _monitoring(c)


@router.post("/health/monitoring/start")
async def monitoring_start(_: Admin, c: ContainerDep) -> dict[str, Any]:
    c.prober.start(c.engine)
    return _monitoring(c)


@router.post("/health/monitoring/stop")
async def monitoring_stop(_: Admin, c: ContainerDep) -> dict[str, Any]:
    await c.prober.stop()
    return _monitoring(c)
