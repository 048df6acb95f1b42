"""``sealtune pipeline init DIR`` and ``sealtune run FILE``: the whole lifecycle from one file.

The commands call :func:`sealtune.pipeline.init_example`,
:func:`~sealtune.pipeline.load_pipeline`,
:func:`~sealtune.pipeline.run_pipeline` and, with ``--bundle``,
:func:`~sealtune.pipeline.write_run_bundle`. Output is step names, counts,
figures and digests only, never record text. Progress (records per phase,
training steps with loss and ε) is drawn on stderr; with ``--json`` stdout
gets one JSON object per step event instead (see docs/pipeline.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sealtune.cli._common import console, err_console, open_workspace
from sealtune.evidence import WrittenBundle
from sealtune.pipeline import (
    Pipeline,
    RunResult,
    check_bundle_path,
    init_example,
    load_pipeline,
    run_pipeline,
    write_run_bundle,
)
from sealtune.workspace import Workspace

app = typer.Typer(help="Pipelines: the whole lifecycle as one declarative file.",
                  no_args_is_help=True, pretty_exceptions_enable=False)


@app.callback()
def _group() -> None:
    """Pipelines (a group, so that ``init`` stays a sub-command)."""


@app.command("init")
def init_command(
    directory: Annotated[Path, typer.Argument(help="New (or empty) directory to write.")],
    key: Annotated[list[str] | None, typer.Option(
        "--key", help="KEK name the dataset is sealed under; repeat for several "
                      "(default: platform, the key 'sealtune init' creates).")] = None,
) -> None:
    """Write an example pipeline (sample data, policy, tiny model) that runs as is."""
    path = init_example(directory, keys=tuple(key) if key else ("platform",))
    console.print(f"wrote {path} with the sample data, the default data policy and a tiny "
                  f"base model; run it with: sealtune run {path}")


def run(
    file: Annotated[Path, typer.Argument(help="The pipeline file (pipeline.yaml).")],
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON object per step event on stdout; no progress.")] = False,
    force_step: Annotated[list[str] | None, typer.Option(
        "--force-step", help="Rerun this step even if cached (and every step after it); "
                             "repeat for several.")] = None,
    bundle: Annotated[Path | None, typer.Option(
        "--bundle", help="Write the run's signed evidence bundle here: a new directory, or a "
                         "deterministic tar if it ends in .tar (an existing path is refused "
                         "before the run).")] = None,
    home: Annotated[Path | None, typer.Option(
        "--home", help="Workspace (default: the file's 'workspace', else $SEALTUNE_HOME "
                       "or ./.sealtune).")] = None,
) -> None:
    """Run a pipeline file: every step whose inputs, settings or code changed, in order."""
    pipeline = load_pipeline(file)
    if bundle is not None:
        check_bundle_path(bundle)
    ws = open_workspace(home or pipeline.workspace)
    try:
        result = run_with_output(pipeline, ws, force=force_step or (), as_json=as_json)
        if bundle is not None:
            print_bundle(write_run_bundle(ws, result, bundle), as_json=as_json)
    finally:
        ws.close()


def print_bundle(written: WrittenBundle, *, as_json: bool = False) -> None:
    """Say where the bundle is, what it holds, and how to check it (or one JSON event)."""
    if as_json:
        print(json.dumps({
            "event": "bundle_written", "path": str(written.path), "kind": written.kind,
            "files": written.files, "manifest_sha256": written.manifest_sha256,
            "tar_sha256": written.tar_sha256, "evidence_key": written.keyid,
            "ledger_events": written.events, "ledger_size": written.ledger_size,
            "cosigned": written.cosigned, "witnesses_required": written.witnesses_required},
            ensure_ascii=False), flush=True)
        return
    witnessed = (f", cosigned by {written.cosigned} witnesses ({written.witnesses_required} "
                 "required)" if written.witnesses_required else ", no witness policy")
    console.print(f"evidence bundle: {escape(str(written.path))} ({written.kind}, "
                  f"{written.files} files; {written.events} audit-log events proven against "
                  f"the signed checkpoint at {written.ledger_size} entries{witnessed}); "
                  f"manifest sha256 {written.manifest_sha256}", soft_wrap=True)
    console.print("check it anywhere, offline: [bold]sealtune bundle keys --out pins.json[/] "
                  "(on this workspace, once) then [bold]sealtune bundle verify "
                  f"{escape(str(written.path))} --key pins.json[/]", soft_wrap=True)


def run_with_output(pipeline: Pipeline, ws: Workspace, *, force: Any = (),
                    as_json: bool = False) -> RunResult:
    """Run ``pipeline``, printing each step (or its JSON events); return the result."""
    if as_json:
        return run_pipeline(pipeline, ws, force=force,
                            on_event=lambda e: print(json.dumps(e, ensure_ascii=False),
                                                     flush=True))
    view = _View()
    try:
        return run_pipeline(pipeline, ws, force=force, on_event=view.event,
                            on_progress=view.progress)
    finally:
        view.stop()


class _View:
    """Step lines on stdout and a progress bar per running step on stderr."""

    def __init__(self) -> None:
        self.bar: Progress | None = None
        self.tasks: dict[str, Any] = {}

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
            self.tasks = {}

    def event(self, ev: dict[str, Any]) -> None:
        kind, step = ev["event"], ev.get("step", "")
        if kind == "run_started":
            console.print(f"pipeline [bold]{ev['pipeline']}[/] ({ev['file']}), run {ev['run']}, "
                          f"workspace {ev['workspace']}: steps {', '.join(ev['steps'])}")
        elif kind == "step_started":
            console.rule(f"[bold cyan]{step}")
            forced = " (forced)" if ev.get("forced") else ""
            console.print(f"{step}: running{forced}, key {_short(ev['key'])}")
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                                TimeElapsedColumn(), console=err_console, transient=True)
            self.bar.start()
        elif kind == "step_cached":
            console.print(f"{step}: [green]cached[/] (key {_short(ev['key'])}, outputs "
                          f"verified): {describe_step(step, ev['summary'], ev['digests'])}")
        elif kind in ("step_finished", "step_failed"):
            self.stop()
            if kind == "step_finished":
                console.print(f"{step}: done in {ev['seconds']:.1f} s: "
                              f"{describe_step(step, ev['summary'], ev['digests'])}")
            else:
                console.print(f"{step}: [red]failed[/] ({ev['error']})")
        elif kind == "run_finished":
            console.print(f"run {ev['run']} finished in {ev['seconds']:.1f} s")

    def progress(self, step: str, fields: dict[str, Any]) -> None:
        if self.bar is None:
            return
        label = str(fields.get("phase") or f"{step}: training")
        if label not in self.tasks:
            self.tasks[label] = self.bar.add_task(label, total=None, info="")
        done = fields.get("done", fields.get("step"))
        info = "  ".join(p for p in (
            f"loss {fields['loss']:.4f}" if isinstance(fields.get("loss"), float) else "",
            f"ε {fields['epsilon']:.3f}" if isinstance(fields.get("epsilon"), float) else "")
            if p)
        self.bar.update(self.tasks[label], completed=done if isinstance(done, int) else 0,
                        total=fields.get("total"), info=info)


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def describe_step(step: str, summary: dict[str, Any], digests: dict[str, str]) -> str:
    """One line about a step's result: counts, figures and digests (no data)."""
    if step == "data":
        return (f"{summary.get('records_read')} records read, {summary.get('duplicates_dropped')}"
                f" duplicates dropped, {summary.get('quarantined')} quarantined, "
                f"{summary.get('records_out')} kept as dataset {summary.get('dataset')} under "
                f"{', '.join(summary.get('keys') or [])}; records {_short(digests['records'])}")
    if step == "train":
        eps = summary.get("epsilon_spent")
        privacy = f", ε {eps:.3f} at δ {summary.get('delta')}" if isinstance(eps, float) else ""
        loss = summary.get("final_loss")
        loss_text = f", final loss {loss:.3f}" if isinstance(loss, float) else ""
        sandbox = "in the sandbox" if summary.get("sandboxed") else "WITHOUT the sandbox"
        return (f"model {summary.get('model')} ({summary.get('steps')} steps {sandbox}"
                f"{loss_text}{privacy}); weights {_short(digests['weights'])}")
    return ", ".join(f"{k} {_short(v)}" for k, v in digests.items())
