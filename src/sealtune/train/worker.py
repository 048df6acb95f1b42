"""The sandbox entry module: decrypt the dataset, train, seal every output.

Runs as ``sealtune.train.worker`` under :mod:`sealtune.sandbox.launcher`
(``main(ctx, argv)``). The job spec is JSON — ``--spec-json TEXT``, ``--spec
PATH``, or the input named ``job`` — and holds no secret: input names, the
training config, and for each sealed output the prefix and wrapped data key
the parent (which holds the KEKs) made. The data keys themselves come only
over the key pipe (``ctx.keys``). Inside:

1. the sealed dataset is authenticated and decrypted into memory (never to
   disk), parsed, and the buffer zeroed (``data_decrypted``);
2. :func:`~sealtune.train.trainer.train` runs with its plaintext outputs on the
   sandbox's tmpfs (``ctx.workdir``), progress and each epoch's losses
   (``epoch_finished``: training loss, held-out loss and perplexity) forwarded
   as numbers only, and checkpoints sealed into ``ctx.outdir/checkpoints``
   (``training_finished``, with the privacy figures, so the parent can record
   them unsealed);
3. every output file is sealed into ``ctx.outdir/model/<name>.sealed``
   (``outputs_sealed``, with the digest of the plaintext weights'
   tensors, :func:`~sealtune.train.loading.weights_digest`, which depends
   only on what was computed, not on the random data keys). The launcher wipes the tmpfs afterwards.

What this protects against: plaintext data or weights outside the sandbox,
sample text in events or logs, exceptions carrying data (the launcher reports
only the class name; errors raised here name fields, never content). What it
does not: code that deliberately encodes data into the numbers it reports or
the weights it writes (the sandbox limits where data can go, not what the
training code does with it); memory copies Python cannot erase.

Every output file of a job is sealed with the one prefix the parent made for
outputs (the same file id, each with a fresh salt and nonce prefix, so this is
sound); the file names tell them apart. Resuming after a kill: bind the
previous run's ``checkpoints`` directory as an input and name it ``resume``.

With ``nproc`` > 1 this process is rank 0 of a data-parallel group
(:mod:`sealtune.train.distributed`): it starts the other ranks inside the same
sandbox, hands them the keys over pipes, and alone sends events, checkpoints
and seals; the other ranks run :func:`run_rank` and report by exit status.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sealtune.errors import ConfigError
from sealtune.keys.sealing import SealingTarget, unseal_into
from sealtune.outputs import open_output

if TYPE_CHECKING:
    from sealtune.data.records import Record
    from sealtune.sandbox.launcher import ChildContext
    from sealtune.train.distributed import DistContext
    from sealtune.train.metrics import EpochReport
    from sealtune.train.result import Progress, TrainResult

JOB_FORMAT = "sealtune-train-job/1"
#: Set inside the sandbox before transformers is imported (the job runner should set
#: them too, with OMP_NUM_THREADS): no network look-ups, no telemetry, caches on the tmpfs.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false"}
DEFAULT_KEYS = {"dataset": "dataset", "output": "output", "checkpoint": "checkpoint",
                "canaries": "canaries"}


@dataclass(frozen=True)
class JobSpec:
    """One training job, as the parent hands it to the sandbox (no secrets)."""

    dataset: str
    base: str
    config: Any  # TrainConfig (imported lazily: torch is heavy)
    output: SealingTarget  # the public half: prefix and wrapped entries, no key
    checkpoint: SealingTarget | None = None
    resume: str | None = None
    threads: int | None = None
    keys: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_KEYS))
    nproc: int = 1

    @classmethod
    def from_dict(cls, data: Any) -> JobSpec:
        from sealtune.train.config import TrainConfig

        if not isinstance(data, dict) or data.get("format") != JOB_FORMAT:
            raise ConfigError(f"job spec must be an object with format {JOB_FORMAT}")
        known = {"format", "dataset", "base", "config", "output", "checkpoint", "resume",
                 "threads", "keys", "nproc"}
        if unknown := sorted(set(data) - known):
            raise ConfigError(f"job spec: unknown field(s) {', '.join(unknown)}")
        names = [data.get("dataset"), data.get("base"), data.get("resume")]
        if not all(n is None or (isinstance(n, str) and _plain_name(n)) for n in names) or (
                names[0] is None or names[1] is None):
            raise ConfigError("job spec: dataset and base (and resume) must be input names")
        threads = data.get("threads")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ConfigError("job spec: threads must be a positive integer")
        nproc = data.get("nproc", 1)
        if not isinstance(nproc, int) or isinstance(nproc, bool) or not 1 <= nproc <= 64:
            raise ConfigError("job spec: nproc must be an integer from 1 to 64")
        keys = data.get("keys") or {}
        if not isinstance(keys, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in keys.items()):
            raise ConfigError("job spec: keys maps roles to secret names (strings)")
        checkpoint = data.get("checkpoint")
        return cls(dataset=data["dataset"], base=data["base"],
                   config=TrainConfig.from_dict(data.get("config", {})),
                   output=SealingTarget.from_dict(data.get("output"), "job spec output"),
                   checkpoint=None if checkpoint is None
                   else SealingTarget.from_dict(checkpoint, "job spec checkpoint"),
                   resume=data.get("resume"), threads=threads,
                   keys={**DEFAULT_KEYS, **keys}, nproc=nproc)

    def to_dict(self) -> dict[str, Any]:
        return {"format": JOB_FORMAT, "dataset": self.dataset, "base": self.base,
                "config": self.config.to_dict(), "output": self.output.to_dict(),
                "checkpoint": None if self.checkpoint is None else self.checkpoint.to_dict(),
                "resume": self.resume, "threads": self.threads, "keys": dict(self.keys),
                "nproc": self.nproc}


def _plain_name(name: str) -> bool:
    parts = Path(name).parts
    return bool(parts) and not Path(name).is_absolute() and ".." not in parts


def _read_spec(ctx: ChildContext, argv: Sequence[str]) -> JobSpec:
    args = list(argv)
    if args[:1] == ["--spec-json"] and len(args) == 2:
        text = args[1]
    elif args[:1] == ["--spec"] and len(args) == 2:
        text = Path(args[1]).read_text("utf-8")
    elif not args:
        text = (ctx.indir / "job").read_text("utf-8")
    else:
        raise ConfigError("worker arguments: --spec PATH | --spec-json JSON | none")
    try:
        return JobSpec.from_dict(json.loads(text))
    except ValueError:
        raise ConfigError("job spec is not valid JSON") from None


def _key(ctx: ChildContext, spec: JobSpec, role: str) -> bytes:
    name = spec.keys.get(role, role)
    if name not in ctx.keys:
        raise ConfigError(f"no {role} data key was handed to the sandbox (expected {name!r})")
    return bytes(ctx.keys[name])


def decrypt_dataset(path: Path, data_key: bytes) -> list[Record]:
    """Authenticate and decrypt a sealed JSONL dataset in memory; parse it; zero the buffer."""
    from sealtune.train.data import records_from_jsonl

    buf = io.BytesIO()
    try:
        unseal_into(path, buf, data_key=data_key)
        return records_from_jsonl(buf.getvalue().decode("utf-8").splitlines())
    finally:
        with contextlib.suppress(BufferError):
            view = buf.getbuffer()
            view[:] = bytes(len(view))
            view.release()


def seal_tree(src: Path, dst: Path, target: SealingTarget) -> tuple[int, int]:
    """Seal every file of ``src`` into ``dst/<name>.sealed``; return (files, sealed bytes)."""
    dst.mkdir(mode=0o700, parents=True, exist_ok=True)
    count = total = 0
    for path in sorted(p for p in src.iterdir() if p.is_file()):
        with path.open("rb") as fin, \
                open_output(dst / f"{path.name}.sealed", atomic="require") as fout:
            info = target.seal(fin, fout)
        count, total = count + 1, total + info.sealed_size
    return count, total


def _progress(ctx: ChildContext) -> Any:
    def forward(p: Progress) -> None:
        ctx.events.send("progress", "progress", step=p.step, total=p.total, loss=p.loss,
                        lr=p.lr, grad_norm=p.grad_norm, epsilon=p.epsilon)
    return forward


def _epochs(ctx: ChildContext) -> Any:
    def forward(e: EpochReport) -> None:
        ctx.events.event("epoch_finished", epoch=e.epoch, step=e.step, train_loss=e.train_loss,
                         eval_loss=e.eval_loss, eval_perplexity=e.eval_perplexity)
    return forward


def main(ctx: ChildContext, argv: list[str]) -> None:
    """Entry point inside the sandbox (see the module docstring for the protocol)."""
    for name, value in OFFLINE_ENV.items():
        os.environ.setdefault(name, value)
    spec = _read_spec(ctx, argv)
    if spec.nproc == 1:
        _finish(ctx, spec, _train(ctx, spec, None), 1)
        return
    if spec.config.dp is not None:
        raise ConfigError("differential privacy with nproc > 1 is not available",
                          hint="train with DP at --nproc 1")
    from sealtune.train.distributed import start_ranks

    needed = {spec.keys.get(role, role) for role in ("dataset", "checkpoint", "canaries")}
    dist, group = start_ranks(spec.nproc, {k: v for k, v in ctx.keys.items() if k in needed},
                              argv)  # the other ranks never seal outputs: no output key
    group.watch(lambda rank: _abort(ctx))
    try:
        dist.init()
        ctx.events.event("distributed_started", world_size=spec.nproc, backend="gloo")
        result = _train(ctx, spec, dist)
        dist.close()
        group.wait()
    except BaseException:
        group.kill()
        raise
    finally:
        dist.close()
    _finish(ctx, spec, result, spec.nproc)


def run_rank(ctx: ChildContext, argv: list[str], dist: DistContext) -> None:
    """Entry of ranks 1..N-1 (:func:`sealtune.train.distributed.child_main`): train only."""
    for name, value in OFFLINE_ENV.items():
        os.environ.setdefault(name, value)
    spec = _read_spec(ctx, argv)
    dist.init()
    try:
        _train(ctx, spec, dist)
    finally:
        dist.close()


def _abort(ctx: ChildContext) -> None:
    """A rank failed: the others may block in a collective, so end rank 0 now (wiped)."""
    from sealtune.sandbox.launcher import wipe_tree
    from sealtune.train.distributed import RankFailedError

    with contextlib.suppress(Exception):
        ctx.events.error(RankFailedError("a training rank failed"))
        ctx.wipe_keys()
        ctx.events.event("workspace_wiped", files=wipe_tree(ctx.workdir))
    os._exit(1)


def _train(ctx: ChildContext, spec: JobSpec, dist: DistContext | None) -> TrainResult:
    main = dist is None or dist.is_main
    records = decrypt_dataset(ctx.indir / spec.dataset, _key(ctx, spec, "dataset"))
    if main:
        ctx.events.event("data_decrypted", records=len(records), world_size=spec.nproc)
    import torch

    from sealtune.train.checkpoints import SealedDirSink
    from sealtune.train.trainer import train

    if spec.threads:
        torch.set_num_threads(spec.threads)
    sink = None
    if spec.checkpoint is not None:  # saves every config.checkpoint_every steps; resumes
        # (every rank restores from it; only rank 0 saves)
        target = spec.checkpoint.with_key(_key(ctx, spec, "checkpoint"))
        sink = SealedDirSink(ctx.outdir / "checkpoints", target,
                             resume_from=None if spec.resume is None else ctx.indir / spec.resume)
    out_dir = ctx.workdir / "model"
    return train(records, base_dir=ctx.indir / spec.base, config=spec.config,
                 out_dir=out_dir, progress=_progress(ctx) if main else None,
                 checkpoint=sink, dist=dist, on_epoch=_epochs(ctx) if main else None,
                 extra_records=_canaries(ctx, spec))


def _canaries(ctx: ChildContext, spec: JobSpec) -> list[Record]:
    """The included canaries' training records, rebuilt from the seed on the key pipe."""
    if not spec.config.canaries:
        return []
    from sealtune.assess.canaries import canaries_from_seed, canary_records

    planted = canaries_from_seed(_key(ctx, spec, "canaries"), count=spec.config.canaries,
                                 repeats=spec.config.canary_repeats)
    return canary_records(planted)


