"""``sealtune train`` and ``sealtune jobs list|show``: sandboxed fine-tuning jobs.

The commands call :func:`sealtune.train.jobs.run_job`, :func:`list_jobs` and
:func:`show_job`. Progress comes from inside the sandbox as numbers only
(step, loss, ε, ETA) and is drawn on stderr; nothing the sandbox sends can
print text to the terminal.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.text import Text

from sealtune.cli._common import console, err_console, open_workspace
from sealtune.cli._tables import Col, print_table, when
from sealtune.errors import ConfigError, UsageError
from sealtune.sandbox import SandboxEvent
from sealtune.train.config import TrainConfig

jobs_app = typer.Typer(help="Training jobs: status, sandbox timeline, metrics.",
                       no_args_is_help=True, pretty_exceptions_enable=False)
HomeOpt = Annotated[Path | None, typer.Option("--home", help="Workspace directory.")]
_D = TrainConfig()  # the defaults shown in the help come from the config itself


class _Bar:
    """A rich progress bar fed by the sandbox's progress events (aggregate numbers only)."""

    def __init__(self) -> None:
        self.progress = Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), console=err_console,
                                 transient=False)
        self.task = self.progress.add_task("train", total=None, info="")
        self.started = False

    def __call__(self, ev: SandboxEvent) -> None:
        if not self.started:  # drawn from the first step on: errors before it print cleanly
            self.progress.start()
            self.started = True
        f = ev.fields
        parts = [f"loss {f['loss']:.4f}" if isinstance(f.get("loss"), float) else "",
                 f"ε {f['epsilon']:.3f}" if isinstance(f.get("epsilon"), float) else "",
                 f"ETA {f['eta_s']:.0f}s" if isinstance(f.get("eta_s"), float) else ""]
        total, step = f.get("total"), f.get("step")
        self.progress.update(self.task, completed=step if isinstance(step, int) else 0,
                             total=total if isinstance(total, int) else None,
                             info="  ".join(p for p in parts if p))


