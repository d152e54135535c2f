"""Micro-benchmark: what the settlement journal adds to each settlement on the hot path.

    PYTHONPATH=$PWD python bench/journal_append.py

append = encode one JSON line + one os.write (no fsync: that runs off the event loop every
credits.journal_fsync_ms); applied = the mark once the settlement's transaction committed."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from gatewayz.billing.journal import SettlementJournal, encode
from gatewayz.billing.store import Settlement

N = 20_000


def settlement(i: int) -> Settlement:
    usage = {"api_key_id": 7, "endpoint": "chat", "model": "openai/gpt-4o-mini", "provider": "openai",
             "upstream_model": "gpt-4o-mini", "stream": True, "status": 200, "error_code": None,
             "prompt_tokens": 120, "completion_tokens": 340, "cached_tokens": 0, "reasoning_tokens": 0,
             "latency_ms": 812.345, "ttft_ms": 120.5, "attempts": 1}
    return Settlement(user_id=42, request_id=f"req-{i:012d}-abcdef", cost_nanos=123456, hold_nanos=999999,
                      model="openai/gpt-4o-mini", prompt_tokens=120, completion_tokens=340, usage=usage)


def main() -> None:
    items = [settlement(i) for i in range(N)]
    with tempfile.TemporaryDirectory() as d:
        j = SettlementJournal(Path(d), 50)
        j.open()
        t0 = time.perf_counter()
        for it in items:
            encode(1, it)
        t1 = time.perf_counter()
        seqs = [j.append(it) for it in items]
        t2 = time.perf_counter()
        for seq in seqs:
            j.applied(seq)
        t3 = time.perf_counter()
        fd = os.open(Path(d) / "f", os.O_WRONLY | os.O_CREAT)
        os.write(fd, encode(1, items[0]))
        t4 = time.perf_counter()
        os.fsync(fd)
        t5 = time.perf_counter()
        os.close(fd)
        print(f"line {len(encode(1, items[0]))} bytes; per settlement: encode {(t1 - t0) / N * 1e6:.2f} us, "
              f"append (encode + os.write) {(t2 - t1) / N * 1e6:.2f} us, applied {(t3 - t2) / N * 1e6:.2f} us; "
              f"one fsync (off the loop, per interval) {(t5 - t4) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
