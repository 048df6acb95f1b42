"""Micro-benchmark of the e2e-v1 protocol (sealtune.core.protocol).

What it measures, in microseconds per operation (median, p90, p99):

* ``request_total``: the added cost of one confidential request, both ends:
  client seal (fresh HPKE context: X25519 keygen + DH + key schedule) of a
  1 KiB prompt, server open, server seal of a 4 KiB response, client open.
  The issue's target is an added latency of at most 1 ms p50.
* the four steps of ``request_total`` on their own;
* ``stream_key_derivation``: deriving a response stream's key and nonce
  (export + HKDF), what a streamed response adds per side;
* ``chunk_16B`` / ``chunk_1KiB``: seal + open of one streamed chunk (a
  token-sized and a larger chunk), framing included.

Run: ``.venv/bin/python bench/protocol.py [--rounds N]``; writes
``bench/results/protocol.json``. Single-threaded, on whatever CPU runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

from sealtune.core import protocol as p

RESULTS = Path(__file__).parent / "results" / "protocol.json"
PROMPT = os.urandom(1024)
RESPONSE = os.urandom(4096)


def _stats(samples_ns: list[int]) -> dict[str, float]:
    samples = sorted(samples_ns)

    def pick(q: float) -> float:
        return samples[min(len(samples) - 1, int(q * len(samples)))] / 1000

    return {"median_us": round(statistics.median(samples) / 1000, 2),
            "p90_us": round(pick(0.90), 2), "p99_us": round(pick(0.99), 2),
            "n": len(samples)}


def _time(fn: Callable[[], object], rounds: int) -> list[int]:
    for _ in range(min(200, rounds)):
        fn()
    out = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        fn()
        out.append(time.perf_counter_ns() - start)
    return out


def bench_request(keys: p.ServerKeys, rounds: int) -> dict[str, dict[str, float]]:
    steps: dict[str, list[int]] = {k: [] for k in
                                   ("client_seal_request", "server_open_request",
                                    "server_seal_response", "client_open_response",
                                    "request_total")}
    clock = time.perf_counter_ns
    for i in range(rounds + 200):
        t0 = clock()
        sealed, client = p.seal_request(keys.current, PROMPT)
        t1 = clock()
        _, server = keys.open_request(sealed, now=0.0)
        t2 = clock()
        response = server.seal_response(RESPONSE)
        t3 = clock()
        client.open_response(response)
        t4 = clock()
        if i < 200:  # warm-up
            continue
        for name, value in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0), strict=True):
            steps[name].append(value)
    return {name: _stats(values) for name, values in steps.items()}


def bench_stream(keys: p.ServerKeys, rounds: int) -> dict[str, dict[str, float]]:
    sealed, client = p.seal_request(keys.current, PROMPT)
    _, server = keys.open_request(sealed, now=0.0)

    def derive() -> None:  # what response_stream() adds to a request, per side
        p._response_key(server._ctx, p._V1, p.CHUNKED_RESPONSE_LABEL, sealed[7:39], nonce)

    nonce = os.urandom(32)
    results = {"stream_key_derivation": _stats(_time(derive, rounds))}
    sealer = server.response_stream()
    reader = client.response_stream()
    reader.feed(sealer.seal(b""))  # the response nonce
    for name, size in (("chunk_16B", 16), ("chunk_1KiB", 1024)):
        chunk = os.urandom(size)

        def one_chunk(chunk: bytes = chunk) -> None:
            reader.feed(sealer.seal(chunk))

        results[name] = _stats(_time(one_chunk, rounds))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3000)
    args = parser.parse_args()
    keys = p.ServerKeys(now=0.0)
    results = {
        "benchmark": "e2e-v1 protocol (HPKE X25519/HKDF-SHA256/AES-256-GCM, RFC 9458 framing)",
        "prompt_bytes": len(PROMPT),
        "response_bytes": len(RESPONSE),
        "request": bench_request(keys, args.rounds),
        "stream": bench_stream(keys, args.rounds),
        "environment": {
            "python": sys.version.split()[0],
            "cryptography": version("cryptography"),
            "machine": platform.machine(),
            "processor": platform.processor() or "unknown",
            "cpus": os.cpu_count(),
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
