"""What every configuration model shares: strict, frozen pydantic models and exact money parsing."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict


class ConfigError(Exception):
    """The configuration is invalid; the message names the bad field."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def exact_decimal(v: Any) -> Any:
    """YAML gives floats; str() of a float is its shortest round-trip form, so 0.15 stays 0.15."""
    return Decimal(str(v)) if isinstance(v, float) else v


def exact_usd(v: Decimal | None) -> Decimal | None:
    if v is not None and v != v.quantize(Decimal("0.000000001")):
        raise ValueError("at most 9 decimal places (nanodollars)")
    return v
