"""The gate's sandbox entry: load the model, open the data, measure, report numbers only.

Runs as ``sealtune.assess.worker`` under the sandbox's launcher
(:mod:`sealtune.sandbox.launcher`: no network, a private tmpfs, the
keyring and workspace out of reach, stdout and stderr nowhere, errors by
class name). The spec (``--spec-json``, no secret) names the inputs and the
probes to run with their settings; the secrets come over the key pipe only:
the data key of each sealed model file (``model.N``), the dataset's
(``dataset``) and the canary seed (``canaries``). Inside:

1. sealed model files are authenticated and decrypted onto the tmpfs, and
   the digest of what will be loaded is checked against the one the gate
   scanned (``model_loaded``), so the model measured is the model scanned;
2. the model (an adapter over its base, or whole) and the base (the
   reference) are loaded with safetensors only, no remote code;
3. the dataset is decrypted in memory and split as training split it, the
   canaries rebuilt from their seed;
4. each probe measures and its rows and scalars go out as events
   (``row``, ``measured``; ``measure_skipped`` with a token reason).

What this protects against: training data, canary secrets or generated
text leaving the sandbox (events carry numbers and tokens; the probes
report ids by position), a model file swapped between scan and load. What
it does not: code that wants to leak can encode data in numbers (the
sandbox limits where data goes, not what the measuring code computes);
memory copies Python cannot erase.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sealtune.errors import ConfigError, IntegrityError

if TYPE_CHECKING:
    from sealtune.assess.probes import Measured, ProbeContext
    from sealtune.sandbox.launcher import ChildContext

FORMAT = "sealtune-assess-job/1"
_INPUT = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_HEX = re.compile(r"^[0-9a-f]{64}$")
RESERVED_FIELDS = frozenset({"type", "name", "probe", "rows_sent"})


@dataclass(frozen=True)
class AssessSpec:
    """One gate run, as the parent hands it to the sandbox (no secrets)."""

    model_sealed: tuple[str, ...]
    model_digest: str
    adapter: bool
    base: bool
    dataset: bool
    val_size: int | float
    seed: int
    max_length: int
    canaries: Mapping[str, Any] | None
    dp: Mapping[str, float] | None
    probes: Mapping[str, Mapping[str, Any]]
    threads: int

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "model_sealed": list(self.model_sealed),
                "model_digest": self.model_digest, "adapter": self.adapter,
                "base": self.base, "dataset": self.dataset, "val_size": self.val_size,
                "seed": self.seed, "max_length": self.max_length, "canaries": self.canaries,
                "dp": self.dp, "probes": {k: dict(v) for k, v in self.probes.items()},
                "threads": self.threads}

    @classmethod
    def from_dict(cls, doc: Any) -> AssessSpec:
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or \
                set(doc) != set(cls.__dataclass_fields__) | {"format"}:
            raise ConfigError(f"assess spec must be an object of format {FORMAT}")
        if not isinstance(doc["model_digest"], str) or not _HEX.match(doc["model_digest"]):
            raise ConfigError("assess spec: model_digest must be hex SHA-256")
        if not all(isinstance(n, str) and "/" not in n and n
                   for n in doc["model_sealed"]):
            raise ConfigError("assess spec: model_sealed lists plain file names")
        return cls(**{k: v for k, v in doc.items() if k != "format"}
                   | {"model_sealed": tuple(doc["model_sealed"])})


def _materialize(ctx: ChildContext, spec: AssessSpec) -> Path:
    """The model's plaintext directory: sealed files decrypted onto the tmpfs."""
    from sealtune.keys.sealing import unseal_into

    source = ctx.indir / "model"
    if not spec.model_sealed:
        return source
    out = ctx.workdir / "model"
    out.mkdir(mode=0o700)
    for path in sorted(p for p in source.iterdir() if p.is_file()):
        if path.name.endswith(".sealed"):
            index = spec.model_sealed.index(path.name[: -len(".sealed")])
            with (out / path.name[: -len(".sealed")]).open("wb") as fh:
                unseal_into(path, fh, data_key=ctx.keys[f"model.{index}"])
        else:
            (out / path.name).write_bytes(path.read_bytes())
    return out


