"""``sealtune run FILE --bundle OUT`` as a user runs it, then ``sealtune bundle verify``.

Nothing is mocked: the example from ``sealtune pipeline init`` (a slice of the
sample conversations plus planted PII and markers; two DP training steps in
the bubblewrap sandbox) runs through the command line in a real workspace;
the bundle is checked with the pin file ``sealtune bundle keys`` wrote, and
with the ``in-toto`` package as an independent oracle for the envelopes. A
cached rerun still yields a bundle that verifies and cites the events of the
run that computed each step. Two real witnesses (``sealtune witness serve``
on 127.0.0.1) cosign the bundle's checkpoint with k = 2; with one of them
down, the run refuses to write the bundle (exit 1), and a bundle cosigned by
fewer witnesses than the pinned k fails verification (exit 3).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from in_toto.models.metadata import Envelope as InTotoEnvelope
from in_toto.models.metadata import Metadata
from securesystemslib.dsse import Envelope as SslibEnvelope
from securesystemslib.signer import SSlibKey

from sealtune.cli import main as cli_main
from sealtune.evidence import layout, load_pins, verify_files
from sealtune.evidence.pins import load_public_pem

SEALTUNE = [sys.executable, "-m", "sealtune"]


@dataclass
class Example:
    root: Path
    file: Path
    env: dict[str, str]
    bundle: Path
    pins: Path
    planted: list[str]
    first_run: str

    def cli(self, *args: str, home: Path | None = None) -> int:
        with pytest.MonkeyPatch.context() as mp:
            for key in [k for k in os.environ if k.startswith("SEALTUNE_")]:
                mp.delenv(key)
            for key, value in self.env.items():
                mp.setenv(key, value)
            if home is not None:
                mp.setenv("SEALTUNE_HOME", str(home))
            return cli_main(list(args))


def _plant(raw: Path, keep: int) -> list[str]:
    """Keep ``keep`` sample lines; add conversations with unique PII and markers."""
    lines = raw.read_text("utf-8").splitlines()[:keep]
    rng = random.Random(secrets.randbits(32))
    values = []
    for i in range(6):
        phone = f"13{rng.randint(5, 9)}{rng.randint(10**7, 10**8 - 1)}"
        email = f"{secrets.token_hex(6)}@example.org"
        marker = f"zqv{secrets.token_hex(6)}"
        values += [phone, email, marker]
        lines.append(json.dumps({"id": f"planted-{i}", "messages": [
            {"role": "user", "content": f"我的手机{phone}，邮箱{email}，退款没到。"},
            {"role": "assistant", "content": f"您好，已登记，工单 {marker}。"}]},
            ensure_ascii=False))
    raw.write_text("\n".join(lines) + "\n", "utf-8")
    return values


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Example]:
    root = tmp_path_factory.mktemp("pipeline-bundle")
    res = subprocess.run([*SEALTUNE, "pipeline", "init", str(root / "ex")], capture_output=True,
                         text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr
    planted = _plant(root / "ex" / "data" / "conversations.jsonl", keep=160)
    file = root / "ex" / "pipeline.yaml"
    file.write_text(file.read_text("utf-8").replace("max_steps: 5", "max_steps: 2"), "utf-8")
    (root / "tmp").mkdir()
    env = {"SEALTUNE_HOME": str(root / "ws"), "SEALTUNE_UNSAFE_FAST_KDF": "1",
           "SEALTUNE_PASSPHRASE": "pb-" + secrets.token_hex(8),
           "SEALTUNE_WITNESS_PASSPHRASE": "wp-" + secrets.token_hex(8)}
    ex = Example(root, file, env, root / "bundle", root / "pins.json", planted, "")
    assert ex.cli("init") == 0
    assert ex.cli("run", str(file), "--bundle", str(ex.bundle)) == 0
    assert ex.cli("bundle", "keys", "--out", str(ex.pins)) == 0
    ex.first_run = _statement(layout.read_dir(ex.bundle), "data")["predicate"]["runDetails"][
        "metadata"]["invocationId"]
    yield ex


def _statement(files: dict[str, bytes], step: str) -> dict[str, Any]:
    env = json.loads(files[f"statements/{step}.dsse.json"])
    doc: dict[str, Any] = json.loads(base64.b64decode(env["payload"]))
    return doc


def _events(statement: dict[str, Any]) -> set[int]:
    return {int(b["name"].split("/")[1]) for b in statement["predicate"]["runDetails"][
        "byproducts"] if b["name"].startswith("ledger/")}


def _entries(ex: Example, home: Path | None = None) -> list[dict[str, Any]]:
    res = subprocess.run([*SEALTUNE, "audit", "log", "--json"], capture_output=True, text=True,
                         timeout=120, check=False,
                         env={**{k: v for k, v in os.environ.items()
                                 if not k.startswith("SEALTUNE_")}, **ex.env,
                              **({"SEALTUNE_HOME": str(home)} if home else {})})
    assert res.returncode == 0, res.stderr
    return [json.loads(line) for line in res.stdout.splitlines()]


def test_run_bundle_verifies_with_the_pins_and_in_toto_agrees(
        example: Example, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert example.cli("bundle", "verify", str(example.bundle), "--key", str(example.pins)) == 0
    out = " ".join(capsys.readouterr().out.split())
    for name in ("manifest.signature", "statement.data", "statement.train", "statements.chain",
                 "ledger.key: pinned", "ledger.checkpoint", "ledger.proofs", "bom.support-",
                 "training.job-", "ledger.witnesses: no witnesses pinned"):
        assert f"✓ {name}" in out, name
    assert "✗" not in out and "bundle verified: 13 checks passed" in out
    files = layout.read_dir(example.bundle)
    pins = json.loads(example.pins.read_text())
    key = SSlibKey.from_crypto(load_public_pem(pins["evidence"]["public_key"].encode(), what="p"),
                               keyid=pins["evidence"]["keyid"])
    for step in ("data", "train"):
        env = Metadata.from_dict(json.loads(files[f"statements/{step}.dsse.json"]))
        assert isinstance(env, InTotoEnvelope)
        env.verify_signature({"keyid": key.keyid, **key.to_dict()})
        statement = json.loads(env.payload)
        assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    assert SslibEnvelope.from_dict(json.loads(files["manifest.json"])).verify([key], 1)
    train = _statement(files, "train")
    assert "weights" in {s["name"] for s in train["subject"]}
    assert train["predicate"]["buildDefinition"]["internalParameters"]["sandbox"]["digest"]
    # The data step ran in its own sandbox: its statement carries that sandbox's measurement,
    # the one its sandbox.created event recorded (stage data), and verify checked it.
    data = _statement(files, "data")
    boxed = data["predicate"]["buildDefinition"]["internalParameters"]["sandbox"]
    assert boxed["digest"].startswith("sha256:") and set(boxed["inputs"]) == {"raw"}
    created = [e for e in _entries(example) if e["action"] == "sandbox.created"
               and e["details"]["stage"] == "data"]
    assert [e["details"]["measurement"]["digest"] for e in created] == [boxed["digest"]]
    assert {e["seq"] for e in created} <= _events(data)
    assert f"sandbox measurement {boxed['digest']}" in out
    (record,) = [json.loads(d) for n, d in files.items() if n.startswith("training/")]
    assert record["privacy"]["epsilon_spent"] > 0  # the training record with ε
    # Every event of the run is proven, and each statement names its own step's events.
    run_seqs = {e["seq"] for e in _entries(example) if e["details"].get("run") ==
                example.first_run}
    proven = {int(n.split("/")[2].split(".")[0]) for n in files if n.startswith("ledger/proofs/")}
    assert run_seqs and run_seqs <= proven
    assert proven == _events(_statement(files, "data")) | _events(train)
    note = files["ledger/checkpoint.txt"].decode()
    assert note.split("\n")[0] == f"sealtune.local/{_workspace_id(example)}/ledger"


def _workspace_id(ex: Example, home: Path | None = None) -> str:
    cfg = tomllib.loads((home or Path(ex.env["SEALTUNE_HOME"])).joinpath("config.toml")
                        .read_text())
    return str(cfg["workspace"]["id"])


def test_a_cached_rerun_writes_a_tar_that_cites_the_computing_run(
        example: Example, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rerun.tar"
    capsys.readouterr()
    assert example.cli("run", str(example.file), "--bundle", str(out), "--json") == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["event"] for e in events] == ["run_started", "step_cached", "step_cached",
                                            "run_finished", "bundle_written"]
    written = events[-1]
    assert written["kind"] == "tar" and written["path"] == str(out)
    assert written["tar_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert written["cosigned"] == written["witnesses_required"] == 0
    assert example.cli("bundle", "verify", str(out), "--key", str(example.pins)) == 0
    first, again = layout.read_dir(example.bundle), layout.read_tar(out.read_bytes(), what="t")
    assert written["manifest_sha256"] == hashlib.sha256(again["manifest.json"]).hexdigest()
    for step in ("data", "train"):
        old, new = _statement(first, step), _statement(again, step)
        assert _events(old) < _events(new)  # the computing run's events, and one more
        (cached,) = _events(new) - _events(old)
        assert cached > max(_events(old))  # this run's pipeline.step_cached
        assert new["subject"] == old["subject"]  # the same results, by digest
        assert new["predicate"]["runDetails"]["metadata"]["invocationId"] != example.first_run
    assert int(again["ledger/checkpoint.txt"].split(b"\n")[1]) > int(
        first["ledger/checkpoint.txt"].split(b"\n")[1])


def test_an_existing_bundle_path_is_refused_before_anything_runs(
        example: Example, capsys: pytest.CaptureFixture[str]) -> None:
    before = len(_entries(example))
    capsys.readouterr()
    assert example.cli("run", str(example.file), "--bundle", str(example.bundle)) == 2
    assert "already exists" in capsys.readouterr().err
    assert len(_entries(example)) == before  # no step ran, nothing was appended
    assert example.cli("run", str(example.file), "--bundle",
                       str(example.root / "no" / "b.tar")) == 2


def test_a_flipped_byte_in_any_bundle_file_exits_3(example: Example, tmp_path: Path) -> None:
    files = layout.read_dir(example.bundle)
    pins = load_pins([str(example.pins)])
    assert verify_files(files, pins).ok
    rng = random.Random(7)
    for name, data in sorted(files.items()):
        for i in {0, len(data) - 1, *rng.sample(range(len(data)), min(12, len(data)))}:
            bad = bytearray(data)
            bad[i] ^= 0x01 if i % 2 else 0x80
            assert not verify_files({**files, name: bytes(bad)}, pins).ok, (name, i)
    for name in sorted(files)[::3]:  # and through the command line, on copies
        copy = tmp_path / name.replace("/", "_")
        shutil.copytree(example.bundle, copy)
        target = copy / name
        blob = bytearray(target.read_bytes())
        blob[len(blob) // 2] ^= 0x04
        target.write_bytes(bytes(blob))
        assert example.cli("bundle", "verify", str(copy), "--key", str(example.pins)) == 3, name


def test_planted_strings_are_absent_from_every_bundle_file(example: Example) -> None:
    files = layout.read_dir(example.bundle)
    assert len(files) >= 10
    needles = [v.encode() for v in example.planted]
    needles += [base64.b64encode(n) for n in needles]
    for name, data in files.items():
        texts = [data]
        with contextlib.suppress(ValueError, KeyError, TypeError):
            texts.append(base64.b64decode(json.loads(data)["payload"]))  # DSSE payloads
        for text in texts:
            assert not [n for n in needles if n in text], name
    assert example.env["SEALTUNE_PASSPHRASE"].encode() not in b"".join(files.values())


# -- witnesses -------------------------------------------------------------------------------


class Served:
    """``sealtune witness serve`` as a real process on 127.0.0.1."""

    def __init__(self, env: dict[str, str], directory: Path) -> None:
        self.proc = subprocess.Popen([*SEALTUNE, "witness", "serve", "--dir", str(directory),
                                      "--port", "0"], env=env, stderr=subprocess.PIPE,
                                     text=True)
        assert self.proc.stderr is not None
        self.url = self.proc.stderr.readline().split(" listening on ")[1].split()[0]
        self.vkey = self.proc.stderr.readline().split()[-1]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        assert self.proc.stderr is not None
        self.proc.stderr.close()


def _set_policy(home: Path, k: int, witnesses: list[Served]) -> None:
    path = home / "config.toml"
    doc = tomllib.loads(path.read_text())
    doc["ledger"]["witnesses"] = {"k": k, "keys": [w.vkey for w in witnesses],
                                  "urls": [w.url for w in witnesses]}
    path.write_text(tomli_w.dumps(doc))


@pytest.fixture
def witnessed(example: Example, tmp_path: Path) -> Iterator[tuple[Path, list[Served]]]:
    """A copy of the example's workspace with two witnesses that track its ledger."""
    home = tmp_path / "ws"
    shutil.copytree(Path(example.env["SEALTUNE_HOME"]), home)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SEALTUNE_")},
           **example.env, "SEALTUNE_HOME": str(home)}
    origin = f"sealtune.local/{_workspace_id(example, home)}/ledger"
    ledger_key = json.loads(example.pins.read_text())["ledger"]
    served = []
    try:
        for n in (1, 2):
            directory = tmp_path / f"w{n}"
            assert example.cli("witness", "init", str(directory), "--name",
                               f"witness.test/w{n}") == 0
            assert example.cli("witness", "add-log", str(directory), "--origin", origin,
                               "--key", ledger_key) == 0
            served.append(Served(env, directory))
        _set_policy(home, 2, served)
        yield home, served
    finally:
        for w in served:
            w.kill()


