"""Every command that writes a file, pointed at a device node, a FIFO, a directory, ``-``.

Issue 16: ``sealtune unseal X /dev/null`` replaced the machine's /dev/null
with a regular file holding the plaintext. Here each writing command gets a
private device node made in the temp dir (``mknod`` as root; a pty's slave
otherwise), a FIFO read by a reader thread, and a directory; ``-`` is tried
both ways through real subprocesses. No test touches the real /dev/null.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import stat
import subprocess
import sys
import threading
import tty
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from sealtune.cli import main

SEALTUNE = [sys.executable, "-m", "sealtune"]
PLANT = "PLANTED-" + secrets.token_hex(12)
ROWS = [
    {"id": "c0", "messages": [{"role": "user", "content": f"我的手机13912345678 {PLANT}"},
                              {"role": "assistant", "content": "好的"}]},
    {"id": "c1", "messages": [{"role": "user", "content": "email q.r@example.org please"},
                              {"role": "assistant", "content": "Done."}]},
]


class FifoReader:
    """A FIFO and a thread that reads it to the end."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path
        self.data = b""
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with self.path.open("rb") as fh:
            self.data = fh.read()

    def result(self, timeout: float = 120) -> bytes:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the FIFO reader never saw end of file"
        return self.data

    def release(self) -> None:
        if self.thread.is_alive():
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                pass
            else:
                os.close(fd)
            self.thread.join(10)
        self.path.unlink(missing_ok=True)  # no FIFO left for a later scan of the temp dir


@dataclass
class Ctx:
    tmp: Path
    env: dict[str, str]
    plain: Path
    sealed: Path
    jsonl: Path
    dataset: str | None = None


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ctx:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALTUNE_")}
    env.update({"SEALTUNE_HOME": str(tmp_path / "home"),
                "SEALTUNE_PASSPHRASE": "outputs-" + secrets.token_hex(8),
                "SEALTUNE_UNSAFE_FAST_KDF": "1", "TMPDIR": str(tmp_path / "tmp"),
                "COLUMNS": "200"})
    (tmp_path / "tmp").mkdir()
    for key in ("SEALTUNE_HOME", "SEALTUNE_PASSPHRASE", "SEALTUNE_UNSAFE_FAST_KDF", "TMPDIR"):
        monkeypatch.setenv(key, env[key])
    assert main(["init"]) == 0
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS), "utf-8")
    sealed = tmp_path / "plain.sealed"
    assert main(["seal", str(plain), str(sealed)]) == 0
    jsonl = tmp_path / "texts.jsonl"
    jsonl.write_text(json.dumps({"id": 1, "text": f"call 13912345678 {PLANT}"}) + "\n", "utf-8")
    return Ctx(tmp_path, env, plain, sealed, jsonl)


def _dataset(c: Ctx) -> str:
    if c.dataset is None:
        assert main(["data", "ingest", str(c.plain), "--name", "ds"]) == 0
        c.dataset = "ds"
    return c.dataset


# Each writing command: the argv that sends its output to ``target``.
COMMANDS: dict[str, Callable[[Ctx, str], list[str]]] = {
    "seal": lambda c, t: ["seal", str(c.plain), t],
    "unseal": lambda c, t: ["unseal", str(c.sealed), t],
    "pii detect": lambda c, t: ["pii", "detect", str(c.jsonl), "--out", t],
    "audit export": lambda c, t: ["audit", "export", "--out", t],
    "data export-bom": lambda c, t: ["data", "export-bom", _dataset(c), "--out", t],
    "data policy init": lambda c, t: ["data", "policy", "init", t, "--force"],
}


def _null_node(tmp: Path) -> Path:
    path = tmp / "null"
    if os.geteuid() == 0:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        return path
    master, slave = os.openpty()  # not root: a pty we own is the character device
    os.close(master)
    return Path(os.ttyname(slave))


