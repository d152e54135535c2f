#!/usr/bin/env python3
"""Measure GatewayZ beside the upstream, the Python floor, LiteLLM and Portkey with ../shared/bench/peers.py.

Starts a gateway (one worker, SQLite, full pipeline: auth, credits, usage records) configured against the
bench's nginx upstream, creates a funded user, and runs peers.py with it as the target. Arguments after
`--` go to peers.py (e.g. `-- --skip-peers --seconds 5`).

  python bench/run_bench.py                      # everything, as recorded in BENCHMARKS.md
  python bench/run_bench.py -- --skip-peers      # only upstream, floor and GatewayZ
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT.parent / "shared" / "bench" / "peers.py"
BIN = Path(sys.executable).parent
PORT = 18500
CONFIG = """
database_url: sqlite+aiosqlite:///{dir}/bench.db
data_dir: {dir}
# The limiter runs on every request but never refuses the benchmark load.
limits: {{requests_per_minute: 1000000000, tokens_per_minute: 1000000000000}}
providers:
  - {{name: bench-json, type: openai, base_url: "http://127.0.0.1:18080/v1", api_key: dummy}}
  - {{name: bench-stream, type: openai, base_url: "http://127.0.0.1:18080/stream/v1", api_key: dummy}}
models:
  - id: openai/gpt-4o-mini
    aliases: [gpt-4o-mini]
    pricing: {{input: 0.15, output: 0.6}}
    context_length: 128000
    max_output_tokens: 16384
    providers: [{{provider: bench-json, model: gpt-4o-mini}}]
  - id: bench/gpt-4o-mini-stream
    aliases: [gpt-4o-mini-stream]
    pricing: {{input: 0.15, output: 0.6}}
    context_length: 128000
    max_output_tokens: 16384
    providers: [{{provider: bench-stream, model: gpt-4o-mini}}]
"""


def main() -> int:
    extra = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    with tempfile.TemporaryDirectory(prefix="gwbench-") as tmp:
        cfg = Path(tmp) / "bench.yaml"
        cfg.write_text(CONFIG.format(dir=tmp))
        env = dict(os.environ, GATEWAYZ_CONFIG=str(cfg))
        out = subprocess.run([BIN / "gatewayz", "users", "create", "--email", "bench@example.com",
                              "--credits", "1000000"], env=env, check=True, capture_output=True, text=True).stdout
        key = re.search(r"api_key: (\S+)", out).group(1)  # type: ignore[union-attr]
        gw = subprocess.Popen([BIN / "gatewayz", "serve", "--port", str(PORT), "--host", "127.0.0.1"], env=env,
                              stdout=open(Path(tmp) / "gateway.log", "w"), stderr=subprocess.STDOUT,
                              start_new_session=True)
        try:
            for _ in range(100):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{PORT}/health/quick", timeout=1)
                    break
                except OSError:
                    time.sleep(0.1)
            cmd = [sys.executable, str(PEERS), "--with-floor", "--target", f"gatewayz=http://127.0.0.1:{PORT}",
                   "--target-auth", f"Bearer {key}", "--target-model", "gpt-4o-mini",
                   "--target-stream-model", "gpt-4o-mini-stream", "--target-pid", str(gw.pid), *extra]
            print("$", " ".join(cmd[1:]), flush=True)
            return subprocess.run(cmd).returncode
        finally:
            os.killpg(gw.pid, signal.SIGTERM)
            gw.wait(30)


if __name__ == "__main__":
    sys.exit(main())
