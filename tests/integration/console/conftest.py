"""A real workspace after the example pipeline ran (``sealtune pipeline init`` then
``sealtune run``), with unique planted values in its data, and API keys of every role.

Made once per session (about a minute): the API tests and the browser tests read it.
Nothing is mocked; the values planted in the data must never appear in a response.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sealtune.pipeline.example import init_example
from sealtune.workspace import Workspace

SEALTUNE = [sys.executable, "-m", "sealtune"]


@dataclass
class RunWorkspace:
    """The workspace of a finished example run."""

    home: Path
    env: dict[str, str]
    passphrase: str
    planted: list[str]
    keys: dict[str, str]  # role -> API key
    example: Path  # the 'sealtune pipeline init' directory (data/, tiny-base/)

    def open(self) -> Workspace:
        return Workspace.open(self.home, passphrase=self.passphrase)


def _plant(raw: Path) -> list[str]:
    rng = random.Random(secrets.randbits(32))
    values, lines = [], []
    for i in range(4):
        name = rng.choice(["欧阳", "司马", "诸葛"]) + "".join(rng.sample("震霆蔚岚秋笛云舒", 2))
        phone = f"13{rng.randint(5, 9)}{rng.randint(10**7, 10**8 - 1)}"
        email = f"{secrets.token_hex(6)}@example.org"
        marker = f"zqv{secrets.token_hex(6)}"
        values += [name, phone, email, marker]
        lines.append(json.dumps({"id": f"planted-{i}", "messages": [
            {"role": "user", "content": f"你好，我是{name}，手机{phone}，邮箱{email}，退款没到。"},
            {"role": "assistant", "content": f"您好，已登记，工单 {marker}。"}]},
            ensure_ascii=False))
    with raw.open("a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    return values


def _run(env: dict[str, str], *args: str) -> str:
    res = subprocess.run([*SEALTUNE, *args], env=env, capture_output=True, text=True,
                         timeout=600, check=False)
    assert res.returncode == 0, (args, res.stdout[-2000:], res.stderr[-2000:])
    return res.stdout


@pytest.fixture(scope="session")
def example_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunWorkspace]:
    """The example pipeline, run once in a fresh workspace, plus one API key per role."""
    root = tmp_path_factory.mktemp("console")
    home, passphrase = root / "ws", "pp-" + secrets.token_hex(12)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALTUNE_")}
    (root / "tmp").mkdir()
    env.update({"SEALTUNE_HOME": str(home), "SEALTUNE_PASSPHRASE": passphrase,
                "SEALTUNE_UNSAFE_FAST_KDF": "1", "TMPDIR": str(root / "tmp"), "COLUMNS": "200"})
    # 'sealtune pipeline init' in this process (its tiny base model needs torch, which a
    # subprocess would import again); then 'sealtune init' and 'sealtune run', as a user does
    init_example(root / "ex")
    planted = _plant(root / "ex" / "data" / "conversations.jsonl")
    _run(env, "init")
    _run(env, "run", str(root / "ex" / "pipeline.yaml"))
    from sealtune.serve import create_api_key

    ws = Workspace.open(home, passphrase=passphrase)
    try:
        keys = {role: create_api_key(ws, role=role, name=f"console-{role}")[0]
                for role in ("admin", "operator", "auditor", "consumer")}
    finally:
        ws.close()
    yield RunWorkspace(home, env, passphrase, planted, keys, root / "ex")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def console_url(example_run: RunWorkspace) -> Iterator[str]:
    """``sealtune console`` (a subprocess) over the example run's workspace."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "sealtune", "console", "--port", str(port)],
                            env=example_run.env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/login", timeout=2) as r:
                    r.read()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "console did not start"
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.communicate(timeout=20)  # reaps it and closes the stderr pipe


@pytest.fixture(scope="session")
def registry_run(example_run: RunWorkspace, tmp_path_factory: pytest.TempPathFactory
                 ) -> RunWorkspace:
    """A copy of the example run whose trained model is registered as ``bot@v1..v3``, with
    ``dev`` promoted to v1 then v2 (by the registry's own API, gate skipped in setup only:
    the run has no gate report, and the console never offers the skip)."""
    import shutil
    import warnings

    from sealtune.registry import promote, register_model
    from sealtune.train.jobs.records import list_jobs

    home = tmp_path_factory.mktemp("registry") / "ws"
    shutil.copytree(example_run.home, home, symlinks=True)
    run = RunWorkspace(home, {**example_run.env, "SEALTUNE_HOME": str(home)},
                       example_run.passphrase, example_run.planted, example_run.keys,
                       example_run.example)
    ws = run.open()
    try:
        job = [j for j in list_jobs(ws) if j["status"] == "finished"][-1]["id"]
        for _ in range(3):
            register_model(ws, "bot", job=job)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            promote(ws, "bot@v1", stage="dev", unsafe_skip_gate=True)
            promote(ws, "bot@v2", stage="dev", unsafe_skip_gate=True)
    finally:
        ws.close()
    return run


def start_console(run: RunWorkspace) -> tuple[str, subprocess.Popen[bytes]]:
    """``sealtune console`` over ``run``'s workspace; returns its URL and the process."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "sealtune", "console", "--port", str(port)],
                            env=run.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url + "/login", timeout=2) as r:
                r.read()
            return url, proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(proc.stderr.read() if proc.stderr else "no console") from None
            time.sleep(0.3)


@pytest.fixture(scope="session")
def registry_console(registry_run: RunWorkspace, tmp_path_factory: pytest.TempPathFactory
                     ) -> Iterator[tuple[str, RunWorkspace]]:
    """``sealtune console`` over a copy of :func:`registry_run`'s workspace (the browser
    changes it; the API tests copy the untouched one): its URL and that copy."""
    import shutil

    home = tmp_path_factory.mktemp("registry-browser") / "ws"
    shutil.copytree(registry_run.home, home, symlinks=True)
    run = RunWorkspace(home, {**registry_run.env, "SEALTUNE_HOME": str(home)},
                       registry_run.passphrase, registry_run.planted, registry_run.keys,
                       registry_run.example)
    url, proc = start_console(run)
    try:
        yield url, run
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


@pytest.fixture(scope="session")
def lenient_gate_policy(example_run: RunWorkspace) -> Path:
    """The default gate policy (``sealtune assess policy init``) with the model-file scan
    only: a real, signed gate report in seconds (nothing runs in the sandbox)."""
    path = example_run.example / "gate-lenient.yaml"
    _run(example_run.env, "assess", "policy", "init", str(path))
    text = path.read_text()
    for probe in ("utility", "canary_exposure", "membership", "extraction",
                  "pii_regurgitation", "safety_drift"):
        text = text.replace(f"  {probe}:\n    run: when-available", f"  {probe}:\n    run: 'off'")
    path.write_text(text)
    return path


@pytest.fixture
def console_process() -> Iterator[Any]:
    """Start ``sealtune console`` processes over a run's workspace (``start(run)`` -> URL);
    ``stop(url)`` ends one; whatever is left is stopped at teardown."""
    procs: dict[str, subprocess.Popen[bytes]] = {}

    class Consoles:
        def start(self, run: RunWorkspace) -> str:
            url, procs[url] = start_console(run)
            return url

        def stop(self, url: str) -> None:
            proc = procs.pop(url)
            proc.terminate()
            proc.communicate(timeout=20)

    consoles = Consoles()
    yield consoles
    for url in list(procs):
        consoles.stop(url)
