"""The bubblewrap training sandbox, for real: no mocks of bwrap, sockets or processes.

Each test starts a real sandbox running ``sealtune.sandbox._probe_child``, which
tries to break out and reports what happened as structured events.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import secrets
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from sealtune.errors import ConfigError
from sealtune.sandbox import (
    Limits,
    Sandbox,
    SandboxCancelled,
    SandboxError,
    SandboxEvent,
    SandboxSpec,
    SandboxUnavailableError,
    Teardown,
    Timeline,
    measure,
    namespace_members,
    probe,
    wire,
)
from sealtune.workspace import Workspace

PROBE = "sealtune.sandbox._probe_child"
SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def bwrap_ok() -> None:
    try:
        probe()
    except SandboxUnavailableError as exc:
        pytest.fail(f"no working bubblewrap here (scripts/install installs it): {exc.message}")


@pytest.fixture
def out(tmp_path: Path) -> Path:
    path = tmp_path / "out"
    path.mkdir()
    return path


def run(spec: SandboxSpec, args: Sequence[str], *, secrets_: Mapping[str, bytes] | None = None,
        timeout: float = 20) -> tuple[list[SandboxEvent], Teardown, Sandbox]:
    with Sandbox(spec) as box:
        box.start(PROBE, list(args), secrets=secrets_)
        events = list(box.events(timeout=timeout))
    return events, box.destroy(), box


def checks(events: list[SandboxEvent], name: str = "check") -> list[Mapping[str, object]]:
    return [e.fields for e in events if e.type == "event" and e.name == name]


def errnos(events: list[SandboxEvent], check: str) -> list[object]:
    return [c["errno"] for c in checks(events) if c["check"] == check]


@pytest.fixture
def tcp_server() -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def host_address() -> str | None:
    """A non-loopback address of this host, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))  # TEST-NET: no packet is sent
        except OSError:
            return None
        addr: str = sock.getsockname()[0]
    return None if addr.startswith("127.") else addr


@pytest.mark.usefixtures("bwrap_ok")
def test_no_network_inside(out: Path, tcp_server: int) -> None:
    socket.create_connection(("127.0.0.1", tcp_server), timeout=2).close()  # works outside
    name = "sealtune-test-" + secrets.token_hex(6)
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind("\0" + name)
    abstract.listen()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect("\0" + name)  # works outside
    targets = [f"connect=127.0.0.1:{tcp_server}", f"uconnect={name}", "selfcheck"]
    if (addr := host_address()) is not None:
        targets.append(f"connect={addr}:{tcp_server}")
    events, _, _ = run(SandboxSpec(output_dir=out), targets)
    abstract.close()
    assert [c["ok"] for c in checks(events)] == [False] * (len(targets) - 1)
    assert errnos(events, "connect")[0] == "ECONNREFUSED"  # the sandbox's own, empty lo
    assert errnos(events, "uconnect") == ["ECONNREFUSED"]
    assert checks(events, "selfcheck")[0]["interfaces"] == "lo"


@pytest.mark.usefixtures("bwrap_ok")
def test_keyring_and_workspace_invisible(workspace: Workspace, out: Path, tmp_path: Path) -> None:
    keyfile = workspace.keyfile_path
    assert keyfile.read_bytes()  # readable outside
    spec = SandboxSpec(output_dir=out, hidden=(workspace.root,))
    events, _, _ = run(spec, [f"read={keyfile}", f"read={workspace.root / 'config.toml'}"])
    assert errnos(events, "read") == ["ENOENT", "ENOENT"]
    with pytest.raises(ConfigError, match="hidden"):
        Sandbox(SandboxSpec(output_dir=out, hidden=(workspace.root,), code_dirs=(tmp_path,)))
    with pytest.raises(ConfigError, match="hidden"):
        Sandbox(SandboxSpec(output_dir=out, hidden=(workspace.root,),
                            inputs={"data": workspace.root}))


@pytest.mark.usefixtures("bwrap_ok")
def test_writes_only_reach_the_output_dir(out: Path, tmp_path: Path) -> None:
    base = tmp_path / "base-model"
    base.mkdir()
    (base / "weights.bin").write_bytes(b"w")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    targets = ["/x", "/dev/x", "/usr/x", f"{sys.prefix}/x", f"{SRC}/x",
               "/sandbox/in/base/x", f"{elsewhere}/x"]
    spec = SandboxSpec(output_dir=out, inputs={"base": base})
    events, _, _ = run(spec, [*(f"write={t}" for t in targets), "write=/sandbox/out/ok",
                              "sysctl=/proc/sys/kernel/core_pattern", "read=/sandbox/in/base"])
    assert errnos(events, "write") == ["EROFS"] * 6 + ["ENOENT", ""]
    assert errnos(events, "sysctl") == ["EROFS"]
    assert (out / "ok").read_bytes() == b"x"
    assert list(elsewhere.iterdir()) == []


