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
from rich.table import Table

from sealtune.cli._common import console, err_console, open_workspace
from sealtune.errors import UsageError
from sealtune.train.sandbox import SandboxEvent

jobs_app = typer.Typer(help="Training jobs: status, sandbox timeline, metrics.",
                       no_args_is_help=True, pretty_exceptions_enable=False)
HomeOpt = Annotated[Path | None, typer.Option("--home", help="Workspace directory.")]


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
    base: Annotated[Path, typer.Option("--base", help="Base model directory (safetensors).")],
    out_name: Annotated[str, typer.Option("--out-name", help="Name of the trained model.")],
    method: Annotated[str, typer.Option("--method", help="lora or full.")] = "lora",
    dp_epsilon: Annotated[float | None, typer.Option(
        "--dp-epsilon", help="Train with DP-SGD to this ε (example-level).")] = None,
    dp_delta: Annotated[float | None, typer.Option(
        "--dp-delta", help="δ (default min(1e-5, N^-1.1)).")] = None,
    max_grad_norm: Annotated[float, typer.Option(
        "--max-grad-norm", help="Per-example clipping norm under DP.")] = 1.0,
    epochs: Annotated[int, typer.Option("--epochs")] = 1,
    max_steps: Annotated[int | None, typer.Option("--max-steps")] = None,
    lr: Annotated[float, typer.Option("--lr")] = 2e-4,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 8,
    max_length: Annotated[int, typer.Option("--max-length")] = 512,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    checkpoint_every: Annotated[int, typer.Option(
        "--checkpoint-every", help="Seal a checkpoint every N steps (0: at the end).")] = 0,
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
    """Fine-tune a base model on a sealed dataset inside the sandbox; seal the outputs."""
    from sealtune.train.config import TrainConfig
    from sealtune.train.jobs import UNSAFE_WARNING, run_job

    dp: dict[str, Any] | None = None
    if dp_epsilon is not None:
        dp = {"epsilon": dp_epsilon, "delta": dp_delta, "max_grad_norm": max_grad_norm}
    elif dp_delta is not None:
        raise UsageError("--dp-delta needs --dp-epsilon")
    config = TrainConfig.from_dict({
        "method": method, "epochs": epochs, "max_steps": max_steps, "lr": lr,
        "batch_size": batch_size, "max_length": max_length, "seed": seed,
        "checkpoint_every": checkpoint_every, **({"dp": dp} if dp else {})})
    if no_sandbox:
        err_console.print(f"[bold red]WARNING[/]: {UNSAFE_WARNING}")
    ws = open_workspace(home)
    bar = _Bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # shown above, in red
            result = run_job(ws, dataset=dataset, base=base, config=config, out_name=out_name,
                             sandbox=not no_sandbox, nproc=nproc, progress=bar,
                             resume=resume, threads=threads, key_names=key)
    finally:
        bar.progress.stop()
        ws.close()
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
    table = Table("job", "status", "model", "dataset", "sandbox", "steps", "ε spent", "created")
    for j in jobs:
        s = _summary(j)
        table.add_row(s["id"], s["status"], s["out_name"], s["dataset"],
                      "yes" if s["sandboxed"] else "[red]NO[/]", _num(s["steps"]),
                      _num(s["epsilon"]), s["created"])
    console.print(table)


def _summary(job: dict[str, Any]) -> dict[str, Any]:
    privacy = job.get("privacy") or {}
    return {"id": job["id"], "status": job["status"], "out_name": job.get("out_name"),
            "dataset": job.get("dataset"), "sandboxed": job.get("sandboxed"),
            "steps": (job.get("metrics") or {}).get("steps"),
            "epsilon": privacy.get("epsilon_spent"), "created": job.get("created"),
            "resumed_job": job.get("resumed_job")}


@jobs_app.command("show")
def show_command(
    job_id: Annotated[str, typer.Argument(help="Job id (sealtune jobs list).")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    home: HomeOpt = None,
) -> None:
    """Show a job: the sandbox timeline, final metrics and privacy report."""
    from sealtune.train.jobs import show_job

    ws = open_workspace(home)
    try:
        job = show_job(ws, job_id)
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


def print_timeline(timeline: list[dict[str, Any]]) -> None:
    """The sandbox's security timeline as a table (time, event, outcome, figures)."""
    table = Table("time (UTC)", "event", "outcome", "details")
    skip = {"at", "event", "outcome", "measurement", "flags"}
    for entry in timeline:
        details = ", ".join(f"{k}={_num(v)}" for k, v in entry.items()
                            if k not in skip and not isinstance(v, dict | list))
        if "measurement" in entry:
            details = f"measurement {entry['measurement'].get('digest', '')[:23]}…  " + details
        table.add_row(entry["at"][11:23], entry["event"], entry["outcome"], details,
                      style="" if entry["outcome"] == "success" else "yellow")
    console.print(table)