def train(
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset name (sealtune data list).")],
    base: Annotated[str, typer.Option("--base", help="Base model: a registered name (sealtune "
                                                     "models base list) or a directory.")],
    out_name: Annotated[str, typer.Option("--out-name", help="Name of the trained model.")],
    method: Annotated[str | None, typer.Option("--method", help="lora (default) or full.")] = None,
    lora_rank: Annotated[int | None, typer.Option(
        "--lora-rank", "--lora-r", help=f"LoRA rank (default {_D.lora.rank}).")] = None,
    lora_alpha: Annotated[int | None, typer.Option(
        "--lora-alpha", help=f"LoRA alpha: updates scale by alpha/rank (default "
                             f"{_D.lora.alpha}).")] = None,
    lora_dropout: Annotated[float | None, typer.Option(
        "--lora-dropout", help=f"LoRA dropout (default {_D.lora.dropout}).")] = None,
    lora_target: Annotated[list[str] | None, typer.Option(
        "--lora-target", help="Modules to adapt: q_proj,v_proj (or repeat the option), or "
                              "all (default: all attention and MLP projections).")] = None,
    epochs: Annotated[int | None, typer.Option(
        "--epochs", help=f"Passes over the training records (default {_D.epochs}).")] = None,
    max_steps: Annotated[int | None, typer.Option(
        "--max-steps", help="Stop after this many optimizer steps.")] = None,
    lr: Annotated[float | None, typer.Option(
        "--lr", help=f"Peak learning rate (default {_D.lr:g}).")] = None,
    scheduler: Annotated[str | None, typer.Option(
        "--scheduler", help="Learning-rate schedule after the warm-up: linear (default), "
                            "cosine or constant.")] = None,
    warmup_steps: Annotated[int | None, typer.Option(
        "--warmup-steps", help="Warm up linearly over N steps (not with --warmup-ratio).")] = None,
    warmup_ratio: Annotated[float | None, typer.Option(
        "--warmup-ratio", help="Warm up over this fraction of the steps.")] = None,
    weight_decay: Annotated[float | None, typer.Option(
        "--weight-decay", help=f"AdamW weight decay (default {_D.weight_decay:g}).")] = None,
    batch_size: Annotated[int | None, typer.Option(
        "--batch-size", help=f"Examples per optimizer step (default {_D.batch_size}; under DP "
                             "the expected Poisson batch).")] = None,
    physical_batch_size: Annotated[int | None, typer.Option(
        "--physical-batch-size", help="At most this many examples per forward pass.")] = None,
    max_length: Annotated[int | None, typer.Option(
        "--max-length", "--cutoff-len", help=f"Cut sequences to this many tokens (default "
                                             f"{_D.max_length}).")] = None,
    val_size: Annotated[str | None, typer.Option(
        "--val-size", help="Hold out a fraction (0.1) or a count (200) of the records; "
                           "evaluated at every epoch's end.")] = None,
    seed: Annotated[int | None, typer.Option(
        "--seed", help=f"Random seed (default {_D.seed}).")] = None,
    max_grad_norm: Annotated[float | None, typer.Option(
        "--max-grad-norm", help="Gradient clipping norm (per example under DP; default "
                                f"{_D.max_grad_norm:g}).")] = None,
    dp_epsilon: Annotated[float | None, typer.Option(
        "--dp-epsilon", help="Train with DP-SGD to this ε (example-level).")] = None,
    dp_delta: Annotated[float | None, typer.Option(
        "--dp-delta", help="δ (default min(1e-5, N^-1.1)).")] = None,
    checkpoint_every: Annotated[int | None, typer.Option(
        "--checkpoint-every", help="Seal a checkpoint every N steps (0: at the end).")] = None,
    canaries: Annotated[int | None, typer.Option(
        "--canaries", help="Plant N random secrets for the release gate (sealtune assess), "
                           "each included with probability 1/2; sealed with the job.")] = None,
    canary_repeats: Annotated[int | None, typer.Option(
        "--canary-repeats", help=f"Times an included canary is trained on (default "
                                 f"{_D.canary_repeats}).")] = None,
    threads: Annotated[int | None, typer.Option("--threads", help="Torch threads.")] = None,
    nproc: Annotated[int, typer.Option(
        "--nproc", help="Training processes in the sandbox (data parallel, gloo; not "
                        "with DP).")] = 1,
    no_sandbox: Annotated[bool, typer.Option(
        "--no-sandbox", help="UNSAFE: train without OS isolation (recorded).")] = False,
    resume: Annotated[str | None, typer.Option(
        "--resume", help="Resume this killed or failed job.")] = None,
    key: Annotated[list[str] | None, typer.Option(
        "--key", help="KEK to seal the checkpoints and the model under; repeat for several "
                      "(default: the KEKs the dataset is sealed under).")] = None,
    home: HomeOpt = None,
) -> None:
    """Fine-tune a base model on a sealed dataset inside the sandbox; seal the outputs.

    Every training setting is a key of the pipeline YAML's train step too
    (docs/training.md lists them with their defaults).
    """
    from sealtune.train.jobs import UNSAFE_WARNING, run_job

    config = config_from_options({
        "method": method, "lora.rank": lora_rank, "lora.alpha": lora_alpha,
        "lora.dropout": lora_dropout, "lora.target": _targets(lora_target), "epochs": epochs,
        "max_steps": max_steps, "lr": lr, "scheduler": scheduler,
        "warmup_steps": warmup_steps, "warmup_ratio": warmup_ratio,
        "weight_decay": weight_decay, "batch_size": batch_size,
        "physical_batch_size": physical_batch_size, "max_length": max_length,
        "val_size": _val_size(val_size), "seed": seed, "max_grad_norm": max_grad_norm,
        "checkpoint_every": checkpoint_every, "canaries": canaries,
        "canary_repeats": canary_repeats, "dp.epsilon": dp_epsilon, "dp.delta": dp_delta})
    if no_sandbox:
        err_console.print(f"[bold red]WARNING[/]: {UNSAFE_WARNING}")
    ws = open_workspace(home)
    bar = _Bar()
    try:
        base_dir = _resolve_base(ws, base)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # shown above, in red
            result = run_job(ws, dataset=dataset, base=base_dir, config=config, out_name=out_name,
                             sandbox=not no_sandbox, nproc=nproc, progress=bar,
                             resume=resume, threads=threads, key_names=key)
    finally:
        bar.progress.stop()
        ws.close()
    _print_result(result)


