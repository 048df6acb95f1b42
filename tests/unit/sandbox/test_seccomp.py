"""The seccomp program as bytes: every table entry, both architectures, jumps that land.

The kernel runs the x86_64 program in tests/integration/test_sandbox_seccomp.py;
here :func:`seccomp.evaluate` runs both tables (aarch64 cannot run on this
machine) over every listed number, every number up to 600 and the argument
checks, and the numbers are cross-checked against this machine's kernel headers.
"""

from __future__ import annotations

import errno
import re
import struct
from pathlib import Path

import pytest

from sealtune.sandbox import seccomp

EPERM = seccomp.RET_ERRNO | errno.EPERM
ENOSYS = seccomp.RET_ERRNO | errno.ENOSYS
ARCHES = ("x86_64", "aarch64")
HEADERS = {"x86_64": Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
           "aarch64": Path("/usr/include/asm-generic/unistd.h")}


def run(arch: str, nr: int, *args: int, audit: int | None = None) -> int:
    return seccomp.evaluate(seccomp.program(arch), nr=nr,
                            arch=seccomp.AUDIT_ARCH[arch] if audit is None else audit, args=args)


@pytest.mark.parametrize("arch", ARCHES)
def test_every_denied_call_gets_eperm_and_the_rest_is_allowed(arch: str) -> None:
    nr = seccomp.syscall_numbers(arch)
    denied = {nr[n] for n in seccomp.DENIED}
    assert {n: run(arch, nr[n]) for n in seccomp.DENIED} == dict.fromkeys(seccomp.DENIED, EPERM)
    special = {nr["clone"], nr["clone3"], nr["keyctl"]}
    for number in range(600):
        if number not in denied | special:
            assert run(arch, number) == seccomp.RET_ALLOW, number
    assert run(arch, nr["clone3"]) == ENOSYS


@pytest.mark.parametrize("arch", ARCHES)
def test_clone_is_refused_with_any_namespace_flag_only(arch: str) -> None:
    clone = seccomp.syscall_numbers(arch)["clone"]
    thread_flags = 0x003D0F00  # what glibc's pthread_create passes (VM|FS|FILES|SIGHAND|...)
    assert run(arch, clone, thread_flags) == seccomp.RET_ALLOW
    assert run(arch, clone, 0x11) == seccomp.RET_ALLOW  # fork: SIGCHLD
    for name, bit in seccomp.CLONE_NAMESPACES.items():
        assert run(arch, clone, thread_flags | bit) == EPERM, name
        assert run(arch, clone, bit | 0x11) == EPERM, name


@pytest.mark.parametrize("arch", ARCHES)
def test_keyctl_allows_joining_a_new_anonymous_session_keyring_only(arch: str) -> None:
    keyctl = seccomp.syscall_numbers(arch)["keyctl"]
    assert run(arch, keyctl, 1, 0) == seccomp.RET_ALLOW  # JOIN_SESSION_KEYRING, NULL name
    assert run(arch, keyctl, 1, 0x7FFF0000) == EPERM  # a named keyring
    assert run(arch, keyctl, 1, 1 << 32) == EPERM  # a pointer with only high bits
    assert run(arch, keyctl, 11 | (1 << 32), 0) == EPERM  # the kernel reads an int option
    for op in (0, 2, 6, 11, 29):  # GET_KEYRING_ID, UPDATE, LINK, READ, RESTRICT
        assert run(arch, keyctl, op, 0) == EPERM, op


def test_foreign_architectures_are_killed_and_x32_refused() -> None:
    for arch in ARCHES:
        for audit in (0x40000003, 0x40000028, *seccomp.AUDIT_ARCH.values()):  # i386, arm
            if audit != seccomp.AUDIT_ARCH[arch]:
                assert run(arch, 39, audit=audit) == seccomp.RET_KILL_PROCESS
    for x32 in (0x40000000, 0x40000000 | 39, 0x40000000 | 101, 0xFFFFFFFF):
        assert run("x86_64", x32) == EPERM
    assert run("aarch64", 0x40000000 | 39) == seccomp.RET_ALLOW  # no x32 ABI there


def test_numbers_match_this_machines_kernel_headers() -> None:
    for arch, header in HEADERS.items():
        text = header.read_text()
        table = {m[1]: int(m[2]) for m in re.finditer(
            r"#define __NR(?:3264)?_(\w+)\s+(\d+)", text)}
        numbers = seccomp.syscall_numbers(arch)
        for name, number in numbers.items():
            if name in table:  # open_tree_attr is newer than these headers
                assert table[name] == number, (arch, name)
        assert set(numbers) - set(table) <= {"open_tree_attr"}


def test_program_is_well_formed_and_stable() -> None:
    blob = seccomp.program("x86_64")
    assert len(blob) % 8 == 0 and len(blob) // 8 < 100
    lines = seccomp.disassemble(blob)
    assert lines[0] == "  0 ld 0x4" and lines[1].startswith("  1 jeq 0xc000003e")
    assert lines[-1].endswith(f"ret {seccomp.RET_KILL_PROCESS:#x}")
    insns = list(struct.iter_unpack("=HBBI", blob))
    for i, (code, jt, jf, _) in enumerate(insns):
        assert code in (0x20, 0x15, 0x35, 0x45, 0x06)
        if code in (0x20, 0x06):
            assert jt == jf == 0
        else:
            assert i + 1 + max(jt, jf) < len(insns)  # every jump lands inside the program
    assert insns[-1][0] == 0x06  # it cannot run off the end
    assert seccomp.digest("x86_64") == seccomp.digest("x86_64") != seccomp.digest("aarch64")
    with pytest.raises(ValueError, match="riscv64"):
        seccomp.program("riscv64")
