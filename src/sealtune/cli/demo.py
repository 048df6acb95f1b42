"""``sealtune demo``: the whole lifecycle on bundled sample data, narrated.

The demo is the example pipeline (``sealtune pipeline init`` then
``sealtune run``, :mod:`sealtune.pipeline`) plus narration: a workspace with
keys in the local keyring and in a SoftHSM2 token when one can be created
here; the pipeline's data step (PII redacted, duplicates dropped, a planted
backdoor quarantined, an ML-BOM written) and train step (a tiny model
fine-tuned in the bubblewrap sandbox with differential privacy, ε 8); the
run's evidence bundle, verified offline with pinned keys, and refused once
one byte of it changes; a rerun that is all cached; a byte flipped in the sealed dataset that the
rerun refuses; key rotation with header-only re-wrapping that keeps the
cache; crypto-shredding of an archive copy; serving the trained model
attested and end-to-end encrypted; and the verified audit log. The logic
lives in the stages and the pipeline; this module only narrates.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.panel import Panel

from sealtune.cli._common import console
from sealtune.cli._tables import Col, print_table
from sealtune.cli.demo_serve import serve_and_ask
from sealtune.cli.pipeline import run_with_output
from sealtune.config import Pkcs11Config
from sealtune.data.store import show_dataset
from sealtune.errors import IntegrityError, SealtuneError, UsageError
from sealtune.keys.files import describe_file, open_file, seal_file
from sealtune.keys.rotation import rotate_workspace
from sealtune.outputs import write_atomic
from sealtune.pipeline import (
    Pipeline,
    RunResult,
    StepRecord,
    init_example,
    load_pipeline,
    run_pipeline,
    write_run_bundle,
)
from sealtune.pipeline.state import RunState
from sealtune.workspace import ENV_PASSPHRASE, Workspace

if TYPE_CHECKING:
    from sealtune.train.config import TrainConfig

MARKER = ".sealtune-demo"
SOFTHSM_MODULES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
)


def _demo_token(home: Path) -> Pkcs11Config | None:
    """A SoftHSM2 token in the demo directory, standing in for the customer's HSM.

    Returns None (and the demo uses a local key instead) where SoftHSM2 is not
    installed. The PIN is random and lives only in this process's environment.
    """
    module = next((m for m in SOFTHSM_MODULES if Path(m).exists()), None)
    util = shutil.which("softhsm2-util")
    if module is None or util is None:
        return None
    tokens = home / "hsm-tokens"
    tokens.mkdir(mode=0o700)
    conf = home / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    pin = secrets.token_hex(8)
    os.environ["SEALTUNE_PKCS11_PIN"] = pin
    subprocess.run(
        [
            util,
            "--init-token",
            "--free",
            "--label",
            "customer-hsm",
            "--pin",
            pin,
            "--so-pin",
            secrets.token_hex(8),
        ],
        check=True,
        capture_output=True,
    )
    return Pkcs11Config(module=module, token_label="customer-hsm")  # noqa: S106 - a label


def _fresh_dir(home: Path) -> None:
    if home.exists():
        if not (home / MARKER).exists():
            raise UsageError(
                f"{home} exists and is not a sealtune demo directory",
                hint="pass --home with a new directory",
            )
        shutil.rmtree(home)
    home.mkdir(parents=True, mode=0o700)
    (home / MARKER).write_text("created by 'sealtune demo'; safe to delete\n")


def _step(n: int, title: str) -> None:
    console.rule(f"[bold cyan]{n}. {title}")


def demo(
    home: Annotated[Path, typer.Option("--home", help="Demo directory (recreated).")] = Path(
        "sealtune-demo"
    ),
) -> None:
    """Run the whole lifecycle on bundled sample data: the example pipeline, narrated."""
    home = home.absolute()
    _fresh_dir(home)
    ws_root = home / "workspace"
    _step(1, "Workspace and keys")
    ws = _workspace(home, ws_root, _passphrase())
    try:
        _step(2, "The pipeline: one file, from raw conversations to a sealed model")
        pipeline = _pipeline_file(home / "pipeline")
        _step(3, "Run it: redact PII, screen for poisoning, seal; fine-tune with DP in a sandbox")
        result = _run(ws, pipeline)
        _step(4, "The run's evidence bundle: signed statements, checked offline with pinned keys")
        _bundle(ws, result, home)
        _step(5, "Run it again: nothing changed, so every step is cached")
        _run(ws, pipeline, quiet=True)
        _step(6, "Tamper with a sealed artifact: the rerun refuses")
        _tamper(ws, pipeline)
        _step(7, "Rotate the platform key: headers re-wrapped, results still cached")
        _rotate(ws, pipeline)
        _step(8, "Crypto-shredding: an archive copy under a key you then destroy")
        _shred(ws, pipeline.data.input, home / "archive")
        _step(9, "Confidential serving: attested, end-to-end encrypted")
        serve_and_ask(ws, _model_dir(ws, result))
        _step(10, "The audit log, verified")
        _audit(ws)
    finally:
        ws.close()
    console.print(
        f"\nworkspace: {ws_root}  (explore with: SEALTUNE_HOME={ws_root} sealtune audit log;"
        f" rerun with: SEALTUNE_HOME={ws_root} sealtune run {pipeline.display};"
        f" watch its security timeline with: SEALTUNE_HOME={ws_root} sealtune console"
        " --port 8088)"
    )


def _passphrase() -> str:
    passphrase = os.environ.get(ENV_PASSPHRASE)
    if not passphrase:
        passphrase = "demo-" + secrets.token_urlsafe(18)
        console.print(
            f"[yellow]{ENV_PASSPHRASE} is not set: this demo workspace uses a random "
            f"passphrase, shown once so you can explore it afterwards:[/] {passphrase}"
        )
    return passphrase


def _workspace(home: Path, ws_root: Path, passphrase: str) -> Workspace:
    """The demo workspace: a customer key in SoftHSM2 when it is installed, an SM4 key."""
    token = _demo_token(home)
    ws = Workspace.init(ws_root, passphrase=passphrase, pkcs11=token)
    if token is not None:
        ws.keys.create("customer", backend="pkcs11")
        console.print("customer key: generated inside a SoftHSM2 token (PKCS#11), "
                      "non-extractable; wrapping happens on the token")
    else:
        ws.keys.create("customer", backend="local")
        console.print("[yellow]SoftHSM2 is not installed: the customer key is local[/]")
    ws.keys.create("gm", backend="local", algorithm="sm4-gcm")
    _keys_table(ws)
    return ws


def _pipeline_file(directory: Path) -> Pipeline:
    """``sealtune pipeline init`` into the demo directory, sealing under both keys."""
    path = init_example(directory, keys=("platform", "customer"), dataset="support-demo",
                        out="support-demo-model")
    console.print(f"wrote {path} (sealtune pipeline init): the sample conversations, the "
                  "default data policy, a tiny local base model (safetensors, no download); "
                  "keys are named in it, never given")
    return load_pipeline(path)


def _run(ws: Workspace, pipeline: Pipeline, *, quiet: bool = False) -> RunResult | None:
    """Run the pipeline (``sealtune run``) and narrate what each step did."""
    from sealtune.sandbox import SandboxUnavailableError

    try:
        result = run_pipeline(pipeline, ws) if quiet else run_with_output(pipeline, ws)
    except SandboxUnavailableError as exc:
        console.print(f"[yellow]training skipped: the sandbox cannot be created here[/]: "
                      f"{exc.message}")
        return None
    if quiet:
        cached = [s.record.name for s in result.steps if s.cached]
        console.print(f"cached: {', '.join(cached) or 'none'} ({result.seconds:.2f} s); every "
                      "output was checked against its recorded digest first")
        return result
    _narrate_data(ws, result.step("data").record)
    if pipeline.train is not None:
        _narrate_train(ws, result.step("train").record, pipeline.train.config)
    return result


_NARRATED = ("manifest.signature", "statements.chain", "ledger.proofs", "ledger.witnesses")


def _bundle(ws: Workspace, result: RunResult | None, home: Path) -> None:
    """Write the run's bundle (``run --bundle``), verify it with the pins, then flip one byte."""
    from sealtune.evidence import load_pins, verify_bundle, workspace_pins

    if result is None:
        console.print("[yellow]no bundle: the run did not finish[/]")
        return
    out = home / "evidence.tar"
    written = write_run_bundle(ws, result, out)
    console.print(f"wrote {out}: {written.files} files (in-toto statements in DSSE envelopes, "
                  f"the ML-BOM, the training record with ε, {written.events} audit-log events "
                  f"proven against the signed checkpoint at {written.ledger_size} entries)")
    pins = home / "pins.json"
    write_atomic(pins, workspace_pins(ws)[0])  # what an auditor keeps ('sealtune bundle keys')
    report = verify_bundle(out, load_pins([str(pins)]))
    for check in report.checks:
        if check.name in _NARRATED or check.name.startswith("training."):
            console.print(f"[green]✓[/] {escape(check.name)}: {escape(check.explanation)}")
    report.raise_if_failed()
    console.print(f"[green]bundle verified offline[/]: {len(report.checks)} checks passed "
                  f"(sealtune bundle verify {out} --key {pins})")
    blob = bytearray(out.read_bytes())
    record = blob.index(b"sealtune.training-record/v1")  # the training record's own bytes
    at = blob.index(b'"epsilon_spent":', record) + len(b'"epsilon_spent":')
    blob[at] ^= 0x01  # ε in the training record, one bit
    tampered = home / "evidence-tampered.tar"
    write_atomic(tampered, bytes(blob))
    bad = verify_bundle(tampered, load_pins([str(pins)]))
    try:
        bad.raise_if_failed()
        raise AssertionError("a changed bundle verified")  # pragma: no cover - a bug
    except IntegrityError as exc:
        console.print(f"one flipped byte (ε in the training record): [green]refused[/] "
                      f"(exit {exc.exit_code}): {', '.join(c.name for c in bad.failed)} failed")


