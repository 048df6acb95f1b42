"""sealtune.outputs: regular files atomically, special files written through, never replaced.

Device nodes, FIFOs, sockets and ptys are made in the test's temp dir (or
opened with openpty): no test touches the machine's /dev/null.
"""

from __future__ import annotations

import os
import select
import socket
import stat
import threading
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealtune.errors import SealtuneError, UsageError
from sealtune.outputs import (
    fsync_dir,
    open_input,
    open_output,
    open_text_output,
    resolve_output,
    write_atomic,
)


class FifoReader:
    """A FIFO in ``directory`` and a thread that reads it to the end."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path
        self.data = b""
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with self.path.open("rb") as fh:
            self.data = fh.read()

    def result(self, timeout: float = 60) -> bytes:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the FIFO reader never saw end of file"
        return self.data

    def release(self) -> None:
        """Unblock a reader still waiting in open() (the writer never came)."""
        if self.thread.is_alive():
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                pass
            else:
                os.close(fd)
            self.thread.join(10)
        self.path.unlink(missing_ok=True)  # no FIFO left for a later scan of the temp dir


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[FifoReader]:
    reader = FifoReader(tmp_path / "fifo")
    yield reader
    reader.release()


@pytest.fixture
def null_node(tmp_path: Path) -> Path:
    """A private character device equivalent to /dev/null (root), else a pty's slave."""
    path = tmp_path / "null"
    if os.geteuid() == 0:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        return path
    master, slave = os.openpty()  # not root: a pty is a character device we own
    path = Path(os.ttyname(slave))
    os.close(master)
    return path


@pytest.fixture
def pty() -> Iterator[tuple[int, Path]]:
    """A raw pty: (master fd, slave path); the slave stays open so the pty lives."""
    master, slave = os.openpty()
    tty.setraw(slave)
    yield master, Path(os.ttyname(slave))
    os.close(slave)
    os.close(master)


def read_pty(master: int, size: int, timeout: float = 10) -> bytes:
    got = b""
    while len(got) < size:
        ready, _, _ = select.select([master], [], [], timeout)
        if not ready:
            break
        got += os.read(master, size - len(got))
    return got


def same_node(before: os.stat_result, path: Path) -> bool:
    after = os.stat(path)
    return (stat.S_IFMT(after.st_mode), after.st_ino, after.st_rdev) == (
        stat.S_IFMT(before.st_mode), before.st_ino, before.st_rdev)


