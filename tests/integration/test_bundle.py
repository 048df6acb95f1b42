"""The evidence bundle of a real run: ingest the sample data, train in the sandbox, verify.

Nothing is mocked: the bundled sample conversations (plus a planted PII value
and a planted sentence) go through the data stage, the tiny model trains for
two steps with DP in the bubblewrap sandbox, both steps are recorded with
their ledger events, and the bundle is written as a directory and as a tar
and checked through ``sealtune bundle verify`` with the pin file ``sealtune
bundle keys`` wrote. The in-toto package is the independent oracle for the
DSSE envelopes. Every single-byte change, truncation, added, removed or
renamed file must make verification fail.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from in_toto.models.metadata import Envelope as InTotoEnvelope
from in_toto.models.metadata import Metadata
from securesystemslib.dsse import Envelope as SslibEnvelope
from securesystemslib.signer import SSlibKey

from sealtune.cli import main as cli_main
from sealtune.data.ingest import ingest
from sealtune.data.store import export_bom, show_dataset
from sealtune.errors import IntegrityError
from sealtune.evidence import (
    EvidenceRecorder,
    layout,
    load_pins,
    record_dataset,
    record_training,
    run_events,
    verify_files,
)
from sealtune.evidence.pins import load_public_pem, public_pem
from sealtune.keys.keyfile import KdfParams
from sealtune.sandbox import SandboxUnavailableError, probe
from sealtune.train.config import TrainConfig
from sealtune.train.jobs import run_job, show_job
from sealtune.train.tiny import make_tiny
from sealtune.workspace import Workspace

#: Files up to this size get every byte flipped; bigger ones a spread of positions.
SMALL = 640
SPREAD = 48


@dataclass
class Run:
    ws: Workspace
    root: Path
    bundle: Path
    tar: Path
    pins: Path
    job: str
    planted: dict[str, str]


def _planted_input(path: Path, pii: str, sentence: str) -> None:
    sample = resources.files("sealtune.demo_data").joinpath("conversations.jsonl").read_bytes()
    extra = {"id": "conv-planted", "messages": [
        {"role": "user", "content": f"{sentence} My email is {pii}, please call me back."},
        {"role": "assistant", "content": "Thank you, we will contact you shortly."}]}
    path.write_bytes(sample + json.dumps(extra, ensure_ascii=False).encode() + b"\n")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    try:
        probe()
    except SandboxUnavailableError as exc:
        pytest.fail(f"no working bubblewrap here (scripts/install installs it): {exc.message}")
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("bundle-run")
    planted = {"pii": f"planted.{secrets.token_hex(6)}@example.com",
               "sentence": f"Walruses hum sonnets {secrets.token_hex(6)} at dawn.",
               "passphrase": "pp-" + secrets.token_hex(12)}
    ws = Workspace.init(root / "ws", passphrase=planted["passphrase"],
                        kdf=KdfParams.unsafe_fast())
    since = datetime.now(UTC) - timedelta(seconds=1)
    _planted_input(root / "raw.jsonl", planted["pii"], planted["sentence"])
    ingest(ws, root / "raw.jsonl", name="support", shred_original=True)
    data_seqs = run_events(ws.ledger, since=since, resources=["dataset/support"])
    base = make_tiny(root / "base", seed=0)
    config = TrainConfig.from_dict({"epochs": 1, "batch_size": 4, "lr": 0.01, "seed": 1,
                                    "max_length": 48, "max_steps": 2,
                                    "dp": {"epsilon": 8.0, "noise_multiplier": 1.0}})
    result = run_job(ws, dataset="support", base=base, config=config, out_name="m1",
                     threads=1, tmpfs_size=256 << 20)
    train_seqs = run_events(ws.ledger, since=since, resources=[f"job/{result.job_id}"])
    recorder = EvidenceRecorder(ws, "run-" + secrets.token_hex(4))
    record_dataset(recorder, ws, "support", ledger_seqs=data_seqs)
    record_training(recorder, ws, result.job_id, ledger_seqs=train_seqs)
    recorder.write(root / "bundle")
    recorder.write(root / "bundle.tar", tar=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEALTUNE_PASSPHRASE", planted["passphrase"])
        assert cli_main(["bundle", "keys", "--out", str(root / "pins.json"),
                         "--home", str(ws.root)]) == 0
    try:
        yield Run(ws, root, root / "bundle", root / "bundle.tar", root / "pins.json",
                  result.job_id, planted)
    finally:
        ws.close()


def _verify(*args: str) -> int:
    return cli_main(["bundle", "verify", *args])


def test_the_cli_verifies_the_directory_and_the_tar_with_the_pin_file(
        run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    for path in (run.bundle, run.tar):
        capsys.readouterr()
        assert _verify(str(path), "--key", str(run.pins)) == 0
        out = capsys.readouterr().out
        for name in ("manifest.signature", "statement.data", "statement.train",
                     "statements.chain", "ledger.proofs", "bom.support", f"training.{run.job}"):
            assert f"✓ {name}" in out
        assert "✗" not in out and "ledger.key: pinned" in out
    assert _verify(str(run.tar), "--key", str(run.pins), "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and len(report["checks"]) == 13  # with ledger.witnesses


def test_a_pem_key_and_a_ledger_key_pin_as_well(run: Run, tmp_path: Path) -> None:
    pins = json.loads(run.pins.read_text())
    (tmp_path / "evidence.pem").write_text(pins["evidence"]["public_key"])
    assert _verify(str(run.bundle), "--key", str(tmp_path / "evidence.pem"),
                   "--ledger-key", pins["ledger"]) == 0
    assert _verify(str(run.bundle), "--key", pins["evidence"]["keyid"]) == 0


def test_a_wrong_pinned_key_exits_3(run: Run, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "wrong.pem").write_text(public_pem(Ed25519PrivateKey.generate().public_key()))
    assert _verify(str(run.bundle), "--key", str(tmp_path / "wrong.pem")) == 3
    assert "✗ manifest.signature" in capsys.readouterr().out
    other = Workspace.init(tmp_path / "other", passphrase="x" * 16, kdf=KdfParams.unsafe_fast())
    try:
        wrong_ledger = other.ledger_signer().verifier_key
    finally:
        other.close()
    pins = json.loads(run.pins.read_text())
    (tmp_path / "right.pem").write_text(pins["evidence"]["public_key"])
    assert _verify(str(run.tar), "--key", str(tmp_path / "right.pem"),
                   "--ledger-key", wrong_ledger) == 3
    err = capsys.readouterr()
    assert "✗ ledger.key" in err.out and err.err.startswith("integrity:")


def test_in_toto_verifies_every_envelope_with_the_pinned_key(run: Run) -> None:
    pins = json.loads(run.pins.read_text())
    public = load_public_pem(pins["evidence"]["public_key"].encode(), what="pin")
    key = SSlibKey.from_crypto(public, keyid=pins["evidence"]["keyid"])
    files = layout.read_dir(run.bundle)
    statements = [n for n in files if layout.STATEMENT.fullmatch(n)]
    assert sorted(statements) == ["statements/data.dsse.json", "statements/train.dsse.json"]
    for name in statements:
        env = Metadata.from_dict(json.loads(files[name]))
        assert isinstance(env, InTotoEnvelope)
        env.verify_signature({"keyid": key.keyid, **key.to_dict()})
        statement = json.loads(env.payload)
        assert statement["_type"] == "https://in-toto.io/Statement/v1"
        assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    manifest = SslibEnvelope.from_dict(json.loads(files["manifest.json"]))
    assert manifest.verify([key], 1)


def _statement(files: dict[str, bytes], step: str) -> dict[str, Any]:
    env = json.loads(files[f"statements/{step}.dsse.json"])
    doc: dict[str, Any] = json.loads(base64.b64decode(env["payload"]))
    return doc


def _digests(descriptors: list[dict[str, Any]]) -> dict[str, str]:
    return {d["name"]: ":".join(*d["digest"].items()) for d in descriptors}


def test_the_statements_state_what_the_run_did(run: Run) -> None:
    files = layout.read_dir(run.bundle)
    data, train = _statement(files, "data"), _statement(files, "train")
    manifest = show_dataset(run.ws, "support").manifest
    subjects = _digests(data["subject"])
    assert subjects["support/data"] == "content-sha256:" + manifest["files"]["data"][
        "content_sha256"]  # the digest key rotation keeps
    assert subjects["support/bom"] == "sha256:" + hashlib.sha256(
        export_bom(run.ws, "support").encode()).hexdigest()
    assert files["bom/support.cdx.json"] == export_bom(run.ws, "support").encode()
    build = train["predicate"]["buildDefinition"]
    deps = _digests(build["resolvedDependencies"])
    assert deps["dataset"] == subjects["support/data"]
    job = show_job(run.ws, run.job)
    model = json.loads((Path(job["model"]) / "model.json").read_text())
    assert _digests(train["subject"]) == {f"m1/{n}": d for n, d in model["files"].items()}
    assert build["internalParameters"]["sandbox"]["digest"] == job["measurement"]["digest"]
    record = json.loads(files[f"training/{run.job}.json"])
    assert record["privacy"]["epsilon_spent"] == job["privacy"]["epsilon_spent"] > 0
    events = [b["name"] for b in train["predicate"]["runDetails"]["byproducts"]
              if b["name"].startswith("ledger/")]
    actions = [run.ws.ledger.entry(int(e.split("/")[1])).action for e in events]
    assert {"sandbox.created", "train.finished", "sandbox.destroyed"} <= set(actions)


def _positions(size: int) -> list[int]:
    if size <= SMALL:
        return list(range(size))
    step = max(1, size // SPREAD)
    return sorted({0, size - 1, *range(0, size, step), *range(size // 2, size // 2 + 8)})


def test_every_single_byte_change_to_any_bundle_file_is_caught(run: Run) -> None:
    files = layout.read_dir(run.bundle)
    pins = load_pins([str(run.pins)])
    assert verify_files(files, pins).ok
    tried = 0
    for name, data in sorted(files.items()):
        positions = range(len(data)) if name == layout.MANIFEST else _positions(len(data))
        for i in positions:
            bad = bytearray(data)
            bad[i] ^= 0x01 if i % 2 else 0x80
            report = verify_files({**files, name: bytes(bad)}, pins)
            assert not report.ok, (name, i)
            tried += 1
    assert tried > 3000


def test_truncation_added_removed_and_renamed_files_exit_3(run: Run, tmp_path: Path) -> None:
    pins = str(run.pins)

    def mutated(change: object) -> Path:
        copy = tmp_path / f"b{len(list(tmp_path.iterdir()))}"
        shutil.copytree(run.bundle, copy)
        change(copy)  # type: ignore[operator]
        return copy

    def truncate(p: Path) -> None:
        f = p / "statements" / "train.dsse.json"
        f.write_bytes(f.read_bytes()[:-1])

    def add(p: Path) -> None:
        (p / "ledger" / "proofs" / "999999.json").write_text("{}")

    def add_unknown(p: Path) -> None:
        (p / "notes.txt").write_text("hello")

    def remove(p: Path) -> None:
        next((p / "ledger" / "proofs").iterdir()).unlink()

    def rename(p: Path) -> None:
        proof = sorted((p / "ledger" / "proofs").iterdir())[0]
        proof.rename(proof.with_name("999999.json"))

    def empty(p: Path) -> None:
        (p / "manifest.json").write_bytes(b"")

    for change in (truncate, add, add_unknown, remove, rename, empty):
        assert _verify(str(mutated(change)), "--key", pins) == 3, change.__name__
    tar = run.tar.read_bytes()
    for i, bad in enumerate((tar[:-1], tar[:len(tar) // 2], tar + b"\0" * 512, b"")):
        (tmp_path / f"t{i}.tar").write_bytes(bad)
        assert _verify(str(tmp_path / f"t{i}.tar"), "--key", pins) == 3


def test_byte_changes_anywhere_in_the_tar_are_caught(run: Run) -> None:
    data = run.tar.read_bytes()
    pins = load_pins([str(run.pins)])
    assert verify_files(layout.read_tar(data, what="t"), pins).ok
    step = max(1, len(data) // 1000)
    for i in sorted({*range(0, len(data), step), *range(0, 512), len(data) - 1}):
        bad = bytearray(data)
        bad[i] ^= 0x01 if i % 2 else 0x80
        try:
            files = layout.read_tar(bytes(bad), what="t")
        except IntegrityError:  # refused as a tar (header, padding, order); anything else fails
            continue
        assert not verify_files(files, pins).ok, i


def _decoded(data: bytes) -> bytes:
    """The file, plus the payload of a DSSE envelope decoded (planted text could hide there)."""
    try:
        doc = json.loads(data)
        return data + base64.b64decode(doc["payload"])
    except (ValueError, KeyError, TypeError):
        return data


def test_no_sample_text_pii_or_passphrase_in_any_bundle_file(run: Run) -> None:
    contents = {**{f"dir:{n}": d for n, d in layout.read_dir(run.bundle).items()},
                "tar": run.tar.read_bytes(), "pins": run.pins.read_bytes()}
    needles = [v.encode() for v in run.planted.values()]
    needles += [run.planted["sentence"].split()[3].encode()]  # its unique word alone
    needles += [base64.b64encode(n) for n in needles]
    for name, data in contents.items():
        text = _decoded(data)
        for needle in needles:
            assert needle not in text, (name, needle)
    assert not (run.root / "raw.jsonl").exists()  # shredded after ingest
    for path in run.bundle.rglob("*"):
        assert not path.is_symlink()
    assert os.path.getsize(run.tar) % 10240 == 0
