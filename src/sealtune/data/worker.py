"""The data sandbox's entry module: open the raw input, detect, redact, screen, seal.

Runs as ``sealtune.data.worker`` under :mod:`sealtune.sandbox.launcher`
(``main(ctx, argv)``), started by :mod:`sealtune.data.sandboxed`. The job is
the JSON input named ``job`` and holds no secret: the dataset name, the
policy (canonical form and source name), the input's format options and
name, the KEK names, the pipeline provenance, the measurement. The raw input
is bound read-only as the input ``raw``. Secrets come only over the key pipe
(``ctx.keys``): ``raw`` (the raw input's data key, when it is sealed),
``dataset_keys`` (the 32-byte redaction secret) and ``target.<file>`` for
each sealed file (a framed :class:`~sealtune.keys.sealing.SealingTarget`:
the data key, prefix and wrapped entries the parent made). Inside:

1. the raw input is opened (a sealed one authenticated and decrypted in
   memory, never to disk) and PII detected in the first pass
   (``data_decrypted``);
2. :func:`~sealtune.data.writing.screen_input` and
   :func:`~sealtune.data.writing.write_dataset` screen, redact and seal
   into ``ctx.outdir`` exactly as an in-process ingest does, with progress
   forwarded as numbers and a phase token;
3. the quarantined record ids (already safe ids: an id that holds PII was
   renamed ``line-<n>``) go to ``quarantined.json`` for the parent's audit
   events, and ``outputs_sealed`` reports the counts.

A malformed line (:class:`~sealtune.data.formats.DataFormatError`) is
reported as a ``data_error`` event with its line number only, then raised
(the launcher reports the class).

What this protects against: plaintext records outside the sandbox (only
sealed files and the plain facts the in-process stage writes anyway — counts,
digests, masked examples, record ids — reach ``ctx.outdir``), sample text in
events or errors. What it does not: code that deliberately encodes data into
the facts or the sealed files it writes; memory copies Python cannot erase.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sealtune.data import store
from sealtune.data.detections import open_passes
from sealtune.data.executors import precompute
from sealtune.data.formats import DataFormatError
from sealtune.data.parallel import close_analyzer
from sealtune.data.policy import parse_policy
from sealtune.data.redact import DatasetKeys
from sealtune.data.writing import screen_input, write_dataset
from sealtune.errors import ConfigError
from sealtune.keys.sealing import SealedSource, SealingTarget, is_sealed
from sealtune.outputs import write_atomic

if TYPE_CHECKING:
    from pathlib import Path

    from sealtune.data.pii import Analyzer
    from sealtune.data.policy import Policy
    from sealtune.sandbox.launcher import ChildContext

#: The input names the parent binds, and the extra output it reads back.
JOB, RAW, QUARANTINED = "job", "raw", "quarantined.json"
#: The files sealed under a target each (``target.<file>`` on the key pipe).
SEALED = (store.DATA_FILE, store.QUARANTINE_FILE, store.KEYS_FILE)
_NOT_TOKEN = re.compile(r"[^A-Za-z0-9_.,:/+=-]")


def target_key(file: str) -> str:
    """The key-pipe name of ``file``'s sealing target."""
    return f"target.{file}"


def phase_token(phase: str) -> str:
    """A progress phase as an event token (spaces to ``_``, anything else outside the
    token alphabet dropped): the wire refuses free text."""
    return _NOT_TOKEN.sub("", phase.replace(" ", "_"))[:128]


def _progress(ctx: ChildContext) -> Callable[[str, int, int | None], None]:
    def relay(phase: str, done: int, total: int | None) -> None:
        ctx.events.send("progress", "progress", step=done, total=total,
                        phase=phase_token(phase))
    return relay


def _secret(ctx: ChildContext, name: str) -> bytearray:
    if name not in ctx.keys:
        raise ConfigError(f"no {name} secret was handed to the data sandbox")
    return ctx.keys[name]


def _job(ctx: ChildContext) -> dict[str, Any]:
    try:
        job = json.loads((ctx.indir / JOB).read_bytes())
    except ValueError:
        raise ConfigError("the data sandbox's job is not valid JSON") from None
    if not isinstance(job, dict):
        raise ConfigError("the data sandbox's job must be a JSON object")
    return job


def _precomputed(ctx: ChildContext, job: dict[str, Any], policy: Policy, raw: Path,
                 ) -> Analyzer | None:
    """``--executor ray``: detection on a private local Ray started here, in the sandbox."""
    executor = str(job.get("executor") or "local")
    if executor == "local":
        return None
    data_key = ctx.keys.get(RAW)
    opener = SealedSource(raw, data_key=data_key).open \
        if data_key is not None and is_sealed(raw) else None
    _progress(ctx)(f"detecting on {executor}", 0, None)
    return precompute(executor, raw, policy, format=job.get("format"),
                      text_field=job.get("text_field"), keys=None, opener=opener)


def main(ctx: ChildContext, argv: list[str]) -> None:
    """Entry point inside the sandbox (see the module docstring for the protocol)."""
    job = _job(ctx)
    policy = parse_policy(job["policy"], source=str(job["policy_source"]))
    targets = {f: SealingTarget.from_bytes(_secret(ctx, target_key(f))) for f in SEALED}
    raw = ctx.indir / RAW
    passes = None
    try:
        analyzer = _precomputed(ctx, job, policy, raw)
        passes = open_passes(raw, policy, format=job.get("format"),
                             text_field=job.get("text_field"), on_error=str(job["on_error"]),
                             progress=_progress(ctx), data_key=ctx.keys.get(RAW),
                             workers=int(job.get("workers", 1)), analyzer=analyzer)
        ctx.events.event("data_decrypted", sealed_input=RAW in ctx.keys)
        screened = screen_input(raw, passes, policy=policy, input_name=str(job["input_name"]))
        written = write_dataset(
            ctx.outdir, screened, name=str(job["name"]), policy=policy,
            key_names=list(job["key_names"]), targets=targets,
            input_name=str(job["input_name"]),
            dataset_keys=DatasetKeys(bytes(_secret(ctx, "dataset_keys"))),
            provenance=job.get("provenance"), sandbox=job.get("sandbox"))
    except DataFormatError as exc:
        ctx.events.event("data_error", line=exc.line)
        raise
    finally:
        for target in targets.values():
            target.wipe()
        if passes is not None:
            close_analyzer(passes[0].analyzer)  # --workers: stops the pool
    write_atomic(ctx.outdir / QUARANTINED, json.dumps(list(written.quarantined)).encode())
    counts = written.manifest["counts"]
    ctx.events.event("outputs_sealed", files=len(SEALED), records_out=counts["records_out"],
                     quarantined=counts["quarantined"])
