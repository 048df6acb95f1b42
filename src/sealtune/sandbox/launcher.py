"""The in-sandbox launcher: harden the process, read the keys, run the entry, wipe.

Runs inside bubblewrap as ``python -I -B -m sealtune.sandbox.launcher
--events-fd N --keys-fd M [--rlimit NAME=VALUE ...] -- ENTRY ARGS...``, where
ENTRY is ``package.module`` (its ``main``) or ``package.module:function``
(:data:`~sealtune.sandbox.wire.ENTRY_RE`): the stage decides what runs, the
launcher is the same for every stage. Before any entry code (and so before
any untrusted data or model file is touched) the launcher:

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

Then it imports the entry and calls it as ``entry(ctx, argv)`` with a
:class:`ChildContext`; at the end it overwrites and deletes what the entry
left in the tmpfs workspace (:func:`wipe_tree`). The wire format both sides
share is :mod:`sealtune.sandbox.wire`.

What this does NOT protect against: code that *wants* to leak can still encode
data in numbers or tokens on the event channel or in the output files (see
:mod:`sealtune.sandbox.wire`). Python cannot reliably erase memory:
``wipe_keys`` zeroes the ``bytearray`` copies, not every copy a library made.

Standard library only: this module runs inside the sandbox, and must start fast.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import importlib
import os
import resource
import stat
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from sealtune.sandbox.wire import (
    ENTRY_RE,
    INDIR,
    OUTDIR,
    WORKDIR,
    EventWriter,
    ProtocolError,
    read_secrets,
)

RLIMITS = {
    "as": resource.RLIMIT_AS,
    "cpu": resource.RLIMIT_CPU,
    "nofile": resource.RLIMIT_NOFILE,
    "nproc": resource.RLIMIT_NPROC,
    "fsize": resource.RLIMIT_FSIZE,
}


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


def load_entry(entry: str) -> Callable[[ChildContext, list[str]], None]:
    """The function ``entry`` names: ``package.module`` (its ``main``) or ``module:function``.

    Raises:
        ProtocolError: ``entry`` is not a dotted module name with an optional function.
    """
    if not ENTRY_RE.fullmatch(entry):
        raise ProtocolError("the entry must be package.module or package.module:function")
    module, _, function = entry.partition(":")
    found: Any = getattr(importlib.import_module(module), function or "main")
    return found  # type: ignore[no-any-return]


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
        load_entry(opts.entry)(ctx, list(opts.args))
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
