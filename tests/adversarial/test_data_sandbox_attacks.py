"""Attacks on the data sandbox: kill its worker midway, reach the network, lose bubblewrap.

Real bubblewrap, a real workspace and the real worker. A killed worker must
leave a ``sandbox.destroyed`` entry (stage ``data``), no dataset, no build
directory and no plaintext; the network must be unreachable from the very
sandbox spec the data step uses; without bubblewrap the ingest fails closed.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
from pathlib import Path

import pytest

from sealtune.data.sandboxed import data_spec, ingest_dataset
from sealtune.errors import SealtuneError
from sealtune.sandbox import Sandbox, SandboxUnavailableError
from sealtune.workspace import Workspace


def _write(path: Path, n: int, marker: str) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": f"r{i}", "messages": [
                {"role": "user", "content": f"{marker} question {i} about parcel {i * 7}"},
                {"role": "assistant", "content": f"answer {i} for {marker}"}]}) + "\n")


def _descends_from_us(pid: int) -> bool:
    """Whether ``pid`` is a descendant of this test process.

    pytest-xdist runs other tests beside this one, and their data sandboxes run
    the same worker module: killing by command line alone SIGKILLed them too.
    """
    me = os.getpid()
    for _ in range(64):  # bounded: a parent chain is short
        try:
            status = Path(f"/proc/{pid}/status").read_text("utf-8")
        except OSError:
            return False
        ppid = next((int(line.split()[1]) for line in status.splitlines()
                     if line.startswith("PPid:")), 0)
        if ppid == me:
            return True
        if ppid <= 1:
            return False
        pid = ppid
    return False


def _worker_pids() -> list[int]:
    """Host pids of this test's data workers (the launcher's python, not bubblewrap)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (b"sealtune.data.worker" in argv and b"python" in Path(argv[0].decode()).name.encode()
                and _descends_from_us(int(entry))):
            found.append(int(entry))
    return found


def _scan(root: Path, needle: bytes, *, skip: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink() and p != skip
            and needle in p.read_bytes()]


def test_killing_the_worker_midway_destroys_the_sandbox_and_leaves_no_plaintext(
        workspace: Workspace, tmp_path: Path) -> None:
    marker = "kill-data-" + secrets.token_hex(6)
    raw = tmp_path / "raw.jsonl"
    _write(raw, 3000, marker)
    killed: list[int] = []

    def kill_on_progress(phase: str, done: int, total: int | None) -> None:
        if not killed:
            killed.extend(_worker_pids())
            for pid in killed:
                os.kill(pid, signal.SIGKILL)

    with pytest.raises(SealtuneError, match="data sandbox"):
        ingest_dataset(workspace, raw, name="killed", progress=kill_on_progress)
    assert killed, "the worker was never seen"
    entries = [e for e in workspace.ledger.entries() if e.resource == "dataset/killed"]
    actions = [e.action for e in entries]
    assert actions[0] == "sandbox.created" and "sandbox.destroyed" in actions
    assert "sandbox.outputs_sealed" not in actions
    destroyed = next(e for e in entries if e.action == "sandbox.destroyed").details
    assert destroyed["stage"] == "data" and destroyed["processes_left"] == 0
    failed = [e for e in entries if e.action == "data.ingest"]
    assert [e.outcome for e in failed] == ["failure"]
    datasets = workspace.root / "datasets"
    assert not (datasets / "killed").exists() and not list(datasets.glob(".build-*"))
    assert _worker_pids() == []
    for root in (workspace.root, tmp_path):
        assert _scan(root, marker.encode(), skip=raw) == []
    assert marker not in json.dumps([e.details for e in workspace.ledger.entries()])


def test_the_data_sandbox_has_no_network_and_no_keyring(workspace: Workspace,
                                                       tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    raw = tmp_path / "raw.jsonl"
    _write(raw, 2, "net")
    job = tmp_path / "job.json"
    job.write_text("{}")
    out = tmp_path / "out"
    out.mkdir()
    spec = data_spec(workspace, out=out, src=raw, job_file=job)
    assert spec.stage == "data"
    with Sandbox(spec) as box:
        box.start("sealtune.sandbox._probe_child", [
            "selfcheck", f"connect=127.0.0.1:{port}", "connect=example.com:443",
            f"read={workspace.keyfile_path}", f"read={workspace.ledger_path}",
            "read=/sandbox/in/raw", "environ"], secrets={"dataset_keys": b"k" * 32})
        events = [e for e in box.events(timeout=60) if e.type == "event"]
    listener.close()
    check = next(e.fields for e in events if e.name == "selfcheck")
    assert check["interfaces"] == "lo" and check["seccomp"] == 2
    results = [e.fields for e in events if e.name == "check"]
    connects = [r for r in results if r.get("check") == "connect"]
    assert len(connects) == 2 and not any(r["ok"] for r in connects)
    reads = [r["ok"] for r in results if r.get("check") == "read"]
    assert reads == [False, False, True]  # keyring and ledger absent; the raw input there
    environ = next(e.fields for e in events if e.name == "environ")
    assert environ["found"] == ""


def test_without_bubblewrap_the_ingest_fails_closed(workspace: Workspace,
                                                   tmp_path: Path) -> None:
    raw = tmp_path / "raw.jsonl"
    _write(raw, 3, "nobwrap")
    with pytest.raises(SandboxUnavailableError) as info:
        ingest_dataset(workspace, raw, name="nobox", bwrap=str(tmp_path / "no-bwrap"))
    assert "--no-sandbox" in (info.value.hint or "")
    datasets = workspace.root / "datasets"
    assert not (datasets / "nobox").exists() and not list(datasets.glob(".build-*"))
    actions = [e.action for e in workspace.ledger.entries() if e.resource == "dataset/nobox"]
    assert actions == ["data.refused", "data.ingest"]
