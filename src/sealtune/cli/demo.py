"""``sealtune demo``: the whole lifecycle on bundled sample data.

Today it covers the foundation and the data stage: a workspace, keys in the
local keyring (and in a SoftHSM2 token when one can be created here),
sealing and opening the bundled sample conversations, a tamper attempt, key
rotation with header-only re-wrapping, crypto-shredding, ingesting the
sample conversations (PII redacted, duplicates dropped, a planted backdoor
quarantined, an ML-BOM written), fine-tuning a tiny model on that dataset
in the bubblewrap sandbox with differential privacy (ε 8), and the verified
audit log. Later stages (assessment, serving) extend it.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import subprocess
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.panel import Panel

from sealtune.cli._common import console
from sealtune.cli._tables import Col, print_table
from sealtune.config import Pkcs11Config
from sealtune.errors import IntegrityError, UsageError
from sealtune.keys.files import describe_file, open_file, rewrap_file, seal_file
from sealtune.workspace import ENV_PASSPHRASE, Workspace

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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
    """Run the whole lifecycle on bundled sample data."""
    home = home.absolute()
    _fresh_dir(home)
    passphrase = os.environ.get(ENV_PASSPHRASE)
    if not passphrase:
        passphrase = "demo-" + secrets.token_urlsafe(18)
        console.print(
            f"[yellow]{ENV_PASSPHRASE} is not set: this demo workspace uses a random "
            f"passphrase, shown once so you can explore it afterwards:[/] {passphrase}"
        )
    ws_root = home / "workspace"
    data_dir = home / "data"
    data_dir.mkdir(mode=0o700)

    _step(1, "Workspace and keys")
    token = _demo_token(home)
    ws = Workspace.init(ws_root, passphrase=passphrase, pkcs11=token)
    try:
        if token is not None:
            ws.keys.create("customer", backend="pkcs11")
            console.print(
                "customer key: generated inside a SoftHSM2 token (PKCS#11), "
                "non-extractable; wrapping happens on the token"
            )
        else:
            ws.keys.create("customer", backend="local")
            console.print("[yellow]SoftHSM2 is not installed: the customer key is local[/]")
        ws.keys.create("gm", backend="local", algorithm="sm4-gcm")
        _keys_table(ws)

        _step(2, "Seal the sample conversations (envelope encryption)")
        sample = resources.files("sealtune.demo_data").joinpath("conversations.jsonl")
        raw = data_dir / "conversations.jsonl"
        raw.write_bytes(sample.read_bytes())
        sealed = data_dir / "conversations.jsonl.sealed"
        seal_file(raw, sealed, keys=ws.keys, key_names=["platform", "customer"])
        info = describe_file(sealed)
        console.print(
            f"sealed {raw.name} ({raw.stat().st_size} bytes) under "
            f"{', '.join(f'{e.kek_uri} v{e.version}' for e in info.entries)}"
        )
        sm4 = data_dir / "conversations.jsonl.sm4.sealed"
        seal_file(raw, sm4, keys=ws.keys, key_names=["gm"])
        console.print(f"sealed a copy with SM4-GCM under gm ({describe_file(sm4).suite})")
        digest = _sha256(raw)
        raw.unlink()
        console.print("removed the plaintext; only sealed copies remain")

        _step(3, "Open it again, and try a tampered copy")
        opened = data_dir / "opened.jsonl"
        open_file(sealed, opened, keys=ws.keys)
        console.print(f"opened: sha256 matches the original: {_sha256(opened) == digest}")
        opened.unlink()
        tampered = data_dir / "tampered.sealed"
        blob = bytearray(sealed.read_bytes())
        blob[-100] ^= 0x01
        tampered.write_bytes(bytes(blob))
        try:
            open_file(tampered, data_dir / "never.jsonl", keys=ws.keys)
            raise AssertionError("tampered file opened")  # pragma: no cover - would be a bug
        except IntegrityError as exc:
            console.print(f"[green]tampering detected[/]: {exc.diagnostics()}")
        console.print(
            f"no partial plaintext left behind: {not (data_dir / 'never.jsonl').exists()}"
        )
        tampered.unlink()

        _step(4, "Rotate the platform key; re-wrap headers only; retire v1")
        ws.keys.rotate("platform")
        rewrap_file(sealed, keys=ws.keys, key_name="platform")
        ws.keys.retire("platform", below=2)
        info = describe_file(sealed)
        console.print(f"header now: {', '.join(f'{e.kek_uri} v{e.version}' for e in info.entries)}")
        open_file(sealed, opened, keys=ws.keys)
        console.print(f"still opens after retiring v1: {_sha256(opened) == digest}")
        opened.unlink()

        _step(5, "Crypto-shredding: destroy the SM4 key")
        ws.keys.destroy("gm")
        try:
            open_file(sm4, opened, keys=ws.keys)
        except Exception as exc:
            console.print(f"[green]the SM4 copy is unrecoverable[/]: {type(exc).__name__}")

        _step(6, "Data stage: redact PII, screen for poisoning, seal the dataset")
        _ingest_sample(ws, sample.read_bytes(), data_dir)

        _step(7, "Sandboxed fine-tuning with differential privacy")
        model_dir = _train_step(ws, home)

        _step(8, "Confidential serving: attested, end-to-end encrypted")
        _serve_step(ws, home, model_dir)

        _step(9, "The audit log, verified")
        note = ws.ledger.checkpoint()
        report = ws.ledger.verify(ws.ledger_verifier())
        _ledger_table(ws)
        console.print(Panel(note.rstrip(), title="signed checkpoint (C2SP tlog-checkpoint)"))
        status = "[green]verified[/]" if report.ok else "[red]BROKEN[/]"
        console.print(f"audit log {status}: {report.summary()}")
        if not report.ok:
            raise IntegrityError(f"audit log broken at {report.first_bad_seq}: {report.reason}")
    finally:
        ws.close()
    console.print(
        f"\nworkspace: {ws_root}  (explore with: SEALTUNE_HOME={ws_root} sealtune audit log)"
    )


def _ingest_sample(ws: Workspace, sample: bytes, data_dir: Path) -> None:
    """Ingest the sample with the default policy, shred the raw copy, print the counts."""
    from sealtune.data.ingest import ingest  # the data stage's dependencies load only here

    raw = data_dir / "conversations.jsonl"
    raw.write_bytes(sample)
    result = ingest(ws, raw, name="support-demo", shred_original=True)
    counts = result.counts
    screening = result.findings["screening"]["counts"]
    dups = sum(screening.get(c, {}).get("drop", 0) for c in ("exact_duplicate", "near_duplicate"))
    triggers = screening.get("trigger", {}).get("quarantine", 0)
    print_table(console, [Col("entity type", whole=True), Col("redacted", whole=True),
                          Col("as")],
                [(etype, str(sum(actions.values())), ", ".join(actions))
                 for etype, actions in result.findings["pii"]["by_type"].items()])
    keks = ", ".join(result.manifest["keys"]["kek"])
    console.print(
        f"{counts['records_read']} records read: {dups} duplicates dropped, {triggers} records "
        f"carrying a backdoor trigger quarantined (sealed aside for review), "
        f"{counts['records_out']} records kept, sealed under {keks}"
    )
    console.print(f"ML-BOM (CycloneDX 1.6): {result.bom_path}")
    console.print(
        f"raw input shredded: {not raw.exists()} (best effort; the sealed copy is the real control)"
    )


def _train_step(ws: Workspace, home: Path) -> Path | None:
    """Fine-tune the tiny model on the demo dataset in the sandbox with DP; show the timeline."""
    from sealtune.cli.train import print_timeline
    from sealtune.train.config import TrainConfig
    from sealtune.train.jobs import run_job
    from sealtune.train.sandbox import SandboxUnavailableError
    from sealtune.train.tiny import make_tiny

    base = make_tiny(home / "tiny-base", seed=0)
    console.print(f"tiny base model (safetensors, locally trained tokenizer): {base}")
    # Full fine-tuning of the tiny model, so that the server can load the sealed
    # output directly (a LoRA adapter would need merging into its base first).
    config = TrainConfig.from_dict({"method": "full", "epochs": 1, "batch_size": 8,
                                    "lr": 0.01, "seed": 0,
                                    "max_length": 128, "max_steps": 5,
                                    "dp": {"epsilon": 8.0, "epsilon_every": 3}})
    try:
        result = run_job(ws, dataset="support-demo", base=base, config=config,
                         out_name="support-demo-model", threads=1, tmpfs_size=512 << 20)
    except SandboxUnavailableError as exc:
        console.print(f"[yellow]skipped: the sandbox cannot be created here[/]: {exc.message}")
        return None
    privacy = result.privacy or {}
    console.print(
        f"Full fine-tuning inside a bubblewrap sandbox (no network, private tmpfs, keys over "
        f"a pipe): {result.steps} steps, final loss {result.final_loss:.3f}; "
        f"ε spent {privacy.get('epsilon_spent', 0):.3f} of 8.0 at δ {privacy.get('delta')} "
        f"(example-level)")
    print_timeline(result.timeline)
    console.print(f"sealed model and manifest: {result.model_dir}")
    return result.model_dir


def _serve_step(ws: Workspace, home: Path, model_dir: Path | None) -> None:
    """Serve ``model_dir`` (or the echo engine) in-process and ask it one question.

    The server runs in a thread on a free loopback port, encrypted-only, with
    ``dev-software`` attestation; the question goes through the verifying
    client (:class:`sealtune.client.SealtuneClient`), which checks the report
    before it encrypts anything.
    """
    import socket
    import threading
    import time
    import warnings
    from datetime import UTC, datetime

    import uvicorn

    from sealtune.attest.policy import VerificationPolicy
    from sealtune.attest.software import SoftwareProvider
    from sealtune.cli.serve import token_service
    from sealtune.client import DevAttestationWarning, SealtuneClient
    from sealtune.core.protocol import ServerKeys
    from sealtune.serve import ServeSettings, create_app
    from sealtune.serve.auth import Authenticator, RateLimit
    from sealtune.serve.engines import make_engine
    from sealtune.serve.keystore import FILE_NAME, KeyStore
    from sealtune.serve.model import model_digest, resolve_model

    if model_dir is not None and model_dir.is_dir():
        files = resolve_model(str(model_dir), keys=ws.keys, workspace_root=ws.root)
        engine, name = make_engine("transformers", files=files, model_id=model_dir.name), \
            "transformers"
        digest = model_digest(files)
    else:
        engine, name = make_engine("echo", model_id="echo"), "echo"
        digest = hashlib.sha256(b"sealtune echo engine").hexdigest()
    store = KeyStore(ws.root / FILE_NAME)
    key, info = store.create(role="consumer", name="demo", now=datetime.now(UTC))
    ws.audit("serve.key_created", f"serve-key:{info.key_id}",
             details={"key_id": info.key_id, "role": info.role, "name": info.name})
    provider = SoftwareProvider()
    app = create_app(ServeSettings(model_id=engine.model_id, model_digest=digest, engine=name,
                                   encrypted_only=True),
                     engine=engine, keys=ServerKeys(now=time.time()), provider=provider,
                     auth=Authenticator(store, token_service(ws), limit=RateLimit(20, 40)),
                     ledger_audit=ws.ledger.append)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, access_log=False, log_config=None,
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        time.sleep(0.02)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    console.print(f"serving {engine.model_id} ({name}) on {url}: encrypted only, dev-software "
                  "attestation")
    policy = VerificationPolicy(allow_dev_attestation=True,
                                dev_attestation_keys=frozenset({provider.fingerprint}))
    client = SealtuneClient(url, key, policy=policy, max_retries=0)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DevAttestationWarning)
            result = client.attest()
        print_table(console, [Col("check", whole=True), Col("ok", whole=True),
                              Col("explanation")],
                    [(c.name, "yes" if c.ok else "NO", c.explanation) for c in result.checks])
        for w in caught:
            console.print(f"[yellow]warning:[/] {w.message}")
        for note in result.warnings:
            console.print(f"  note: {note}")
        question = "How do I reset my password?"
        answer = client.chat.completions.create(
            model=engine.model_id, messages=[{"role": "user", "content": question}],
            max_tokens=24, temperature=0)
        console.print(f"asked through the verifying client (sealed to key id "
                      f"{result.key_configs[0].key_id}): {question}")
        console.print(f"answer (opened and authenticated): {answer.choices[0].message.content!r}"
                      " (a tiny demo model: the words are noise; the path is the point)")
    finally:
        client.close()
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
    console.print("server stopped; it logged request metadata only")


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
