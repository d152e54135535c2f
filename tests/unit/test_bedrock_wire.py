"""Bedrock's wire mechanics: the SigV4 signer (AWS's published vectors and botocore as the oracle) and the
binary event-stream decoder (AWS's test-suite vectors, split frames, CRC errors, botocore as the oracle)."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from botocore.eventstream import EventStreamBuffer

from gatewayz.providers.bedrock import sigv4
from gatewayz.providers.bedrock.eventstream import EventStreamDecoder, Message
from gatewayz.providers.bedrock.sigv4 import (
    ALGORITHM,
    Credentials,
    canonical_request,
    sign,
    signing_key,
    wire_url,
)
from tests.emulator.bedrock_stream import encode_message, event_message

FIXTURES = Path(__file__).parent.parent / "fixtures" / "bedrock"
NOW = datetime(2024, 5, 1, 10, 20, 30, tzinfo=UTC)
SUITE_CREDS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


# ------------------------------------------------------------------------------------------------- SigV4

@pytest.mark.parametrize(("method", "signature"), [
    ("GET", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),   # get-vanilla
    ("POST", "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),  # post-vanilla
])
def test_aws_sigv4_test_suite_vanilla_vectors(method: str, signature: str) -> None:
    """AWS's SigV4 test suite (get-vanilla / post-vanilla: host and x-amz-date signed, empty body)."""
    url = wire_url("https://example.amazonaws.com/")
    request, signed = canonical_request(method, url, {"Host": "example.amazonaws.com",
                                                      "X-Amz-Date": "20150830T123600Z"}, EMPTY_SHA256)
    assert signed == "host;x-amz-date"
    assert request == f"{method}\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n" \
                      + EMPTY_SHA256
    to_sign = "\n".join([ALGORITHM, "20150830T123600Z", "20150830/us-east-1/service/aws4_request",
                         hashlib.sha256(request.encode()).hexdigest()])
    key = signing_key(SUITE_CREDS.secret_access_key, "20150830", "us-east-1", "service")
    assert hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest() == signature


def test_signing_key_matches_the_documented_derivation() -> None:
    """AWS's documented example signing key (secret wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, iam)."""
    key = signing_key(SUITE_CREDS.secret_access_key, "20150830", "us-east-1", "iam")
    assert key.hex() == "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"


def _botocore_authorization(method: str, url: str, body: bytes, creds: Credentials, region: str,
                            headers: dict[str, str]) -> str:
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    boto = BotoCredentials(creds.access_key_id, creds.secret_access_key, creds.session_token)
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW.replace(tzinfo=None)):
        SigV4Auth(boto, "bedrock", region).add_auth(request)
    return str(request.headers["Authorization"])


CASES = [
    ("https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse",
     "us-east-1", None),
    ("https://bedrock-runtime.eu-west-3.amazonaws.com/model/mistral.mistral-large-2402-v1:0/converse-stream",
     "eu-west-3", "FwoGZXIvYXdzEJr//////////wEaDOSESSIONTOKEN"),
    ("https://bedrock-runtime.ap-northeast-1.amazonaws.com/model/arn%3Aaws%3Abedrock%3Aap-northeast-1%3A"
     "123456789012%3Ainference-profile%2Fapac.anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse",
     "ap-northeast-1", "token"),
    ("http://127.0.0.1:41234/model/us.amazon.nova-pro-v1:0/converse", "us-west-2", None),
]


@pytest.mark.parametrize(("url", "region", "token"), CASES, ids=["colon", "session-token", "arn", "port"])
def test_signature_matches_botocore(url: str, region: str, token: str | None) -> None:
    """The same request signed by botocore's SigV4Auth (on the URL as it goes on the wire) gets the same
    Authorization header: canonical path double encoding, session token, regions, a non-default port."""
    creds = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", token)
    body = b'{"messages":[{"role":"user","content":[{"text":"hi"}]}]}'
    ours = sign("POST", url, body, creds, region, "bedrock", {"content-type": "application/json"}, now=NOW)
    assert ours["x-amz-date"] == "20240501T102030Z"
    assert ours["x-amz-content-sha256"] == hashlib.sha256(body).hexdigest()
    assert ours.get("x-amz-security-token") == token
    sent = str(wire_url(url))
    theirs = _botocore_authorization("POST", sent, body, creds, region, {
        "content-type": "application/json", "x-amz-content-sha256": ours["x-amz-content-sha256"]})
    assert ours["authorization"] == theirs
    assert ours["host"] == sent.split("/")[2]  # what aiohttp sends as Host (port only when not the default)