def _node(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return stat.S_IFMT(st.st_mode), st.st_ino, st.st_rdev


def _stray(tmp: Path) -> list[str]:
    """Temp files any writer left beside its output."""
    return sorted(p.name for p in tmp.iterdir() if p.name.endswith((".part", ".tmp")))


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_device_node_output_stays_a_device(ctx: Ctx, command: str) -> None:
    node = _null_node(ctx.tmp)
    before = _node(node)
    argv = COMMANDS[command](ctx, str(node))
    if command == "unseal" and os.geteuid() != 0:
        argv.append("--force")  # the fallback node is a pty: a terminal
    assert main(argv) == 0
    assert _node(node) == before and stat.S_ISCHR(os.stat(node).st_mode)
    assert _stray(ctx.tmp) == []


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_fifo_output_is_read_by_its_reader(ctx: Ctx, command: str) -> None:
    regular = ctx.tmp / "regular.out"
    assert main(COMMANDS[command](ctx, str(regular))) == 0
    reader = FifoReader(ctx.tmp / "fifo")
    try:
        assert main(COMMANDS[command](ctx, str(reader.path))) == 0
        got = reader.result()
        assert stat.S_ISFIFO(os.stat(reader.path).st_mode)
    finally:
        reader.release()
    if command == "seal":  # fresh data key each time: the FIFO's bytes must unseal
        (ctx.tmp / "from-fifo.sealed").write_bytes(got)
        assert main(["unseal", str(ctx.tmp / "from-fifo.sealed"), str(ctx.tmp / "back")]) == 0
        assert (ctx.tmp / "back").read_bytes() == ctx.plain.read_bytes()
    elif command == "audit export":  # the second export has the same first entries
        assert regular.read_bytes() and got.startswith(regular.read_bytes())
    else:
        assert got == regular.read_bytes() and got


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_directory_output_is_a_usage_error(ctx: Ctx, command: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    target = ctx.tmp / "a-dir"
    target.mkdir()
    argv = COMMANDS[command](ctx, str(target))
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage:") and "is a directory" in err, err
    assert list(target.iterdir()) == [] and target.is_dir()


def test_dash_outputs_in_process(ctx: Ctx, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    """``-`` as the output of the metadata commands is the standard output."""
    for command in ("pii detect", "data policy init", "audit export", "data export-bom"):
        regular = ctx.tmp / f"{command.replace(' ', '-')}.out"
        assert main(COMMANDS[command](ctx, str(regular))) == 0
        capsysbinary.readouterr()
        assert main(COMMANDS[command](ctx, "-")) == 0
        out = capsysbinary.readouterr().out
        expected = regular.read_bytes()
        if command == "data export-bom":
            expected += b"\n"  # printed with a final newline, as before
        if command == "audit export":
            assert out.startswith(expected) and expected
        else:
            assert out == expected and out, command


def _run(ctx: Ctx, *args: str, **kw: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*SEALTUNE, *args], env=ctx.env, capture_output=True, timeout=120,
                          check=False, **kw)  # type: ignore[call-overload]


def test_dash_both_ways_through_pipes(ctx: Ctx) -> None:
    """``cat plain | seal - - | unseal - -``: a pipe input is not seekable (spooled)."""
    seal = subprocess.Popen([*SEALTUNE, "seal", "-", "-"], env=ctx.env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    unseal = subprocess.Popen([*SEALTUNE, "unseal", "-", "-"], env=ctx.env, stdin=seal.stdout,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert seal.stdin is not None and seal.stdout is not None
    seal.stdout.close()  # the unseal process holds it now
    seal.stdin.write(ctx.plain.read_bytes())
    seal.stdin.close()
    out, err = unseal.communicate(timeout=120)
    assert seal.stderr is not None
    with seal.stderr:
        seal_err = seal.stderr.read()
    assert seal.wait(timeout=60) == 0, seal_err
    assert unseal.returncode == 0, err
    assert out == ctx.plain.read_bytes()
    assert b"sealed - -> <stdout>" in seal_err and b"unsealed - -> <stdout>" in err
    # a seekable stdin (a redirected file) and pii detect both ways
    with ctx.sealed.open("rb") as fh:
        res = _run(ctx, "unseal", "-", "-", stdin=fh)
    assert res.returncode == 0 and res.stdout == ctx.plain.read_bytes(), res.stderr
    res = _run(ctx, "pii", "detect", "-", "--out", "-", input=ctx.jsonl.read_bytes())
    assert res.returncode == 0, res.stderr
    found = json.loads(res.stdout)
    assert found["id"] == 1 and found["entities"][0]["type"] == "PHONE"
    assert PLANT.encode() not in res.stdout
    assert list((ctx.tmp / "tmp").iterdir()) == []  # the spool was unnamed


def _pty_stdout_run(ctx: Ctx, *args: str) -> tuple[int, bytes, bytes]:
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        proc = subprocess.Popen([*SEALTUNE, *args], env=ctx.env, stdout=slave,
                                stderr=subprocess.PIPE)
        _, err = proc.communicate(timeout=120)
        got = b""
        while select.select([master], [], [], 0.2)[0]:
            got += os.read(master, 1 << 16)
        return proc.returncode, got, err
    finally:
        os.close(slave)
        os.close(master)


def test_plaintext_to_a_terminal_needs_force(ctx: Ctx) -> None:
    code, shown, err = _pty_stdout_run(ctx, "unseal", str(ctx.sealed), "-")
    assert code == 2 and err.startswith(b"usage:") and b"terminal" in err and b"--force" in err
    assert PLANT.encode() not in shown
    code, shown, err = _pty_stdout_run(ctx, "unseal", str(ctx.sealed), "-", "--force")
    assert code == 0, err
    assert shown == ctx.plain.read_bytes() and b"warning" in err
    events = [json.loads(line) for line in _run(ctx, "audit", "export").stdout.splitlines()]
    forced = [e for e in events if e["action"] == "file.unseal"
              and e["details"].get("allow_terminal")]
    assert len(forced) == 1 and forced[0]["details"]["output"] == "stdout"
    # metadata is no plaintext: findings may go to a terminal
    code, shown, err = _pty_stdout_run(ctx, "pii", "detect", str(ctx.jsonl), "--out", "-")
    assert code == 0 and b'"PHONE"' in shown, err


def test_reader_closing_early_is_a_clean_error(ctx: Ctx) -> None:
    """``unseal X - | head``: the reader goes away; a message, no traceback."""
    big = ctx.tmp / "big.bin"
    big.write_bytes(os.urandom(3 << 20))
    assert main(["seal", str(big), str(ctx.tmp / "big.sealed")]) == 0
    proc = subprocess.Popen([*SEALTUNE, "unseal", str(ctx.tmp / "big.sealed"), "-"],
                            env=ctx.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    head = proc.stdout.read(1000)
    proc.stdout.close()
    with proc.stderr:
        err = proc.stderr.read()
    assert proc.wait(timeout=120) == 1
    assert head == big.read_bytes()[:1000]
    assert b"closed it before the end" in err and b"Traceback" not in err
    assert b"Exception ignored" not in err


def _header_facts(sealed: Path) -> tuple[int, int]:
    from sealtune.core.envelope import read_header

    with sealed.open("rb") as fh:
        prefix = read_header(fh).prefix
    return prefix.payload_offset, prefix.segment_size


def test_damaged_file_to_a_fifo_releases_nothing(ctx: Ctx,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Truncated at a segment boundary, or one byte flipped: exit 3, the reader gets EOF only."""
    big = ctx.tmp / "big.bin"
    big.write_bytes(os.urandom(3 << 20))
    good = ctx.tmp / "big.sealed"
    assert main(["seal", str(big), str(good)]) == 0
    offset, segment = _header_facts(good)
    blob = good.read_bytes()
    truncated = ctx.tmp / "truncated.sealed"
    truncated.write_bytes(blob[: offset + 2 * segment])  # whole segments, the final one gone
    flipped = ctx.tmp / "flipped.sealed"
    flipped.write_bytes(blob[:-5] + bytes([blob[-5] ^ 1]) + blob[-4:])
    for damaged in (truncated, flipped):
        reader = FifoReader(ctx.tmp / f"{damaged.stem}.fifo")
        try:
            capsys.readouterr()
            assert main(["unseal", str(damaged), str(reader.path)]) == 3
            assert capsys.readouterr().err.startswith("integrity:")
            assert reader.result() == b""
        finally:
            reader.release()
    events = [json.loads(line) for line in _run(ctx, "audit", "export").stdout.splitlines()]
    failed = [e for e in events if e["action"] == "file.unseal" and e["outcome"] == "failure"]
    assert [e["resource"] for e in failed] == [str(truncated), str(flipped)]


def test_verify_file_writes_nothing(ctx: Ctx, capsys: pytest.CaptureFixture[str]) -> None:
    before = sorted(p.name for p in ctx.tmp.rglob("*"))
    capsys.readouterr()
    assert main(["verify-file", str(ctx.sealed)]) == 0
    out = capsys.readouterr().out
    assert "authentic" in out and PLANT not in out
    blob = bytearray(ctx.sealed.read_bytes())
    blob[-20] ^= 0x01
    bad = ctx.tmp / "bad.sealed"
    bad.write_bytes(bytes(blob))
    assert main(["verify-file", str(bad)]) == 3
    captured = capsys.readouterr()
    assert captured.err.startswith("integrity:") and PLANT not in captured.out + captured.err
    assert main(["verify-file", str(ctx.tmp / "missing.sealed")]) == 2
    after = sorted(p.name for p in ctx.tmp.rglob("*") if p.name != "bad.sealed")
    home = {p.name for p in (ctx.tmp / "home").rglob("*")}
    assert [n for n in after if n not in home] == [n for n in before if n not in home]
    with ctx.sealed.open("rb") as fh:  # from the standard input
        res = _run(ctx, "verify-file", "-", stdin=fh)
    assert res.returncode == 0 and b"<stdin>: authentic" in res.stdout, res.stderr
    events = [json.loads(line) for line in _run(ctx, "audit", "export").stdout.splitlines()]
    verified = [(e["resource"], e["outcome"]) for e in events if e["action"] == "file.verify"]
    assert verified == [(str(ctx.sealed), "success"), (str(bad), "failure"),
                        ("<stdin>", "success")]


def test_no_plaintext_left_by_streamed_unseals(ctx: Ctx) -> None:
    """After unseals to a FIFO, a device and stdout, only the plaintext input holds the marker."""
    reader = FifoReader(ctx.tmp / "fifo")
    try:
        assert main(["unseal", str(ctx.sealed), str(reader.path)]) == 0
        assert PLANT.encode() in reader.result()
    finally:
        reader.release()
    node = _null_node(ctx.tmp)
    force = ["--force"] if os.geteuid() != 0 else []  # the fallback node is a pty
    assert main(["unseal", str(ctx.sealed), str(node), *force]) == 0
    with ctx.sealed.open("rb") as fh:
        res = _run(ctx, "unseal", "-", "-", stdin=fh)
    assert res.returncode == 0 and PLANT.encode() in res.stdout
    leaks = [p for p in ctx.tmp.rglob("*") if p.is_file() and p != ctx.plain
             and PLANT.encode() in p.read_bytes()]
    assert leaks == [ctx.jsonl]  # the pii test input, written by the fixture
