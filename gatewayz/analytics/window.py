"""The date range of an analytics query, from `start_date` / `end_date` (ISO dates or date-times) or `days`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from gatewayz.errors import InvalidRequest

MAX_DAYS = 366
DEFAULT_DAYS = 30


@dataclass(frozen=True, slots=True)
class Window:
    """The half-open range [start, end) in UTC."""

    start: datetime
    end: datetime


def _parse(value: str, param: str) -> tuple[datetime, bool]:
    """The instant a parameter names, and whether it was a plain date (which stands for its whole day)."""
    text = value.strip()
    try:
        d = date.fromisoformat(text)
        return datetime(d.year, d.month, d.day, tzinfo=UTC), True
    except ValueError:
        pass
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(f"{param}: {value[:40]!r} is not an ISO date (2025-01-31) or date-time "
                             "(2025-01-31T12:00:00Z; a naive time is UTC)", param=param, code="invalid_date") from None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return instant.astimezone(UTC), False


def _midnight(instant: datetime) -> datetime:
    return instant.replace(hour=0, minute=0, second=0, microsecond=0)


def window(start_date: str | None, end_date: str | None, days: int | None, now: datetime | None = None) -> Window:
    """`days=N`: the last N calendar days (UTC) including today. Otherwise `start_date` (default: 30 days before
    the end) to `end_date` (default: the end of today); a plain end date includes its whole day, a date-time
    end is exclusive. At most MAX_DAYS long."""
    today_end = _midnight(now or datetime.now(UTC)) + timedelta(days=1)
    try:
        if days is not None:
            if start_date is not None or end_date is not None:
                raise InvalidRequest("Give either `days` or `start_date` / `end_date`, not both.", param="days",
                                     code="invalid_date")
            return Window(today_end - timedelta(days=days), today_end)
        end = today_end
        if end_date is not None:
            end, whole_day = _parse(end_date, "end_date")
            end += timedelta(days=1) if whole_day else timedelta(0)
        start = end - timedelta(days=DEFAULT_DAYS) if start_date is None else _parse(start_date, "start_date")[0]
    except OverflowError:
        raise InvalidRequest("The date range is out of bounds.", param="start_date", code="invalid_date") from None
    if start >= end:
        raise InvalidRequest("start_date must be before end_date.", param="start_date", code="invalid_date_range")
    if end - start > timedelta(days=MAX_DAYS):
        raise InvalidRequest(f"The date range is at most {MAX_DAYS} days.", param="start_date",
                             code="invalid_date_range")
    return Window(start, end)
