"""What the monitor costs per request: detectors on against detectors off, same run.

Three measures, medians (p50) and p95, in milliseconds:

* ``app``: the server app with the echo engine, two apps side by side in
  the same process and run: ``off`` (no metrics, no detectors) and ``on``
  (Prometheus metrics, the default detectors plus ``regurgitation`` with a
  training filter of ``--records`` replies, and ``canary`` with 24
  canaries, output guard ``redact``), each called through ASGI in process
  (loopback TCP adds delayed-ACK noise of ~40 ms to either side at random
  on this machine, which hides a 1 ms difference). Requests alternate
  between the two apps so load and noise hit both alike; ``overhead_p50``
  is the difference of medians (the target: at most 2 ms), and
  ``cpu_overhead_p50`` the same in CPU time of the thread that runs the app
  (everything runs on it with the echo engine; on a loaded machine, wall
  time also counts the time a request waited for a core, which grows with
  its CPU time). ``app.whole`` answers whole; ``app.stream`` streams
  (server-sent events; the ``on`` app checks each stream with the
  monitor's stream guard).
* ``inline``: the monitor's own work per request, no HTTP: ``Monitor.guard``
  plus ``Monitor.observe`` on a realistic prompt and a 120-token output.
* ``inline_stream``: the stream guard on the same outputs fed word by word
  (as the echo engine streams them): its time per answer, and after how many
  engine pieces the first text is released (``first_release_after_pieces``:
  the guard alone, the default output filter alone, both chained as the
  server chains them; with neither it is 1). The difference is the guard's
  cost in time to first token, in pieces of generation time.

Usage: ``python bench/monitor.py [--requests 400] [--records 5000]``;
writes ``bench/results/monitor.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from sealtune.attest.software import SoftwareProvider
from sealtune.core.bloom import WINDOW_TOKENS, BloomFilter
from sealtune.core.protocol import ServerKeys
from sealtune.monitor.base import Observation, RequestMeta
from sealtune.monitor.detectors.regurgitation import CanarySet
from sealtune.monitor.policy import default_policy
from sealtune.monitor.prometheus import PrometheusSink
from sealtune.monitor.runtime import Monitor, build_monitor
from sealtune.serve import ServeSettings, create_app
from sealtune.serve.auth import Authenticator, RateLimit
from sealtune.serve.engines import make_engine
from sealtune.serve.filter import OutputFilter
from sealtune.serve.keystore import KeyStore
from sealtune.serve.watch import Watch

RESULTS = Path(__file__).resolve().parent / "results" / "monitor.json"
WORDS = ("account", "card", "transfer", "order", "refund", "delivery", "branch", "balance",
         "statement", "limit", "fee", "password", "login", "address", "phone", "email",
         "invoice", "payment", "loan", "rate", "deposit")


def _replies(n: int, rng: random.Random) -> list[str]:
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 60))) for _ in range(n)]


def _monitor(records: int, metrics: Any) -> Monitor:
    rng = random.Random(1)
    resources = {"training_filter": BloomFilter.of_texts(_replies(records, rng),
                                                         n=WINDOW_TOKENS),
                 "canaries": CanarySet(" ".join(str(rng.randrange(10)) for _ in range(6))
                                       for _ in range(24))}
    return build_monitor(default_policy(), model_version="echo@0", audit=None, metrics=metrics,
                         resources=resources)


def _app(store: KeyStore, watch: Watch | None) -> Any:
    settings = ServeSettings(model_id="echo", model_digest="0" * 64, engine="echo")
    auth = Authenticator(store, None, limit=RateLimit(1e6, 1e6))
    return create_app(settings, engine=make_engine("echo", model_id="echo"),
                      keys=ServerKeys(now=time.time()), provider=SoftwareProvider(), auth=auth,
                      ledger_audit=None, watch=watch)


def _stats(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms)
    return {"p50": round(statistics.median(ms), 3), "p95": round(ms[int(0.95 * len(ms))], 3)}


async def _timed(apps: dict[str, Any], keys: list[str], requests: int,
                 stream: bool = False) -> dict[str, list[float]]:
    rng = random.Random(2)
    prompts = _replies(200, rng)
    times: dict[str, list[float]] = {"off": [], "on": [], "off_cpu": [], "on_cpu": []}
    clients = {name: httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                       base_url="http://bench") for name, app in apps.items()}
    try:
        for i in range(requests * 2 + 40):
            name = ("off", "on")[(i // 2 + i) % 2]  # alternate, swapping the lead each pair
            body = {"model": "echo", "max_tokens": 120, "stream": stream, "messages": [
                {"role": "user", "content": rng.choice(prompts)}]}
            headers = {"Authorization": f"Bearer {keys[(i // 2) % len(keys)]}"}
            t0, c0 = time.perf_counter(), time.thread_time()
            resp = await clients[name].post("/v1/chat/completions", json=body, headers=headers)
            elapsed = (time.perf_counter() - t0) * 1000
            cpu = (time.thread_time() - c0) * 1000
            assert resp.status_code == 200, resp.status_code
            if i >= 40:  # warm-up excluded
                times[name].append(elapsed)
                times[f"{name}_cpu"].append(cpu)
    finally:
        for client in clients.values():
            await client.aclose()
    return times


def bench_app(requests: int, records: int) -> dict[str, Any]:
    """The whole request path in process (ASGI, no sockets: loopback TCP adds noise of its own)."""
    with tempfile.TemporaryDirectory() as tmp:
        store = KeyStore(Path(tmp) / "keys.json")
        keys = [store.create(role="consumer", now=datetime.now(UTC))[0] for _ in range(20)]
        metrics = PrometheusSink()
        monitor = _monitor(records, metrics)
        watch = Watch(model_version="echo@0", metrics=metrics, monitor=monitor)
        apps = {"off": _app(store, None), "on": _app(store, watch)}
        out: dict[str, Any] = {}
        for name, stream in (("whole", False), ("stream", True)):
            times = asyncio.run(_timed(apps, keys, requests, stream))
            off, on = _stats(times["off"]), _stats(times["on"])
            cpu_off, cpu_on = _stats(times["off_cpu"]), _stats(times["on_cpu"])
            out[name] = {"off": off, "on": on, "overhead_p50": round(on["p50"] - off["p50"], 3),
                         "cpu_off": cpu_off, "cpu_on": cpu_on,
                         "cpu_overhead_p50": round(cpu_on["p50"] - cpu_off["p50"], 3),
                         "requests_each": requests}
        out["alerts"] = dict(monitor.alerts)
        monitor.close()
        return out


def bench_inline(requests: int, records: int) -> dict[str, Any]:
    monitor = _monitor(records, None)
    rng = random.Random(3)
    prompts, outputs = _replies(200, rng), _replies(200, rng)
    ms: list[float] = []
    for i in range(requests):
        meta = RequestMeta(time=time.time(), route="/v1/chat/completions", method="POST",
                           status=200, caller=f"k{i % 20}", model_version="echo@0",
                           latency=0.01, prompt_tokens=40, completion_tokens=120)
        out = " ".join(outputs[i % 200].split()[:120])
        t0 = time.perf_counter()
        monitor.guard(out)
        monitor.observe(Observation(meta, prompts[i % 200], out))
        ms.append((time.perf_counter() - t0) * 1000)
    monitor.close()
    return _stats(ms)


def _first(released: list[str]) -> int:
    return next(n for n, text in enumerate(released, start=1) if text)


def bench_inline_stream(requests: int, records: int) -> dict[str, Any]:
    """The stream guard: CPU per 120-word answer, and the hold-back in engine pieces, alone
    and in front of the default output filter (which holds back 64 characters itself)."""
    monitor = _monitor(records, None)
    flt = OutputFilter()
    rng = random.Random(3)
    outputs = _replies(200, rng)
    ms: list[float] = []
    first: dict[str, list[int]] = {"guard": [], "filter": [], "guard_filter": []}
    for i in range(requests):
        pieces = [f" {w}" for w in outputs[i % 200].split()[:120]]
        guard = monitor.stream_guard()
        assert guard is not None
        t0 = time.perf_counter()
        released = [guard.feed(p) for p in pieces] + [guard.flush()]
        ms.append((time.perf_counter() - t0) * 1000)
        first["guard"].append(_first(released))
        alone = flt.stream()
        first["filter"].append(_first([alone.feed(p) for p in pieces] + [alone.flush()]))
        guard, after = monitor.stream_guard(), flt.stream()
        assert guard is not None
        first["guard_filter"].append(_first([after.feed(guard.feed(p)) for p in pieces]
                                            + [after.feed(guard.flush()) + after.flush()]))
    monitor.close()
    return {**_stats(ms), "first_release_after_pieces": {
        name: statistics.median(counts) for name, counts in first.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--records", type=int, default=5000)
    args = parser.parse_args()
    result = {"machine": platform.platform(), "python": platform.python_version(),
              "records_in_filter": args.records,
              "inline": bench_inline(args.requests, args.records),
              "inline_stream": bench_inline_stream(args.requests, args.records),
              "app": bench_app(args.requests, args.records)}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
