"""Benchmark of the sealed-file format v1 against raw AES-256-GCM.

Usage::

    .venv/bin/python bench/seal.py [--size-mib 1024] [--repeats 3]

Measures in one run, on one temp file of ``--size-mib`` MiB (medians of
``--repeats``):

* raw AES-256-GCM: one ``Cipher`` context, ``update_into`` with 1 MiB
  buffers, reading the file the same way (the ceiling we compare against),
  writing to /dev/null (isolates the crypto path) and to a new file;
* our seal and unseal at the envelope level (``seal_stream`` /
  ``open_stream`` with a data key), and through ``seal_file`` /
  ``open_file`` with a local keyring (these add fsync and the ledger);
* SM4-GCM (raw and sealed) on a smaller file;
* peak RSS of seal and unseal in subprocesses, for two sizes;
* the cost of a rewrap (rotation) for a 1 MB and a ``--size-mib`` file.

Raw and sealed runs are interleaved in every repeat, so both see the same
background noise. Prints a table (wall-clock MB/s, ratio to raw, and the ratio
of CPU times, which is steadier on a shared machine) and writes JSON to
``bench/results/seal.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from sealtune.core import envelope as env  # noqa: E402
from sealtune.core.wrapped_key import WrappedKey  # noqa: E402

MIB = 1 << 20
BUF = 1 << 20


# -- helpers ---------------------------------------------------------------------------


class Kek:
    """A real AES-256-GCM KEK (what the local keyring does, minus the ledger)."""

    def __init__(self) -> None:
        self.key = os.urandom(32)

    def wrap(self, data_key: bytes, aad: bytes) -> WrappedKey:
        nonce = os.urandom(12)
        return WrappedKey("bench:kek", 1, nonce + AESGCM(self.key).encrypt(nonce, data_key, aad))

    def unwrap(self, wrapped: WrappedKey, aad: bytes) -> bytes:
        return AESGCM(self.key).decrypt(wrapped.blob[:12], wrapped.blob[12:], aad)


def make_input(path: Path, size: int) -> None:
    block = os.urandom(16 * MIB)
    with path.open("wb") as f:
        left = size
        while left:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n


def median_time(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _cipher(name: str, key: bytes, nonce: bytes, tag: bytes | None = None) -> Any:
    algorithm = algorithms.AES(key) if name == "aes" else algorithms.SM4(key)
    return Cipher(algorithm, modes.GCM(nonce, tag))


def raw_encrypt(src: Path, dst: Path, *, cipher: str, key: bytes) -> None:
    enc = _cipher(cipher, key, b"\0" * 12).encryptor()
    buf, out = bytearray(BUF), bytearray(BUF + 16)
    view, oview = memoryview(buf), memoryview(out)
    with src.open("rb") as f, dst.open("wb") as g:
        while n := f.readinto(buf):
            g.write(oview[: enc.update_into(view[:n], out)])
        enc.finalize()
        g.write(enc.tag)


def raw_decrypt(src: Path, dst: Path, *, cipher: str, key: bytes) -> None:
    size = src.stat().st_size - 16
    with src.open("rb") as f, dst.open("wb") as g:
        f.seek(size)
        tag = f.read(16)
        f.seek(0)
        dec = _cipher(cipher, key, b"\0" * 12, tag).decryptor()
        buf, out = bytearray(BUF), bytearray(BUF + 16)
        view, oview = memoryview(buf), memoryview(out)
        left = size
        while left:
            n = f.readinto(view[: min(BUF, left)])
            left -= n
            g.write(oview[: dec.update_into(view[:n], out)])
        dec.finalize()


def env_seal(src: Path, dst: Path, *, suite: env.Suite, kek: Kek) -> None:
    data_key = env.new_data_key(suite)
    prefix = env.make_prefix(data_key, suite=suite)
    wrapped = [kek.wrap(data_key, env.wrap_aad(prefix))]
    with src.open("rb") as f, dst.open("wb") as g:
        env.seal_stream(f, g, prefix=prefix, data_key=data_key, wrapped=wrapped)


def env_open(src: Path, dst: Path, *, kek: Kek) -> None:
    with src.open("rb") as f, dst.open("wb") as g:
        env.open_stream(f, g, unwrap=kek.unwrap)


def env_rewrap(path: Path, kek: Kek) -> None:
    """The work of rewrap_file without a keyring: header only, two pwrites + fsyncs."""
    with path.open("r+b", buffering=0) as f:
        opened = env.unlock_header(env.read_header(f), unwrap=kek.unwrap)
        entry = kek.wrap(opened.data_key, env.wrap_aad(opened.prefix))
        for offset, data in env.plan_rewrap(opened, [entry]):
            os.pwrite(f.fileno(), data, offset)
            os.fsync(f.fileno())


# -- measurements ----------------------------------------------------------------------


def throughput(size: int, seconds: float) -> float:
    return size / 1e6 / seconds


def bench_cipher(
    work: Path, src: Path, size: int, repeats: int, *, suite: env.Suite, sinks: tuple[str, ...]
) -> dict[str, Any]:
    """Raw GCM vs seal/unseal, interleaved in every repeat so both see the same noise.

    Sink ``null`` writes to /dev/null (reading is the same for both: the
    crypto path is what differs); sink ``file`` writes a new file each run
    (no fsync; dirty pages are flushed between runs, untimed).
    """
    key, kek = os.urandom(suite.key_bytes), Kek()
    raw_ct, sealed = work / f"{suite.cipher}.raw", work / f"{suite.cipher}.sealed"
    raw_encrypt(src, raw_ct, cipher=suite.cipher, key=key)
    env_seal(src, sealed, suite=suite, kek=kek)
    jobs: dict[str, Callable[[Path], None]] = {
        "raw_encrypt": partial(raw_encrypt, src, cipher=suite.cipher, key=key),
        "seal": partial(env_seal, src, suite=suite, kek=kek),
        "raw_decrypt": partial(raw_decrypt, raw_ct, cipher=suite.cipher, key=key),
        "unseal": partial(env_open, sealed, kek=kek),
    }
    results: dict[str, Any] = {"size_mib": size // MIB}
    for sink in sinks:
        wall: dict[str, list[float]] = {name: [] for name in jobs}
        cpu: dict[str, list[float]] = {name: [] for name in jobs}
        for _ in range(repeats):
            for name, job in jobs.items():
                dst = Path(os.devnull) if sink == "null" else work / "dst"
                if sink == "file":
                    dst.unlink(missing_ok=True)
                    os.sync()  # start every run with no dirty pages from the last one
                w0, c0 = time.perf_counter(), time.process_time()
                job(dst)
                wall[name].append(time.perf_counter() - w0)
                cpu[name].append(time.process_time() - c0)
        w = {name: statistics.median(v) for name, v in wall.items()}
        c = {name: statistics.median(v) for name, v in cpu.items()}
        results[sink] = {f"{name}_mbps": throughput(size, t) for name, t in w.items()}
        results[sink] |= {
            "seal_ratio": w["raw_encrypt"] / w["seal"],
            "unseal_ratio": w["raw_decrypt"] / w["unseal"],
            "seal_cpu_ratio": c["raw_encrypt"] / c["seal"],
            "unseal_cpu_ratio": c["raw_decrypt"] / c["unseal"],
        }
    for path in (raw_ct, sealed, work / "dst"):
        path.unlink(missing_ok=True)
    return results


def bench_files(work: Path, size: int, repeats: int) -> dict[str, Any]:
    """seal_file/open_file with a local keyring (adds fsync, key service, ledger)."""
    try:
        from sealtune.keys.files import open_file, rewrap_file, seal_file
        from sealtune.keys.keyfile import KdfParams
        from sealtune.workspace import Workspace

        ws = Workspace.init(
            work / "ws", passphrase="bench-only", kdf=KdfParams.unsafe_fast(), default_key="bench"
        )
    except Exception as exc:  # the workspace stack is optional here
        return {"available": False, "reason": f"{type(exc).__name__}: {exc}"}
    src, out, back = work / "plain", work / "out.sealed", work / "back"
    try:
        keys = ws.keys
        seal = median_time(lambda: seal_file(src, out, keys=keys, key_names=["bench"]), repeats)
        unseal = median_time(lambda: open_file(out, back, keys=keys), repeats)
        small = work / "small.sealed"
        (work / "small").write_bytes(os.urandom(MIB))
        seal_file(work / "small", small, keys=keys, key_names=["bench"])
        rewrap = {
            label: median_time(partial(rewrap_file, p, keys=keys, key_name="bench"), 9)
            for label, p in (("1MiB", small), (f"{size // MIB}MiB", out))
        }
    finally:
        ws.close()
    return {
        "available": True,
        "seal_file_mbps": throughput(size, seal),
        "open_file_mbps": throughput(size, unseal),
        "rewrap_file_ms": {k: v * 1e3 for k, v in rewrap.items()},
    }


def bench_rewrap(work: Path, size: int) -> dict[str, float]:
    kek = Kek()
    small_src, small, big = work / "small-plain", work / "small.env", work / "out"
    small_src.write_bytes(os.urandom(MIB))
    env_seal(small_src, small, suite=env.AES_256_GCM, kek=kek)
    env_seal(work / "plain", big, suite=env.AES_256_GCM, kek=kek)
    return {
        label: median_time(partial(env_rewrap, p, kek), 21) * 1e3
        for label, p in (("1MiB", small), (f"{size // MIB}MiB", big))
    }


def child_rss(mode: str, size: int, work: Path) -> int:
    """Peak RSS (KiB) of a fresh process that seals or unseals ``size`` bytes."""
    cmd = [
        sys.executable,
        __file__,
        "--child",
        mode,
        "--size-mib",
        str(size // MIB),
        "--work",
        str(work),
    ]
    return int(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def run_child(mode: str, size: int, work: Path) -> None:
    kek = Kek()
    kek.key = bytes(32)  # a throwaway KEK shared by the seal and open children
    src, sealed, back = work / f"rss-{size}", work / f"rss-{size}.sealed", work / f"rss-{size}.out"
    if mode == "seal":
        env_seal(src, sealed, suite=env.AES_256_GCM, kek=kek)
    elif mode == "open":
        env_open(sealed, back, kek=kek)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def bench_rss(work: Path, sizes: list[int]) -> dict[str, dict[str, float]]:
    result: dict[str, dict[str, float]] = {
        "baseline": {"imports_only_peak_rss_mib": child_rss("idle", MIB, work) / 1024}
    }
    for size in sizes:
        make_input(work / f"rss-{size}", size)
        seal = child_rss("seal", size, work)
        unseal = child_rss("open", size, work)
        for suffix in ("", ".sealed", ".out"):
            (work / f"rss-{size}{suffix}").unlink()
        result[f"{size // MIB}MiB"] = {
            "seal_peak_rss_mib": seal / 1024,
            "unseal_peak_rss_mib": unseal / 1024,
        }
    return result


# -- main ------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sm4-mib", type=int, default=256, help="SM4 file size (slower)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "seal.json")
    parser.add_argument("--child", choices=["idle", "seal", "open"], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = args.size_mib * MIB
    if args.child:
        run_child(args.child, size, args.work)
        return
    with tempfile.TemporaryDirectory(prefix="sealtune-bench-") as tmp:
        work = Path(tmp)
        make_input(work / "plain", size)
        results: dict[str, Any] = {
            "size_mib": args.size_mib,
            "repeats": args.repeats,
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
        }
        results["aes"] = bench_cipher(
            work, work / "plain", size, args.repeats, suite=env.AES_256_GCM, sinks=("null", "file")
        )
        sm4_size = min(args.sm4_mib, args.size_mib) * MIB
        make_input(work / "plain-sm4", sm4_size)
        results["sm4"] = bench_cipher(
            work, work / "plain-sm4", sm4_size, args.repeats, suite=env.SM4_GCM, sinks=("null",)
        )
        (work / "plain-sm4").unlink()
        results["rewrap_ms"] = bench_rewrap(work, size)
        results["files"] = bench_files(work, size, args.repeats)
        results["rss"] = bench_rss(work, sorted({min(64, args.size_mib) * MIB, size}))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print_table(results)
    print(f"\nJSON: {args.out}")


def print_table(r: dict[str, Any]) -> None:
    print(f"sealed-file v1 benchmark, {r['size_mib']} MiB, median of {r['repeats']}")
    print(f"{'':40}{'MB/s':>8}{'vs raw':>8}{'cpu':>7}")

    def rows(label: str, m: dict[str, Any]) -> None:
        for name, ratio in (
            ("raw_encrypt", None),
            ("seal", "seal"),
            ("raw_decrypt", None),
            ("unseal", "unseal"),
        ):
            text = f"{label} {name:12}"
            extra = (
                ""
                if ratio is None
                else (f"{m[f'{ratio}_ratio']:8.2f}{m[f'{ratio}_cpu_ratio']:7.2f}")
            )
            print(f"{text:40}{m[f'{name}_mbps']:8.0f}{extra}")

    rows("AES  file -> /dev/null", r["aes"]["null"])
    rows("AES  file -> file", r["aes"]["file"])
    rows(f"SM4  file -> /dev/null ({r['sm4']['size_mib']} MiB)", r["sm4"]["null"])
    files = r["files"]
    if files.get("available"):
        print(f"{'seal_file (fsync, key service, ledger)':40}{files['seal_file_mbps']:8.0f}")
        print(f"{'open_file (fsync, key service, ledger)':40}{files['open_file_mbps']:8.0f}")
        print(
            "rewrap_file, ms per file: "
            + ", ".join(f"{k}: {v:.2f}" for k, v in files["rewrap_file_ms"].items())
        )
    else:
        print(f"seal_file/open_file not measured: {files['reason']}")
    print(
        "rewrap (header only, no ledger), ms per file: "
        + ", ".join(f"{k}: {v:.2f}" for k, v in r["rewrap_ms"].items())
    )
    rss = dict(r["rss"])
    idle = rss.pop("baseline")["imports_only_peak_rss_mib"]
    print(
        f"peak RSS, MiB (interpreter + imports alone: {idle:.1f}): "
        + ", ".join(
            f"{k}: seal {v['seal_peak_rss_mib']:.1f} / unseal {v['unseal_peak_rss_mib']:.1f}"
            for k, v in rss.items()
        )
    )


if __name__ == "__main__":
    main()
