"""``sealtune unlock`` / ``lock`` with the real Linux kernel keyring (no mocks of keyctl).

Each test uses its own workspace (so its own kernel key description) and
locks it at the end; entries also carry short timeouts, so nothing outlives
a failed test by more than a minute.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealtune.cli import main as cli_main
from sealtune.errors import ConfigError
from sealtune.keys import kernel_keyring
from sealtune.keys.keyfile import KdfParams, KeyFile
from sealtune.keys.unlock import cached_key, description, entries, lock
from sealtune.sandbox import SandboxSpec, SandboxUnavailableError, probe
from sealtune.workspace import Workspace

SEALTUNE = [sys.executable, "-m", "sealtune"]


@pytest.fixture(scope="module", autouse=True)
def kernel_keyring_works() -> None:
    # The machine must offer the kernel keyring: these tests run for real, never skip.
    kernel_keyring.probe()


@pytest.fixture
def ws(tmp_path: Path, passphrase: str) -> Iterator[Workspace]:
    ws = Workspace.init(tmp_path / "ws", passphrase=passphrase, kdf=KdfParams.unsafe_fast())
    ws.close()
    yield ws
    for serial in entries(ws.config.workspace_id):
        kernel_keyring.drop(serial)


def _cli(ws: Workspace, *args: str) -> int:
    return cli_main([*args, "--home", str(ws.root)])


def _opens_without_passphrase(ws: Workspace) -> bool:
    opened = Workspace.open(ws.root)
    try:
        opened.keyfile  # noqa: B018 - the property unlocks
        return True
    except ConfigError as exc:
        assert "passphrase is needed" in exc.message
        return False
    finally:
        opened.close()


def _proc_keys_line(serial: int) -> str:
    lines = Path("/proc/keys").read_text().splitlines()
    return next(line for line in lines if line.split()[0] == f"{serial:08x}")


def test_unlock_then_commands_need_no_passphrase_until_lock(
        ws: Workspace, passphrase: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert not _opens_without_passphrase(ws)
    monkeypatch.setenv("SEALTUNE_PASSPHRASE", passphrase)
    assert _cli(ws, "unlock", "--for", "1m") == 0
    monkeypatch.delenv("SEALTUNE_PASSPHRASE")
    assert _opens_without_passphrase(ws)
    capsys.readouterr()
    assert _cli(ws, "keys", "list", "--json") == 0
    assert '"name": "platform"' in capsys.readouterr().out
    # unlock always proves the passphrase: a live cache does not extend itself
    assert _cli(ws, "unlock", "--for", "1h") == 2
    assert _cli(ws, "lock") == 0
    assert "cached key is destroyed" in capsys.readouterr().out
    assert entries(ws.config.workspace_id) == []
    assert not _opens_without_passphrase(ws)
    assert _cli(ws, "lock") == 0
    assert "was not unlocked" in capsys.readouterr().out

    opened = Workspace.open(ws.root, passphrase=passphrase)
    try:
        events = [e for e in opened.ledger.entries() if e.action.startswith("workspace.")]
        key = opened.keyfile.master_key()
    finally:
        opened.close()
    unlocked = next(e for e in events if e.action == "workspace.unlock")
    assert sorted(unlocked.details) == ["expires", "kernel_keyring", "seconds"]
    assert unlocked.details["seconds"] == 60
    assert [e.action for e in events].count("workspace.lock") == 1
    raw = b"".join(p.read_bytes() for p in ws.root.rglob("*") if p.is_file())
    for secret in (key, key.hex().encode(), passphrase.encode()):
        assert secret not in raw


def test_the_cached_bytes_are_the_derived_key_possessor_only_with_a_timeout(
        ws: Workspace, passphrase: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEALTUNE_PASSPHRASE", passphrase)
    assert _cli(ws, "unlock", "--for", "45s") == 0
    derived = KeyFile.open(ws.keyfile_path, passphrase)
    serial = kernel_keyring.search(description(ws.config.workspace_id, derived.kdf_id))
    assert serial is not None
    payload = kernel_keyring.read(serial)
    assert payload == derived.master_key() and len(payload) == 32
    assert passphrase.encode() not in payload
    for entry in (serial, *entries(ws.config.workspace_id)):
        fields = _proc_keys_line(entry).split()
        timeout, perm = fields[3], fields[4]
        assert timeout != "perm" and timeout.endswith("s") and int(timeout[:-1]) <= 45
        assert perm == "0b000000"  # possessor view/read/search; no user, group, other


def test_the_entry_expires(ws: Workspace, passphrase: str,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEALTUNE_PASSPHRASE", passphrase)
    assert _cli(ws, "unlock", "--for", "2s") == 0
    monkeypatch.delenv("SEALTUNE_PASSPHRASE")
    assert _opens_without_passphrase(ws)
    time.sleep(3)
    assert not _opens_without_passphrase(ws)


def test_a_second_workspace_does_not_pick_up_the_first_ones_key(
        ws: Workspace, tmp_path: Path, passphrase: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    other = Workspace.init(tmp_path / "other", passphrase=passphrase,
                           kdf=KdfParams.unsafe_fast())
    other.close()
    monkeypatch.setenv("SEALTUNE_PASSPHRASE", passphrase)
    assert _cli(ws, "unlock", "--for", "1m") == 0
    monkeypatch.delenv("SEALTUNE_PASSPHRASE")
    assert _opens_without_passphrase(ws)
    assert not _opens_without_passphrase(other)  # same passphrase, other salt and id
    assert entries(other.config.workspace_id) == []


@pytest.mark.parametrize("size", [32, 5])
def test_a_wrong_cached_key_falls_back_to_the_passphrase(
        ws: Workspace, passphrase: str, size: int) -> None:
    kdf_id = KeyFile.open(ws.keyfile_path, passphrase).kdf_id
    planted = kernel_keyring.add(description(ws.config.workspace_id, kdf_id),
                                 secrets.token_bytes(size), timeout_s=60)
    assert planted in entries(ws.config.workspace_id)
    assert not _opens_without_passphrase(ws)  # asks, never an integrity error
    opened = Workspace.open(ws.root, passphrase=passphrase)
    try:
        assert opened.keyfile.get("catalogue", "platform") is not None
    finally:
        opened.close()
    assert lock(Workspace.open(ws.root)) == (1, False)  # destroyed, not audited
    assert entries(ws.config.workspace_id) == []


def test_a_rekeyed_keyring_is_never_tried_with_the_old_key(
        ws: Workspace, passphrase: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEALTUNE_PASSPHRASE", passphrase)
    assert _cli(ws, "unlock", "--for", "1m") == 0
    monkeypatch.delenv("SEALTUNE_PASSPHRASE")
    old = KeyFile.open(ws.keyfile_path, passphrase)
    # The passphrase changes: the same records sealed under a new salt.
    new_passphrase = "new-" + secrets.token_hex(12)
    fresh = ws.root / "keyring.new"
    rekeyed = KeyFile.create(fresh, new_passphrase, kdf=KdfParams.unsafe_fast())
    with rekeyed.transaction() as doc:
        for section in ("catalogue", "local", "ledger"):
            doc[section] = old.items(section)
    os.replace(fresh, ws.keyfile_path)
    assert rekeyed.kdf_id != old.kdf_id
    looked_up: list[str] = []
    lookup = cached_key(ws.config.workspace_id)
    assert KeyFile.open_with_key(ws.keyfile_path,
                                 lambda k: looked_up.append(k) or lookup(k)) is None
    assert looked_up == [rekeyed.kdf_id]
    assert not _opens_without_passphrase(ws)
    assert Workspace.open(ws.root, passphrase=new_passphrase).keyfile.kdf_id == rekeyed.kdf_id


@pytest.mark.parametrize("duration", ["0s", "25h", "soon"])
def test_unlock_durations_are_bounded(ws: Workspace, passphrase: str, duration: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEALTUNE_PASSPHRASE", passphrase)
    assert _cli(ws, "unlock", "--for", duration) == 2
    assert entries(ws.config.workspace_id) == []


def test_the_training_sandbox_cannot_read_the_cached_key(
        ws: Workspace, passphrase: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from sealtune.sandbox import Sandbox

    try:
        probe()
    except SandboxUnavailableError as exc:
        pytest.fail(f"no working bubblewrap here: {exc.message}")
    monkeypatch.setenv("SEALTUNE_PASSPHRASE", passphrase)
    assert _cli(ws, "unlock", "--for", "1m") == 0
    kdf_id = KeyFile.open(ws.keyfile_path, passphrase).kdf_id
    serial = kernel_keyring.search(description(ws.config.workspace_id, kdf_id))
    assert serial is not None and kernel_keyring.read(serial) is not None  # readable here
    out = tmp_path / "out"
    out.mkdir()
    desc = description(ws.config.workspace_id, kdf_id)
    with Sandbox(SandboxSpec(output_dir=out)) as box:
        # by serial; and by linking the user keyring (same kernel uid) to possess it
        box.start("sealtune.sandbox._probe_child", [f"keyctl={serial}", f"keysteal={desc}"])
        events = list(box.events(timeout=20))
    box.destroy()
    checks = [e.fields for e in events if e.type == "event" and e.name == "check"]
    assert [(c["check"], c["ok"], c["errno"]) for c in checks] == [
        ("keyctl", False, "EPERM"), ("keysteal", False, "EPERM")]


def _new_session() -> None:
    # keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL): a session keyring that does not link @u
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.syscall(_ARCH[os.uname().machine][2], 1, None) > 0


def test_unlock_works_under_a_session_keyring_without_the_user_keyring(
        ws: Workspace, passphrase: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALTUNE_")}
    env["SEALTUNE_HOME"] = str(ws.root)

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*SEALTUNE, *args], env={**env, **extra}, capture_output=True,
                              text=True, timeout=120, check=False, preexec_fn=_new_session)

    res = run("unlock", "--for", "1m", SEALTUNE_PASSPHRASE=passphrase)
    assert res.returncode == 0, res.stderr
    res = run("keys", "list", "--json")  # another process, another fresh session keyring
    assert res.returncode == 0 and '"platform"' in res.stdout, res.stderr
    assert run("lock").returncode == 0
    assert entries(ws.config.workspace_id) == []


# A seccomp filter that fails add_key and keyctl with ENOSYS, as a container's
# profile may: the real kernel mechanism, installed in the child before exec.
_ARCH = {"x86_64": (0xC000003E, 248, 250), "aarch64": (0xC00000B7, 217, 219)}


def _deny_keyctl() -> None:
    arch, add_key, keyctl = _ARCH[os.uname().machine]
    ld_abs, jeq, ret = 0x20, 0x15, 0x06
    prog = [(ld_abs, 0, 0, 4), (jeq, 0, 4, arch), (ld_abs, 0, 0, 0), (jeq, 2, 0, keyctl),
            (jeq, 1, 0, add_key), (ret, 0, 0, 0x7FFF0000), (ret, 0, 0, 0x00050000 | 38)]
    raw = b"".join(struct.pack("HBBI", *insn) for insn in prog)
    filters = ctypes.create_string_buffer(raw, len(raw))

    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = Prog(len(prog), ctypes.addressof(filters))
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
    assert libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) == 0  # PR_SET_SECCOMP, FILTER


def test_without_a_usable_kernel_keyring_unlock_names_the_reason(
        ws: Workspace, passphrase: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALTUNE_")}
    env.update({"SEALTUNE_HOME": str(ws.root), "SEALTUNE_PASSPHRASE": passphrase})

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*SEALTUNE, *args], env=env, capture_output=True, text=True,
                              timeout=120, check=False, preexec_fn=_deny_keyctl)

    res = run("unlock", "--for", "1m")
    assert res.returncode == 1, res.stderr
    assert "kernel keyring is not usable here: keyctl failed with ENOSYS" in res.stderr
    assert entries(ws.config.workspace_id) == []
    res = run("keys", "list", "--json")  # opening falls back to the passphrase quietly
    assert res.returncode == 0 and '"platform"' in res.stdout, res.stderr
