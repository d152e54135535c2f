"""Pydantic field types shared by request bodies of several domains."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator


def _future_utc(v: datetime) -> datetime:
    v = v if v.tzinfo else v.replace(tzinfo=UTC)   # a time without an offset is taken as UTC
    if v <= datetime.now(UTC):
        raise ValueError("must be in the future")
    return v


FutureTime = Annotated[datetime, AfterValidator(_future_utc)]
