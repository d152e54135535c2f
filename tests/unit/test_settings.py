"""Config loading: YAML, ${VAR} interpolation, environment overrides, errors that name the field."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from gatewayz.settings import ConfigError, load_settings

GOOD = """
providers:
  - name: emu-a
    type: openai
    base_url: http://127.0.0.1:19101/v1/
    api_key: ${EMU_KEY}
    timeout_s: 30
models:
  - id: test/echo
    aliases: [echo]
    pricing: {input: 0.15, output: 2.0}
    context_length: 8192
    providers:
      - {provider: emu-a, model: ok-model}
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "gw.yaml"
    p.write_text(text)
    return p


def test_loads_interpolates_and_keeps_prices_exact(tmp_path: Path) -> None:
    s = load_settings(_write(tmp_path, GOOD), env={"EMU_KEY": "secret"})
    assert s.providers[0].api_key == "secret"
    assert s.providers[0].base_url == "http://127.0.0.1:19101/v1"
    assert s.models[0].pricing is not None and s.models[0].pricing.input == Decimal("0.15")
    assert s.database_url.startswith("sqlite+aiosqlite")


def test_config_path_from_environment_and_overrides(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    s = load_settings(env={"GATEWAYZ_CONFIG": str(path), "EMU_KEY": "k",
                           "GATEWAYZ_DATABASE_URL": "postgresql+asyncpg://u@h/db",
                           "GATEWAYZ_ADMIN_KEY": "x" * 32, "GATEWAYZ_REDIS_URL": "redis://h:6379/0"})
    assert s.database_url == "postgresql+asyncpg://u@h/db"
    assert s.admin_key == "x" * 32 and s.redis_url == "redis://h:6379/0"


def test_default_for_missing_variable(tmp_path: Path) -> None:
    s = load_settings(_write(tmp_path, GOOD.replace("${EMU_KEY}", "${EMU_KEY:-fallback}")), env={})
    assert s.providers[0].api_key == "fallback"


@pytest.mark.parametrize(("mutate", "needle"), [
    (lambda t: t.replace("${EMU_KEY}", "${NOPE_VAR}"), "NOPE_VAR"),
    (lambda t: t.replace("timeout_s: 30", "timeout_s: -1"), "providers.0.timeout_s"),
    (lambda t: t.replace("timeout_s: 30", "timeout_z: 30"), "providers.0.timeout_z"),
    (lambda t: t.replace("{provider: emu-a, model", "{provider: emu-zz, model"), "emu-zz"),
    (lambda t: t.replace("base_url: http://", "base_url: ftp://"), "providers.0.base_url"),
    (lambda t: t.replace("input: 0.15", "input: 0.0000001"), "pricing.input"),
    (lambda t: t.replace("aliases: [echo]", "aliases: [test/echo]"), "already used"),
    (lambda t: t + "database_url: mysql://x\n", "database_url"),
    (lambda t: t + "admin_key: short\n", "admin_key"),
    (lambda t: t.replace("pricing: {input: 0.15, output: 2.0}", "pricing: {input: 0, output: 0}"), "free"),
    (lambda t: "- just\n- a list\n", "mapping"),
    (lambda t: "key: [unclosed\n", "not valid YAML"),
])
def test_errors_name_the_bad_field(tmp_path: Path, mutate: object, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(_write(tmp_path, mutate(GOOD)), env={"EMU_KEY": "k"})  # type: ignore[operator]
    assert needle in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "absent.yaml", env={})