def _finish(ctx: ChildContext, spec: JobSpec, result: TrainResult, world_size: int) -> None:
    privacy = result.privacy
    last = result.epochs[-1] if result.epochs else None
    ctx.events.event(
        "training_finished", steps=result.steps, stop=result.stop_reason,
        final_loss=result.final_loss, resumed_from=result.resumed_from,
        world_size=world_size, seconds=round(result.seconds, 3),
        dropped_no_assistant_tokens=result.dropped_no_assistant_tokens,
        train_examples=result.data["examples"],
        val_examples=0 if result.validation is None else result.validation["examples"],
        eval_loss=None if last is None else last.eval_loss,
        dp=privacy is not None,
        epsilon=None if privacy is None else privacy.epsilon_spent,
        delta=None if privacy is None else privacy.delta,
        noise_multiplier=None if privacy is None else privacy.noise_multiplier,
        sample_rate=None if privacy is None else privacy.sample_rate,
        dp_steps=None if privacy is None else privacy.steps)
    from sealtune.train.loading import weights_digest

    weights = weights_digest(result.out_dir)  # of the plaintext weights, before sealing
    files, size = seal_tree(result.out_dir, ctx.outdir / "model",
                            spec.output.with_key(_key(ctx, spec, "output")))
    ctx.events.event("outputs_sealed", files=files, bytes=size, weights_sha256=weights)