@pytest.mark.usefixtures("bwrap_ok")
def test_kernel_session_keyring_is_not_inherited(out: Path) -> None:
    # add_key(2) and keyctl(2) syscall numbers per architecture
    add_key, keyctl = {"x86_64": (248, 250), "aarch64": (217, 219)}[os.uname().machine]
    libc = ctypes.CDLL(None, use_errno=True)
    key_id = libc.syscall(add_key, b"user", b"sealtune-test", b"hush", 4, -3)  # session keyring
    assert key_id >= 0, f"add_key failed: errno {ctypes.get_errno()}"
    try:
        buf = ctypes.create_string_buffer(16)
        assert libc.syscall(keyctl, 11, key_id, buf, 16) == 4  # readable outside
        events, _, _ = run(SandboxSpec(output_dir=out), [f"keyctl={key_id}"])
        assert [c["ok"] for c in checks(events)] == [False]
    finally:
        libc.syscall(keyctl, 3, key_id)  # KEYCTL_REVOKE


@pytest.mark.usefixtures("bwrap_ok")
def test_environment_is_scrubbed(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEALTUNE_PLANTED", "planted-" + secrets.token_hex(8))
    monkeypatch.setenv("SEALTUNE_ALLOWED", "1")
    spec = SandboxSpec(output_dir=out, pass_env=("SEALTUNE_ALLOWED",))
    events, _, _ = run(spec, ["env=SEALTUNE_PLANTED", "env=SEALTUNE_ALLOWED", "env=PATH"])
    assert [c["present"] for c in checks(events)] == [False, True, True]
    with pytest.raises(ConfigError, match="SEALTUNE_PASSPHRASE"):
        Sandbox(SandboxSpec(output_dir=out, pass_env=("SEALTUNE_PASSPHRASE",)))


@pytest.mark.usefixtures("bwrap_ok")
def test_key_arrives_over_the_pipe_only(out: Path) -> None:
    key = secrets.token_bytes(32)
    events, _, _ = run(SandboxSpec(output_dir=out), ["key=dk", "out=model.sealed"],
                       secrets_={"dk": key})
    (reported,) = checks(events, "key")
    assert reported == {"key": "dk", "sha256": hashlib.sha256(key).hexdigest(),
                        "in_environ": False}
    assert checks(events, "started")[0]["keys"] == 1
    for path in out.rglob("*"):
        blob = path.read_bytes()
        assert key not in blob and key.hex().encode() not in blob


@pytest.mark.usefixtures("bwrap_ok")
def test_tmpfs_workspace_is_wiped_and_gone(out: Path) -> None:
    marker = "PLAINTEXT-" + secrets.token_hex(8)
    events, teardown, box = run(SandboxSpec(output_dir=out), [f"tmpfile={marker}"])
    assert checks(events, "workspace_wiped")[0]["files"] == 1
    assert teardown.namespaces_released and teardown.processes_left == 0
    mnt = box.namespaces["mnt-namespace"]
    assert namespace_members({"mnt-namespace": mnt}) == []  # no one holds its mounts
    assert list(out.iterdir()) == []
    assert [e.name for e in box.lifecycle] == ["created", "exited", "destroyed"]


@pytest.mark.usefixtures("bwrap_ok")
def test_tmpfs_is_size_limited(out: Path) -> None:
    spec = SandboxSpec(output_dir=out, tmpfs_size=1 << 20)
    events, _, _ = run(spec, ["fill=/tmp/a:524288", "fill=/tmp/b:2097152",
                              "fill=/dev/shm/c:2097152"])
    assert errnos(events, "fill") == ["", "ENOSPC", "ENOSPC"]


HELPER = """
import json, sys
from pathlib import Path
from sealtune.sandbox import Sandbox, SandboxSpec
box = Sandbox(SandboxSpec(output_dir=Path(sys.argv[1])))
box.start("sealtune.sandbox._probe_child", ["tmpfile=" + sys.argv[2], "spawn=3", "hold"],
          secrets={"dk": bytes(32)})
for event in box.events(timeout=60):
    if event.name == "holding":
        print(json.dumps({"bwrap": box.pid, **box.namespaces}), flush=True)
"""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rpartition(b")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def wait_gone(pids: Sequence[int], namespaces: Mapping[str, int]) -> None:
    deadline = time.monotonic() + 10
    while any(map(alive, pids)) or namespace_members(namespaces):
        assert time.monotonic() < deadline, "sandbox processes survived"
        time.sleep(0.02)


@pytest.mark.usefixtures("bwrap_ok")
def test_kill_9_of_the_parent_leaves_nothing(out: Path, tmp_path: Path) -> None:
    marker = "PLAINTEXT-" + secrets.token_hex(8)
    script = tmp_path / "helper.py"
    script.write_text(HELPER)
    with subprocess.Popen([sys.executable, str(script), str(out), marker],
                          stdout=subprocess.PIPE, text=True) as helper:
        assert helper.stdout is not None
        info = json.loads(helper.stdout.readline())
        assert namespace_members(info), "the sandbox should be running"
        helper.send_signal(signal.SIGKILL)
    wait_gone([info["bwrap"]], info)
    assert list(out.iterdir()) == []
    for path in tmp_path.rglob("*"):
        assert not path.is_file() or marker.encode() not in path.read_bytes()


@pytest.mark.usefixtures("bwrap_ok")
def test_kill_9_of_bwrap_and_destroy_midway(out: Path) -> None:
    for how in ("kill-bwrap", "destroy"):
        box = Sandbox(SandboxSpec(output_dir=out))
        box.start(PROBE, ["spawn=3", "hold"])
        stream = box.events(timeout=20)
        assert next(e for e in stream if e.name == "holding")
        # the launcher (init: --as-pid-1, no bubblewrap reaper inside) and 3 grandchildren
        assert len(namespace_members(box.namespaces)) == 4
        assert box.pid is not None
        if how == "kill-bwrap":
            os.kill(box.pid, signal.SIGKILL)
            assert [e.name for e in stream][-1] == "exited"
        teardown = box.destroy()
        assert teardown.processes_left == 0 and teardown.namespaces_released
        wait_gone([box.pid], box.namespaces)


@pytest.mark.usefixtures("bwrap_ok")
def test_resource_limits_apply(out: Path) -> None:
    limits = Limits(open_files=64, address_space=8 << 30, cpu_seconds=120, file_size=1 << 20)
    events, _, _ = run(SandboxSpec(output_dir=out, limits=limits), ["rlimits"])
    assert checks(events, "rlimits") == [{"nofile": 64, "nofile_hard": 64,
                                          "address_space": 8 << 30, "cpu": 120, "core": 0,
                                          "fsize": 1 << 20}]


@pytest.mark.usefixtures("bwrap_ok")
def test_failure_reports_the_class_only(out: Path) -> None:
    with Sandbox(SandboxSpec(output_dir=out)) as box:
        box.start(PROBE, ["progress=2", "fail"])
        events = list(box.events(timeout=20))
    errors = [e.fields for e in events if e.type == "error"]
    assert errors == [{"kind": "ValueError"}]
    assert box.exit_code == 1
    dump = repr(events) + box._stderr.decode(errors="replace")
    assert "110101" not in dump and "张三" not in dump
    progress = [e.fields for e in events if e.type == "progress"]
    assert [p["step"] for p in progress] == [1, 2] and progress[0]["total"] == 2


@pytest.mark.usefixtures("bwrap_ok")
def test_outputs_are_sanitized(out: Path) -> None:
    _, teardown, _ = run(SandboxSpec(output_dir=out), ["escape_out"])
    assert teardown.outputs_removed == 2  # the symlink and the fifo
    assert sorted(teardown.unexpected) == ["fifo", "link"]
    assert [p.name for p in out.iterdir()] == ["suid"]
    assert stat.S_IMODE((out / "suid").stat().st_mode) == 0o600


@pytest.mark.usefixtures("bwrap_ok")
def test_timeout_destroys(out: Path) -> None:
    box = Sandbox(SandboxSpec(output_dir=out))
    box.start(PROBE, ["hold"])
    with pytest.raises(SandboxError, match="within"):
        list(box.events(timeout=1))
    assert box.destroy().processes_left == 0


@pytest.mark.usefixtures("bwrap_ok")
def test_cancel_destroys_at_once(out: Path) -> None:
    box = Sandbox(SandboxSpec(output_dir=out))
    box.start(PROBE, ["hold"])
    asked: list[float] = []

    def cancel() -> bool:  # asked repeatedly while the sandbox runs; true after a second
        asked.append(time.monotonic())
        return asked[-1] - asked[0] > 1.0
    with pytest.raises(SandboxCancelled, match="cancelled"):
        list(box.events(timeout=60, cancel=cancel))
    assert len(asked) >= 4 and box.destroy().processes_left == 0
    assert asked[-1] - asked[0] < 5 and box.lifecycle[-1].name == "destroyed"


@pytest.mark.usefixtures("bwrap_ok")
def test_probe_reports_version() -> None:
    assert probe().version.startswith("bubblewrap")


def test_probe_without_bwrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "o"
    out.mkdir()
    with pytest.raises(SandboxUnavailableError, match="not found at") as missing:
        probe(SandboxSpec(output_dir=out, bwrap=str(tmp_path / "no" / "bwrap")))
    assert missing.value.hint is not None and "--no-sandbox" in missing.value.hint
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SandboxUnavailableError, match="not found on PATH"):
        probe()


def test_probe_with_broken_bwrap(tmp_path: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    with pytest.raises(SandboxUnavailableError, match="could not create") as broken:
        probe(SandboxSpec(output_dir=out, bwrap="/bin/false"))
    assert broken.value.hint is not None and "--no-sandbox" in broken.value.hint


@pytest.mark.usefixtures("bwrap_ok")
def test_probe_when_the_code_is_not_bound(tmp_path: Path) -> None:
    # scripts/install installs sealtune editable: its code lives outside the venv and is
    # only visible in the sandbox when bound.
    assert SRC.is_dir()
    assert not any(str(SRC).startswith(d) for d in (sys.prefix, sys.base_prefix))
    with pytest.raises(SandboxUnavailableError, match="self-check did not run"):
        probe(SandboxSpec(output_dir=tmp_path, code_dirs=()))


def test_event_channel_refuses_text() -> None:
    with pytest.raises(wire.ProtocolError):
        wire.decode_event(b'{"type":"event","name":"log","text":"patient Zhang San"}')
    with pytest.raises(wire.ProtocolError):
        wire.decode_event(b'{"type":"shell","name":"x"}')
    assert wire.decode_event(b'{"type":"progress","name":"progress","step":3}')["step"] == 3


def test_measure_is_stable_and_sensitive(tmp_path: Path) -> None:
    code = tmp_path / "code"
    (code / "__pycache__").mkdir(parents=True)
    (code / "m.py").write_text("x = 1\n")
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"weights")
    first = measure(code=[code], config=b"lr: 1", base_model=model, inputs={"train": model})
    (code / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"cache")
    assert measure(code=[code], config=b"lr: 1", base_model=model,
                   inputs={"train": model}) == first
    (code / "m.py").write_text("x = 2\n")
    second = measure(code=[code], config=b"lr: 1", base_model=model, inputs={"train": model})
    assert second.code != first.code and second.config == first.config
    assert second.digest != first.digest and first.digest.startswith("sha256:")


@pytest.mark.usefixtures("bwrap_ok")
def test_a_data_stage_sandbox_records_the_same_lifecycle_marked_with_its_stage(
        workspace: Workspace, out: Path, tmp_path: Path) -> None:
    """The sandbox is stage-neutral: the data step gets training's ledger events, marked data."""
    raw = tmp_path / "raw.jsonl.sealed"
    raw.write_bytes(b"SEALTUNE" + bytes(64))
    spec = SandboxSpec(output_dir=out, stage="data", hidden=(workspace.root,),
                       inputs={"raw": raw}, outputs=("data.jsonl.sealed",))

    def record(action: str, details: Mapping[str, object], *, at: float | None = None,
               outcome: str = "success") -> None:
        workspace.audit(action, "dataset/d", outcome=outcome,  # type: ignore[arg-type]
                        details=dict(details))

    timeline = Timeline(spec, record, measurement=measure(code=[], config=b"{}").to_dict())
    wiped: object = None
    with Sandbox(spec) as box:  # an entry named as module:function
        box.start(f"{PROBE}:main", ["milestone=data_decrypted", "out=data.jsonl.sealed",
                                    "milestone=outputs_sealed"], secrets={"data": bytes(32)})
        for ev in box.events(timeout=20):
            timeline.observe(ev)
            wiped = ev.fields.get("files") if ev.name == "workspace_wiped" else wiped
    timeline.destroyed(box.destroy(), exit_code=box.exit_code, wiped=wiped)
    assert box.exit_code == 0
    entries = [e for e in workspace.ledger.entries() if e.resource == "dataset/d"]
    assert [e.action for e in entries] == ["sandbox.created", "sandbox.data_decrypted",
                                           "sandbox.outputs_sealed", "sandbox.destroyed"]
    assert {e.details["stage"] for e in entries} == {"data"}
    flags = entries[0].details["flags"]
    assert flags["inputs"] == ["raw"] and "--unshare-net" in flags["isolation"]
    destroyed = entries[-1].details
    assert destroyed["processes_left"] == 0 and destroyed["outputs_removed"] == 0
    assert (out / "data.jsonl.sealed").is_file()
