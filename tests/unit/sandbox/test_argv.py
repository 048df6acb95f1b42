"""The bubblewrap command line, pinned: moving or reusing the sandbox must not change it.

The argv is the sandbox's contract with bubblewrap (what each flag stops is
in :mod:`sealtune.sandbox`); a training job's spec must produce exactly this
list, flag for flag and in this order, whichever stage builds it.
"""

from __future__ import annotations

import os
from pathlib import Path

from sealtune.train.sandbox import SandboxSpec, build_argv


def _root_links() -> list[str]:
    out: list[str] = []
    for link in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(link):
            out += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            out += ["--ro-bind", link, link]
    return out


def test_a_training_spec_gives_the_pinned_argv() -> None:
    spec = SandboxSpec(
        output_dir=Path("/w/jobs/job-1"),
        inputs={"dataset": Path("/w/datasets/d/data.sealed"), "base": Path("/m/base")},
        hidden=(Path("/w/keys.json"),), python=Path("/venv/bin/python"),
        runtime_dirs=(Path("/venv"), Path("/usr/local/lib/python3.11")),
        code_dirs=(Path("/src"),), env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"},
        tmpfs_size=1 << 29)
    argv = build_argv(spec, ["/venv/bin/python", "-m", "entry"], bwrap="/usr/bin/bwrap",
                      seccomp_fd=7, status_fd=9)
    assert argv == [
        "/usr/bin/bwrap", "--unshare-user", "--unshare-ipc", "--unshare-pid", "--as-pid-1",
        "--unshare-net", "--unshare-uts", "--unshare-cgroup-try", "--disable-userns",
        "--uid", "65534", "--gid", "65534", "--die-with-parent", "--new-session",
        "--cap-drop", "ALL", "--seccomp", "7", "--hostname", "sandbox", "--clearenv",
        "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp",
        "--setenv", "TMPDIR", "/tmp", "--setenv", "PWD", "/tmp",
        "--setenv", "USER", "sandbox", "--setenv", "LOGNAME", "sandbox",
        "--setenv", "LANG", "C.UTF-8", "--setenv", "HF_HUB_OFFLINE", "1",
        "--setenv", "OMP_NUM_THREADS", "2", "--json-status-fd", "9",
        "--ro-bind", "/usr", "/usr", *_root_links(),
        "--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache",
        "--ro-bind-try", "/etc/ld.so.conf", "/etc/ld.so.conf",
        "--ro-bind-try", "/etc/ld.so.conf.d", "/etc/ld.so.conf.d",
        "--ro-bind-try", "/etc/localtime", "/etc/localtime",
        "--proc", "/proc", "--ro-bind", "/proc/sys", "/proc/sys",
        "--ro-bind-try", "/proc/sysrq-trigger", "/proc/sysrq-trigger",
        "--dev", "/dev", "--size", str(1 << 29), "--tmpfs", "/dev/shm",
        "--size", str(1 << 29), "--tmpfs", "/tmp",
        "--ro-bind", "/venv", "/venv",
        "--ro-bind", "/usr/local/lib/python3.11", "/usr/local/lib/python3.11",
        "--ro-bind", "/src", "/src",
        "--ro-bind", "/w/datasets/d/data.sealed", "/sandbox/in/dataset",
        "--ro-bind", "/m/base", "/sandbox/in/base",
        "--bind", "/w/jobs/job-1", "/sandbox/out",
        "--remount-ro", "/dev", "--remount-ro", "/", "--chdir", "/tmp",
        "--", "/venv/bin/python", "-m", "entry"]
