"""What the connection guard costs: guarded vs plain uvicorn h11, same app, same run.

Usage::

    .venv/bin/python bench/connections.py [--requests 2000]

Two server processes serve the same app (echo engine, real auth, no ledger):
one on :func:`sealtune.serve.connections.uvicorn_options` (deadlines and
caps, as ``sealtune serve`` runs), one on uvicorn's plain h11 protocol (the
baseline). The client sends plaintext chat completions alternately to each,
one by one (which goes first alternates), in two shapes: on one kept-alive connection, and on a new
connection per request (the guard's accept and close path). Reported: the
median latency per shape and server, their ratio, and the server CPU time
per request from ``/proc`` (not disturbed by other load). Results go to
``bench/results/connections.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

RESULTS = Path(__file__).parent / "results" / "connections.json"
BODY = {"model": "echo", "messages": [{"role": "user", "content": "one two three four"}]}


def _child(mode: str, port: int, home: str) -> None:
    import uvicorn

    from sealtune.attest.software import SoftwareProvider
    from sealtune.core.protocol import ServerKeys
    from sealtune.serve import ServeSettings, create_app
    from sealtune.serve.auth import Authenticator, RateLimit
    from sealtune.serve.connections import uvicorn_options
    from sealtune.serve.engines import make_engine
    from sealtune.serve.keystore import KeyStore
    from sealtune.serve.settings import ConnectionLimits

    store = KeyStore(Path(home) / "serve-keys.json")
    settings = ServeSettings(model_id="echo", model_digest="0" * 64, engine="echo")
    app = create_app(settings, engine=make_engine("echo", model_id="echo"),
                     keys=ServerKeys(now=time.time()), provider=SoftwareProvider(),
                     auth=Authenticator(store, None, limit=RateLimit(1e6, 1e6)),
                     ledger_audit=None)
    options: dict[str, Any] = (uvicorn_options(ConnectionLimits()) if mode == "guarded"
                               else {"http": "h11", "ws": "none"})
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                **options)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _server(mode: str, home: Path) -> Any:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--child", mode, str(port), str(home)],
                            env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {mode} server did not start")
            time.sleep(0.1)
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(servers: dict[str, tuple[str, int]], key: str, n: int,
             fresh: bool) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    clients = {m: httpx.Client(headers=headers, timeout=30) for m in servers}
    times: dict[str, list[float]] = {m: [] for m in servers}
    cpu0 = {m: _cpu(pid) for m, (_, pid) in servers.items()}
    try:
        order = list(servers)
        for i in range(n):
            for mode in order if i % 2 else reversed(order):  # alternate who goes first
                url = servers[mode][0]
                began = time.perf_counter()
                if fresh:
                    with httpx.Client(headers=headers, timeout=30) as once:
                        resp = once.post(f"{url}/v1/chat/completions", json=BODY)
                else:
                    resp = clients[mode].post(f"{url}/v1/chat/completions", json=BODY)
                times[mode].append(time.perf_counter() - began)
                assert resp.status_code == 200, resp.text
    finally:
        for c in clients.values():
            c.close()
    out: dict[str, Any] = {}
    for mode, (_, pid) in servers.items():
        out[mode] = {"p50_ms": statistics.median(times[mode]) * 1000,
                     "server_cpu_ms_per_request": (_cpu(pid) - cpu0[mode]) * 1000 / n}
    out["p50_ratio_guarded_to_plain"] = out["guarded"]["p50_ms"] / out["plain"]["p50_ms"]
    out["cpu_ratio_guarded_to_plain"] = (out["guarded"]["server_cpu_ms_per_request"]
                                         / out["plain"]["server_cpu_ms_per_request"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    from sealtune.serve.keystore import KeyStore

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        key, _ = KeyStore(home / "serve-keys.json").create(role="consumer",
                                                          now=datetime.now(UTC))
        with _server("guarded", home) as guarded, _server("plain", home) as plain:
            servers = {"guarded": guarded, "plain": plain}
            _measure(servers, key, 100, fresh=False)  # warm-up
            result = {
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "requests_per_shape": args.requests, "nonce": secrets.token_hex(4),
                "keep_alive": _measure(servers, key, args.requests, fresh=False),
                "new_connection_each": _measure(servers, key, args.requests // 4, fresh=True),
            }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        main()
