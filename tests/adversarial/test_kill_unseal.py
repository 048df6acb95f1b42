"""kill -9 in the middle of an unseal leaves no plaintext under any name."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path


def _cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALTUNE_")}
    env.update({
        "SEALTUNE_HOME": str(tmp_path / "home"),
        "SEALTUNE_PASSPHRASE": "kill-" + secrets.token_hex(8),
        "SEALTUNE_UNSAFE_FAST_KDF": "1",
    })
    return env


def _writing_unnamed_file(pid: int, directory: Path) -> bool:
    """True once the process holds an open, unnamed (O_TMPFILE) file in ``directory``."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return False
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(directory)) and target.endswith("(deleted)"):
            return True
    return False


def test_sigkill_during_unseal_leaves_nothing(tmp_path: Path) -> None:
    env = _cli_env(tmp_path)
    cli = [sys.executable, "-m", "sealtune"]
    subprocess.run([*cli, "init"], env=env, check=True, capture_output=True)
    marker = secrets.token_hex(16).encode()
    src = tmp_path / "plain.bin"
    block = (marker + b"\n") * (1 << 15)
    with src.open("wb") as fh:
        for _ in range(320):  # ~340 MB: long enough to be killed midway
            fh.write(block)
    subprocess.run([*cli, "seal", str(src), str(tmp_path / "s.sealed")], env=env, check=True,
                   capture_output=True)
    src.unlink()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = subprocess.Popen([*cli, "unseal", str(tmp_path / "s.sealed"), str(out_dir / "p.bin")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not _writing_unnamed_file(proc.pid, out_dir):
        assert proc.poll() is None, "unseal finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.002)
    time.sleep(0.05)  # let it write some authenticated plaintext
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert list(out_dir.iterdir()) == []
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name != "s.sealed":
            assert marker not in path.read_bytes(), path
