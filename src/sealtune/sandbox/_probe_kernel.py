"""Kernel-facing checks for the sandbox probe: the seccomp filter, ptrace, what still works.

Imported by :mod:`sealtune.sandbox._probe_child` (its actions ``syscalls``,
``ptrace``, ``int80``, ``allowed`` and ``torch``) and by the tests, which run
:func:`try_syscalls` outside the sandbox too, for the unfiltered baseline.

Not for production use: it deliberately calls what the filter denies. Every
call is made with arguments that fail harmlessly (or do nothing) if the
filter were absent, even as root: invalid descriptors, a missing path, a pid
that cannot exist, invalid flags.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from sealtune.sandbox import seccomp
from sealtune.sandbox.launcher import ChildContext

_NOPATH = b"/nonexistent-sealtune-probe"
_BADPID = 0x3FFFFFF0  # above any pid_max: ESRCH
_CLONE_THREAD = 0x00010000


def _denied_calls() -> dict[str, tuple[object, ...]]:
    """Arguments for each denied call that fail harmlessly (or do nothing) unfiltered.

    Invalid descriptors, a missing path, a pid that cannot exist, invalid flags:
    the tests also run these outside the sandbox, as root, for the baseline.
    """
    me = os.getpid()
    return {
        "ptrace": (16, _BADPID, None, None), "process_vm_readv": (me, None, 0, None, 0, 0),
        "process_vm_writev": (me, None, 0, None, 0, 0), "pidfd_getfd": (-1, 0, 0),
        "process_madvise": (-1, None, 0, 0, 0), "kcmp": (_BADPID, _BADPID, 0, 0, 0),
        "io_uring_setup": (0, None), "io_uring_enter": (-1, 0, 0, 0, None, 0),
        "io_uring_register": (-1, 0, None, 0), "bpf": (0xFFFF, None, 0),
        "perf_event_open": (None, 0, -1, -1, 0), "userfaultfd": (0xFFFF,),
        "add_key": (None, None, None, 0, 0), "request_key": (None, None, None, 0),
        "unshare": (0,), "setns": (-1, 0), "mount": (_NOPATH, _NOPATH, None, 0, None),
        "umount2": (_NOPATH, 0), "pivot_root": (_NOPATH, _NOPATH), "chroot": (_NOPATH,),
        "open_tree": (-1, _NOPATH, 0), "open_tree_attr": (-1, _NOPATH, 0, None, 0),
        "move_mount": (-1, _NOPATH, -1, _NOPATH, 0), "fsopen": (_NOPATH, 0),
        "fsconfig": (-1, 0xFF, None, None, 0), "fsmount": (-1, 0, 0),
        "fspick": (-1, _NOPATH, 0), "mount_setattr": (-1, _NOPATH, 0, None, 0),
        "open_by_handle_at": (-1, None, 0), "init_module": (None, 0, None),
        "finit_module": (-1, None, 0), "delete_module": (_NOPATH, 0x800),
        "kexec_load": (0, 0xFFFF, None, 0xFFFF0000),
        "kexec_file_load": (-1, -1, 0, None, 0xFFFFFFFF), "reboot": (0, 0, 0, None),
        "swapon": (_NOPATH, 0), "swapoff": (_NOPATH,), "acct": (_NOPATH,),
        "quotactl": (0, None, 0, None), "keyctl": (11, 0x7FFFFFF0, None, 0),
    }


def _raw(nr: int, args: tuple[object, ...]) -> str:
    libc = ctypes.CDLL(None, use_errno=True)
    c_args = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    if libc.syscall(ctypes.c_long(nr), *c_args) < 0:
        return errno.errorcode.get(ctypes.get_errno(), "EUNKNOWN")
    return ""


def try_syscalls() -> dict[str, str]:
    """Errno name (``""``: success) of each filtered call, including clone's namespace flags."""
    nr = seccomp.syscall_numbers(os.uname().machine)
    result = {name: _raw(nr[name], args) for name, args in _denied_calls().items()}
    for flag, bit in seccomp.CLONE_NAMESPACES.items():  # THREAD without SIGHAND: EINVAL
        result[f"clone:{flag}"] = _raw(nr["clone"], (bit | _CLONE_THREAD, 0, 0, 0, 0))
    result["clone3"] = _raw(nr["clone3"], (None, 0))
    if os.uname().machine == "x86_64":
        result["x32:getpid"] = _raw(seccomp.X32_SYSCALL_BIT | 39, ())
    return result


