"""What a sandbox sees and may do, and the bubblewrap command line that enforces it.

:class:`SandboxSpec` describes the mounts, environment, limits and expected
outputs of one sandbox and refuses, before anything runs, a bind that is
relative, missing, overlaps a reserved path or would expose a ``hidden`` host
path (the keyring, the rest of the workspace), and an environment variable
whose name says it holds a secret. :func:`build_argv` turns it into the
bubblewrap argv: new user/ipc/pid/net/uts/cgroup namespaces with the command as
PID 1 (no bubblewrap process inside), the seccomp filter of
:mod:`sealtune.sandbox.seccomp`, no capabilities, no nested user namespaces, a
cleared environment, ``/usr`` and the runtime and code trees read-only,
private tmpfs for ``/tmp`` and ``/dev/shm``, inputs read-only under
``/sandbox/in`` and one writable ``/sandbox/out``; see
:mod:`sealtune.sandbox` for what each flag stops. The spec also names the
stage that runs in it (``train``, ``data`` or ``assess``), which marks its ledger events
(:mod:`sealtune.sandbox.timeline`) and changes nothing in the argv.

What this protects against: a spec that would silently widen the sandbox (a
hidden path under a bind, a secret variable entering, a tree mounted over
``/tmp`` or ``/proc``). What it does not: this is OS isolation, not a TEE; it
cannot check that bubblewrap or the kernel enforce the flags (the probe in
:mod:`sealtune.sandbox.selfcheck` checks that from inside); a path swapped on the
host between validation and mounting is not detected; the variables it lets
in appear in bubblewrap's command line, which any host user can read.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sealtune.errors import ConfigError, SealtuneError
from sealtune.sandbox import wire

NO_SANDBOX_HINT = (
    "install bubblewrap (Debian/Ubuntu: apt install bubblewrap) and allow user namespaces "
    "(sysctl kernel.unprivileged_userns_clone=1 or the AppArmor bwrap profile), or pass "
    "--no-sandbox to train without OS isolation (recorded in the audit ledger)"
)
SANDBOX_UID = 65534
WORK = str(wire.WORKDIR)  # the sandbox's own tmpfs, not the host's /tmp
SHM = "/dev/shm"  # noqa: S108 - likewise a private tmpfs inside the sandbox
LAUNCHER = "sealtune.sandbox.launcher"
#: The stages that run work in a sandbox (the spec's ``stage`` marks its ledger events).
STAGES = ("train", "data", "assess")
ROOT_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime")
RESERVED = tuple(Path(p) for p in ("/tmp", "/sandbox", "/proc", "/dev", "/etc"))  # noqa: S108
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FORBIDDEN_ENV = frozenset({"SEALTUNE_PASSPHRASE", "SEALTUNE_PKCS11_PIN",
                            "SEALTUNE_OPENBAO_TOKEN", "VAULT_TOKEN", "BAO_TOKEN"})
#: A variable with one of these words in its name (split on ``_``) never enters.
_SECRET_WORDS = frozenset({"PASSPHRASE", "PASSWORD", "PASSWD", "PIN", "TOKEN", "SECRET",
                           "CREDENTIALS", "APIKEY"})
_OUTPUT_PART = re.compile(r"^[A-Za-z0-9_.*?\[\]-]{1,128}$")


class SandboxUnavailableError(SealtuneError):
    """bubblewrap is missing or cannot create the sandbox on this machine."""

    prefix = "sandbox"


class SandboxError(SealtuneError):
    """The sandbox misbehaved: timed out, broke the protocol, or left processes."""

    prefix = "sandbox"


class SandboxCancelled(SandboxError):
    """The caller cancelled the run: the sandbox was destroyed before its entry finished."""

    prefix = "cancelled"


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Resource limits inside the sandbox (``None``: inherit). Set soft = hard."""

    address_space: int | None = None
    cpu_seconds: int | None = None
    open_files: int | None = 1024
    processes: int | None = None
    file_size: int | None = None

    def as_args(self) -> list[str]:
        pairs = (("as", self.address_space), ("cpu", self.cpu_seconds),
                 ("nofile", self.open_files), ("nproc", self.processes),
                 ("fsize", self.file_size))
        return [f"--rlimit={name}={value}" for name, value in pairs if value is not None]


def _default_runtime_dirs() -> tuple[Path, ...]:
    return _outermost([Path(sys.prefix), Path(os.path.realpath(sys.base_prefix))])


