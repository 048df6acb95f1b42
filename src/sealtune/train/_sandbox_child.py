"""The in-sandbox side of the sandbox protocol, and the wire format both sides share.

Runs inside bubblewrap as ``python -I -B -m sealtune.train._sandbox_child
--events-fd N --keys-fd M [--rlimit NAME=VALUE ...] -- ENTRY.MODULE ARGS...``.
Before any entry code (and so before any untrusted data or model file is
touched) the launcher:

* installs an excepthook that reports only the exception *class* over the
  event channel — never its message or traceback, which can quote data;
* points stdout and stderr at ``/dev/null`` so that no library can print
  sample text to the user's terminal or a log file;
* sets resource limits (hard = soft, so the entry cannot raise them), core
  size 0 and ``PR_SET_DUMPABLE 0`` (no core dump with plaintext in it, no
  ptrace by processes of the same uid). ``execve`` resets dumpability: a
  program the entry execs relies on the core limit alone, which a
  ``core_pattern`` pipe handler may ignore;
* joins a fresh anonymous session keyring, dropping possession of the
  caller's kernel session keyring (which bubblewrap otherwise inherits); this
  is the one ``keyctl`` operation the seccomp filter lets through (every other
  keyring call is refused: the sandbox shares the caller's kernel uid, so the
  caller's user keyring, which may hold ``sealtune unlock``'s cached key, would
  otherwise be reachable);
* reads the secrets (data keys) from the inherited key pipe until EOF.

Then it imports ENTRY.MODULE and calls its ``main(ctx, argv)``; at the end it
overwrites and deletes what the entry left in the tmpfs workspace.

What this does NOT protect against: code that *wants* to leak can still encode
data in numbers or tokens on the event channel or in the output files; the
structure of the channel only prevents accidental leaks (log lines, tracebacks
with sample text). Python cannot reliably erase memory: ``wipe_keys`` zeroes the
``bytearray`` copies, not every copy a library made.

Standard library only: this module is imported inside the sandbox and by the
parent (for the wire format), and must start fast.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import hashlib
import importlib
import json
import math
import os
import re
import resource
import stat
import struct
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

WORKDIR = Path("/tmp")  # noqa: S108 - the sandbox's private tmpfs, not the host's /tmp
OUTDIR = Path("/sandbox/out")
INDIR = Path("/sandbox/in")

MAX_EVENT_BYTES = 4096  # <= PIPE_BUF: one write() per line is atomic
MAX_SECRETS = 100_000
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
KEY_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
TOKEN_RE = re.compile(r"^[A-Za-z0-9_.,:/+=-]{0,128}$")
EVENT_TYPES = frozenset({"progress", "event", "error"})
RLIMITS = {
    "as": resource.RLIMIT_AS,
    "cpu": resource.RLIMIT_CPU,
    "nofile": resource.RLIMIT_NOFILE,
    "nproc": resource.RLIMIT_NPROC,
    "fsize": resource.RLIMIT_FSIZE,
}

Scalar = int | float | bool | str | None


class ProtocolError(Exception):
    """A frame or event that does not follow the wire format (no payload quoted)."""


# -- wire format: secrets -------------------------------------------------------


def encode_secrets(secrets: Mapping[str, bytes | bytearray]) -> bytearray:
    """Frame secrets as ``u16 name length, name, u32 value length, value`` each."""
    if len(secrets) > MAX_SECRETS:
        raise ProtocolError("too many secrets for one sandbox")
    out = bytearray()
    for name, value in secrets.items():
        if not KEY_NAME_RE.fullmatch(name):
            raise ProtocolError("secret names must match [A-Za-z0-9_.:-]{1,128}")
        raw = name.encode()
        out += struct.pack(">H", len(raw)) + raw + struct.pack(">I", len(value)) + value
    return out


def _read_exact(fd: int, n: int) -> bytearray:
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            raise ProtocolError("key pipe closed in the middle of a frame")
        buf += chunk
    return buf


def read_secrets(fd: int) -> dict[str, bytearray]:
    """Read framed secrets from ``fd`` until EOF, then close it."""
    secrets: dict[str, bytearray] = {}
    try:
        while True:
            head = os.read(fd, 2)
            if not head:
                return secrets
            if len(head) == 1:
                head += _read_exact(fd, 1)
            (name_len,) = struct.unpack(">H", head)
            name = bytes(_read_exact(fd, name_len)).decode()
            (value_len,) = struct.unpack(">I", bytes(_read_exact(fd, 4)))
            if not KEY_NAME_RE.fullmatch(name) or len(secrets) >= MAX_SECRETS:
                raise ProtocolError("bad secret frame")
            secrets[name] = _read_exact(fd, value_len)
    finally:
        os.close(fd)


# -- wire format: events --------------------------------------------------------


def _check_value(value: object) -> Scalar:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str) and TOKEN_RE.fullmatch(value):
        return value
    raise ProtocolError("event fields must be numbers, booleans or short tokens")


def validate_event(obj: object) -> dict[str, Scalar]:
    """Check one decoded event; return it. Raises :class:`ProtocolError`."""
    if not isinstance(obj, dict) or obj.get("type") not in EVENT_TYPES:
        raise ProtocolError("event must be an object with a known type")
    name = obj.get("name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ProtocolError("event name must match [a-z][a-z0-9_]{0,63}")
    if len(obj) > 32:
        raise ProtocolError("too many event fields")
    out: dict[str, Scalar] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not NAME_RE.fullmatch(key):
            raise ProtocolError("event field names must match [a-z][a-z0-9_]{0,63}")
        out[key] = _check_value(value)
    return out


def decode_event(line: bytes) -> dict[str, Scalar]:
    """Decode and validate one JSON line from the event channel."""
    if len(line) > MAX_EVENT_BYTES:
        raise ProtocolError("event line too long")
    try:
        obj = json.loads(line)
    except ValueError:
        raise ProtocolError("event line is not JSON") from None
    return validate_event(obj)


class EventWriter:
    """Writes validated JSON lines to the event pipe (one ``write`` per event)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def send(self, type_: str, name: str, **fields: Scalar) -> None:
        event = validate_event({"type": type_, "name": name, **fields})
        line = json.dumps(event, separators=(",", ":")).encode() + b"\n"
        if len(line) > MAX_EVENT_BYTES:
            raise ProtocolError("event line too long")
        os.write(self._fd, line)

    def event(self, name: str, **fields: Scalar) -> None:
        """A named milestone, e.g. ``event("data_decrypted", files=3)``."""
        self.send("event", name, **fields)

    def progress(self, step: int, total: int | None, *, loss: float | None = None) -> None:
        """Training progress: aggregate numbers only."""
        self.send("progress", "progress", step=step, total=total, loss=loss)

    def error(self, exc: BaseException) -> None:
        """Report an exception by class name only (never its message)."""
        kind = type(exc).__name__
        self.send("error", "error", kind=kind if TOKEN_RE.fullmatch(kind) else "Exception")


