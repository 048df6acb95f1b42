"""The sandbox's keyring seccomp filter, installed for real in a child process."""

from __future__ import annotations

import subprocess
import sys

from sealtune.train._keyring_filter import deny_kernel_keyring, program

CHILD = """
import ctypes, errno, os
from sealtune.keys import kernel_keyring
libc = ctypes.CDLL(None, use_errno=True)
add_key, keyctl = kernel_keyring._SYSCALLS[os.uname().machine]
results = []
for args in ((keyctl, 11, -4, None, 0), (add_key, b"user", b"x", b"y", 1, -4),
             (keyctl, 1, None)):
    results.append(errno.errorcode.get(ctypes.get_errno(), "") if libc.syscall(*args) < 0
                   else "ok")
print(" ".join(results), os.getpid() > 0, open("/proc/self/status").read().count("Seccomp"))
"""


def test_keyring_calls_fail_and_everything_else_works() -> None:
    plain = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                           timeout=60, check=True)
    assert plain.stdout.split()[0] == "ok"  # the kernel keyring works without the filter
    filtered = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                              timeout=60, check=True, preexec_fn=deny_kernel_keyring)
    assert filtered.stdout.split()[:4] == ["EPERM", "EPERM", "EPERM", "True"], filtered.stdout


def test_the_program_denies_other_abis_first() -> None:
    for machine in ("x86_64", "aarch64"):
        insns = program(machine)
        assert insns[0] == (0x20, 0, 0, 4) and insns[2] == (0x06, 0, 0, 0x00050000 | 1)
        assert insns[-2] == (0x06, 0, 0, 0x7FFF0000) and insns[-1] == insns[2]
        for i, (code, jt, jf, _) in enumerate(insns):  # every jump lands inside the program
            if code in (0x15, 0x35):
                assert i + 1 + max(jt, jf) < len(insns)