def _syscalls(ctx: ChildContext, _: str) -> None:
    for name, code in try_syscalls().items():
        ctx.events.event("syscall", call=name, errno=code)


def _trace(ctx: ChildContext, target: int, label: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    for how, args in (("attach", (16, target, None, None)), ("seize", (0x4206, target, 0, 0))):
        ctx.events.event("trace", target=label, how=how, errno=_raw(
            seccomp.syscall_numbers(os.uname().machine)["ptrace"], args))
    buf = ctypes.create_string_buffer(8)
    local = (ctypes.c_void_p * 2)(ctypes.cast(buf, ctypes.c_void_p), 8)
    remote = (ctypes.c_void_p * 2)(ctypes.cast(buf, ctypes.c_void_p), 8)
    got = libc.process_vm_readv(target, local, 1, remote, 1, 0)
    ctx.events.event("trace", target=label, how="vm_readv",
                     errno="" if got >= 0 else errno.errorcode.get(ctypes.get_errno(), "E"))
    if target != 1:  # another dumpable process of the sandbox: within its own boundary
        return
    try:
        with open(f"/proc/{target}/mem", "rb") as fh:
            fh.read(1)
        code = ""
    except OSError as exc:
        code = errno.errorcode.get(exc.errno or 0, "EUNKNOWN")
    ctx.events.event("trace", target=label, how="proc_mem", errno=code)


def _ptrace(ctx: ChildContext, _: str) -> None:
    sibling = subprocess.Popen([sys.executable, "-I", "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.3)  # let it exec (and become dumpable again)
        _trace(ctx, sibling.pid, "sibling")
        child = os.fork()
        if child == 0:  # a process of the sandbox other than PID 1 goes for PID 1
            _trace(ctx, 1, "pid1")
            os._exit(0)
        os.waitpid(child, 0)
    finally:
        sibling.kill()
        sibling.wait()


def _int80_child() -> int:
    """Make an i386 system call (getpid, through ``int 0x80``) from x86_64 code."""
    page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(bytes.fromhex("b814000000cd80c3"))  # mov eax, 20; int 0x80; ret
    fn = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(page)))
    return int(fn())


def _int80(ctx: ChildContext, _: str) -> None:
    child = os.fork()
    if child == 0:  # exit 4: no i386 entry to try on this architecture
        if os.uname().machine != "x86_64":
            os._exit(4)
        os._exit(0 if _int80_child() == os.getpid() else 3)
    status = os.waitpid(child, 0)[1]
    ctx.events.event("int80", signal=os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0,
                     exit=os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                     sigsys=int(signal.SIGSYS))


def _allowed(ctx: ChildContext, _: str) -> None:
    done: list[int] = []
    thread = threading.Thread(target=lambda: done.append(1))
    thread.start()
    thread.join()
    ctx.events.event("check", check="thread", ok=done == [1], errno="")
    child = os.fork()
    if child == 0:
        os._exit(7)
    ctx.events.event("check", check="fork", ok=os.waitpid(child, 0)[1] >> 8 == 7, errno="")
    out = subprocess.run([sys.executable, "-I", "-c", "print(6 * 7)"], capture_output=True,
                         check=False).stdout
    ctx.events.event("check", check="exec", ok=out.strip() == b"42", errno="")


def _torch(ctx: ChildContext, _: str) -> None:
    import torch

    torch.set_num_threads(2)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    loss = model(torch.randn(4, 8)).pow(2).mean()
    loss.backward()
    ok = all(p.grad is not None for p in model.parameters()) and bool(torch.isfinite(loss))
    ctx.events.event("check", check="torch", ok=ok, errno="")


KERNEL_ACTIONS: dict[str, Callable[[ChildContext, str], None]] = {
    "syscalls": _syscalls,
    "ptrace": _ptrace,
    "int80": _int80,
    "allowed": _allowed,
    "torch": _torch,
}
