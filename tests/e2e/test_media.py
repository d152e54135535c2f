"""Embeddings, images, transcription (multipart and base64) and speech through the gateway with the openai SDK:
the answers as the provider sent them, failover, and the exact cost of each unit charged once."""

from __future__ import annotations

import base64
import io
import struct
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from gatewayz.settings import ModelConfig, ModelRoute, Pricing
from tests.conftest import GatewayFactory
from tests.emulator import Emulator, Fault
from tests.gateway_server import GatewayServer


def _routes() -> list[ModelRoute]:
    return [ModelRoute(provider="emu-a", model="up-model"), ModelRoute(provider="emu-b", model="up-model")]


def _model(ident: str, mode: str, upstream: str = "up-model", **prices: str) -> ModelConfig:
    routes = [ModelRoute(provider="emu-a", model=upstream), ModelRoute(provider="emu-b", model=upstream)]
    return ModelConfig(id=ident, mode=mode, context_length=8192, max_output_tokens=1000,  # type: ignore[arg-type]
                       pricing=Pricing(**{k: Decimal(v) for k, v in prices.items()}), providers=routes)


MODELS = [
    ModelConfig(id="test/chat", pricing=Pricing(input=Decimal("1"), output=Decimal("2")), providers=_routes()),
    _model("test/embed", "embedding", input="0.02"),
    _model("test/image", "image", image="0.04"),
    _model("test/token-image", "image", "token-image-1", input="5", output="40"),
    _model("test/whisper", "transcription", audio_minute="0.006"),
    _model("test/token-transcribe", "transcription", "token-transcribe-1", input="2.5", output="10"),
    _model("test/tts", "speech", characters="15"),
]


@pytest.fixture
def gw(gateway_factory: GatewayFactory, emu_a: Emulator, emu_b: Emulator) -> GatewayServer:
    return gateway_factory([emu_a, emu_b], models=MODELS)


@pytest.fixture
def account(gw: GatewayServer) -> dict[str, Any]:
    return gw.create_user("10")


@pytest.fixture
def sdk(gw: GatewayServer, account: dict[str, Any]) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=account["api_key"], max_retries=0, timeout=20)


def _spent(gw: GatewayServer, account: dict[str, Any]) -> int:
    return 10 * 10**9 - gw.balance_nanos(account["api_key"])


def wav(seconds: float, rate: int = 8000) -> bytes:
    """A silent 8-bit mono PCM WAV file of the given duration."""
    data = b"\x80" * int(rate * seconds)
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE" + b"fmt " + struct.pack(
        "<IHHIIHH", 16, 1, 1, rate, rate, 1, 8) + b"data" + struct.pack("<I", len(data))
    return header + data


def test_embeddings_are_passed_through_and_billed_per_token(gw: GatewayServer, account: dict[str, Any],
                                                            sdk: openai.OpenAI, emu_a: Emulator) -> None:
    r = sdk.embeddings.with_raw_response.create(model="test/embed", input=["one two three", "four five"])
    out = r.parse()
    assert [d.index for d in out.data] == [0, 1] and len(out.data[0].embedding) == 8
    assert out.usage.prompt_tokens == 5
    assert emu_a.last_request is not None and emu_a.last_request.json["model"] == "up-model"
    cost = 5 * 20_000 // 1000  # 5 tokens at $0.02/M = 20,000 picodollars a token
    assert Decimal(r.headers["x-gateway-cost"]) == Decimal("0.0000001") and cost == 100
    assert _spent(gw, account) == 100


def test_images_are_billed_per_image_and_fail_over(gw: GatewayServer, account: dict[str, Any], sdk: openai.OpenAI,
                                                   emu_a: Emulator) -> None:
    emu_a.push_fault(Fault(status=503))
    r = sdk.images.with_raw_response.generate(model="test/image", prompt="a red fox", n=3)
    out = r.parse()
    assert len(out.data) == 3 and out.data[0].url
    assert r.headers["x-gateway-provider"] == "emu-b"
    assert _spent(gw, account) == 3 * 40_000_000


def test_token_priced_images_use_the_reported_usage(gw: GatewayServer, account: dict[str, Any],
                                                    sdk: openai.OpenAI) -> None:
    out = sdk.images.generate(model="test/token-image", prompt="a red fox", n=2, response_format="b64_json")
    assert out.data[0].b64_json
    # 3 prompt words at $5/M + 200 output tokens at $40/M
    assert _spent(gw, account) == 3 * 5_000 + 200 * 40_000