def _narrate_data(ws: Workspace, record: StepRecord) -> None:
    s = record.summary
    findings = show_dataset(ws, s["dataset"], verify=False).file("findings")
    by_type = json.loads(findings.read_text("utf-8"))["pii"]["by_type"]
    print_table(console, [Col("entity type", whole=True), Col("redacted", whole=True),
                          Col("as")],
                [(etype, str(sum(actions.values())), ", ".join(actions))
                 for etype, actions in by_type.items()])
    console.print(
        f"{s['records_read']} records read: {s['duplicates_dropped']} duplicates dropped, "
        f"{s['triggers_quarantined']} records carrying a backdoor trigger quarantined (sealed "
        f"aside for review), {s['records_out']} records kept, sealed under "
        f"{', '.join(s['keys'])} as dataset {s['dataset']}")
    console.print(f"ML-BOM (CycloneDX 1.6): {ws.area('datasets') / s['dataset'] / 'bom.cdx.json'}")
    console.print(f"record stream digest (independent of the random data keys): "
                  f"{record.digests['records']}")


def _narrate_train(ws: Workspace, record: StepRecord, config: TrainConfig) -> None:
    from sealtune.cli.train import print_timeline
    from sealtune.train.jobs import show_job

    s = record.summary
    budget = config.dp.epsilon if config.dp is not None else None
    console.print(
        f"{config.method.capitalize()} fine-tuning inside a bubblewrap sandbox (no network, "
        f"private tmpfs, keys over a pipe): {s['steps']} steps, final loss "
        f"{s['final_loss']:.3f}; ε spent {s['epsilon_spent'] or 0:.3f} of {budget} at δ "
        f"{s['delta']} (example-level)")
    print_timeline(show_job(ws, s["job"])["timeline"])
    console.print(f"sealed model {s['model']}; weights digest (taken inside the sandbox before "
                  f"sealing): {record.digests['weights']}")


