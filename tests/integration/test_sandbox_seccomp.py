"""The sandbox leaks no secret: its environment, PID 1, the seccomp filter, stray outputs.

Real bubblewrap, real kernel: ``sealtune.sandbox._probe_child`` (and its
``_probe_kernel`` actions) attacks from inside and reports what happened.
The unfiltered baseline of every denied call is measured outside the sandbox
in a subprocess, so that ``EPERM`` inside is shown to come from the filter,
not merely from the sandbox having no capabilities.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from sealtune.errors import ConfigError
from sealtune.sandbox import Sandbox, SandboxEvent, SandboxSpec, Teardown, probe, seccomp
from sealtune.sandbox.spec import SandboxUnavailableError

PROBE = "sealtune.sandbox._probe_child"
#: Calls whose unfiltered result does not depend on capabilities or sysctls: their
#: baseline must not be EPERM anywhere, so EPERM inside can only be the filter's.
UNGATED = ("ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "process_madvise",
           "kcmp", "io_uring_enter", "io_uring_register", "perf_event_open", "add_key",
           "request_key", "keyctl", "unshare", "setns", "mount", "umount2", "chroot",
           "open_tree", "fsconfig", "mount_setattr", "quotactl", "clone3",
           *(f"clone:{flag}" for flag in seccomp.CLONE_NAMESPACES))


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
        timeout: float = 60) -> tuple[list[SandboxEvent], Teardown]:
    with Sandbox(spec) as box:
        box.start(PROBE, list(args), secrets=secrets_)
        events = list(box.events(timeout=timeout))
    return events, box.destroy()


def named(events: list[SandboxEvent], name: str) -> list[Mapping[str, object]]:
    return [e.fields for e in events if e.type == "event" and e.name == name]


def host_environ(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes() + Path(f"/proc/{pid}/cmdline").read_bytes()


@pytest.mark.usefixtures("bwrap_ok")
def test_no_secret_reaches_bubblewrap_or_any_process_inside(
        out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    planted = {name: f"{name.lower()}-{secrets.token_hex(12)}" for name in (
        "SEALTUNE_PASSPHRASE", "SEALTUNE_PKCS11_PIN", "SEALTUNE_OPENBAO_TOKEN",
        "SEALTUNE_TEST_MARKER")}
    for name, value in planted.items():
        monkeypatch.setenv(name, value)
    allowed = "allowed-" + secrets.token_hex(12)  # a control: this one must be found
    monkeypatch.setenv("SEALTUNE_TEST_ALLOWED", allowed)
    spec = SandboxSpec(output_dir=out, pass_env=("SEALTUNE_TEST_ALLOWED",))
    keys = {name: value.encode() for name, value in planted.items()} | {
        "control": allowed.encode()}
    with Sandbox(spec) as box:
        box.start(PROBE, ["selfcheck", "environ", "hold"], secrets=keys)
        events = []
        for event in box.events(timeout=30):
            events.append(event)
            if event.name == "holding":
                assert box.pid is not None and box.child_pid is not None
                outside = host_environ(box.pid) + host_environ(box.child_pid)
                bwrap_env = Path(f"/proc/{box.pid}/environ").read_bytes()
                box.destroy()
    assert allowed.encode() in outside
    assert [v for v in planted.values() if v.encode() in outside] == []
    (found,) = named(events, "environ")
    assert found["found"] == "control" and found["pid1"] is True
    (check,) = named(events, "selfcheck")
    assert check["pid"] == 1 and check["environs"] == 1
    # what bubblewrap itself was started with: exactly the allow-list
    names = {e.split(b"=", 1)[0].decode() for e in bwrap_env.split(b"\0") if e}
    assert names == set(spec.environment())


def test_secret_looking_variables_are_refused(out: Path) -> None:
    for var in ("SEALTUNE_PKCS11_PIN", "SEALTUNE_OPENBAO_TOKEN", "HF_TOKEN", "MY_DB_PASSWORD",
                "AWS_SECRET_ACCESS_KEY", "VAULT_TOKEN"):
        with pytest.raises(ConfigError, match=var):
            Sandbox(SandboxSpec(output_dir=out, pass_env=(var,)))
        with pytest.raises(ConfigError, match=var):
            Sandbox(SandboxSpec(output_dir=out, env={var: "x"}))
    Sandbox(SandboxSpec(output_dir=out, env={"TOKENIZERS_PARALLELISM": "false"}))


@pytest.mark.usefixtures("bwrap_ok")
def test_pid_1_is_the_launcher_and_nothing_can_trace_or_read_it(out: Path) -> None:
    events, _ = run(SandboxSpec(output_dir=out), ["selfcheck", "ptrace"])
    assert named(events, "selfcheck")[0]["pid"] == 1
    traces = {(t["target"], t["how"]): t["errno"] for t in named(events, "trace")}
    assert traces == {("pid1", "attach"): "EPERM", ("pid1", "seize"): "EPERM",
                      ("pid1", "vm_readv"): "EPERM", ("pid1", "proc_mem"): "EACCES",
                      # a dumpable sibling: only the filter stands in the way
                      ("sibling", "attach"): "EPERM", ("sibling", "seize"): "EPERM",
                      ("sibling", "vm_readv"): "EPERM"}


def baseline() -> dict[str, str]:
    """The same calls outside the sandbox, unfiltered (harmless arguments, even as root)."""
    code = ("import json; from sealtune.sandbox._probe_kernel import try_syscalls; "
            "print(json.dumps(try_syscalls()))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)
    result: dict[str, str] = json.loads(done.stdout)
    return result


@pytest.mark.usefixtures("bwrap_ok")
def test_seccomp_denies_each_listed_call_inside_the_sandbox(out: Path) -> None:
    events, _ = run(SandboxSpec(output_dir=out), ["selfcheck", "syscalls"])
    assert named(events, "selfcheck")[0]["seccomp"] == 2
    inside = {str(c["call"]): c["errno"] for c in named(events, "syscall")}
    expected = dict.fromkeys(seccomp.DENIED, "EPERM")
    expected |= {f"clone:{flag}": "EPERM" for flag in seccomp.CLONE_NAMESPACES}
    expected |= {"keyctl": "EPERM", "clone3": "ENOSYS"}
    if os.uname().machine == "x86_64":
        expected["x32:getpid"] = "EPERM"
    assert inside == expected
    outside = baseline()
    assert set(outside) == set(inside)
    assert {n: outside[n] for n in UNGATED if outside[n] in ("EPERM", "ENOSYS")} == {}
    if os.geteuid() == 0:  # root passes every capability check: nothing is EPERM unfiltered
        assert [n for n, code in outside.items() if code == "EPERM"] == []


@pytest.mark.usefixtures("bwrap_ok")
def test_foreign_architecture_system_calls_kill_the_process(out: Path) -> None:
    events, _ = run(SandboxSpec(output_dir=out), ["int80"])
    (result,) = named(events, "int80")
    if os.uname().machine == "x86_64":
        # outside the sandbox the same i386 call works (the kernel has IA32 emulation) ...
        code = ("import os; from sealtune.sandbox._probe_kernel import _int80_child; "
                "os._exit(0 if _int80_child() == os.getpid() else 3)")
        assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
        # ... and inside it is killed by the filter
        assert result["signal"] == int(signal.SIGSYS) == result["sigsys"]
    else:
        assert result["signal"] == 0 and result["exit"] == 4  # not applicable: no int 0x80


@pytest.mark.usefixtures("bwrap_ok")
def test_what_training_needs_still_works_under_the_filter(out: Path) -> None:
    events, _ = run(SandboxSpec(output_dir=out), ["allowed", "torch"], timeout=120)
    assert {c["check"]: c["ok"] for c in named(events, "check")} == {
        "thread": True, "fork": True, "exec": True, "torch": True}


@pytest.mark.usefixtures("bwrap_ok")
def test_unexpected_outputs_are_removed_without_following_links(out: Path,
                                                                 tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "keep.txt").write_text("must survive")
    spec = SandboxSpec(output_dir=out, outputs=("model/*.sealed",))
    _, teardown = run(spec, [f"litter={host}"])
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert left == ["model", "model/a.sealed"]
    assert (host / "keep.txt").read_text() == "must survive"
    odd = "model/odd\nname \u5f20.sealed.txt"
    assert sorted(teardown.unexpected) == sorted([
        "extra", "hostlink", "model/b.txt", "model/dirlink.sealed", "model/fifo.sealed",
        "model/link.sealed", "stray.bin", odd_name(odd)])
    assert teardown.outputs_removed == 8


def odd_name(rel: str) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(rel.encode()).hexdigest()[:16]


def test_output_patterns_are_validated(out: Path) -> None:
    for bad in ("../x", "/abs", "a//b", "model/..", "a b"):
        with pytest.raises(ConfigError, match="output pattern"):
            Sandbox(SandboxSpec(output_dir=out, outputs=(bad,)))


def test_an_unknown_architecture_refuses_to_start(out: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "uname", lambda: os.uname_result(("Linux", "h", "6", "1", "s390x")))
    with pytest.raises(SandboxUnavailableError, match="s390x") as refused:
        Sandbox(SandboxSpec(output_dir=out)).start(PROBE, ["selfcheck"])
    assert refused.value.hint is not None and "--no-sandbox" in refused.value.hint
