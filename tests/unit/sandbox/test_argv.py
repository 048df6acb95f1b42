"""The bubblewrap command line, pinned: moving or reusing the sandbox must not change it.

The argv is the sandbox's contract with bubblewrap (what each flag stops is
in :mod:`sealtune.sandbox`); a training job's spec must produce exactly this
list, flag for flag and in this order, whichever stage builds it.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from sealtune.errors import ConfigError
from sealtune.sandbox import Sandbox, SandboxSpec, build_argv, seccomp, wire
from sealtune.sandbox.launcher import load_entry
from sealtune.sandbox.wire import ProtocolError


def _root_links() -> list[str]:
    out: list[str] = []
    for link in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(link):
            out += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            out += ["--ro-bind", link, link]
    return out


def _spec() -> SandboxSpec:
    return SandboxSpec(
        output_dir=Path("/w/jobs/job-1"),
        inputs={"dataset": Path("/w/datasets/d/data.sealed"), "base": Path("/m/base")},
        hidden=(Path("/w/keys.json"),), python=Path("/venv/bin/python"),
        runtime_dirs=(Path("/venv"), Path("/usr/local/lib/python3.11")),
        code_dirs=(Path("/src"),), env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"},
        tmpfs_size=1 << 29)


def test_a_training_spec_gives_the_pinned_argv() -> None:
    spec = dataclasses.replace(_spec(), stage="train")
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


def test_the_stage_marks_the_ledger_only_and_must_be_known(tmp_path: Path) -> None:
    argv = build_argv(_spec(), ["x"], bwrap="bwrap", seccomp_fd=3)
    for stage in ("train", "data"):
        assert build_argv(dataclasses.replace(_spec(), stage=stage), ["x"], bwrap="bwrap",
                          seccomp_fd=3) == argv
    with pytest.raises(ConfigError, match="stage 'serve'"):
        SandboxSpec(output_dir=tmp_path, stage="serve").validate()


def test_the_seccomp_programs_are_pinned() -> None:
    # The filter moved with the sandbox package; its bytes did not change.
    assert seccomp.digest("x86_64") == (
        "sha256:f3b894f5ecef221f17e85c887deef59ed67d4b51cdd4e52e267b0ed5747bd9da")
    assert seccomp.digest("aarch64") == (
        "sha256:b28e1f2bd9b873a8bbcfc14c922813f4eeab9bd6c4ac09e9e80a61875d2059fb")


@pytest.mark.parametrize("entry", ["", "os; rm -rf /", "../x", "a..b", "mod:", ":main",
                                   "mod:fn:extra", "mod name", "-m", "mod\n"])
def test_an_entry_that_is_not_a_module_name_is_refused_before_anything_runs(
        tmp_path: Path, entry: str) -> None:
    box = Sandbox(SandboxSpec(output_dir=tmp_path))
    with pytest.raises(ConfigError, match=r"package\.module"):
        box.start(entry)
    assert box.pid is None  # nothing started
    with pytest.raises(ProtocolError):
        load_entry(entry)


def test_an_entry_names_a_module_s_main_or_one_of_its_functions() -> None:
    from sealtune.sandbox import _probe_child

    assert load_entry("sealtune.sandbox._probe_child") is _probe_child.main
    assert load_entry("sealtune.sandbox._probe_child:main") is _probe_child.main
    assert load_entry("sealtune.sandbox.wire:environ_names_digest") is (
        wire.environ_names_digest)
