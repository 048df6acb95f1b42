"""A tiny entry module that checks the sandbox from the inside.

Run by :func:`sealtune.sandbox.selfcheck.probe` (``selfcheck``) and by the
integration tests. Every argument is ``ACTION`` or ``ACTION=ARG``; each
action reports one event (numbers, booleans and short tokens only)::

    selfcheck          network interfaces, capabilities, no_new_privs, uid, pid, seccomp
                       mode, and a digest of the variable names in every visible environ
    connect=HOST:PORT  TCP connect                 -> check(ok, errno)
    uconnect=NAME      abstract unix socket connect -> check(ok, errno)
    read=PATH          open and read a file         -> check(ok, errno)
    write=PATH         create and write a file      -> check(ok, errno)
    sysctl=PATH        write a sysctl's own value back -> check(ok, errno)
    keyctl=ID          read a kernel keyring key by id -> check(ok, errno)
    keysteal=DESC      link the uid keyrings seen in /proc/keys into the process
                       keyring, then search and read the user key DESC -> check(ok, errno)
    env=NAME           is the variable set          -> check(present)
    key=NAME           sha256 of the handed-over key, whether it is in environ
    out=NAME           write a small file into the output directory
    tmpfile=TEXT       write TEXT into the tmpfs workspace (stands in for plaintext)
    fill=PATH:BYTES    write BYTES zeros to PATH    -> check(ok, errno)
    escape_out         try to leave a symlink and a setuid file in the output dir
    litter=HOSTDIR     leave expected and unexpected entries in the output dir,
                       links to HOSTDIR among them
    rlimits            the resource limits in force
    spawn=N            start N sleeping grandchildren
    progress=N         N progress events
    milestone=NAME     one event NAME (a stage's milestone, e.g. data_decrypted) -> NAME(count=1)
    fail               raise ValueError with a message that must never leave
    hold               report ``holding`` and sleep until killed
    environ            search every readable /proc/*/environ and cmdline for the
                       handed-over keys' values -> environ(found=key names)
    syscalls           each system call the seccomp filter denies, with harmless
                       arguments -> syscall(name, errno) each
    ptrace             trace / read a dumpable sibling and, from a child, PID 1
                       -> trace(target, how, errno) each
    int80              (x86_64) a child makes an i386 system call -> int80(signal)
    allowed            threads, fork, exec of python -> check(ok) each
    torch              import torch, a tiny forward and backward pass -> check(ok)

Not for production use: it deliberately tries to break out.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import resource
import socket
import stat
import time
from collections.abc import Callable

from sealtune.sandbox._probe_kernel import KERNEL_ACTIONS
from sealtune.sandbox.launcher import ChildContext
from sealtune.sandbox.wire import environ_names_digest

Action = Callable[[ChildContext, str], None]


def _errno(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, "EUNKNOWN")


def _attempt(ctx: ChildContext, check: str, fn: Callable[[], object]) -> None:
    try:
        fn()
    except OSError as exc:
        ctx.events.event("check", check=check, ok=False, errno=_errno(exc))
    else:
        ctx.events.event("check", check=check, ok=True, errno="")


def _connect(ctx: ChildContext, arg: str) -> None:
    host, port = arg.rsplit(":", 1)

    def go() -> None:
        with socket.create_connection((host, int(port)), timeout=2):
            pass

    _attempt(ctx, "connect", go)


def _uconnect(ctx: ChildContext, arg: str) -> None:
    def go() -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect("\0" + arg)

    _attempt(ctx, "uconnect", go)


def _read(ctx: ChildContext, arg: str) -> None:
    def go() -> None:
        with open(arg, "rb") as fh:
            fh.read(1)

    _attempt(ctx, "read", go)


def _write(ctx: ChildContext, arg: str) -> None:
    def go() -> None:
        with open(arg, "wb") as fh:
            fh.write(b"x")

    _attempt(ctx, "write", go)


def _sysctl(ctx: ChildContext, arg: str) -> None:
    def go() -> None:  # writes back the value it read: harmless if the write succeeds
        with open(arg, "rb") as fh:
            value = fh.read()
        with open(arg, "wb") as fh:
            fh.write(value)

    _attempt(ctx, "sysctl", go)


def _keyctl(ctx: ChildContext, arg: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(256)
    keyctl = 250 if os.uname().machine == "x86_64" else 219
    if libc.syscall(keyctl, 11, int(arg), buf, 256) < 0:  # KEYCTL_READ
        code = ctypes.get_errno()
        ctx.events.event("check", check="keyctl", ok=False, errno=errno.errorcode.get(code, ""))
    else:
        ctx.events.event("check", check="keyctl", ok=True, errno="")


def _environs() -> dict[str, bytes]:
    """The initial environment of every process whose environ this one may read."""
    found = {}
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                found[pid] = fh.read()
        except OSError:
            continue
    return found


def _keysteal(ctx: ChildContext, arg: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    keyctl = 250 if os.uname().machine == "x86_64" else 219

    def call(*args: object) -> int:
        result: int = libc.syscall(keyctl, *args)
        if result < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        return result

    def go() -> None:
        with open("/proc/keys") as fh:
            rings = [int(line.split()[0], 16) for line in fh if line.split()[7] == "keyring"
                     and line.split()[8].startswith("_uid")]
        for ring in rings:
            call(8, ring, -2)  # KEYCTL_LINK into the process keyring
        serial = call(10, -2, b"user", arg.encode(), 0)  # KEYCTL_SEARCH
        buf = ctypes.create_string_buffer(256)
        call(11, serial, buf, 256)  # KEYCTL_READ

    _attempt(ctx, "keysteal", go)


def _selfcheck(ctx: ChildContext, _: str) -> None:
    with open("/proc/self/status") as fh:
        status = dict(line.split(":", 1) for line in fh.read().splitlines() if ":" in line)
    ifaces = sorted(name for _, name in socket.if_nameindex())
    environs = _environs()
    names = {e.split(b"=", 1)[0].decode(errors="replace")
             for blob in environs.values() for e in blob.split(b"\0") if e}
    ctx.events.event(
        "selfcheck",
        interfaces=",".join(ifaces),
        cap_eff=status["CapEff"].strip(),
        cap_bnd=status["CapBnd"].strip(),
        no_new_privs=int(status["NoNewPrivs"]),
        seccomp=int(status["Seccomp"]),
        pid=os.getpid(),
        uid=os.getuid(),
        hostname=socket.gethostname(),
        fds=",".join(sorted(os.listdir("/proc/self/fd"), key=int)),
        environs=len(environs),
        environ_names=environ_names_digest(names),
    )


def _environ(ctx: ChildContext, _: str) -> None:
    blobs = _environs()
    for pid in blobs:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                blobs[pid] += b"\0" + fh.read()
        except OSError:
            continue
    found = sorted(name for name, value in ctx.keys.items()
                   if any(bytes(value) in blob for blob in blobs.values()))
    ctx.events.event("environ", processes=len(blobs), found=",".join(found),
                     pid1="1" in blobs)


def _key(ctx: ChildContext, name: str) -> None:
    value = bytes(ctx.keys[name])
    with open("/proc/self/environ", "rb") as fh:
        environ = fh.read()
    found = value in environ or value.hex().encode() in environ
    digest = hashlib.sha256(value).hexdigest()
    ctx.events.event("key", key=name, sha256=digest, in_environ=found)


def _out(ctx: ChildContext, name: str) -> None:
    (ctx.outdir / name).write_bytes(b"sealed-output-placeholder\n")
    ctx.events.event("check", check="out", ok=True, errno="")


def _tmpfile(ctx: ChildContext, text: str) -> None:
    (ctx.workdir / "plaintext.txt").write_text(text)
    ctx.events.event("check", check="tmpfile", ok=True, errno="")


def _fill(ctx: ChildContext, arg: str) -> None:
    def go() -> None:
        with open(arg.split(":")[0], "wb") as fh:
            fh.write(bytes(int(arg.split(":")[1])))

    _attempt(ctx, "fill", go)


def _escape_out(ctx: ChildContext, _: str) -> None:
    (ctx.outdir / "link").symlink_to("/etc/shadow")
    exe = ctx.outdir / "suid"
    exe.write_bytes(b"#!/bin/sh\n")
    exe.chmod(0o4755 | stat.S_IFREG)
    os.mkfifo(ctx.outdir / "fifo")
    ctx.events.event("check", check="escape_out", ok=True, errno="")


def _litter(ctx: ChildContext, hostdir: str) -> None:
    model = ctx.outdir / "model"
    model.mkdir()
    (model / "a.sealed").write_bytes(b"SEALTUNE")
    (model / "b.txt").write_text("plaintext")
    (model / "link.sealed").symlink_to("/etc/hostname")
    (model / "dirlink.sealed").symlink_to(hostdir)  # must be unlinked, never followed
    (ctx.outdir / "hostlink").symlink_to(hostdir)
    (ctx.outdir / "stray.bin").write_bytes(b"x")
    (ctx.outdir / "extra" / "deep").mkdir(parents=True)
    (ctx.outdir / "extra" / "deep" / "c.sealed").write_bytes(b"SEALTUNE")
    os.mkfifo(model / "fifo.sealed")
    (model / "odd\nname \u5f20.sealed.txt").write_text("x")
    ctx.events.event("check", check="litter", ok=True, errno="")


def _rlimits(ctx: ChildContext, _: str) -> None:
    def soft(which: int) -> int:
        return resource.getrlimit(which)[0]

    ctx.events.event(
        "rlimits",
        nofile=soft(resource.RLIMIT_NOFILE),
        address_space=soft(resource.RLIMIT_AS),
        cpu=soft(resource.RLIMIT_CPU),
        core=soft(resource.RLIMIT_CORE),
        fsize=soft(resource.RLIMIT_FSIZE),
        nofile_hard=resource.getrlimit(resource.RLIMIT_NOFILE)[1],
    )


def _spawn(ctx: ChildContext, arg: str) -> None:
    for _ in range(int(arg)):
        if os.fork() == 0:  # a grandchild that outlives nothing: it must die with the sandbox
            time.sleep(3600)
            os._exit(0)
    ctx.events.event("spawned", count=int(arg))


def _progress(ctx: ChildContext, arg: str) -> None:
    total = int(arg)
    for step in range(1, total + 1):
        ctx.events.progress(step, total, loss=1.0 / step)


def _fail(ctx: ChildContext, _: str) -> None:
    raise ValueError("patient 张三 id 110101199003074258 must never leave the sandbox")


def _hold(ctx: ChildContext, _: str) -> None:
    ctx.events.event("holding")
    while True:
        time.sleep(3600)


ACTIONS: dict[str, Action] = {
    "selfcheck": _selfcheck,
    "connect": _connect,
    "uconnect": _uconnect,
    "sysctl": _sysctl,
    "keyctl": _keyctl,
    "keysteal": _keysteal,
    "read": _read,
    "write": _write,
    "env": lambda ctx, name: ctx.events.event("check", check="env", present=name in os.environ),
    "key": _key,
    "out": _out,
    "tmpfile": _tmpfile,
    "fill": _fill,
    "escape_out": _escape_out,
    "litter": _litter,
    "rlimits": _rlimits,
    "spawn": _spawn,
    "progress": _progress,
    "milestone": lambda ctx, name: ctx.events.event(name, count=1),
    "fail": _fail,
    "hold": _hold,
    "environ": _environ,
    **KERNEL_ACTIONS,
}


def main(ctx: ChildContext, argv: list[str]) -> None:
    """Run each action in ``argv`` in order."""
    for item in argv:
        action, _, arg = item.partition("=")
        ACTIONS[action](ctx, arg)
