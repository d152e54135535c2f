"""Shared fixtures: fresh databases (SQLite, PostgreSQL), upstream emulators, a running gateway."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gatewayz.settings import CreditsConfig, ModelConfig, ModelRoute, Pricing, ProviderConfig, Settings
from tests.databases import DatabaseFactory
from tests.emulator import Emulator
from tests.gateway_server import ADMIN_KEY, GatewayServer, migrate
from tests.redis_server import RedisServer

EMU_KEY = "emu-secret-key"
os.environ.pop("GATEWAYZ_CONFIG", None)


@pytest.fixture(scope="session")
def databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseFactory]:
    factory = DatabaseFactory(tmp_path_factory.mktemp("db"))
    yield factory
    factory.cleanup()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(databases: DatabaseFactory, backend: str) -> str:
    url = databases.url(backend)
    migrate(url)
    return url


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own (stop it mid-test to see the gateway carry on without it)."""
    server = RedisServer(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def emu_a() -> Iterator[Emulator]:
    with Emulator(name="a", api_key=EMU_KEY) as emu:
        yield emu


@pytest.fixture
def emu_b() -> Iterator[Emulator]:
    with Emulator(name="b", api_key=EMU_KEY) as emu:
        yield emu


def make_settings(tmp: Path, db_url: str, emus: list[Emulator], **kw: Any) -> Settings:
    timeout_s = kw.pop("timeout_s", 5.0)
    providers = [ProviderConfig(name=f"emu-{e.name}", type="openai", base_url=e.base_url, api_key=EMU_KEY,
                                timeout_s=timeout_s) for e in emus]
    providers += kw.pop("extra_providers", [])
    routes = [ModelRoute(provider=p.name, model="ok-model") for p in providers]
    models = kw.pop("models", None) or [
        ModelConfig(id="test/echo", aliases=["echo"], pricing=Pricing(input=Decimal("1"), output=Decimal("2")),
                    context_length=8192, max_output_tokens=1024, providers=routes),
        ModelConfig(id="test/pricey", pricing=Pricing(input=Decimal("1000"), output=Decimal("1000")),
                    context_length=8192, max_output_tokens=1024, providers=routes),
        ModelConfig(id="test/unpriced", providers=routes),
    ]
    credits = CreditsConfig(**kw.pop("credits", {}))
    return Settings(database_url=db_url, admin_key=ADMIN_KEY, data_dir=tmp, providers=providers, models=models,
                    credits=credits, **kw)


GatewayFactory = Callable[..., GatewayServer]


@pytest.fixture
def gateway_factory(tmp_path: Path, databases: DatabaseFactory) -> Iterator[GatewayFactory]:
    servers: list[GatewayServer] = []

    def start(emus: list[Emulator], backend: str = "sqlite", db_url: str | None = None, **kw: Any) -> GatewayServer:
        url = db_url or databases.url(backend)
        if db_url is None:
            migrate(url)
        server = GatewayServer(make_settings(tmp_path, url, emus, **kw)).start()
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()


@pytest.fixture
def gateway(gateway_factory: GatewayFactory, emu_a: Emulator, emu_b: Emulator) -> GatewayServer:
    """A gateway on SQLite whose models fail over from emulator a to emulator b."""
    return gateway_factory([emu_a, emu_b])


@pytest.fixture
def user(gateway: GatewayServer) -> dict[str, Any]:
    """A user with $10 and an API key."""
    return gateway.create_user("10")


@pytest.fixture
def client(gateway: GatewayServer, user: dict[str, Any]) -> Any:
    import openai
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=user["api_key"], max_retries=0, timeout=20)