def _default_code_dirs() -> tuple[Path, ...]:
    root = Path(__file__).resolve().parents[2]  # .../src (or site-packages)
    return () if any(_within(root, d) for d in _default_runtime_dirs()) else (root,)


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _outermost(paths: Sequence[Path]) -> tuple[Path, ...]:
    return tuple(p for p in dict.fromkeys(paths)
                 if not any(q != p and _within(p, q) for q in paths))


@dataclass(frozen=True, kw_only=True)
class SandboxSpec:
    """What the sandbox sees and may do.

    Args:
        output_dir: the one host directory bound writable (at ``/sandbox/out``);
            must exist and be empty when the sandbox starts.
        inputs: read-only inputs by name, bound at ``/sandbox/in/<name>``.
        hidden: host paths that must stay invisible (the workspace, its
            keyring); a bind that would expose one is refused.
        python: the interpreter to run (inside one of ``runtime_dirs``).
        runtime_dirs: interpreter and virtual environment, bound read-only.
        code_dirs: source trees bound read-only (sealtune itself by default,
            when it is not installed inside the virtual environment).
        devices: device nodes to expose (e.g. ``/dev/nvidia0``); default none.
        tmpfs_size: bytes for the ``/tmp`` workspace (and again ``/dev/shm``).
        limits: resource limits.
        env: extra variables to set inside; pass_env: names copied if set. The
            sandbox (and bubblewrap itself) gets these and a fixed base
            (:meth:`environment`), nothing else of this process's environment.
            Names that say they hold a secret (``*_TOKEN``, ``*_PIN``...) are refused.
        pass_fds: extra inherited file descriptors.
        bwrap: the bubblewrap executable: a name looked up on ``PATH`` or a path.
        hostname: the hostname inside.
        outputs: what the entry may leave in ``output_dir``: relative glob patterns
            (``/``-separated, ``fnmatch`` per component) of regular files; the
            directories on the way to them are allowed. After the sandbox ends,
            anything else is removed (see
            :func:`~sealtune.sandbox.teardown.sanitize_outputs`).
            ``None``: any regular file or directory may stay.
        stage: the stage whose work runs inside (one of :data:`STAGES`), or
            ``None`` (a self-check, a test); it marks the ledger events only.
    """

    output_dir: Path
    inputs: Mapping[str, Path] = field(default_factory=dict)
    hidden: tuple[Path, ...] = ()
    python: Path = field(default_factory=lambda: Path(sys.executable))
    runtime_dirs: tuple[Path, ...] = field(default_factory=_default_runtime_dirs)
    code_dirs: tuple[Path, ...] = field(default_factory=_default_code_dirs)
    devices: tuple[Path, ...] = ()
    tmpfs_size: int = 1 << 30
    limits: Limits = field(default_factory=Limits)
    env: Mapping[str, str] = field(default_factory=dict)
    pass_env: tuple[str, ...] = ()
    pass_fds: tuple[int, ...] = ()
    bwrap: str = "bwrap"
    hostname: str = "sandbox"
    outputs: tuple[str, ...] | None = None
    stage: str | None = None

    def resolve_bwrap(self) -> str:
        """The bubblewrap executable's path; :class:`SandboxUnavailableError` if absent."""
        found = shutil.which(self.bwrap)
        if found is None:
            where = f"at {self.bwrap}" if os.sep in self.bwrap else "on PATH"
            raise SandboxUnavailableError(f"bubblewrap ({self.bwrap}) not found {where}",
                                          hint=NO_SANDBOX_HINT)
        return found

    def validate(self) -> None:
        """Refuse binds that are relative, missing, reserved or expose a hidden path."""
        if self.stage is not None and self.stage not in STAGES:
            raise ConfigError(f"sandbox stage {self.stage!r} is not one of {', '.join(STAGES)}")
        self._validate_binds()
        self._validate_read_only_trees()
        if not any(_within(self.python, d) for d in self.runtime_dirs):
            raise ConfigError(f"sandbox python {self.python} is not inside a runtime dir")
        for name in self.inputs:
            if not wire.NAME_RE.fullmatch(name):
                raise ConfigError(f"sandbox input name {name!r} must match [a-z][a-z0-9_]*")
        for var in [*self.env, *self.pass_env]:
            if (not _ENV_NAME.fullmatch(var) or var in _FORBIDDEN_ENV
                    or _SECRET_WORDS.intersection(var.upper().split("_"))):
                raise ConfigError(f"environment variable {var} may not enter the sandbox",
                                  hint="secrets reach the sandbox over the key pipe only")
        for pattern in self.outputs or ():
            parts = pattern.split("/")
            if not all(_OUTPUT_PART.fullmatch(p) and p not in (".", "..") for p in parts):
                raise ConfigError(f"sandbox output pattern {pattern!r} must be relative, "
                                  "with parts of [A-Za-z0-9_.*?[]-] other than . and ..")

    def _validate_binds(self) -> None:
        """Every bind source exists, is absolute and neither holds nor sits in a hidden path."""
        hidden = [Path(os.path.realpath(h)) for h in self.hidden]
        binds = [*(("runtime/code dir", p) for p in [*self.runtime_dirs, *self.code_dirs]),
                 *((f"input {n!r}", p) for n, p in self.inputs.items()),
                 ("output dir", self.output_dir), *(("device", d) for d in self.devices),
                 ("system dir", Path("/usr"))]
        for label, path in binds:
            if not path.is_absolute() or not path.exists():
                raise ConfigError(f"sandbox {label} {path} must be an existing absolute path")
            real = Path(os.path.realpath(path))
            for h in hidden:
                if _within(real, h) or _within(h, real):
                    raise ConfigError(f"sandbox {label} {path} would expose hidden path {h}",
                                      hint="bind a directory that does not contain the workspace")

    def _validate_read_only_trees(self) -> None:
        """No runtime or code tree is ``/`` or overlaps a path the sandbox mounts itself."""
        for path in [*self.runtime_dirs, *self.code_dirs]:
            # A tree strictly inside the work dir (a venv or checkout under /tmp) is
            # bound after the tmpfs is mounted, so it stays visible and read-only.
            if _within(path, Path(WORK)) and path != Path(WORK):
                continue
            if path == Path("/") or any(_within(path, r) or _within(r, path) for r in RESERVED):
                raise ConfigError(f"sandbox runtime/code dir {path} overlaps a reserved path",
                                  hint="move the virtual environment or code out of /tmp")

    def environment(self) -> dict[str, str]:
        """The complete environment inside the sandbox (after ``--clearenv``)."""
        # PWD: bubblewrap sets it after --chdir anyway; listed so the allow-list is complete.
        env = {"PATH": "/usr/bin:/bin", "HOME": WORK, "TMPDIR": WORK, "PWD": WORK,
               "USER": "sandbox", "LOGNAME": "sandbox", "LANG": "C.UTF-8"}
        env.update({k: os.environ[k] for k in self.pass_env if k in os.environ})
        env.update(self.env)
        return env


