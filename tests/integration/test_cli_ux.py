"""The CLI as people use it: whole ids at 80 and 60 columns, ``jobs show latest``,
``--version`` and help texts that show their brackets.

One real workspace holds keys, API keys, token keys, a dataset and two real
(unsandboxed, one-step) training jobs; every table is printed at several widths
and each identifier a person would copy must appear whole on one line.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import redirect_stdout
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from io import StringIO
from pathlib import Path

import pytest
import torch
from rich.cells import cell_len
from rich.text import Text

import sealtune
from sealtune.cli import app
from sealtune.cli import main as cli_main
from sealtune.cli._common import console
from sealtune.data.ingest import ingest
from sealtune.keys.keyfile import KdfParams
from sealtune.serve.keystore import FILE_NAME, KeyStore
from sealtune.train.config import TrainConfig
from sealtune.train.jobs import run_job
from sealtune.train.tiny import make_tiny
from sealtune.workspace import Workspace

SEALTUNE = [sys.executable, "-m", "sealtune"]


@dataclass
class Populated:
    root: Path
    passphrase: str
    ids: dict[str, list[str]]
    jobs: list[str]


def _raw(path: Path) -> Path:
    rows = [{"id": f"t{i}", "messages": [
        {"role": "user", "content": f"How do I reset my password, attempt {i}?"},
        {"role": "assistant", "content": f"Tap 'Forgot password' (step {i})."}]}
        for i in range(8)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Populated]:
    tmp = tmp_path_factory.mktemp("ux")
    passphrase = "ux-" + secrets.token_hex(12)
    ws = Workspace.init(tmp / "ws", passphrase=passphrase, kdf=KdfParams.unsafe_fast(),
                        default_key="platform")
    torch.set_num_threads(1)
    try:
        ws.keys.create("customer-records-eu-west-2026", backend="local")
        store = KeyStore(ws.root / FILE_NAME)
        now = datetime.now(UTC)
        _, named = store.create(role="consumer", name="mobile app production", now=now)
        _, unnamed = store.create(role="admin", now=now)
        ingest(ws, _raw(tmp / "raw.jsonl"), name="support-tickets-2026")
        base = make_tiny(tmp / "base", seed=0)
        config = TrainConfig.from_dict({"max_steps": 1, "batch_size": 4, "max_length": 32})
        jobs = []
        for out in ("support-assistant-v1", "support-assistant-v2"):
            with pytest.warns(UserWarning, match="WITHOUT the sandbox"):
                jobs.append(run_job(ws, dataset="support-tickets-2026", base=base,
                                    config=config, out_name=out, sandbox=False,
                                    threads=1).job_id)
    finally:
        ws.close()
    home = ["--home", str(ws.root)]
    os.environ["SEALTUNE_PASSPHRASE"] = passphrase
    try:
        assert cli_main(["auth", "rotate-token-key", *home]) == 0
        kids = [k["kid"] for k in _json(["auth", "token-keys", "--json", *home])]
        resources = [e["resource"] for e in _json_lines(["audit", "log", "--json", *home])]
    finally:
        del os.environ["SEALTUNE_PASSPHRASE"]
    assert len(kids) == 2 and len(jobs) == 2
    yield Populated(root=ws.root, passphrase=passphrase, jobs=jobs, ids={
        "keys list": ["customer-records-eu-west-2026", "platform"],
        "jobs list": [*jobs, "support-assistant-v1", "support-assistant-v2"],
        "auth list-keys": [named.key_id, unnamed.key_id, unnamed.name],
        "auth token-keys": kids,
        "data list": ["support-tickets-2026"],
        "audit log": [*resources, "serve.jwt_key_rotated", "sandbox.data_decrypted"],
    })


def _stdout(argv: list[str]) -> str:
    buf = StringIO()
    with redirect_stdout(buf):
        assert cli_main(argv) == 0
    return buf.getvalue()


def _json(argv: list[str]) -> list[dict[str, str]]:
    return json.loads(_stdout(argv))  # type: ignore[no-any-return]


def _json_lines(argv: list[str]) -> list[dict[str, str]]:
    return [json.loads(line) for line in _stdout(argv).splitlines()]


@pytest.fixture
def as_user(populated: Populated, monkeypatch: pytest.MonkeyPatch) -> Populated:
    monkeypatch.setenv("SEALTUNE_PASSPHRASE", populated.passphrase)
    return populated


def _printed(argv: list[str], width: int, capsys: pytest.CaptureFixture[str],
             monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(console, "width", width)  # what COLUMNS sets when the CLI starts
    capsys.readouterr()
    assert cli_main(argv) == 0
    return capsys.readouterr().out


TABLES = ["keys list", "jobs list", "auth list-keys", "auth token-keys", "data list",
          "audit log"]


@pytest.mark.parametrize("width", [80, 60, 40])
@pytest.mark.parametrize("command", TABLES)
def test_tables_print_every_identifier_whole_on_one_line(
        as_user: Populated, command: str, width: int, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    out = _printed([*command.split(), "--home", str(as_user.root)], width, capsys, monkeypatch)
    lines = out.splitlines()
    for ident in as_user.ids[command]:
        assert any(ident in line for line in lines), (command, width, ident, out)
    assert "…" not in out
    if width >= 60 and command != "audit log":  # these fit as tables: nothing overflows
        assert max(cell_len(line.rstrip()) for line in lines) <= width, out


def test_tables_follow_columns_from_the_environment(populated: Populated) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALTUNE_")}
    env.update({"SEALTUNE_PASSPHRASE": populated.passphrase, "COLUMNS": "80",
                "SEALTUNE_HOME": str(populated.root)})
    for command in ("jobs list", "auth list-keys"):
        res = subprocess.run([*SEALTUNE, *command.split()], env=env, capture_output=True,
                             text=True, timeout=120, check=False)
        assert res.returncode == 0, res.stderr
        lines = res.stdout.splitlines()
        assert max(cell_len(line) for line in lines) <= 80
        for ident in populated.ids[command]:
            assert any(ident in line for line in lines), (command, ident, res.stdout)


def test_jobs_show_latest_and_unique_prefixes(as_user: Populated,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    first, newest = as_user.jobs
    home = ["--home", str(as_user.root)]
    capsys.readouterr()
    assert cli_main(["jobs", "show", "latest", "--json", *home]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == newest
    n = next(n for n in range(1, len(newest) + 1) if not first.startswith(newest[:n]))
    assert cli_main(["jobs", "show", newest[:n], "--json", *home]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == newest
    assert cli_main(["jobs", "show", "job-", *home]) == 2
    err = capsys.readouterr().err
    assert "start of 2 job ids" in err and first in err and newest in err
    assert cli_main(["jobs", "show", "job-19990101", *home]) == 2
    assert "no job 'job-19990101'" in capsys.readouterr().err


def test_jobs_show_latest_without_jobs_is_a_usage_error(
        workspace: Workspace, passphrase: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SEALTUNE_PASSPHRASE", passphrase)
    assert cli_main(["jobs", "show", "latest", "--home", str(workspace.root)]) == 2
    assert "no jobs yet" in capsys.readouterr().err


def test_version_is_the_installed_distribution() -> None:
    res = subprocess.run([*SEALTUNE, "--version"], capture_output=True, text=True, timeout=60,
                         check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"sealtune {version('sealtune')}\n"
    assert version("sealtune") == sealtune.__version__


def _commands() -> list[tuple[list[str], object]]:
    import typer

    out: list[tuple[list[str], object]] = []

    def walk(cmd: object, path: list[str]) -> None:
        out.append((path, cmd))
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return out


def test_help_texts_keep_their_brackets(capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    commands = _commands()
    assert len(commands) > 40  # the walk reached the subcommands
    literal = []
    for path, cmd in commands:
        texts = [getattr(cmd, "help", None) or ""]
        texts += [getattr(p, "help", None) or "" for p in getattr(cmd, "params", [])]
        for text in texts:
            # rich markup eats "[word]"; every bracket must be escaped to survive
            assert Text.from_markup(text).plain == text.replace("\\[", "["), (path, text)
            literal += [(path, w.replace("\\[", "[")) for w in text.split() if "\\[" in w]
    assert (["pii", "detect"], "[pii]") in literal
    for path, _ in commands:  # every help page renders
        capsys.readouterr()
        assert cli_main([*path, "--help"]) == 0, path
        out = capsys.readouterr().out
        assert "Usage: sealtune" in out
        for word in (w for p, w in literal if p == path):
            assert word in out, (path, word)