def _tamper(ws: Workspace, pipeline: Pipeline) -> None:
    """Flip one byte of the sealed dataset, rerun (refused, exit 3), put the byte back."""
    record = RunState.load(ws, pipeline.name).steps["data"]
    sealed = ws.area("datasets") / record.summary["dataset"] / "data.jsonl.sealed"
    blob = bytearray(sealed.read_bytes())
    blob[-100] ^= 0x01
    sealed.write_bytes(bytes(blob))
    try:
        run_pipeline(pipeline, ws)
        raise AssertionError("a tampered dataset was accepted")  # pragma: no cover - a bug
    except IntegrityError as exc:
        console.print(f"[green]tampering detected[/] (exit {exc.exit_code}): {exc.diagnostics()}")
    blob[-100] ^= 0x01
    sealed.write_bytes(bytes(blob))
    console.print("byte restored; the file is whole again")


def _rotate(ws: Workspace, pipeline: Pipeline) -> None:
    report = rotate_workspace(ws, "platform", retire_old=True)
    console.print(f"platform rotated to v{report.key.current}: {len(report.rewrapped)} sealed "
                  f"files re-wrapped (headers only), v1 retired")
    _run(ws, pipeline, quiet=True)
    record = RunState.load(ws, pipeline.name).steps["data"]
    sealed = ws.area("datasets") / record.summary["dataset"] / "data.jsonl.sealed"
    entries = describe_file(sealed).entries
    console.print(f"dataset header now: {', '.join(f'{e.kek_uri} v{e.version}' for e in entries)}"
                  "; its content digest, and so the cache, did not change")


