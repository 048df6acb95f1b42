"""Serving benchmark: end-to-end encrypted vs plaintext requests against the same server.

Usage::

    .venv/bin/python bench/serve.py [--seconds 60] [--clients 50] [--requests 1000]
                                    [--ttft-requests 500] [--throughput-seconds 10]

The server runs in its own process through what ``sealtune serve`` calls
(:func:`sealtune.serve.build_server` and :func:`~sealtune.serve.run_server`:
uvicorn, the real auth, ledger, output filter and request log to a file)
with the dev-software provider, on loopback; this process is the client
(httpx, requests sealed with ``sealtune.core.protocol``). Three parts:

1. **Latency and throughput, echo engine** (isolates the protocol cost):
   ``--requests`` sequential requests on one keep-alive connection,
   plaintext and encrypted interleaved one by one (so drift hits both
   alike); p50/p99 and the added p50. The encrypted figure includes the
   client's own sealing and opening. Then throughput: ``--throughput-clients``
   concurrent clients for ``--throughput-seconds`` per mode, modes
   alternated twice. And CPU time per request of the server process and of
   this client, per mode (from ``/proc``): unlike wall-clock figures it is
   not disturbed by other load on the machine.
2. **The same with the tiny model** (``sealtune.train.tiny.make_tiny``,
   greedy decoding, ``--tiny-max-tokens`` new tokens) plus **time to first
   content chunk** of streamed responses (the first SSE event carrying
   text), plaintext vs encrypted, interleaved; the ratio of medians (and of
   10th percentiles, and the median of paired ratios). The first text event
   comes after the output filter's 64-character hold-back, in both modes.
   The encrypted client sets up each request's HPKE context once the
   previous answer is in (``RequestSealer.prepare``, as the client SDK
   does), so that cost is counted in the previous stream's total time, not
   in the next request's first chunk.
3. **Load**: ``--clients`` concurrent encrypted clients (asyncio, one
   connection each) for ``--seconds`` against the echo server, half of the
   requests streamed; every response is opened and checked against the
   prompt; errors are counted (the target is none).

Targets (issue 5): added latency <= 1 ms p50; TTFT ratio <= 1.02 on the tiny
model. Results go to ``bench/results/serve.json``. The machine this runs on
has few, shared cores: client and server compete for them.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import secrets
import socket
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from sealtune.core.protocol import KeyConfig, RequestSealer, decode_key_configs, select_key_config

RESULTS = Path(__file__).parent / "results" / "serve.json"
E2E = "application/sealtune-e2e-request"
PASSPHRASE = "bench-" + secrets.token_hex(8)


# -- the server process ------------------------------------------------------------------------


def _child(engine: str, model: str, port: int, home: str) -> None:
    """Run the server in this process as ``sealtune serve`` does (the benchmark's server)."""
    from sealtune.serve import ServeOptions, build_server, run_server
    from sealtune.workspace import Workspace

    ws = Workspace.open(Path(home))
    try:
        run_server(build_server(ws, ServeOptions(
            model=model, port=port, engine=engine, rate=1e6, log_file=Path(home) / "serve.log")))
    finally:
        ws.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(engine: str, model: str, home: Path) -> Iterator[tuple[str, int]]:
    port = _free_port()
    env = {**os.environ, "SEALTUNE_PASSPHRASE": PASSPHRASE, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, __file__, "--child", engine, model, str(port),
                             str(home)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# -- one request of each kind -----------------------------------------------------------------


class Client:
    def __init__(self, url: str, key: str, model: str) -> None:
        self.url, self.model = url, model
        self.http = httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=120)
        report = self.http.get(f"{url}/v1/attestation").json()
        self.config: KeyConfig = select_key_config(
            decode_key_configs(base64.b64decode(report["key_configs"])))
        # As the client SDK does: the next request's HPKE context is set up
        # once this one's answer is in.
        self.sealer = RequestSealer(self.config)

    def body(self, prompt: str, *, stream: bool, max_tokens: int) -> dict[str, Any]:
        return {"model": self.model, "messages": [{"role": "user", "content": prompt}],
                "max_tokens": max_tokens, "temperature": 0, "stream": stream}

    def plain(self, body: dict[str, Any]) -> str:
        resp = self.http.post(f"{self.url}/v1/chat/completions", json=body)
        resp.raise_for_status()
        return str(resp.json()["choices"][0]["message"]["content"])

    def sealed(self, body: dict[str, Any]) -> str:
        data, ctx = self.sealer.seal(json.dumps(body).encode())
        resp = self.http.post(f"{self.url}/v1/chat/completions", content=data,
                              headers={"Content-Type": E2E})
        resp.raise_for_status()
        head, _, inner = ctx.open_response(resp.content).partition(b"\n")
        self.sealer.prepare()
        assert head == b"200 application/json", head
        return str(json.loads(inner)["choices"][0]["message"]["content"])

    def first_chunk(self, body: dict[str, Any], *, sealed: bool) -> tuple[float, float]:
        """Seconds to the first SSE event with text, and to the end of the stream."""
        start = time.perf_counter()
        first = None
        if sealed:
            data, ctx = self.sealer.seal(json.dumps(body).encode())
            opener, kw = ctx.response_stream(), {"content": data, "headers": {"Content-Type": E2E}}
        else:
            opener, kw = None, {"json": body}
        buf = b""
        with self.http.stream("POST", f"{self.url}/v1/chat/completions", **kw) as resp:
            for raw in resp.iter_raw():
                buf += opener.feed(raw) if opener else raw
                if first is None and b'"content":"' in buf.replace(b'"content":""', b""):
                    first = time.perf_counter() - start
        if opener:
            buf += opener.finish()
            self.sealer.prepare()
        assert buf.endswith(b"data: [DONE]\n\n")
        end = time.perf_counter() - start
        return (first if first is not None else end), end


# -- measurements ---------------------------------------------------------------------------------


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _summary(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {"p10_ms": round(_pct(ms, 0.10), 3), "p50_ms": round(statistics.median(ms), 3),
            "p99_ms": round(_pct(ms, 0.99), 3), "mean_ms": round(statistics.fmean(ms), 3),
            "n": len(ms)}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_cost(client: Client, pid: int, n: int, max_tokens: int) -> dict[str, Any]:
    """CPU time per request of the server process and of this client, per mode.

    Insensitive to other load on the machine (unlike wall-clock latency), so
    it shows the protocol's cost when the machine is busy.
    """
    body = client.body("please repeat these few words back to me", stream=False,
                       max_tokens=max_tokens)
    out: dict[str, Any] = {}
    for mode in ("plaintext", "encrypted", "plaintext", "encrypted"):
        call = client.plain if mode == "plaintext" else client.sealed
        server0, own = _cpu_seconds(pid), os.times()
        for _ in range(n // 2):
            call(body)
        now = os.times()
        acc = out.setdefault(mode, {"server": 0.0, "client": 0.0})
        acc["server"] += _cpu_seconds(pid) - server0
        acc["client"] += (now.user + now.system) - (own.user + own.system)
    result: dict[str, Any] = {
        m: {"server_cpu_ms_per_request": round(v["server"] / n * 1000, 4),
            "client_cpu_ms_per_request": round(v["client"] / n * 1000, 4)}
        for m, v in out.items()}
    for side in ("server", "client"):
        key = f"{side}_cpu_ms_per_request"
        result[f"added_{key}"] = round(result["encrypted"][key] - result["plaintext"][key], 4)
    result["n_per_mode"] = n
    return result


def latency(client: Client, n: int, max_tokens: int) -> dict[str, Any]:
    prompt = "please repeat these few words back to me " + secrets.token_hex(8)
    body = client.body(prompt, stream=False, max_tokens=max_tokens)
    for _ in range(max(3, n // 20)):  # warm up both paths
        client.plain(body), client.sealed(body)
    times: dict[str, list[float]] = {"plaintext": [], "encrypted": []}
    for i in range(2 * n):
        mode = "plaintext" if i % 2 == 0 else "encrypted"
        start = time.perf_counter()
        (client.plain if mode == "plaintext" else client.sealed)(body)
        times[mode].append(time.perf_counter() - start)
    out: dict[str, Any] = {mode: _summary(t) for mode, t in times.items()}
    out["added_p50_ms"] = round(out["encrypted"]["p50_ms"] - out["plaintext"]["p50_ms"], 3)
    out["added_p99_ms"] = round(out["encrypted"]["p99_ms"] - out["plaintext"]["p99_ms"], 3)
    # Each encrypted request against the plaintext one just before it: robust to drift.
    pairs = [(e - p) * 1000 for p, e in zip(times["plaintext"], times["encrypted"], strict=True)]
    out["added_paired_median_ms"] = round(statistics.median(pairs), 3)
    return out


def throughput(url: str, key: str, model: str, *, clients: int, seconds: float,
               max_tokens: int) -> dict[str, Any]:
    counts: dict[str, list[int]] = {"plaintext": [], "encrypted": []}
    spans: dict[str, float] = {"plaintext": 0.0, "encrypted": 0.0}
    for mode in ("plaintext", "encrypted", "plaintext", "encrypted"):
        workers = [Client(url, key, model) for _ in range(clients)]
        stop, done = time.monotonic() + seconds / 2, [0] * clients

        def run(i: int, c: Client, mode: str = mode, stop: float = stop,
                done: list[int] = done) -> None:
            body = c.body("throughput test prompt words", stream=False, max_tokens=max_tokens)
            call: Callable[[dict[str, Any]], str] = c.plain if mode == "plaintext" else c.sealed
            while time.monotonic() < stop:
                call(body)
                done[i] += 1

        start = time.monotonic()
        threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        spans[mode] += time.monotonic() - start
        counts[mode].append(sum(done))
    out: dict[str, Any] = {m: {"requests": sum(counts[m]),
                               "requests_per_s": round(sum(counts[m]) / spans[m], 1)}
                           for m in counts}
    out["clients"] = clients
    out["ratio_encrypted_to_plaintext"] = round(
        out["encrypted"]["requests_per_s"] / out["plaintext"]["requests_per_s"], 3)
    return out


def ttft(client: Client, n: int, max_tokens: int) -> dict[str, Any]:
    body = client.body("tell me about my account balance and the delivery of my order",
                       stream=True, max_tokens=max_tokens)
    for _ in range(3):
        client.first_chunk(body, sealed=False), client.first_chunk(body, sealed=True)
    first: dict[str, list[float]] = {"plaintext": [], "encrypted": []}
    total: dict[str, list[float]] = {"plaintext": [], "encrypted": []}
    for i in range(2 * n):
        mode = "plaintext" if i % 2 == 0 else "encrypted"
        f, t = client.first_chunk(body, sealed=mode == "encrypted")
        first[mode].append(f)
        total[mode].append(t)
    out: dict[str, Any] = {f"first_chunk_{m}": _summary(v) for m, v in first.items()}
    out.update({f"stream_total_{m}": _summary(v) for m, v in total.items()})
    out["ttft_ratio_p50"] = round(out["first_chunk_encrypted"]["p50_ms"]
                                  / out["first_chunk_plaintext"]["p50_ms"], 4)
    out["ttft_ratio_p10"] = round(out["first_chunk_encrypted"]["p10_ms"]
                                  / out["first_chunk_plaintext"]["p10_ms"], 4)
    pairs = [e / p for p, e in zip(first["plaintext"], first["encrypted"], strict=True)]
    out["ttft_ratio_paired_median"] = round(statistics.median(pairs), 4)
    out["ttft_added_paired_median_ms"] = round(statistics.median(
        (e - p) * 1000 for p, e in zip(first["plaintext"], first["encrypted"], strict=True)), 3)
    return out


async def _load_client(url: str, key: str, config: KeyConfig, stop: float,
                       stats: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": E2E}
    sealer = RequestSealer(config)
    async with httpx.AsyncClient(headers=headers, timeout=60) as http:
        i = 0
        while time.monotonic() < stop:
            # Letters only: a random hex nonce is now and then a valid phone number,
            # which the output filter rightly redacts (a mismatch, not a protocol error).
            nonce = "".join(secrets.choice(string.ascii_lowercase) for _ in range(12))
            prompt = f"load {nonce} words"
            stream = i % 2 == 1
            i += 1
            body = {"model": "echo", "messages": [{"role": "user", "content": prompt}],
                    "stream": stream}
            start = time.perf_counter()
            data, ctx = sealer.seal(json.dumps(body).encode())
            try:
                if stream:
                    opener, plain = ctx.response_stream(), b""
                    async with http.stream("POST", f"{url}/v1/chat/completions",
                                           content=data) as resp:
                        resp.raise_for_status()
                        async for raw in resp.aiter_raw():
                            plain += opener.feed(raw)
                    plain += opener.finish()
                    sealer.prepare()
                    ok = plain.startswith(b"200 text/event-stream\n") and \
                        prompt.split()[1].encode() in plain and plain.endswith(b"[DONE]\n\n")
                else:
                    resp = await http.post(f"{url}/v1/chat/completions", content=data)
                    resp.raise_for_status()
                    head, _, inner = ctx.open_response(resp.content).partition(b"\n")
                    sealer.prepare()
                    ok = head == b"200 application/json" and \
                        json.loads(inner)["choices"][0]["message"]["content"] == prompt
                failure = None if ok else "content_mismatch"
            except Exception as exc:  # counted, by class
                ok, failure = False, type(exc).__name__
            stats["latency"].append(time.perf_counter() - start)
            stats["ok" if ok else "errors"] += 1
            if failure is not None:
                stats["error_types"][failure] = stats["error_types"].get(failure, 0) + 1


def load(url: str, key: str, *, clients: int, seconds: float) -> dict[str, Any]:
    report = httpx.get(f"{url}/v1/attestation").json()
    config = select_key_config(decode_key_configs(base64.b64decode(report["key_configs"])))
    stats: dict[str, Any] = {"ok": 0, "errors": 0, "latency": [], "error_types": {}}

    async def main() -> None:
        stop = time.monotonic() + seconds
        await asyncio.gather(*(_load_client(url, key, config, stop, stats)
                               for _ in range(clients)))

    start = time.monotonic()
    asyncio.run(main())
    span = time.monotonic() - start
    total = stats["ok"] + stats["errors"]
    return {"clients": clients, "seconds": round(span, 1), "requests": total,
            "errors": stats["errors"], "error_types": stats["error_types"],
            "requests_per_s": round(total / span, 1),
            "latency": _summary(stats["latency"]), "half_streamed": True}


# -- main ------------------------------------------------------------------------------------


def _setup(tmp: Path) -> tuple[Path, str]:
    from sealtune.keys.keyfile import KdfParams
    from sealtune.serve.keystore import FILE_NAME, KeyStore
    from sealtune.workspace import Workspace

    ws = Workspace.init(tmp / "ws", passphrase=PASSPHRASE, kdf=KdfParams.unsafe_fast())
    ws.close()
    key, _ = KeyStore(ws.root / FILE_NAME).create(role="consumer", name="bench",
                                                  rate_per_second=1e6, now=datetime.now(UTC))
    return ws.root, key


def run(args: argparse.Namespace) -> dict[str, Any]:
    from sealtune.train.tiny import make_tiny

    results: dict[str, Any] = {
        "benchmark": "sealtune serve: e2e-http-v1 vs plaintext on one server, loopback",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "load_average_at_start": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory(prefix="sealtune-bench-serve-") as tmp:
        home, key = _setup(Path(tmp))
        with server("echo", "echo", home) as (url, pid):
            client = Client(url, key, "echo")
            results["echo"] = {"latency": latency(client, args.requests, 64),
                               "cpu": cpu_cost(client, pid, args.requests, 64),
                               "throughput": throughput(url, key, "echo",
                                                        clients=args.throughput_clients,
                                                        seconds=args.throughput_seconds,
                                                        max_tokens=64),
                               "ttft": ttft(client, args.ttft_requests, 64)}
            print(json.dumps(results["echo"], indent=1), flush=True)
            results["load"] = load(url, key, clients=args.clients, seconds=args.seconds)
            print(json.dumps(results["load"], indent=1), flush=True)
        if not args.skip_tiny:
            tiny = make_tiny(Path(tmp) / "tiny")
            with server("transformers", str(tiny), home) as (url, pid):
                client = Client(url, key, "tiny")
                n = args.tiny_max_tokens
                results["tiny"] = {"max_tokens": n,
                                   "latency": latency(client, max(20, args.requests // 20), n),
                                   "cpu": cpu_cost(client, pid, max(20, args.requests // 20), n),
                                   "throughput": throughput(url, key, "tiny", clients=2,
                                                            seconds=args.throughput_seconds,
                                                            max_tokens=n),
                                   "ttft": ttft(client, args.ttft_requests, n)}
                print(json.dumps(results["tiny"], indent=1), flush=True)
    results["load_average_at_end"] = os.getloadavg()
    targets = {"added_p50_ms_le_1": results["echo"]["latency"]["added_p50_ms"] <= 1.0,
               "load_errors_zero": results["load"]["errors"] == 0}
    if "tiny" in results:
        ttft_tiny = results["tiny"]["ttft"]
        targets["tiny_ttft_ratio_le_1.02"] = ttft_tiny["ttft_ratio_p50"] <= 1.02
        targets["tiny_ttft_paired_ratio_le_1.02"] = ttft_tiny["ttft_ratio_paired_median"] <= 1.02
    results["targets_met"] = targets
    return results


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="load test duration")
    ap.add_argument("--clients", type=int, default=50, help="concurrent encrypted clients")
    ap.add_argument("--requests", type=int, default=1000, help="sequential requests per mode")
    ap.add_argument("--ttft-requests", type=int, default=500, help="streams per mode")
    ap.add_argument("--throughput-seconds", type=float, default=10.0)
    ap.add_argument("--throughput-clients", type=int, default=8)
    ap.add_argument("--tiny-max-tokens", type=int, default=64)
    ap.add_argument("--skip-tiny", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    results = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["targets_met"]))


if __name__ == "__main__":
    main()