def test_regular_file_replaced_atomically_mode_0600(tmp_path: Path) -> None:
    dst = tmp_path / "out.bin"
    dst.write_bytes(b"old")
    old_ino = dst.stat().st_ino
    with open_output(dst) as fh:
        fh.write(b"new bytes")
        assert dst.read_bytes() == b"old"  # nothing visible before the block completes
    assert dst.read_bytes() == b"new bytes" and dst.stat().st_ino != old_ino
    assert stat.S_IMODE(dst.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_failure_inside_the_block_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    dst = tmp_path / "out.bin"
    dst.write_bytes(b"old")
    with pytest.raises(RuntimeError), open_output(dst) as fh:
        fh.write(b"half")
        raise RuntimeError("boom")
    assert dst.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    # the caller's own OS error (reading its input) is not renamed as the output's
    with pytest.raises(OSError, match="input on fire") as info, open_output(dst) as fh:
        fh.write(b"half")
        raise OSError("input on fire")
    assert not isinstance(info.value, SealtuneError)
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_device_node_is_written_through_never_replaced(null_node: Path) -> None:
    before = os.stat(null_node)
    with open_output(null_node) as fh:
        fh.write(b"x" * 100_000)
    assert same_node(before, null_node) and stat.S_ISCHR(os.stat(null_node).st_mode)
    assert [p for p in null_node.parent.iterdir() if p.name.endswith(".part")] == []


def test_fifo_streams_to_its_reader_and_stays_a_fifo(fifo: FifoReader) -> None:
    before = os.stat(fifo.path)
    payload = os.urandom(300_000)  # more than a pipe buffer: the writer must stream
    with open_output(fifo.path) as fh:
        fh.write(payload)
    assert fifo.result() == payload
    assert same_node(before, fifo.path) and stat.S_ISFIFO(os.stat(fifo.path).st_mode)


def test_unix_socket_is_connected_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "sock"
    received: list[bytes] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen(1)

        def serve() -> None:
            conn, _ = server.accept()
            with conn:
                chunks = []
                while chunk := conn.recv(65536):
                    chunks.append(chunk)
                received.append(b"".join(chunks))

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        with open_output(path) as fh:
            fh.write(b"over the socket\n" * 1000)
        thread.join(30)
    assert received == [b"over the socket\n" * 1000]
    assert stat.S_ISSOCK(os.stat(path).st_mode)


def test_text_output_to_a_fifo(fifo: FifoReader) -> None:
    with open_text_output(fifo.path, newline="") as fh:
        fh.write("a,b\r\nç\n")
    assert fifo.result() == "a,b\r\nç\n".encode()


def test_require_atomic_refuses_special_files_and_leaves_them(fifo: FifoReader,
                                                              null_node: Path) -> None:
    for target in (fifo.path, null_node):
        before = os.stat(target)
        with pytest.raises(UsageError, match="must be a regular file"):
            write_atomic(target, b"state")
        assert same_node(before, target)
    with pytest.raises(UsageError, match="standard output"):
        resolve_output("-", atomic="require")


def test_directory_block_device_and_dangling_link_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is a directory"):
        resolve_output(tmp_path)
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(UsageError, match="symbolic link to nothing"):
        resolve_output(dangling)
    assert dangling.is_symlink() and not (tmp_path / "nowhere").exists()
    with pytest.raises(UsageError, match="no-dir is not a directory") as info:
        resolve_output(tmp_path / "no-dir" / "out")
    assert info.value.hint == "create it first"
    if os.geteuid() == 0:  # a block node (never opened: refused from its type)
        block = tmp_path / "disk"
        os.mknod(block, 0o600 | stat.S_IFBLK, os.makedev(7, 250))
        with pytest.raises(UsageError, match="block device"):
            resolve_output(block)
        assert stat.S_ISBLK(os.stat(block).st_mode)


def test_symlink_to_a_regular_file_stays_a_link(tmp_path: Path) -> None:
    target = tmp_path / "real.txt"
    target.write_bytes(b"old")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    with open_output(link) as fh:
        fh.write(b"new")
    assert link.is_symlink() and target.read_bytes() == b"new"


def test_no_overwrite_creates_once_then_refuses(tmp_path: Path) -> None:
    dst = tmp_path / "once.json"
    with open_output(dst, overwrite=False) as fh:
        fh.write(b"first")
    with pytest.raises(UsageError, match="already exists"), \
            open_output(dst, overwrite=False) as fh:
        fh.write(b"second")
    assert dst.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["once.json"]


def test_no_overwrite_loses_a_race_cleanly(tmp_path: Path) -> None:
    """The file appears while the output is written: the final link fails, nothing replaced."""
    dst = tmp_path / "raced"
    with pytest.raises(UsageError, match="already exists"), \
            open_output(dst, overwrite=False) as fh:
        fh.write(b"mine")
        dst.write_bytes(b"theirs")
    assert dst.read_bytes() == b"theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["raced"]


def test_plaintext_to_a_terminal_is_refused_unless_allowed(pty: tuple[int, Path]) -> None:
    master, slave_path = pty
    with pytest.raises(UsageError, match="terminal") as info, \
            open_output(slave_path, plaintext=True) as fh:
        fh.write(b"SECRET")
    assert "--force" in (info.value.hint or "")
    assert read_pty(master, 6, timeout=0.2) == b""
    with open_output(slave_path, plaintext=True, allow_terminal=True) as fh:
        fh.write(b"SHOWN")
    assert read_pty(master, 5) == b"SHOWN"
    with open_output(slave_path) as fh:  # not plaintext: no check
        fh.write(b"meta")
    assert read_pty(master, 4) == b"meta"


def test_os_errors_name_the_file(tmp_path: Path) -> None:
    too_long = tmp_path / ("n" * 300)  # ENAMETOOLONG, whoever runs the test
    with pytest.raises(SealtuneError, match="nnnn") as info, open_output(too_long) as fh:
        fh.write(b"x")
    assert not isinstance(info.value, UsageError)


def test_a_reader_that_goes_away_is_reported_not_raw(tmp_path: Path) -> None:
    path = tmp_path / "short-reader"
    os.mkfifo(path)
    got: list[bytes] = []

    def read_a_little() -> None:
        with path.open("rb") as fh:
            got.append(fh.read(10))

    thread = threading.Thread(target=read_a_little, daemon=True)
    thread.start()
    with pytest.raises(SealtuneError, match="closed it before the end"), \
            open_output(path) as fh:
        for _ in range(64):
            fh.write(b"y" * 65536)
    thread.join(10)
    assert got == [b"y" * 10] and stat.S_ISFIFO(os.stat(path).st_mode)
    path.unlink()  # no FIFO left for a later scan of the temp dir


def test_input_errors_and_fifo_input(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not found"), open_input(tmp_path / "missing"):
        pass
    with pytest.raises(UsageError, match="is a directory"), open_input(tmp_path):
        pass
    src = tmp_path / "fifo-in"
    os.mkfifo(src)

    def feed() -> None:
        with src.open("wb") as fh:
            fh.write(b"from a pipe")

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    with open_input(src) as fh:
        assert fh.read() == b"from a pipe"
    thread.join(10)
    src.unlink()  # no FIFO left for a later scan of the temp dir


def test_fsync_dir_on_a_real_directory(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    fsync_dir(tmp_path)  # must not raise
    with pytest.raises(FileNotFoundError):
        fsync_dir(tmp_path / "missing")