def test_signature_matches_a_botocore_client_request() -> None:
    """botocore's own bedrock-runtime client builds and signs a Converse request (captured before it is sent,
    model id as %3A on the wire): our canonical request over the same URL and signed headers reproduces
    its signature, so the double encoding of the path is AWS's."""
    import botocore.session
    from botocore.awsrequest import AWSResponse

    client = botocore.session.get_session().create_client(
        "bedrock-runtime", region_name="us-west-2", aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key=SUITE_CREDS.secret_access_key, aws_session_token="session-token")
    captured: list[Any] = []

    def capture(request: Any, **_: Any) -> AWSResponse:
        captured.append(request)
        return AWSResponse(request.url, 500, {}, None)  # answers in place of the network

    client.meta.events.register("before-send.bedrock-runtime.Converse", capture)
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW.replace(tzinfo=None)), \
            pytest.raises(Exception):  # noqa: B017, PT011 - the fake 500 fails the call; only the request matters
        client.converse(modelId="anthropic.claude-3-5-sonnet-20240620-v1:0",
                        messages=[{"role": "user", "content": [{"text": "hi"}]}])
    request = captured[0]
    assert request.url.endswith("/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse")
    authorization = request.headers["Authorization"].decode()
    names = authorization.split("SignedHeaders=")[1].split(",")[0].split(";")
    values = {n: (request.headers[n].decode() if n != "host" else request.url.split("/")[2]) for n in names}
    canonical, signed = canonical_request("POST", sigv4.URL(request.url, encoded=True), values,
                                          hashlib.sha256(request.body).hexdigest())
    assert "/model/anthropic.claude-3-5-sonnet-20240620-v1%253A0/converse" in canonical
    to_sign = "\n".join([ALGORITHM, "20240501T102030Z", "20240501/us-west-2/bedrock/aws4_request",
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = signing_key(SUITE_CREDS.secret_access_key, "20240501", "us-west-2", "bedrock")
    assert authorization.endswith(f"SignedHeaders={signed}, Signature="
                                  + hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest())


def test_the_url_is_sent_as_signed() -> None:
    """aiohttp normalises %3A to ':' (yarl); the adapter's URL is already in that form, so what is signed is
    what goes on the wire, and an ARN's '/' stays %2F (it would otherwise split the path)."""
    from gatewayz.providers.bedrock.adapter import BedrockAdapter
    from gatewayz.providers.spec import ProviderSpec

    adapter = BedrockAdapter(ProviderSpec("b", "bedrock", "https://bedrock-runtime.{region}.amazonaws.com",
                                          options={"region": "eu-central-1", "bearer_token": "x"}))
    url = adapter.url("arn:aws:bedrock:eu-central-1:123456789012:inference-profile/eu.anthropic.x-v1:0", True)
    assert url == ("https://bedrock-runtime.eu-central-1.amazonaws.com/model/arn:aws:bedrock:eu-central-1:"
                   "123456789012:inference-profile%2Feu.anthropic.x-v1:0/converse-stream")
    assert str(wire_url(url)) == url and wire_url(url).raw_path == sigv4_raw(url)


def sigv4_raw(url: str) -> str:
    return "/" + url.split("/", 3)[3]


# ---------------------------------------------------------------------------------------- event stream

VECTORS = json.loads((FIXTURES / "eventstream_vectors.json").read_text())


def _expected_headers(headers: dict[str, Any]) -> dict[str, Any]:
    return {k: v["bytes"].encode() if isinstance(v, dict) else v for k, v in headers.items()}


@pytest.mark.parametrize("name", sorted(VECTORS["positive"]))
def test_event_stream_suite_positive_vectors(name: str) -> None:
    case = VECTORS["positive"][name]
    decoder = EventStreamDecoder()
    assert decoder.feed(bytes.fromhex(case["hex"])) == [
        Message(_expected_headers(case["headers"]), case["payload"].encode())]
    assert decoder.pending() == 0 and not decoder.broken


def test_event_stream_all_vectors_in_one_buffer_and_split_at_every_byte() -> None:
    data = b"".join(bytes.fromhex(c["hex"]) for c in VECTORS["positive"].values())
    whole = EventStreamDecoder().feed(data)
    assert len(whole) == len(VECTORS["positive"])
    for step in (1, 2, 3, 7, 13):
        decoder = EventStreamDecoder()
        got: list[Any] = []
        for i in range(0, len(data), step):
            got += decoder.feed(data[i:i + step])
        assert got == whole, step


@pytest.mark.parametrize("name", sorted(VECTORS["negative"]))
def test_event_stream_suite_negative_vectors_stop_the_decoder(name: str) -> None:
    """Bad prelude CRC, bad message CRC, a corrupted length or a duplicate header: the bytes come back raw
    (for the caller to log and count), and the decoder stays stopped."""
    raw = bytes.fromhex(VECTORS["negative"][name])
    decoder = EventStreamDecoder()
    good = event_message("messageStart", {"role": "assistant"})
    out = decoder.feed(good + raw)
    assert isinstance(out[0], Message) and out[1:] == [raw] and decoder.broken and decoder.error
    assert decoder.feed(good) == [good]  # nothing after a corrupt frame is trusted


def test_event_stream_waits_for_the_rest_of_a_frame() -> None:
    frame = event_message("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "hé"}})
    decoder = EventStreamDecoder()
    assert decoder.feed(frame[:5]) == [] and decoder.feed(frame[5:-1]) == []
    assert decoder.pending() == len(frame) - 1
    [message] = decoder.feed(frame[-1:])
    assert isinstance(message, Message) and message.header(":event-type") == "contentBlockDelta"
    assert json.loads(message.payload)["delta"]["text"] == "hé" and decoder.pending() == 0


def test_garbage_is_returned_raw() -> None:
    garbage = b"<html><body>502 Bad Gateway</body></html>"
    decoder = EventStreamDecoder()
    assert decoder.feed(garbage) == [garbage] and decoder.broken


def test_emulator_frames_and_the_golden_stream_decode_with_botocore() -> None:
    """The emulator's encoder and the golden stream file agree with botocore's decoder (the oracle), and
    ours reads them the same way."""
    data = (FIXTURES / "stream_tool_use.bin").read_bytes()
    events = json.loads((FIXTURES / "stream_tool_use.events.json").read_text())["events"]
    assert data == b"".join(event_message(name, event) for name, event in events)
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    theirs = [(m.headers, m.payload) for m in buffer]
    ours = EventStreamDecoder().feed(data)
    assert [(m.headers, m.payload) for m in ours if isinstance(m, Message)] == theirs
    assert [json.loads(p) for _, p in theirs] == [e for _, e in events]
    corrupt = encode_message({":message-type": "event"}, b"{}", corrupt=True)
    with pytest.raises(Exception, match="[Cc]hecksum"):
        bad = EventStreamBuffer()
        bad.add_data(corrupt)
        list(bad)
