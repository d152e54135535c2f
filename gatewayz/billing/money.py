"""Money is integer nanodollars (1e-9 USD); prices are integer picodollars per token. No floats."""

from __future__ import annotations

from decimal import Decimal

NANOS_PER_USD = 1_000_000_000
PICOS_PER_NANO = 1_000


def usd_to_nanos(amount: Decimal | int | str) -> int:
    """An exact USD amount (at most 9 decimals) in nanodollars."""
    d = Decimal(str(amount)) if not isinstance(amount, Decimal) else amount
    nanos = d * NANOS_PER_USD
    if nanos != nanos.to_integral_value():
        raise ValueError("amounts have at most 9 decimal places")
    return int(nanos)


def nanos_to_usd(nanos: int) -> Decimal:
    return Decimal(nanos) / NANOS_PER_USD


def nanos_to_json(nanos: int) -> float:
    """For JSON bodies: the float nearest to the exact amount (exact values stay in the ledger). Both
    operands are exact doubles below 2**53, and IEEE division rounds correctly."""
    return nanos / NANOS_PER_USD


def per_million_to_picos(price_per_million_usd: Decimal) -> int:
    """USD per million tokens -> picodollars per token (exact: 1 USD/M = 1,000,000 pico/token)."""
    return int(price_per_million_usd * 1_000_000)


def token_cost_nanos(prompt_tokens: int, completion_tokens: int, input_picos: int, output_picos: int) -> int:
    """Exact cost of a request, rounded up to a whole nanodollar."""
    picos = prompt_tokens * input_picos + completion_tokens * output_picos
    return -(-picos // PICOS_PER_NANO)


def media_cost_nanos(images: int, audio_ms: int, characters: int, image_nanos: int, minute_nanos: int,
                     character_picos: int) -> int:
    """Exact cost of media units (images, milliseconds of audio priced per minute, characters), rounded up
    to a whole nanodollar like tokens."""
    audio_picos = -(-(audio_ms * minute_nanos) // 60)  # ms x nanos/min x 1000 picos/nano / 60,000 ms/min
    picos = images * image_nanos * PICOS_PER_NANO + audio_picos + characters * character_picos
    return -(-picos // PICOS_PER_NANO)