def test_transcription_multipart_bills_the_audio_duration(gw: GatewayServer, account: dict[str, Any],
                                                          sdk: openai.OpenAI, emu_a: Emulator) -> None:
    audio = wav(2.5)
    r = sdk.audio.transcriptions.with_raw_response.create(model="test/whisper", file=("clip.wav", audio))
    assert r.parse().text == f"Transcript of clip.wav ({len(audio)} bytes)"
    assert _spent(gw, account) == 250_000  # 2.5 s at $0.006 a minute
    recorded = emu_a.last_request
    assert recorded is not None and b"up-model" in recorded.raw_body and audio in recorded.raw_body


def test_transcription_text_format_bills_the_wav_header_duration(gw: GatewayServer, account: dict[str, Any],
                                                                 sdk: openai.OpenAI) -> None:
    text = sdk.audio.transcriptions.create(model="test/whisper", file=("a.wav", wav(1.0)), response_format="text")
    assert "Transcript of a.wav" in str(text)
    assert _spent(gw, account) == 100_000


def test_token_priced_transcription_and_base64_route(gw: GatewayServer, account: dict[str, Any]) -> None:
    audio = io.BytesIO(b"\x01" * 5000).getvalue()
    body = {"model": "test/token-transcribe", "file": "data:audio/mpeg;base64," + base64.b64encode(audio).decode(),
            "filename": "x.mp3"}
    r = httpx.post(gw.url + "/v1/audio/transcriptions/base64", json=body,
                   headers={"Authorization": f"Bearer {account['api_key']}"}, timeout=20)
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["cost"] == pytest.approx((50 * 2_500 + 5 * 10_000) / 1e9)
    assert _spent(gw, account) == 50 * 2_500 + 5 * 10_000  # 50 audio tokens in, "Transcript of x.mp3 (5000 bytes)"


def test_speech_is_billed_per_character(gw: GatewayServer, account: dict[str, Any], sdk: openai.OpenAI) -> None:
    r = sdk.audio.speech.with_raw_response.create(model="test/tts", voice="alloy", input="Hello there, world!")
    assert r.headers["content-type"].startswith("audio/mpeg") and len(r.content) == 19
    assert _spent(gw, account) == 19 * 15_000  # $15 per million characters = 15,000 nanodollars each


def test_media_errors_are_clear_and_free(gw: GatewayServer, account: dict[str, Any], sdk: openai.OpenAI,
                                         emu_a: Emulator, emu_b: Emulator) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.embeddings.create(model="test/chat", input="x")
    assert exc.value.body["code"] == "wrong_model_type"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        sdk.images.generate(model="test/image", prompt="")
    emu_a.push_fault(Fault(status=400, error_message="bad size"))
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.images.generate(model="test/image", prompt="fox")
    assert "bad size" in str(exc.value)
    emu_a.set_default_fault(Fault(status=500))
    emu_b.set_default_fault(Fault(status=500))
    with pytest.raises(openai.APIStatusError) as failed:
        sdk.audio.speech.create(model="test/tts", voice="alloy", input="hi")
    assert failed.value.status_code == 502
    r = httpx.post(gw.url + "/v1/audio/transcriptions", content=b"not a form",
                   headers={"Authorization": f"Bearer {account['api_key']}", "content-type": "text/plain"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_content_type"
    r = httpx.post(gw.url + "/v1/audio/transcriptions/base64", json={"model": "test/whisper", "file": "@@"},
                   headers={"Authorization": f"Bearer {account['api_key']}"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_base64"
    r = httpx.post(gw.url + "/v1/embeddings", json={"model": "test/embed", "input": "x"})
    assert r.status_code == 401 and "error" in r.json()
    assert _spent(gw, account) == 0


def test_a_hold_larger_than_the_balance_is_refused_before_the_upstream(gw: GatewayServer, emu_a: Emulator) -> None:
    poor = gw.create_user("0.0001")
    sdk = openai.OpenAI(base_url=gw.url + "/v1", api_key=poor["api_key"], max_retries=0)
    with pytest.raises(openai.APIStatusError) as exc:
        sdk.images.generate(model="test/image", prompt="fox", n=2)  # $0.08 > $0.0001
    assert exc.value.status_code == 402
    assert emu_a.requests == []


def test_chat_endpoints_refuse_media_models_and_mixed_fallbacks(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.chat.completions.create(model="test/embed", messages=[{"role": "user", "content": "hi"}])
    assert exc.value.body["code"] == "wrong_model_type"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.chat.completions.create(model="test/chat", messages=[{"role": "user", "content": "hi"}],
                                    extra_body={"models": ["test/tts"]})
    assert exc.value.body["param"] == "models"  # type: ignore[index]
