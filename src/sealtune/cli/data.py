"""``sealtune data``: scan, ingest, list, show, review, export, export-bom, ``policy init``.

Every command calls the data stage's public API (:mod:`sealtune.data`:
ingest, store, export, policy) and prints. Output is counts,
ids, digests and masked examples only: no record text, no raw value, so the
terminal and its scrollback are not one more place where the data leaks.
The exception is ``export``, whose job is to write the redacted records in
plaintext for review: it is audited and refuses a terminal unless
``--force``. Progress goes to stderr (records per second), results to stdout.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from sealtune.cli._common import console, err_console, open_workspace
from sealtune.cli._tables import Col, print_table, when
from sealtune.cli.data_review import review_cmd
from sealtune.data import (
    UNSAFE_NO_DATASET_WIDE,
    Policy,
    default_policy,
    export_bom,
    list_datasets,
    load_policy,
    show_dataset,
    write_default_policy,
)
from sealtune.errors import UsageError
from sealtune.outputs import STDIO, is_stdio, open_text_output

if TYPE_CHECKING:  # the stage itself (numpy, datasketch, cyclonedx) loads only when used
    from sealtune.data import IngestResult

app = typer.Typer(help="The data stage: redact PII, screen for poisoning, seal datasets.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
policy_app = typer.Typer(help="Data policy files.", no_args_is_help=True,
                         pretty_exceptions_enable=False)
app.add_typer(policy_app, name="policy")
app.command("review")(review_cmd)

HomeOpt = Annotated[Path | None, typer.Option("--home", help="Workspace directory.")]
PolicyOpt = Annotated[Path | None, typer.Option(
    "--policy", help="Data policy (YAML). Default: the built-in safe default policy.")]
FormatOpt = Annotated[str | None, typer.Option(
    "--format", help="alpaca, sharegpt, openai, jsonl or csv (default: detected).")]
TextFieldOpt = Annotated[str | None, typer.Option(
    "--text-field", help="Plain JSONL / CSV: the field that holds the text.")]
OnErrorOpt = Annotated[str | None, typer.Option(
    "--on-error", help="A malformed line: fail or skip (default: the policy's, fail).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
InArg = Annotated[Path, typer.Argument(metavar="IN", help="The raw input file.")]


class _Rate(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} records/s" if speed else "", style="progress.data.speed")


@contextmanager
def _progress() -> Iterator[Callable[[str, int, int | None], None]]:
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   _Rate(), TimeElapsedColumn(), console=err_console)
    tasks: dict[str, Any] = {}

    def update(phase: str, done: int, total: int | None) -> None:
        if phase not in tasks:
            tasks[phase] = bar.add_task(phase, total=total)
        bar.update(tasks[phase], completed=done, total=total)

    with bar:
        yield update


def _policy(path: Path | None) -> Policy:
    if path is None:
        err_console.print("no --policy given: the default policy applies (consistent "
                          "pseudonyms, addresses and secrets tagged, duplicates dropped, "
                          "trigger patterns quarantined); 'sealtune data policy init' writes it "
                          "to a file to start from")
        return default_policy()
    policy = load_policy(path)
    if policy.unsafe_no_dataset_wide_redaction:
        err_console.print(f"[bold red]WARNING[/]: {escape(str(path))} sets "
                          f"{UNSAFE_NO_DATASET_WIDE}: a value detected in one record is NOT "
                          "redacted where it appears undetected in others (recorded in the "
                          "findings and the audit log)")
    return policy


@contextmanager
def _warned() -> Iterator[None]:
    """The stage's own warning for an unsafe policy is shown by :func:`_policy`, in red."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=f".*{UNSAFE_NO_DATASET_WIDE}",
                                category=UserWarning)
        # --no-sandbox is shown in red before the run (ingest_cmd)
        warnings.filterwarnings("ignore", message="ingesting WITHOUT the sandbox",
                                category=UserWarning)
        yield


def _on_error(value: str | None) -> str | None:
    if value not in (None, "fail", "skip"):
        raise UsageError(f"--on-error {value!r}", hint="use fail or skip")
    return value


