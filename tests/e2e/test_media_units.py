"""Media units (images, audio milliseconds, characters) in usage records: written at settlement and shown by
/v1/generation, /user/activity/log and both export formats; null for requests without any (chat)."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import GatewayFactory
from tests.e2e.test_media import MODELS, wav
from tests.emulator import Emulator


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_media_units_are_recorded_and_shown_everywhere(gateway_factory: GatewayFactory, emu_a: Emulator,
                                                       emu_b: Emulator, backend: str) -> None:
    gw = gateway_factory([emu_a, emu_b], backend=backend, models=MODELS)
    account = gw.create_user("10")
    sdk = openai.OpenAI(base_url=gw.url + "/v1", api_key=account["api_key"], max_retries=0, timeout=20)
    expected: dict[str, tuple[int | None, int | None, int | None, int]] = {}

    r: Any = sdk.images.with_raw_response.generate(model="test/image", prompt="a red fox", n=3)
    expected[r.headers["x-request-id"]] = (3, None, None, 3 * 40_000_000)
    r = sdk.audio.transcriptions.with_raw_response.create(model="test/whisper", file=("clip.wav", wav(2.5)))
    expected[r.headers["x-request-id"]] = (None, 2500, None, 250_000)
    r = sdk.audio.speech.with_raw_response.create(model="test/tts", voice="alloy", input="Hello there, world!")
    expected[r.headers["x-request-id"]] = (None, None, 19, 19 * 15_000)
    r = sdk.embeddings.with_raw_response.create(model="test/embed", input="one two three")
    expected[r.headers["x-request-id"]] = (None, None, None, 3 * 20)
    r = sdk.chat.completions.with_raw_response.create(model="test/chat", messages=[{"role": "user", "content": "hi"}])
    chat_rid = r.headers["x-request-id"]
    chat_cost = round(r.parse().usage.cost * 1e9)  # type: ignore[union-attr]
    expected[chat_rid] = (None, None, None, chat_cost)

    auth = {"Authorization": f"Bearer {account['api_key']}"}
    for rid, (images, audio_ms, characters, cost) in expected.items():
        g = httpx.get(gw.url + "/v1/generation", params={"id": rid}, headers=auth).json()["data"]
        assert (g["images"], g["audio_ms"], g["characters"], g["cost_nanos"]) == (images, audio_ms, characters, cost)

    log = httpx.get(gw.url + "/user/activity/log", headers=auth).json()["data"]
    assert {e["request_id"]: (e["images"], e["audio_ms"], e["characters"], e["cost_nanos"]) for e in log} == expected

    exported = httpx.get(gw.url + "/user/usage/export", params={"format": "json"}, headers=auth).json()
    assert {e["request_id"]: (e["images"], e["audio_ms"], e["characters"], e["cost_nanos"])
            for e in exported} == expected

    text = httpx.get(gw.url + "/user/usage/export", params={"format": "csv"}, headers=auth).text
    rows = list(csv.DictReader(io.StringIO(text)))

    def num(v: str) -> int | None:
        return int(v) if v else None

    assert {row["request_id"]: (num(row["images"]), num(row["audio_ms"]), num(row["characters"]),
                                int(row["cost_nanos"])) for row in rows} == expected