def _load(ctx: ChildContext, spec: AssessSpec, model_dir: Path) -> dict[str, Any]:
    from sealtune.train.loading import load_base

    base_dir = ctx.indir / "base"
    loaded: dict[str, Any] = {}
    if spec.base:
        loaded["base_model"], loaded["base_tokenizer"], _ = load_base(base_dir)
    if spec.adapter:
        from peft import PeftModel

        under, tokenizer, _ = load_base(base_dir)
        loaded["model"] = PeftModel.from_pretrained(under, model_dir, is_trainable=False)
        loaded["tokenizer"] = _tokenizer(model_dir) or tokenizer
    else:
        loaded["model"], loaded["tokenizer"], _ = load_base(model_dir)
    loaded["model"].eval()
    return loaded


def _tokenizer(model_dir: Path) -> Any:
    if not (model_dir / "tokenizer_config.json").is_file():
        return None
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False,
                                              local_files_only=True)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _context(ctx: ChildContext, spec: AssessSpec, loaded: dict[str, Any]) -> ProbeContext:
    from sealtune.assess.canaries import canaries_from_seed
    from sealtune.assess.probes import DpClaim, ProbeContext

    probe_ctx = ProbeContext(**loaded, seed=spec.seed, max_length=spec.max_length)
    if spec.dataset:
        from sealtune.train.split import split_records
        from sealtune.train.worker import decrypt_dataset

        records = decrypt_dataset(ctx.indir / "dataset", bytes(ctx.keys["dataset"]))
        probe_ctx.records, probe_ctx.heldout = split_records(records, val_size=spec.val_size,
                                                             seed=spec.seed)
        ctx.events.event("data_decrypted", records=len(records),
                         heldout=len(probe_ctx.heldout))
    if spec.canaries is not None:
        probe_ctx.canaries = canaries_from_seed(
            ctx.keys["canaries"], count=int(spec.canaries["count"]),
            repeats=int(spec.canaries["repeats"]), format_name=str(spec.canaries["format"]))
    if spec.dp is not None:
        probe_ctx.dp = DpClaim(float(spec.dp["epsilon"]), float(spec.dp["delta"]))
    return probe_ctx


def send(ctx: ChildContext, measured: Measured) -> None:
    """Send one probe's measurements as events: rows first, then the scalars (or a skip)."""
    if measured.skipped is not None:
        ctx.events.event("measure_skipped", probe=measured.probe, reason=measured.skipped)
        return
    for row in measured.rows:
        if RESERVED_FIELDS & set(row):
            raise ConfigError("a probe row uses a reserved field name")
        ctx.events.event("row", probe=measured.probe, **row)
    ctx.events.event("measured", probe=measured.probe, rows_sent=len(measured.rows),
                     **measured.scalars)


def main(ctx: ChildContext, argv: list[str]) -> None:
    """Entry point inside the sandbox (see the module docstring)."""
    from sealtune.train.worker import OFFLINE_ENV

    for name, value in OFFLINE_ENV.items():
        os.environ.setdefault(name, value)
    if argv[:1] != ["--spec-json"] or len(argv) != 2:
        raise ConfigError("assess worker arguments: --spec-json JSON")
    try:
        spec = AssessSpec.from_dict(json.loads(argv[1]))
    except (ValueError, TypeError):
        raise ConfigError("assess spec is not valid") from None
    import torch

    torch.set_num_threads(max(1, spec.threads))
    model_dir = _materialize(ctx, spec)
    from sealtune.assess.files import PlainTree, tree_digest

    if tree_digest(PlainTree(model_dir)) != spec.model_digest:
        raise IntegrityError("the model changed between the file scan and its loading")
    loaded = _load(ctx, spec, model_dir)
    ctx.events.event("model_loaded", adapter=spec.adapter, base=spec.base)
    run_probes(ctx, spec, _context(ctx, spec, loaded))


def run_probes(ctx: ChildContext, spec: AssessSpec, probe_ctx: ProbeContext) -> None:
    """Measure every probe the spec names, in order, sending each one's events."""
    from sealtune.assess.probes import PROBES, Measured

    have = probe_ctx.available()
    for name, settings in spec.probes.items():
        probe = PROBES[name]
        ctx.events.event("probe_started", probe=name)
        missing = sorted(probe.needs - have)
        if missing:
            send(ctx, Measured(name, skipped="needs_" + "_".join(missing)))
            continue
        send(ctx, probe.measure(probe_ctx, settings))