def build_argv(spec: SandboxSpec, command: Sequence[str], *, bwrap: str, seccomp_fd: int,
               status_fd: int | None = None) -> list[str]:
    """The full bubblewrap command line that runs ``command`` inside ``spec``.

    ``seccomp_fd`` is an inherited descriptor holding the filter program
    (:func:`sealtune.sandbox.seccomp.program`); bubblewrap reads it to the end.
    """
    # --as-pid-1: the command is the pid namespace's init. Without it bubblewrap's own
    # reaper is PID 1, a process of the sandbox's uid that the code inside could
    # ptrace or read through /proc/1/mem (it held the caller's environment).
    argv = [bwrap, "--unshare-user", "--unshare-ipc", "--unshare-pid", "--as-pid-1",
            "--unshare-net", "--unshare-uts", "--unshare-cgroup-try", "--disable-userns",
            "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
            "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--seccomp", str(seccomp_fd), "--hostname", spec.hostname, "--clearenv"]
    for key, value in spec.environment().items():
        argv += ["--setenv", key, value]
    if status_fd is not None:
        argv += ["--json-status-fd", str(status_fd)]
    argv += ["--ro-bind", "/usr", "/usr"]
    for link in ROOT_LINKS:
        if os.path.islink(link):
            argv += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            argv += ["--ro-bind", link, link]
    for path in SYSTEM_FILES:
        argv += ["--ro-bind-try", path, path]
    argv += ["--proc", "/proc", "--ro-bind", "/proc/sys", "/proc/sys",
             "--ro-bind-try", "/proc/sysrq-trigger", "/proc/sysrq-trigger",
             "--dev", "/dev", "--size", str(spec.tmpfs_size), "--tmpfs", SHM]
    for dev in spec.devices:
        argv += ["--dev-bind", str(dev), str(dev)]
    argv += ["--size", str(spec.tmpfs_size), "--tmpfs", WORK]
    for tree in _outermost([*spec.runtime_dirs, *spec.code_dirs]):
        argv += ["--ro-bind", str(tree), str(tree)]
    for name, source in spec.inputs.items():
        argv += ["--ro-bind", str(source), f"{wire.INDIR}/{name}"]
    argv += ["--bind", str(spec.output_dir), str(wire.OUTDIR),
             "--remount-ro", "/dev", "--remount-ro", "/", "--chdir", WORK, "--", *command]
    return argv
