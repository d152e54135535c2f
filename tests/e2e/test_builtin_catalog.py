"""The bundled catalog end to end: naming a built-in provider serves all of its models by their usual names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import openai

from gatewayz.settings import ProviderConfig, Settings
from tests.conftest import EMU_KEY
from tests.databases import DatabaseFactory
from tests.emulator import Emulator
from tests.gateway_server import ADMIN_KEY, GatewayServer, migrate


def test_builtin_models_served_through_a_named_provider(tmp_path: Path, databases: DatabaseFactory,
                                                        emu_a: Emulator) -> Any:
    url = databases.url("sqlite")
    migrate(url)
    # `openai` is a built-in provider: pointing it at the emulator brings every OpenAI model of the catalog.
    settings = Settings(database_url=url, admin_key=ADMIN_KEY, data_dir=tmp_path,
                        providers=[ProviderConfig(name="openai", base_url=emu_a.base_url, api_key=EMU_KEY)])
    gw = GatewayServer(settings).start()
    try:
        key = gw.create_user("5")["api_key"]
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)
        listed = {m.id for m in client.models.list()}
        assert "openai/gpt-4o-mini" in listed and not any(m.startswith("meta-llama/") for m in listed)
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert reply.model == "openai/gpt-4o-mini" and emu_a.requests[-1].json["model"] == "gpt-4o-mini"
        # charged at the catalog's price: $0.15 / $0.60 per million tokens
        cost = reply.usage.prompt_tokens * 150 + reply.usage.completion_tokens * 600  # type: ignore[union-attr]
        assert round(reply.usage.model_extra["cost"] * 1e9) == cost  # type: ignore[union-attr]
        m = httpx.get(gw.url + "/v1/models/gpt-4o-mini").json()
        assert m["id"] == "openai/gpt-4o-mini" and m["pricing"]["prompt"] == "0.00000015"
        assert m["context_length"] == 128000
    finally:
        gw.stop()
