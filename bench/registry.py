"""Model registry: signing and verifying against raw hashing, register time, revoke-to-refusal.

Usage: .venv/bin/python bench/registry.py [--sign-mib 256] [--register-mib 1024]
       [--rounds 3] [--workdir DIR]

* sign / verify: a model directory of one ``--sign-mib`` MiB weights file and
  a config; *sign* is what ``models register`` does to sign (SHA-256 of every
  file, then an OpenSSF model-signing signature over the digests with the
  registry's EC P-256 key); *verify* re-hashes every file and checks the
  signature; the baseline is SHA-256 of the same bytes read from disk
  (``hashlib``). Target: throughput ratio >= 0.8.
* register: ``register_model`` of a ``--register-mib`` MiB model (one sealed
  weights file and a config, installed as a training job installs its model:
  the job record is written here, training such a model does not fit this
  machine), against copying and hashing the sealed bytes once (the least a
  content-addressed store that checks what it keeps must do).
* revoke-to-refusal: a real ``sealtune serve --model NAME@vN`` (echo engine,
  the version still verified at start), ``revoke_version`` in this process,
  then the time until the server answers 410 ``model_revoked``.

Reports medians over ``--rounds`` and writes bench/results/registry.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sealtune.keys import seal_file
from sealtune.keys.keyfile import KdfParams
from sealtune.registry import register_model, revoke
from sealtune.registry.signing import sign_model, verify_model_signature
from sealtune.workspace import Workspace

PASS = "bench-registry-passphrase"


def _median(fn: Callable[[], Any], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _write_random(path: Path, mib: int) -> None:
    with path.open("wb") as fh:
        for _ in range(mib):
            fh.write(os.urandom(1 << 20))


def _hash_files(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.iterdir()):
        h = hashlib.sha256()
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
        out[path.name] = h.hexdigest()
    return out


def bench_sign(work: Path, mib: int, rounds: int) -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric import ec

    model = work / "sign-model"
    model.mkdir()
    _write_random(model / "model.safetensors", mib)
    (model / "config.json").write_text('{"model_type": "llama"}')
    key = ec.generate_private_key(ec.SECP256R1())
    _hash_files(model)  # warm the page cache for every variant alike
    sig = sign_model(key, model_name="m", digests=_hash_files(model))

    def verify() -> None:
        signed = verify_model_signature(sig, key.public_key(), what="model.sig")
        assert signed == _hash_files(model)

    # Interleaved, round by round: on a shared machine the load drifts, and the
    # three variants must see the same load to be compared.
    times: dict[str, list[float]] = {"hash": [], "sign": [], "verify": []}
    for _ in range(rounds):
        for name, fn in (("hash", lambda: _hash_files(model)),
                         ("sign", lambda: sign_model(key, model_name="m",
                                                     digests=_hash_files(model))),
                         ("verify", verify)):
            times[name].append(_median(fn, 1))
    baseline, sign, check = (statistics.median(times[k]) for k in ("hash", "sign", "verify"))
    size = sum(p.stat().st_size for p in model.iterdir())
    return {"bytes": size, "hash_s": baseline, "sign_s": sign, "verify_s": check,
            "hash_mib_s": size / baseline / 2**20, "sign_ratio": baseline / sign,
            "verify_ratio": baseline / check}


def _workspace(work: Path) -> Workspace:
    return Workspace.init(work / "ws", passphrase=PASS, kdf=KdfParams.unsafe_fast())


def _fake_job(ws: Workspace, work: Path, mib: int, job_id: str) -> None:
    """A finished job's installed model, laid out as the training stage installs one."""
    plain = work / f"{job_id}.safetensors"
    _write_random(plain, mib)
    model = ws.root / "models" / job_id
    model.mkdir(parents=True)
    seal_file(plain, model / "model.safetensors.sealed", keys=ws.keys, key_names=["platform"])
    plain.unlink()
    (model / "config.json").write_text('{"model_type": "llama"}')
    jobs = ws.root / "jobs"
    jobs.mkdir(exist_ok=True)
    (jobs / f"{job_id}.json").write_text(json.dumps({
        "format": "sealtune.job/v1", "id": job_id, "out_name": job_id, "dataset": "none",
        "status": "finished", "model": str(model), "seal_keys": ["platform"],
        "config": {}, "measurement": {}, "privacy": None}))


def bench_register(work: Path, mib: int) -> dict[str, Any]:
    ws = _workspace(work / "reg")
    try:
        _fake_job(ws, work, mib, "job-bench-1")
        sealed = ws.root / "models" / "job-bench-1" / "model.safetensors.sealed"
        start = time.perf_counter()
        data = sealed.read_bytes()
        (work / "copy").write_bytes(data)
        hashlib.sha256(data).hexdigest()
        baseline = time.perf_counter() - start
        (work / "copy").unlink()
        del data
        start = time.perf_counter()
        register_model(ws, "big", job="job-bench-1")
        took = time.perf_counter() - start
    finally:
        ws.close()
    return {"mib": mib, "register_s": took, "copy_hash_s": baseline,
            "ratio_to_copy_hash": baseline / took}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _status(url: str) -> int:
    import httpx

    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


def bench_revoke(work: Path, rounds: int) -> dict[str, Any]:
    ws = _workspace(work / "rev")
    _fake_job(ws, work, 1, "job-bench-2")
    refs = [register_model(ws, "small", job="job-bench-2") for _ in range(rounds)]
    ws.close()
    env = {**os.environ, "SEALTUNE_HOME": str(work / "rev" / "ws"), "SEALTUNE_PASSPHRASE": PASS}
    latencies = []
    for ref in refs:
        port = _free_port()
        url = f"http://127.0.0.1:{port}/healthz"
        proc = subprocess.Popen([sys.executable, "-m", "sealtune", "serve", "--engine", "echo",
                                 "--model", str(ref), "--port", str(port)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while _status(url) != 200:
                if proc.poll() is not None:
                    raise SystemExit("the server exited")
                time.sleep(0.1)
            ws = Workspace.open(work / "rev" / "ws", passphrase=PASS)
            try:
                revoke(ws, str(ref), reason="bench")
            finally:
                ws.close()
            start = time.perf_counter()
            while _status(url) != 410:
                time.sleep(0.01)
            latencies.append(time.perf_counter() - start)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    return {"rounds": len(latencies), "revoke_to_refusal_s": statistics.median(latencies),
            "max_s": max(latencies)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sign-mib", type=int, default=256)
    ap.add_argument("--register-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        result = {"machine": platform.platform(), "python": platform.python_version(),
                  "sign": bench_sign(work, args.sign_mib, args.rounds),
                  "register": bench_register(work, args.register_mib),
                  "revoke": bench_revoke(work, args.rounds)}
    out = Path(__file__).parent / "results" / "registry.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
