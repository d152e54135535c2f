"""Units: money arithmetic, the SSE parser, the credit hold bound."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gatewayz.billing.money import nanos_to_usd, per_million_to_picos, token_cost_nanos, usd_to_nanos
from gatewayz.catalog.service import Catalog
from gatewayz.pipeline.context import RequestContext
from gatewayz.pipeline.parse import parse_chat
from gatewayz.pipeline.reserve import hold_amount, max_output_tokens, max_prompt_tokens
from gatewayz.providers.sse import SSEParser
from gatewayz.settings import ModelConfig, ModelRoute, Pricing


def test_money_is_exact() -> None:
    assert usd_to_nanos(Decimal("0.000000001")) == 1
    assert usd_to_nanos("10") == 10_000_000_000
    with pytest.raises(ValueError):
        usd_to_nanos(Decimal("0.0000000001"))
    assert nanos_to_usd(1_500_000_000) == Decimal("1.5")
    # $0.15 per million tokens is 150,000 picodollars a token; 7 tokens cost 1.05 microdollars = 1,050 nanos
    assert per_million_to_picos(Decimal("0.15")) == 150_000
    assert token_cost_nanos(7, 0, 150_000, 0) == 1_050
    # sub-nanodollar remainders round up, never down
    assert token_cost_nanos(1, 0, 130, 0) == 1
    assert token_cost_nanos(3, 4, 1_000_000, 2_000_000) == 11_000


def test_sse_parser_handles_split_crlf_comments_and_multiline() -> None:
    p = SSEParser()
    assert p.feed(b"data: {\"a\"") == []
    events = p.feed(b":1}\n\n: keepalive\n\ndata: x\r\n\r\nevent: e\ndata: l1\ndata: l2\n\n")
    assert events == [b'{"a":1}', b"x", b"l1\nl2"]
    assert p.last_event == b"e"
    assert p.feed(b"data: [DONE]\n\ndata: partial") == [b"[DONE]"]
    assert p.tail() == b"data: partial"
    q = SSEParser()  # a CRLF split across two reads is one line end, not two
    assert q.feed(b"data: a\r") == []
    assert q.feed(b"\ndata: b\r\n\r\n") == [b"a\nb"]


def _entry(ctx_len: int = 1000, max_out: int | None = 100) -> Catalog:
    return Catalog([ModelConfig(id="m/x", pricing=Pricing(input=Decimal("1"), output=Decimal("2")),
                                context_length=ctx_len, max_output_tokens=max_out,
                                providers=[ModelRoute(provider="p", model="x")])])


def _ctx(body: bytes) -> RequestContext:
    ctx = RequestContext(request_id="r", client_request_id=False, endpoint="chat", raw=body)
    parse_chat(ctx)
    return ctx


def test_hold_bounds_the_worst_case() -> None:
    entry = _entry().resolve("m/x")
    ctx = _ctx(b'{"model":"m/x","messages":[{"role":"user","content":"hi"}]}')
    assert max_prompt_tokens(ctx.raw, entry) == len(ctx.raw)
    assert max_output_tokens(ctx, entry) == 100
    assert hold_amount(ctx, entry) == len(ctx.raw) * 1_000 + 100 * 2_000
    ctx = _ctx(b'{"model":"m/x","max_tokens":10,"n":3,"messages":[{"role":"user","content":"hi"}]}')
    assert max_output_tokens(ctx, entry) == 30
    image = b'{"model":"m/x","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"u"}}]}]}'
    assert max_prompt_tokens(image, entry) == 1000  # capped by the context length
