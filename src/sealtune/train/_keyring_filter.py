"""A seccomp filter that shuts the training sandbox out of the kernel keyrings.

The sandbox runs under the caller's kernel uid (a new user namespace maps
its uid 65534 onto it), and the caller's user keyring ``@u`` grants its
owner uid view, search and link: code in the sandbox could read its serial
from ``/proc/keys``, link it into its own process keyring, possess it, and
read what it holds, such as the derived keyring key ``sealtune unlock``
caches there (demonstrated in tests/integration/test_unlock.py). Joining a
fresh session keyring does not prevent that; this filter does: ``add_key``,
``request_key`` and ``keyctl`` fail with ``EPERM``, as does every system
call made through a non-native ABI (i386 ``int 0x80`` or x32 on x86_64),
which would otherwise reach the same calls under other numbers.

Installed by the launcher (:mod:`sealtune.train._sandbox_child`) before any
entry code runs, with ``no_new_privs``; a filter cannot be removed by the
code it confines. Does not protect against: anything other than the kernel
keyring (this is not the general syscall filter the sandbox lacks).
Standard library only; Linux x86_64 and aarch64.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

# machine -> (AUDIT_ARCH_*, add_key, request_key, keyctl)
_ARCH = {"x86_64": (0xC000003E, 248, 249, 250), "aarch64": (0xC00000B7, 217, 218, 219)}
_X32_BIT = 0x40000000
_LD_ABS, _JEQ, _JGE, _RET = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, JMP|JEQ|K, JMP|JGE|K, RET|K
_ALLOW, _ERRNO = 0x7FFF0000, 0x00050000
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2


class _Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def program(machine: str) -> list[tuple[int, int, int, int]]:
    """The BPF program as ``(code, jt, jf, k)`` instructions."""
    arch, add_key, request_key, keyctl = _ARCH[machine]
    deny = _ERRNO | errno.EPERM
    return [
        (_LD_ABS, 0, 0, 4),            # 0: seccomp_data.arch
        (_JEQ, 1, 0, arch),            # 1: native ABI -> 3
        (_RET, 0, 0, deny),            # 2: any other ABI: refused
        (_LD_ABS, 0, 0, 0),            # 3: seccomp_data.nr
        (_JGE, 4, 0, _X32_BIT),        # 4: x32 numbers -> deny
        (_JEQ, 3, 0, add_key),         # 5
        (_JEQ, 2, 0, request_key),     # 6
        (_JEQ, 1, 0, keyctl),          # 7
        (_RET, 0, 0, _ALLOW),          # 8
        (_RET, 0, 0, deny),            # 9
    ]


def deny_kernel_keyring() -> None:
    """Install the filter in this process (inherited by its children and threads).

    Raises:
        OSError: the kernel refused the filter (the launcher then fails closed).
    """
    machine = os.uname().machine
    if machine not in _ARCH:
        raise OSError(errno.ENOTSUP, f"no keyring filter for {machine}")
    insns = program(machine)
    raw = b"".join(struct.pack("=HBBI", *insn) for insn in insns)
    buf = ctypes.create_string_buffer(raw, len(raw))
    prog = _Prog(len(insns), ctypes.addressof(buf))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or libc.prctl(
            _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