def environ_names_digest(names: set[str] | list[str]) -> str:
    """A digest of a set of variable names: the self-check reports it, the parent compares."""
    return hashlib.sha256(",".join(sorted(names)).encode()).hexdigest()[:32]


# -- the child's context ---------------------------------------------------------


@dataclass
class ChildContext:
    """What an entry module's ``main(ctx, argv)`` receives inside the sandbox.

    Attributes:
        events: the structured channel to the parent.
        keys: secrets handed over the key pipe, by name.
        workdir: the private, size-limited tmpfs workspace (also ``$TMPDIR``).
        outdir: the only writable host directory; write sealed outputs only.
        indir: read-only inputs, one sub-directory or file per name.
    """

    events: EventWriter
    keys: dict[str, bytearray] = field(default_factory=dict)
    workdir: Path = WORKDIR
    outdir: Path = OUTDIR
    indir: Path = INDIR

    def wipe_keys(self) -> None:
        """Zero and drop the key copies this context holds (best effort)."""
        for value in self.keys.values():
            value[:] = bytes(len(value))
        self.keys.clear()


def scrubbed_excepthook(events: EventWriter) -> Callable[..., None]:
    """An excepthook that reports the exception class only and prints nothing."""

    def hook(
        exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        with contextlib.suppress(Exception):  # the channel may be gone; never print instead
            events.error(exc)

    return hook


def wipe_tree(root: Path) -> int:
    """Overwrite every regular file under ``root`` with zeros, then delete it.

    On tmpfs (no journal, no copy-on-write) the overwrite reaches the very
    pages that held the data. Returns the number of files wiped.
    """
    count = 0
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
                if stat.S_ISREG(st.st_mode):
                    with open(path, "r+b", buffering=0) as fh:
                        remaining = st.st_size
                        while remaining > 0:
                            remaining -= fh.write(bytes(min(remaining, 1 << 20)))
                    count += 1
                os.unlink(path)
            except OSError:
                continue
        for name in dirnames:
            try:
                os.rmdir(os.path.join(dirpath, name))
            except OSError:
                continue
    return count


# -- the launcher -----------------------------------------------------------------


def _harden(limits: Mapping[str, int]) -> None:
    for name, value in limits.items():
        resource.setrlimit(RLIMITS[name], (value, value))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 0
    # keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL): a new anonymous session keyring (the
    # one keyctl call the seccomp filter allows). Fail closed, unless the kernel has
    # no keyrings at all (ENOSYS).
    if libc.syscall(250 if os.uname().machine == "x86_64" else 219, 1, None) < 0:
        code = ctypes.get_errno()
        if code != errno.ENOSYS:
            raise OSError(code, "cannot drop the caller's session keyring")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sealtune-sandbox-child", add_help=False)
    parser.add_argument("--events-fd", type=int, required=True)
    parser.add_argument("--keys-fd", type=int, required=True)
    parser.add_argument("--rlimit", action="append", default=[])
    parser.add_argument("entry")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Launcher entry point; returns the process exit status."""
    opts = _parse(sys.argv[1:] if argv is None else argv)
    events = EventWriter(opts.events_fd)
    sys.excepthook = scrubbed_excepthook(events)
    limits = {k: int(v) for k, v in (item.split("=", 1) for item in opts.rlimit)}
    _harden(limits)
    ctx = ChildContext(events=events, keys=read_secrets(opts.keys_fd))
    events.event("started", keys=len(ctx.keys), pid=os.getpid())
    status = 0
    started = time.monotonic()
    try:
        entry: Any = importlib.import_module(opts.entry)
        entry.main(ctx, list(opts.args))
    except BaseException as exc:  # every failure is reported by class only
        events.error(exc)
        status = 1
    finally:
        ctx.wipe_keys()
        wiped = wipe_tree(ctx.workdir)
        events.event("workspace_wiped", files=wiped)
        events.event("finished", status=status, seconds=round(time.monotonic() - started, 3))
    return status


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown (seconds with torch loaded): the outputs are
    # fsynced, the keys wiped and the tmpfs emptied before "finished" is sent.
    os._exit(code)
