"""How usage records leave the gateway: one JSON object per record (activity log, JSON export) and CSV rows."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from gatewayz.billing.money import nanos_to_json, nanos_to_usd

Batches = AsyncIterator[list[dict[str, Any]]]

CSV_COLUMNS = ("request_id", "created_at", "model", "provider", "endpoint", "stream", "status", "error_code",
               "prompt_tokens", "completion_tokens", "total_tokens", "cost_usd", "cost_nanos", "latency_ms",
               "ttft_ms", "api_key_id", "images", "audio_ms", "characters")


def record_json(r: Mapping[str, Any]) -> dict[str, Any]:
    return {"request_id": r["request_id"], "created_at": r["created_at"].isoformat(), "model": r["model"],
            "provider": r["provider"], "endpoint": r["endpoint"], "stream": r["stream"], "status": r["status"],
            "error_code": r["error_code"], "prompt_tokens": r["prompt_tokens"],
            "completion_tokens": r["completion_tokens"], "total_tokens": r["prompt_tokens"] + r["completion_tokens"],
            "cost": nanos_to_json(r["cost_nanos"]), "cost_nanos": r["cost_nanos"], "latency_ms": r["latency_ms"],
            "ttft_ms": r["ttft_ms"], "api_key_id": r["api_key_id"], "images": r["images"], "audio_ms": r["audio_ms"],
            "characters": r["characters"]}


def _csv_row(r: Mapping[str, Any]) -> list[Any]:
    # Exact USD (9 decimals) for spreadsheets. No text column can start with "=" (ids and names are letters,
    # digits and ._:-/@+), and a file only ever holds its caller's own records.
    return [r["request_id"], r["created_at"].isoformat(), r["model"], r["provider"], r["endpoint"],
            "true" if r["stream"] else "false", r["status"], r["error_code"], r["prompt_tokens"],
            r["completion_tokens"], r["prompt_tokens"] + r["completion_tokens"],
            f"{nanos_to_usd(r['cost_nanos']):.9f}", r["cost_nanos"], r["latency_ms"], r["ttft_ms"], r["api_key_id"],
            r["images"], r["audio_ms"], r["characters"]]


async def csv_stream(batches: Batches) -> AsyncIterator[bytes]:
    """A header row, then one chunk per batch (RFC 4180: CRLF, fields quoted by the csv module when needed)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    yield buf.getvalue().encode()
    async for rows in batches:
        buf.seek(0)
        buf.truncate()
        writer.writerows(_csv_row(r) for r in rows)
        yield buf.getvalue().encode()


async def json_stream(batches: Batches) -> AsyncIterator[bytes]:
    """One JSON array, written a batch at a time."""
    yield b"["
    sep = b""
    async for rows in batches:
        yield sep + b",".join(orjson.dumps(record_json(r)) for r in rows)
        sep = b","
    yield b"]"