def _counts_table(title: str, rows: dict[str, Any]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("")
    table.add_column("count", justify="right")
    for key, value in rows.items():
        table.add_row(str(key).replace("_", " "), str(value))
    return table


def _pii_table(pii: dict[str, Any]) -> Table:
    table = Table("entity type", "found", "action", "masked examples", title="PII and secrets",
                  title_justify="left")
    for etype, actions in pii["by_type"].items():
        table.add_row(etype, str(pii["entities"][etype]),
                      ", ".join(f"{a} {n}" for a, n in actions.items()),
                      "  ".join(pii["examples_masked"].get(etype, [])))
    return table


def _screen_table(screening: dict[str, Any]) -> Table:
    table = Table("check", "action", "records", title="Poisoning screening", title_justify="left")
    for check, actions in screening["counts"].items():
        for action, n in actions.items():
            table.add_row(check, action, str(n))
    if not screening["counts"]:
        table.add_row("(no findings)", "", "")
    return table


@app.command("scan")
def scan_cmd(input_path: InArg, policy: PolicyOpt = None, fmt: FormatOpt = None,
             text_field: TextFieldOpt = None, on_error: OnErrorOpt = None,
             as_json: JsonOpt = False, home: HomeOpt = None) -> None:
    """Findings and statistics for IN (plain or sealed); changes nothing (audited)."""
    from sealtune.data import scan

    chosen = _policy(policy)
    ws = open_workspace(home)
    try:
        with _progress() as progress, _warned():
            report = scan(input_path, policy=chosen, format=fmt, text_field=text_field,
                          on_error=_on_error(on_error), audit=ws.audit, progress=progress,
                          keys=ws.keys)
    finally:
        ws.close()
    data = report.to_json()
    if as_json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return
    inp = data["input"]
    console.print(_counts_table(f"{input_path} ({inp['format']})", {
        "records": inp["records"], "skipped lines": inp["skipped_lines"],
        "records with PII": data["pii"]["records_with_pii"],
        "records the policy drops": data["pii"]["records_dropped"],
        **{f"redacted {scope}-wide (found again)": sum(data["pii"]["spread"].get(
            scope, {}).values()) for scope in ("record", "dataset")}}))
    console.print(_pii_table(data["pii"]))
    console.print(_screen_table(data["screening"]))


@app.command("ingest")
def ingest_cmd(
    input_path: InArg,
    name: Annotated[str, typer.Option("--name", help="Dataset name (new).")],
    policy: PolicyOpt = None, fmt: FormatOpt = None, text_field: TextFieldOpt = None,
    on_error: OnErrorOpt = None,
    shred_original: Annotated[bool, typer.Option(
        "--shred-original", help="Overwrite and remove IN afterwards (best effort: see the "
        "docs for copy-on-write file systems and SSDs).")] = False,
    key: Annotated[list[str] | None, typer.Option(
        "--key", help="KEK to seal under; repeat for several (default: the workspace's).")] = None,
    no_sandbox: Annotated[bool, typer.Option(
        "--no-sandbox", help="UNSAFE: ingest in this process, without the data sandbox "
        "(recorded).")] = False,
    executor: Annotated[str, typer.Option(
        "--executor", help="local, or ray: PII detection on Ray Data. In the sandbox a "
        "private local Ray runs inside it (loopback-only network); with --no-sandbox, the "
        "cluster in $RAY_ADDRESS, else a private local Ray refused if reachable beyond "
        "loopback. Ray workers see record text in clear.")] = "local",
    workers: Annotated[int, typer.Option(
        "--workers", help="PII detection and redaction on N local processes each (inside the "
        "sandbox); the same outputs as one.")] = 1,
    home: HomeOpt = None,
) -> None:
    """Redact, minimise, screen and seal IN as dataset NAME, with findings and an ML-BOM.

    The work runs in the data sandbox (bubblewrap: no network, private tmpfs, keys over
    a pipe); without bubblewrap it fails unless --no-sandbox is given.
    """
    from sealtune.data import ingest_dataset as ingest
    from sealtune.data.sandboxed import UNSAFE_WARNING

    chosen = _policy(policy)
    if no_sandbox:
        err_console.print(f"[bold red]WARNING[/]: {UNSAFE_WARNING}")
    ws = open_workspace(home)
    try:
        with _progress() as progress, _warned():
            result = ingest(ws, input_path, name=name, policy=chosen, format=fmt,
                            text_field=text_field, on_error=_on_error(on_error),
                            shred_original=shred_original, key_names=key, progress=progress,
                            sandbox=not no_sandbox, executor=executor, workers=workers)
    finally:
        ws.close()
    _print_result(result)


def _print_result(result: IngestResult) -> None:
    counts = result.counts
    console.print(_counts_table(f"dataset {result.name}", {
        k: counts.get(k, 0) for k in ("records_read", "skipped_lines", "records_out",
                                      "quarantined", "dropped_screening", "dropped_redaction",
                                      "flagged", "entities", "redacted_record_wide",
                                      "redacted_dataset_wide")}))
    console.print(_pii_table(result.findings["pii"]))
    console.print(_screen_table(result.findings["screening"]))
    console.print(f"sealed dataset: {result.path}")
    console.print(f"ML-BOM (CycloneDX 1.6): {result.bom_path}")
    if result.shredded:
        err_console.print("[yellow]the raw input was overwritten and removed; this is best "
                          "effort (copy-on-write file systems, SSDs, snapshots and backups can "
                          "keep old copies): keep raw data sealed from the start[/]")


@app.command("list")
def list_cmd(as_json: JsonOpt = False, home: HomeOpt = None) -> None:
    """List datasets."""
    ws = open_workspace(home)
    try:
        infos = list_datasets(ws)
    finally:
        ws.close()
    if as_json:
        print(json.dumps([{"name": i.name, "created": i.created, "counts": i.counts}
                          for i in infos], indent=2))
        return
    columns = [Col("name", whole=True), Col("created (UTC)", drop=1),
               Col("records", whole=True, justify="right"),
               Col("quarantined", whole=True, justify="right"),
               Col("entities redacted", justify="right")]
    rows = [(i.name, when(i.created), str(i.counts.get("records_out", 0)),
             str(i.counts.get("quarantined", 0)), str(i.counts.get("entities", 0)))
            for i in infos]
    print_table(console, columns, rows)


@app.command("show")
def show_cmd(name: Annotated[str, typer.Argument(help="Dataset name.")],
             as_json: JsonOpt = False, home: HomeOpt = None) -> None:
    """Show a dataset's manifest and check its sealed files against it (exit 3 if not)."""
    ws = open_workspace(home)
    try:
        info = show_dataset(ws, name)
    finally:
        ws.close()
    if as_json:
        print(json.dumps({"manifest": info.manifest, "intact": info.intact}, indent=2,
                         ensure_ascii=False))
    else:
        m = info.manifest
        console.print(f"[bold]{info.name}[/] created {info.created} by sealtune "
                      f"{m.get('sealtune_version')}")
        console.print(f"input: {m['input']['name']} ({m['input']['format']}), sha256 "
                      f"{m['input']['sha256']}")
        console.print(f"policy: {m['policy']['source']}; redaction digest "
                      f"{m['policy']['redaction_digest'][:16]}…, screening digest "
                      f"{m['policy']['screening_digest'][:16]}…")
        keks, now = info.keks()
        console.print(f"keys: {', '.join(keks)}{'' if now else ' (at ingest)'}")
        table = Table("file", "records", "content sha256", "intact")
        for role in ("data", "quarantine", "keys"):
            f = m["files"][role]
            digest = f.get("content_sha256") or f.get("sha256", "")
            table.add_row(f["name"], str(f["records"]) if role != "keys" else "-",
                          digest[:16] + "…", "yes" if info.intact.get(f["name"]) else "NO")
        console.print(table)
        console.print(_counts_table("counts", info.counts))
    info.raise_if_broken()


@app.command("export")
def export_cmd(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    out: Annotated[str, typer.Argument(
        metavar="OUT", help="Output file (JSON lines), or - for stdout.")],
    quarantine: Annotated[bool, typer.Option(
        "--quarantine", help="Export the quarantined records instead of the data.")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Write plaintext to a terminal anyway.")] = False,
    home: HomeOpt = None,
) -> None:
    """Write the dataset's (redacted) records in PLAINTEXT for review; audited."""
    from sealtune.data import export_dataset

    ws = open_workspace(home)
    try:
        result = export_dataset(ws, name, out, part="quarantine" if quarantine else "data",
                                force=force)
    finally:
        ws.close()
    where = "stdout" if result.destination == "-" else escape(result.destination)
    err_console.print(f"exported {result.records} {result.part} record(s) of {name} to {where} "
                      "[yellow]in plaintext[/]: keep it on an encrypted volume and delete it "
                      "after the review (recorded in the audit log as data.export)")


@app.command("export-bom")
def export_bom_cmd(name: Annotated[str, typer.Argument(help="Dataset name.")],
                   out: Annotated[Path | None, typer.Option(
                       "--out", help="Write to this file, FIFO or device "
                                     "(default, or '-': stdout).")] = None,
                   home: HomeOpt = None) -> None:
    """Print (or write) the dataset's CycloneDX 1.6 ML-BOM."""
    ws = open_workspace(home)
    try:
        text = export_bom(ws, name)
    finally:
        ws.close()
    target = out if out is not None else Path(STDIO)
    with open_text_output(target) as fh:  # provenance and digests, no record text
        fh.write(text + "\n" if is_stdio(target) else text)
    if not is_stdio(target):
        err_console.print(f"wrote {out}")


@policy_app.command("init")
def policy_init(path: Annotated[Path, typer.Argument(
                    help="Where to write it ('-': standard output).")] = Path(
                    "policy.yaml"),
                force: Annotated[bool, typer.Option("--force", help="Overwrite.")] = False
                ) -> None:
    """Write the default data policy as a commented YAML file to start from."""
    write_default_policy(path, overwrite=force)
    if not is_stdio(path):
        console.print(f"wrote the default data policy to {path}")