def test_two_witnesses_cosign_the_bundle_and_verify_counts_them(
        example: Example, witnessed: tuple[Path, list[Served]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    home, (w1, w2) = witnessed
    out = tmp_path / "witnessed.tar"
    assert example.cli("run", str(example.file), "--bundle", str(out), home=home) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert "cosigned by 2 witnesses (2 required)" in said
    files = layout.read_tar(out.read_bytes(), what=str(out))
    lines = files["ledger/cosignatures.txt"].decode().splitlines()
    assert sorted(line.split()[1] for line in lines) == ["witness.test/w1", "witness.test/w2"]
    pins = tmp_path / "pins.json"
    assert example.cli("bundle", "keys", "--out", str(pins), home=home) == 0
    assert json.loads(pins.read_text())["witnesses"] == {"k": 2, "keys": [w1.vkey, w2.vkey]}
    capsys.readouterr()
    assert example.cli("bundle", "verify", str(out), "--key", str(pins)) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert "✓ ledger.witnesses: 2 pinned witnesses cosigned the checkpoint" in said
    assert example.cli("bundle", "verify", str(out), "--key", str(example.pins)) == 0
    assert "not checked (pin witness keys" in " ".join(capsys.readouterr().out.split())
    stranger = tmp_path / "w3"
    assert example.cli("witness", "init", str(stranger), "--name", "witness.test/w3") == 0
    w3 = capsys.readouterr().out.strip()
    assert example.cli("bundle", "verify", str(out), "--key", str(pins), "--witness-key", w3,
                       "--witnesses-k", "3") == 3
    io = capsys.readouterr()
    assert "✗ ledger.witnesses: 2 of the 3 required pinned witnesses" in " ".join(io.out.split())
    assert io.err.startswith("integrity:")


def test_with_a_witness_down_the_run_refuses_the_bundle_or_verify_fails(
        example: Example, witnessed: tuple[Path, list[Served]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    home, (w1, w2) = witnessed
    pins = tmp_path / "pins.json"
    assert example.cli("bundle", "keys", "--out", str(pins), home=home) == 0  # k = 2
    w2.kill()
    out = tmp_path / "short.tar"
    capsys.readouterr()
    assert example.cli("run", str(example.file), "--bundle", str(out), home=home) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "1 of the 2 required witnesses cosigned" in err and "unreachable" in err
    assert "the bundle was not written" in err and not out.exists()
    short = [e for e in _entries(example, home) if e["action"] == "evidence.witnesses_short"]
    assert short and short[-1]["outcome"] == "failure"
    # With k = 1 configured the bundle is written with one cosignature; pinned k = 2 fails it.
    _set_policy(home, 1, [w1, w2])
    assert example.cli("run", str(example.file), "--bundle", str(out), home=home) == 0
    files = layout.read_tar(out.read_bytes(), what=str(out))
    assert files["ledger/cosignatures.txt"].decode().count("\n") == 1
    capsys.readouterr()
    assert example.cli("bundle", "verify", str(out), "--key", str(pins)) == 3
    said = " ".join(capsys.readouterr().out.split())
    assert "✗ ledger.witnesses: 1 of the 2 required pinned witnesses cosigned" in said
    assert example.cli("bundle", "verify", str(out), "--key", str(pins),
                       "--witnesses-k", "1") == 0
