"""The sandbox's seccomp filter: a classic-BPF program, assembled here, loaded by bubblewrap.

bubblewrap reads the program from an inherited descriptor (``--seccomp FD``)
and installs it right before it executes the sandbox's command, so every
instruction of every process inside runs under it, and it cannot be removed
(children inherit it; ``no_new_privs`` is set). The program is built in pure
Python (no libseccomp), a few dozen instructions anyone can audit with
:func:`disassemble`:

1. ``seccomp_data.arch`` must be the machine's native architecture; any other
   (on x86_64 that is the i386 ``int 0x80`` entry, on arm64 the 32-bit one)
   kills the process (``SECCOMP_RET_KILL_PROCESS``). On x86_64, x32 system
   calls (``nr >= 0x40000000``) are refused with ``EPERM``;
2. every call in :data:`DENIED` fails with ``EPERM`` before the kernel runs it:
   debugging and reading other processes (``ptrace``, ``process_vm_*``,
   ``pidfd_getfd``, ``kcmp``...), kernel attack surface an ML job never needs
   (``io_uring_*``, ``bpf``, ``perf_event_open``, ``userfaultfd``), the kernel
   keyring (``add_key``, ``request_key``, ``keyctl``), namespaces and mounts
   (``unshare``, ``setns``, ``mount`` and the new mount API, ``pivot_root``,
   ``chroot``), and host administration (modules, ``kexec``, ``reboot``,
   swap, ``acct``, quotas);
3. ``clone`` with any namespace flag fails with ``EPERM``; ``clone3`` fails with
   ``ENOSYS`` (its flags live in memory a filter cannot read; glibc then falls
   back to ``clone`` for threads and ``fork``);
4. ``keyctl`` is allowed for one operation only, ``KEYCTL_JOIN_SESSION_KEYRING``
   with no name: the launcher uses it to drop the caller's session keyring;
5. everything else is allowed.

What this protects against: code inside the sandbox (a malicious model file or
sample, a compromised library) using a kernel interface that the namespaces
leave reachable: tracing or reading another process's memory, a fresh
namespace or mount to undo the sandbox's view, io_uring or eBPF as a kernel
exploit vector, the kernel keyring. What it does not: it is a **denylist**, so
a system call added to a later kernel and not listed here is allowed; it
cannot filter on what a pointer argument points to (paths, ``clone3``'s
struct); it narrows, but does not close, the kernel's attack surface (a bug in
an allowed system call still escapes); it is OS isolation, not a TEE.

Syscall numbers: x86_64 from ``/usr/include/x86_64-linux-gnu/asm/unistd_64.h``
and aarch64 from ``/usr/include/asm-generic/unistd.h`` (linux-libc-dev 6.1 on
Debian 12); ``open_tree_attr`` (Linux 6.15, newer than those headers) from the
kernel's ``arch/x86/entry/syscalls/syscall_64.tbl`` and
``scripts/syscall.tbl``. Standard library only; pure (no I/O).
"""

from __future__ import annotations

import errno
import hashlib
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Linux audit architecture tokens (include/uapi/linux/audit.h).
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
X32_SYSCALL_BIT = 0x40000000

# name: (x86_64, aarch64)
_NUMBERS: dict[str, tuple[int, int]] = {
    "ptrace": (101, 117),
    "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271),
    "pidfd_getfd": (438, 438),
    "process_madvise": (440, 440),
    "kcmp": (312, 272),
    "io_uring_setup": (425, 425),
    "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427),
    "bpf": (321, 280),
    "perf_event_open": (298, 241),
    "userfaultfd": (323, 282),
    "add_key": (248, 217),
    "request_key": (249, 218),
    "unshare": (272, 97),
    "setns": (308, 268),
    "mount": (165, 40),
    "umount2": (166, 39),
    "pivot_root": (155, 41),
    "chroot": (161, 51),
    "open_tree": (428, 428),
    "open_tree_attr": (467, 467),
    "move_mount": (429, 429),
    "fsopen": (430, 430),
    "fsconfig": (431, 431),
    "fsmount": (432, 432),
    "fspick": (433, 433),
    "mount_setattr": (442, 442),
    "open_by_handle_at": (304, 265),
    "init_module": (175, 105),
    "finit_module": (313, 273),
    "delete_module": (176, 106),
    "kexec_load": (246, 104),
    "kexec_file_load": (320, 294),
    "reboot": (169, 142),
    "swapon": (167, 224),
    "swapoff": (168, 225),
    "acct": (163, 89),
    "quotactl": (179, 60),
    # Filtered on their arguments, not simply denied:
    "keyctl": (250, 219),
    "clone": (56, 220),
    "clone3": (435, 435),
}
#: Denied outright with ``EPERM`` (``keyctl``, ``clone`` and ``clone3`` are handled apart).
DENIED: tuple[str, ...] = tuple(n for n in _NUMBERS if n not in ("keyctl", "clone", "clone3"))
#: Every namespace flag of ``clone(2)`` (``CLONE_NEWTIME`` only exists for ``clone3``).
CLONE_NAMESPACES = {"CLONE_NEWNS": 0x00020000, "CLONE_NEWCGROUP": 0x02000000,
                    "CLONE_NEWUTS": 0x04000000, "CLONE_NEWIPC": 0x08000000,
                    "CLONE_NEWUSER": 0x10000000, "CLONE_NEWPID": 0x20000000,
                    "CLONE_NEWNET": 0x40000000}
KEYCTL_JOIN_SESSION_KEYRING = 1