def _shred(ws: Workspace, raw: Path, archive: Path) -> None:
    """Seal an archive copy of the raw input under an SM4 key, shred the raw file, destroy."""
    from sealtune.data.shred import shred

    archive.mkdir(mode=0o700)
    sm4 = archive / "conversations.jsonl.sm4.sealed"
    seal_file(raw, sm4, keys=ws.keys, key_names=["gm"])
    console.print(f"sealed an archive copy of the raw input under gm ({describe_file(sm4).suite})")
    shred(raw)
    console.print(f"raw input shredded: {not raw.exists()} (best effort; sealed copies are the "
                  "real control)")
    ws.keys.destroy("gm")
    try:
        open_file(sm4, archive / "opened.jsonl", keys=ws.keys)
    except SealtuneError as exc:
        console.print(f"[green]the SM4 copy is unrecoverable[/]: {type(exc).__name__}")


def _model_dir(ws: Workspace, result: RunResult | None) -> Path | None:
    if result is None or not any(s.record.name == "train" for s in result.steps):
        return None
    return ws.area("models") / str(result.step("train").record.summary["model"])


def _audit(ws: Workspace) -> None:
    note = ws.ledger.checkpoint()
    report = ws.ledger.verify(ws.ledger_verifier())
    _ledger_table(ws)
    console.print(Panel(note.rstrip(), title="signed checkpoint (C2SP tlog-checkpoint)"))
    status = "[green]verified[/]" if report.ok else "[red]BROKEN[/]"
    console.print(f"audit log {status}: {report.summary()}")
    if not report.ok:
        raise IntegrityError(f"audit log broken at {report.first_bad_seq}: {report.reason}")


def _keys_table(ws: Workspace) -> None:
    columns = [Col("key", whole=True), Col("backend", whole=True), Col("algorithm", whole=True),
               Col("current version", whole=True, justify="right")]
    print_table(console, columns, [(i.name, i.backend, i.algorithm, str(i.current))
                                   for i in ws.keys.list()])


def _ledger_table(ws: Workspace) -> None:
    entries = list(ws.ledger.entries())
    columns = [Col("seq", whole=True, justify="right"), Col("action", whole=True),
               Col("resource", whole=True), Col("outcome", whole=True)]
    print_table(console, columns, [(str(e.seq), e.action, e.resource, e.outcome)
                                   for e in entries],
                row_styles=["" if e.outcome == "success" else "yellow" for e in entries])


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
