"""``sealtune pipeline init DIR``: an example pipeline that runs as is.

:func:`init_example` writes, into a new or empty directory, a commented
``pipeline.yaml`` (every field explained), the bundled sample conversations
(``data/conversations.jsonl``: synthetic Chinese and English support chats
with planted PII, duplicates and a backdoor trigger), the default data
policy (``policy.yaml``, commented) and a tiny local base model
(``tiny-base/``, :func:`sealtune.train.tiny.make_tiny`; nothing is
downloaded). ``sealtune run DIR/pipeline.yaml`` then runs it in any
initialised workspace.

What this protects against: overwriting a user's files (a directory that
holds anything is refused). What it does not: the sample data is synthetic
and public; do not put real data next to an example without keeping the
directory private.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from sealtune.errors import UsageError
from sealtune.outputs import write_atomic

__all__ = ["EXAMPLE_FILE", "init_example", "render_example"]

EXAMPLE_FILE = "pipeline.yaml"

_TEMPLATE = """\
# A sealtune pipeline: run it with  sealtune run {file}
# Every field is documented in docs/pipeline.md. Relative paths start at this
# file's directory. Keys are named, never given: no passphrase, PIN or token
# belongs here (the keyring passphrase comes from SEALTUNE_PASSPHRASE or a
# prompt). Unknown keys are errors, so a typo cannot switch a control off.

version: 1                  # the file format; always 1 for now
name: support-bot           # names this pipeline's run state in the workspace

# workspace: ./.sealtune    # the workspace to run in; default: $SEALTUNE_HOME, else ./.sealtune

steps:
  # The data step: parse, detect and redact PII, screen for poisoning, seal.
  data:
    input: data/conversations.jsonl   # the raw export (plaintext; keep it on an encrypted volume)
    # input_sha256: ...               # optional: refuse any other input (exit 3)
    format: auto                      # auto, openai, sharegpt, alpaca, jsonl or csv
    # text_field: text                # plain jsonl / csv: the field holding the text
    # on_error: fail                  # a malformed line: fail or skip (default: the policy's)
    policy: policy.yaml               # the data policy; or inline here; omitted: the default
    dataset: {dataset}          # the dataset is stored as {dataset}-<12 hex of the step key>
    keys: [{keys}]               # KEKs (names) to seal under; default: the workspace's default key

  # The train step: fine-tune in the bubblewrap sandbox on the data step's dataset.
  train:
    base: tiny-base             # the base model directory (safetensors only)
    out: {out}         # the model is stored as {out}-<12 hex of the step key>
    # keys: [customer]          # KEKs to seal the model under; default: the dataset's KEKs
    threads: 1                  # torch threads in the sandbox (fixed: results repeat bit for bit)
    tmpfs_mb: 512               # the sandbox's private tmpfs, MiB
    # timeout_s: 3600           # stop the job after this many seconds
    # nproc: 1                  # training processes (data parallel; not with dp)
    # Below: the training settings (sealtune.train.config.TrainConfig; docs/training.md).
    method: full                # full or lora (lora: see the lora: settings)
    epochs: 1
    max_steps: 5                # a tiny model: a few steps show the whole path
    batch_size: 8
    lr: 0.01
    max_length: 128             # tokens per example
    seed: 0                     # seeds initialisation, data order, sampling and noise
    checkpoint_every: 2         # seal a checkpoint every 2 steps: a killed run resumes
    dp:                         # differential privacy (DP-SGD); remove to train without
      epsilon: 8                # the privacy budget, example-level
      # delta: 1e-5             # default min(1e-5, N^-1.1)
      epsilon_every: 3          # report ε every 3 steps

  # The release gate (docs/assess.md): leakage, safety and model-file probes on the
  # trained model, in the sandbox. A failing gate stops the run with exit status 4.
  # Optional, and off here to keep the example quick (it adds about a minute on the
  # tiny model): uncomment to run it.
  # assess:
  #   policy: gate.yaml         # 'sealtune assess policy init gate.yaml'; omitted: the default
  #   report_dir: gate-report   # report.json, report.html, report.dsse.json
  #   threads: 1                # torch threads in the gate's sandbox
"""


def render_example(*, keys: Sequence[str] = ("platform",), dataset: str = "support",
                   out: str = "support-model") -> str:
    """The example ``pipeline.yaml`` text."""
    return _TEMPLATE.format(file=EXAMPLE_FILE, dataset=dataset, out=out, keys=", ".join(keys))


def init_example(directory: Path, *, keys: Sequence[str] = ("platform",),
                 dataset: str = "support", out: str = "support-model") -> Path:
    """Write the example pipeline into ``directory`` (new or empty); return the file.

    Args:
        directory: where to write it (created if missing).
        keys: the KEK names the dataset is sealed under (``platform`` is the key
            ``sealtune init`` creates).
        dataset: the dataset name prefix.
        out: the model name prefix.

    Raises:
        UsageError: ``directory`` is a file or holds anything.
    """
    from sealtune.data.policy import render_default_policy
    from sealtune.train.tiny import make_tiny  # torch and transformers: only here

    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise UsageError(f"{directory} exists and is not an empty directory",
                         hint="name a new directory")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    sample = resources.files("sealtune.demo_data").joinpath("conversations.jsonl")
    (directory / "data").mkdir(mode=0o700)
    write_atomic(directory / "data" / "conversations.jsonl", sample.read_bytes())
    write_atomic(directory / "policy.yaml", render_default_policy().encode("utf-8"))
    make_tiny(directory / "tiny-base", seed=0)
    path = directory / EXAMPLE_FILE
    write_atomic(path, render_example(keys=keys, dataset=dataset, out=out).encode("utf-8"))
    return path