def _resolve_base(ws: Any, base: str) -> Path:
    """``--base``: a registered base (verified; exit 3 if it changed) or a directory (warned)."""
    from sealtune.assess import resolve_base

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        path = resolve_base(ws, base).path
    for warning in caught:
        err_console.print(f"[yellow]warning:[/] {warning.message}")
    return path


def config_from_options(values: dict[str, Any]) -> TrainConfig:
    """The :class:`TrainConfig` of ``sealtune train``'s options (``None``: not given).

    Options map 1:1 onto config keys (:data:`~sealtune.train.config.OPTIONS`), except
    ``--max-grad-norm``, which is ``dp.max_grad_norm`` under DP. A bad value is a usage
    error naming the option.

    Raises:
        UsageError: an invalid value or combination.
    """
    given = {k: v for k, v in values.items() if v is not None}
    if "dp.delta" in given and "dp.epsilon" not in given:
        raise UsageError("--dp-delta needs --dp-epsilon")
    if "dp.epsilon" in given and "max_grad_norm" in given:
        given["dp.max_grad_norm"] = given.pop("max_grad_norm")
    try:
        return TrainConfig.from_flat(given)
    except ConfigError as exc:  # from options: a usage error (exit 2), same words
        raise UsageError(exc.message, hint=exc.hint) from None


def _targets(values: list[str] | None) -> list[str] | None:
    """``--lora-target q_proj,v_proj`` and repeated ``--lora-target`` alike."""
    if not values:
        return None
    return [name.strip() for value in values for name in value.split(",")]


def _val_size(text: str | None) -> int | float | None:
    """``--val-size``: a whole number is a count of records, a decimal a fraction."""
    if text is None:
        return None
    try:
        return int(text) if text.strip().isdigit() else float(text)
    except ValueError:
        raise UsageError(f"--val-size: cannot read {text[:20]!r} as a number",
                         hint="give a fraction such as 0.1 or a count such as 200") from None


def _print_result(result: Any) -> None:
    console.print(f"job {result.job_id}: {result.steps} steps, final loss "
                  f"{_num(result.final_loss)}"
                  + (f", resumed from step {result.resumed_from} of job {result.resumed_job}"
                     if result.resumed_from else ""))
    if result.privacy:
        p = result.privacy
        console.print(f"privacy: ε spent {_num(p['epsilon_spent'])} at δ {_num(p['delta'])} "
                      f"({p['unit']}), noise {_num(p['noise_multiplier'])}, "
                      f"sample rate {_num(p['sample_rate'])}")
    console.print(f"model (sealed): {result.model_dir}")