# Classic BPF (include/uapi/linux/filter.h, bpf_common.h) and seccomp return values.
_LD_ABS_W = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ, _JGE, _JSET = 0x15, 0x35, 0x45  # BPF_JMP | BPF_J* | BPF_K
_RET = 0x06  # BPF_RET | BPF_K
RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
RET_ALLOW = 0x7FFF0000
# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6].
_NR, _ARCH = 0, 4


def _arg(i: int, *, high: bool = False) -> int:
    """Offset of the low (or high) 32 bits of ``args[i]`` (both arches are little-endian)."""
    return 16 + 8 * i + (4 if high else 0)


@dataclass(frozen=True)
class Insn:
    """One ``struct sock_filter``; ``jt``/``jf`` name labels until assembled."""

    code: int
    k: int = 0
    jt: str | None = None
    jf: str | None = None


def syscall_numbers(arch: str) -> dict[str, int]:
    """The numbers of every filtered system call on ``arch`` (``x86_64`` or ``aarch64``)."""
    if arch not in AUDIT_ARCH:
        raise ValueError(f"no seccomp table for architecture {arch!r}")
    col = 0 if arch == "x86_64" else 1
    return {name: nums[col] for name, nums in _NUMBERS.items()}


def _program(arch: str) -> tuple[list[Insn], dict[str, int]]:
    """The program as instructions with symbolic jumps, and each label's index."""
    nr = syscall_numbers(arch)
    ld = Insn(_LD_ABS_W, _NR)
    code: list[Insn] = [Insn(_LD_ABS_W, _ARCH), Insn(_JEQ, AUDIT_ARCH[arch], jf="kill"), ld]
    if arch == "x86_64":
        code.append(Insn(_JGE, X32_SYSCALL_BIT, jt="eperm"))
    code += [Insn(_JEQ, nr[name], jt="eperm") for name in DENIED]
    code += [Insn(_JEQ, nr["clone3"], jt="enosys"), Insn(_JEQ, nr["clone"], jt="clone"),
             Insn(_JEQ, nr["keyctl"], jt="keyctl"), Insn(_RET, RET_ALLOW)]
    labels = {"clone": len(code)}
    code += [Insn(_LD_ABS_W, _arg(0)), Insn(_JSET, sum(CLONE_NAMESPACES.values()), jt="eperm"),
             Insn(_RET, RET_ALLOW)]
    labels["keyctl"] = len(code)  # only JOIN_SESSION_KEYRING, with a NULL name
    code += [Insn(_LD_ABS_W, _arg(0)), Insn(_JEQ, KEYCTL_JOIN_SESSION_KEYRING, jf="eperm"),
             Insn(_LD_ABS_W, _arg(1)), Insn(_JEQ, 0, jf="eperm"),
             Insn(_LD_ABS_W, _arg(1, high=True)), Insn(_JEQ, 0, jf="eperm"),
             Insn(_RET, RET_ALLOW)]
    for label, action in (("eperm", RET_ERRNO | errno.EPERM),
                          ("enosys", RET_ERRNO | errno.ENOSYS), ("kill", RET_KILL_PROCESS)):
        labels[label] = len(code)
        code.append(Insn(_RET, action))
    return code, labels


def _offset(labels: Mapping[str, int], label: str | None, at: int) -> int:
    if label is None:
        return 0
    jump = labels[label] - at - 1
    if not 0 <= jump <= 255:  # a conditional jump reaches 255 instructions forward at most
        raise ValueError(f"seccomp jump to {label} out of range")
    return jump


def program(arch: str) -> bytes:
    """The filter for ``arch`` as the bytes of a ``struct sock_filter`` array.

    This is what ``bwrap --seccomp FD`` reads. Raises :class:`ValueError` for an
    architecture without a table (the sandbox then refuses to start).
    """
    code, labels = _program(arch)
    return b"".join(struct.pack("=HBBI", insn.code, _offset(labels, insn.jt, i),
                                _offset(labels, insn.jf, i), insn.k)
                    for i, insn in enumerate(code))


def digest(arch: str) -> str:
    """``sha256:`` of the program, recorded in the audit log with each sandbox."""
    return "sha256:" + hashlib.sha256(program(arch)).hexdigest()


def disassemble(blob: bytes) -> list[str]:
    """One readable line per instruction (for review and the tests)."""
    names = {_LD_ABS_W: "ld", _JEQ: "jeq", _JGE: "jge", _JSET: "jset", _RET: "ret"}
    lines = []
    for i, (code, jt, jf, k) in enumerate(struct.iter_unpack("=HBBI", blob)):
        op = names.get(code, hex(code))
        if op == "ld" or op == "ret":
            lines.append(f"{i:3} {op} {k:#x}")
        else:
            lines.append(f"{i:3} {op} {k:#x} ? {i + 1 + jt} : {i + 1 + jf}")
    return lines


def evaluate(blob: bytes, *, nr: int, arch: int, args: Sequence[int] = ()) -> int:
    """Run the program on one ``seccomp_data`` as the kernel would; return the action.

    Only the opcodes :func:`program` emits are understood. Used by the tests to
    check a table the machine cannot run (another architecture).
    """
    full = [*args, *[0] * (6 - len(args))]
    data = struct.pack("=IIQ6Q", nr & 0xFFFFFFFF, arch, 0, *full)
    insns = list(struct.iter_unpack("=HBBI", blob))
    pc, acc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        if code == _LD_ABS_W:
            acc = struct.unpack_from("=I", data, k)[0]
            pc += 1
        elif code == _RET:
            return int(k)
        else:
            taken = {_JEQ: acc == k, _JGE: acc >= k, _JSET: bool(acc & k)}[code]
            pc += 1 + (jt if taken else jf)
