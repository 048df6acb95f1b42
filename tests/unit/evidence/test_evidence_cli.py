"""``sealtune bundle keys`` and ``verify`` through the CLI (in-process)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from sealtune.cli import main as cli_main
from sealtune.evidence import evidence_signer

from .conftest import Run


def test_keys_prints_the_pin_file_and_verify_uses_it(
        make_run: Callable[..., Run], tmp_path: Path, passphrase: str,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run()
    run.recorder.write(tmp_path / "b.tar", tar=True)
    monkeypatch.setenv("SEALTUNE_PASSPHRASE", passphrase)
    capsys.readouterr()
    assert cli_main(["bundle", "keys", "--home", str(run.ws.root)]) == 0
    printed = capsys.readouterr().out
    pins = json.loads(printed)
    assert pins["evidence"]["keyid"] == evidence_signer(run.ws).keyid
    assert pins["ledger"] == run.ws.ledger_signer().verifier_key
    assert passphrase not in printed and "PRIVATE" not in printed
    (tmp_path / "pins.json").write_text(printed)
    monkeypatch.delenv("SEALTUNE_PASSPHRASE")  # verify needs no workspace and no passphrase
    assert cli_main(["bundle", "verify", str(tmp_path / "b.tar"), "--key",
                     str(tmp_path / "pins.json")]) == 0
    assert "bundle verified: 13 checks passed" in capsys.readouterr().out


def test_verify_without_a_pinned_key_is_a_usage_error(
        bundle_dir: tuple[Run, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, path = bundle_dir
    assert cli_main(["bundle", "verify", str(path)]) == 2
    assert "pin the evidence key" in capsys.readouterr().err
    assert cli_main(["bundle", "verify", str(path.parent / "none"), "--key",
                     "sha256:" + "0" * 64]) == 2


def test_hostile_names_are_printed_literally(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("[red]x[/red]\x1b[2J")
        tar.addfile(info, io.BytesIO(b""))
    (tmp_path / "evil.tar").write_bytes(buf.getvalue())
    assert cli_main(["bundle", "verify", str(tmp_path / "evil.tar"), "--key",
                     "sha256:" + "0" * 64]) == 3
    out = capsys.readouterr().out
    assert "[red]x[/red]" in out and "\x1b[2J" not in out