def _num(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@jobs_app.command("list")
def list_command(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    home: HomeOpt = None,
) -> None:
    """List training jobs (killed runners show as killed)."""
    from sealtune.train.jobs import list_jobs

    ws = open_workspace(home)
    try:
        jobs = list_jobs(ws)
    finally:
        ws.close()
    if as_json:
        print(json.dumps([_summary(j) for j in jobs], indent=2))
        return
    columns = [Col("job", whole=True), Col("status", whole=True), Col("model", whole=True),
               Col("dataset", drop=3), Col("sandbox", whole=True),
               Col("steps", whole=True, justify="right", drop=2),
               Col("ε spent", whole=True, justify="right"), Col("created (UTC)", drop=1)]
    rows = []
    for j in jobs:
        s = _summary(j)
        rows.append((s["id"], s["status"], str(s["out_name"]), str(s["dataset"]),
                     "yes" if s["sandboxed"] else Text("NO", style="red"), _num(s["steps"]),
                     _num(s["epsilon"]), when(s["created"])))
    print_table(console, columns, rows)


def _summary(job: dict[str, Any]) -> dict[str, Any]:
    privacy = job.get("privacy") or {}
    return {"id": job["id"], "status": job["status"], "out_name": job.get("out_name"),
            "dataset": job.get("dataset"), "sandboxed": job.get("sandboxed"),
            "steps": (job.get("metrics") or {}).get("steps"),
            "epsilon": privacy.get("epsilon_spent"), "created": job.get("created"),
            "resumed_job": job.get("resumed_job")}


@jobs_app.command("show")
def show_command(
    job_ref: Annotated[str, typer.Argument(
        metavar="JOB", help="A job id (sealtune jobs list), a unique start of one, or 'latest'.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    home: HomeOpt = None,
) -> None:
    """Show a job: the sandbox timeline, final metrics and privacy report."""
    from sealtune.train.jobs.records import resolve_job, show_job

    ws = open_workspace(home)
    try:
        job = show_job(ws, resolve_job(ws, job_ref))
    finally:
        ws.close()
    if as_json:
        print(json.dumps(job, indent=2, ensure_ascii=False))
        return
    console.print(f"job {job['id']}: [bold]{job['status']}[/], model {job['out_name']}, "
                  f"dataset {job['dataset']}, sandboxed: {job['sandboxed']}")
    print_timeline(job["timeline"])
    metrics = job.get("metrics") or {}
    if metrics:
        console.print("metrics: " + ", ".join(f"{k} {_num(v)}" for k, v in metrics.items()))
    if job.get("privacy"):
        console.print("privacy: " + ", ".join(f"{k} {_num(v)}"
                                              for k, v in job["privacy"].items()))
    if job.get("measurement"):
        console.print(f"measurement: {job['measurement']['digest']}")
    print_epochs(job.get("epochs") or [])


@jobs_app.command("cancel")
def cancel_command(
    job_ref: Annotated[str, typer.Argument(
        metavar="JOB", help="A running job's id (sealtune jobs list), a unique start of one, "
                            "or 'latest'.")],
    home: HomeOpt = None,
) -> None:
    """Cancel a running job: its sandbox is destroyed and its outputs removed."""
    from sealtune.train.jobs import request_cancel

    ws = open_workspace(home)
    try:
        job = request_cancel(ws, job_ref)
    finally:
        ws.close()
    console.print(f"job {job['id']}: cancel requested; its runner stops it within a second "
                  f"('sealtune jobs show {job['id']}' then says cancelled)")


def print_epochs(epochs: list[dict[str, Any]]) -> None:
    """Each epoch's training loss and held-out loss and perplexity (numbers only)."""
    if not epochs:
        return
    columns = [Col(name, whole=True, justify="right")
               for name in ("epoch", "step", "train loss", "eval loss", "eval perplexity")]
    rows = [[_num(e.get(k)) if e.get(k) is not None else "-" for k in (
        "epoch", "step", "train_loss", "eval_loss", "eval_perplexity")] for e in epochs]
    print_table(console, columns, rows, title="per epoch")


def print_timeline(timeline: list[dict[str, Any]]) -> None:
    """The sandbox's security timeline as a table (time, event, outcome, figures)."""
    columns = [Col("time (UTC)", whole=True, drop=1), Col("event", whole=True),
               Col("outcome", whole=True), Col("details")]
    skip = {"at", "event", "outcome", "measurement", "flags"}
    rows, styles = [], []
    for entry in timeline:
        details = ", ".join(f"{k}={_num(v)}" for k, v in entry.items()
                            if k not in skip and not isinstance(v, dict | list))
        if "measurement" in entry:
            details = f"measurement {entry['measurement'].get('digest', '')[:23]}…  " + details
        rows.append((entry["at"][11:23], entry["event"], entry["outcome"], details))
        styles.append("" if entry["outcome"] == "success" else "yellow")
    print_table(console, columns, rows, row_styles=styles)
