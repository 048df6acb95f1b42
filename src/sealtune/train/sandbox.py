"""The training sandbox: a bubblewrap process tree with no network and a private tmpfs.

This is **OS isolation, not a TEE**. Linux namespaces, read-only mounts and
resource limits confine what the code inside can reach; they do nothing
against the host: root on the host (or anyone who can ptrace the sandbox as
root, load a kernel module or read ``/dev/mem``) can read the sandbox's memory,
its tmpfs and the keys handed to it, and a kernel bug can break the
confinement. Use it to stop a malicious model file or data sample, or a buggy
library, from sending data over the network, reading the keyring or the rest
of the workspace, or leaving plaintext on disk — not to hide data from the
machine's operator.

What each piece stops:

* ``--unshare-net``: a new network namespace with only ``lo``; nothing inside
  can reach the host's or anyone's TCP/UDP ports, nor abstract unix sockets.
* ``--unshare-pid`` / ``--die-with-parent`` / ``--new-session``: the sandbox
  sees only its own processes, dies with its init (and with its parent), and
  cannot inject keystrokes into the user's terminal (TIOCSTI).
* ``--unshare-ipc`` / ``--unshare-uts`` / ``--unshare-cgroup-try``: no shared
  SysV IPC or POSIX message queues with the host; its own hostname.
* ``--unshare-user --uid 65534 --disable-userns --cap-drop ALL``: an empty
  capability set and no further user namespaces (a common kernel attack path);
  ``no_new_privs`` (always set by bubblewrap) keeps setuid binaries from
  gaining privileges.
* The mount namespace: only ``/usr`` (and the loader's bits of ``/etc``), the
  interpreter, the virtual environment and the sealtune code are visible, all
  read-only; ``/proc/sys`` is re-bound read-only (when sealtune runs as root
  the sandbox is host uid 0 without capabilities, and could otherwise write
  sysctls such as ``kernel.core_pattern``); ``/tmp`` is a private tmpfs of
  ``tmpfs_size`` bytes (the workspace, gone when the sandbox ends; ``/dev/shm``
  is a second one of the same size); inputs are
  read-only under ``/sandbox/in``; one output directory is bound writable at
  ``/sandbox/out``; ``/`` and ``/dev`` are remounted read-only. The keyring
  and the rest of the workspace are simply not there (``hidden`` paths are
  refused as bind sources).
* ``--clearenv``: only allow-listed variables enter; the passphrase never.
* Keys come over an inherited pipe, never as a file or variable; the parent
  closes its end as soon as they are written. All other parent fds are closed.
* Resource limits (address space, CPU seconds, open files, processes, file
  size) are set hard before the entry runs; cores are off; the caller's
  kernel session keyring is dropped (see ``_sandbox_child``).
* On destroy, the output directory is sanitized: symlinks and special files
  are removed, modes reset to ``0600``/``0700`` (no setuid file written by a
  sandbox that is host uid 0 survives).

Not covered: no seccomp filter (the whole syscall surface of the kernel is
reachable); ``RLIMIT_NPROC`` does not bind host uid 0; tmpfs pages can reach
swap unless swap is off or encrypted, and freed pages are zeroed by the kernel
only with ``init_on_free=1``; the output directory has no size quota. A
:class:`Sandbox` must be started from a thread that outlives it
(``--die-with-parent`` follows the starting thread).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Literal, NoReturn

from sealtune.errors import ConfigError, SealtuneError
from sealtune.train import _sandbox_child as wire

NO_SANDBOX_HINT = (
    "install bubblewrap (Debian/Ubuntu: apt install bubblewrap) and allow user namespaces "
    "(sysctl kernel.unprivileged_userns_clone=1 or the AppArmor bwrap profile), or pass "
    "--no-sandbox to train without OS isolation (recorded in the audit ledger)"
)
SANDBOX_UID = 65534
WORK = str(wire.WORKDIR)  # the sandbox's own tmpfs, not the host's /tmp
SHM = "/dev/shm"  # noqa: S108 - likewise a private tmpfs inside the sandbox
LAUNCHER = "sealtune.train._sandbox_child"
ROOT_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime")
RESERVED = tuple(Path(p) for p in ("/tmp", "/sandbox", "/proc", "/dev", "/etc"))  # noqa: S108
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FORBIDDEN_ENV = frozenset({"SEALTUNE_PASSPHRASE"})


class SandboxUnavailableError(SealtuneError):
    """bubblewrap is missing or cannot create the sandbox on this machine."""

    prefix = "sandbox"


class SandboxError(SealtuneError):
    """The sandbox misbehaved: timed out, broke the protocol, or left processes."""

    prefix = "sandbox"


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
        env: extra variables to set inside; pass_env: names copied if set.
        pass_fds: extra inherited file descriptors.
        bwrap: the bubblewrap executable: a name looked up on ``PATH`` or a path.
        hostname: the hostname inside.
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
        hidden = [Path(os.path.realpath(h)) for h in self.hidden]
        ro = [*self.runtime_dirs, *self.code_dirs]
        binds = [*(("runtime/code dir", p) for p in ro),
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
        for path in ro:
            # A tree strictly inside the work dir (a venv or checkout under /tmp) is
            # bound after the tmpfs is mounted, so it stays visible and read-only.
            if _within(path, Path(WORK)) and path != Path(WORK):
                continue
            if path == Path("/") or any(_within(path, r) or _within(r, path) for r in RESERVED):
                raise ConfigError(f"sandbox runtime/code dir {path} overlaps a reserved path",
                                  hint="move the virtual environment or code out of /tmp")
        if not any(_within(self.python, d) for d in self.runtime_dirs):
            raise ConfigError(f"sandbox python {self.python} is not inside a runtime dir")
        for name in self.inputs:
            if not wire.NAME_RE.fullmatch(name):
                raise ConfigError(f"sandbox input name {name!r} must match [a-z][a-z0-9_]*")
        for var in [*self.env, *self.pass_env]:
            if not _ENV_NAME.fullmatch(var) or var in _FORBIDDEN_ENV:
                raise ConfigError(f"environment variable {var} may not enter the sandbox")

    def environment(self) -> dict[str, str]:
        """The complete environment inside the sandbox (after ``--clearenv``)."""
        env = {"PATH": "/usr/bin:/bin", "HOME": WORK, "TMPDIR": WORK,
               "USER": "sandbox", "LOGNAME": "sandbox", "LANG": "C.UTF-8"}
        env.update({k: os.environ[k] for k in self.pass_env if k in os.environ})
        env.update(self.env)
        return env


def build_argv(spec: SandboxSpec, command: Sequence[str], *, bwrap: str,
               status_fd: int | None = None) -> list[str]:
    """The full bubblewrap command line that runs ``command`` inside ``spec``."""
    argv = [bwrap, "--unshare-user", "--unshare-ipc", "--unshare-pid", "--unshare-net",
            "--unshare-uts", "--unshare-cgroup-try", "--disable-userns",
            "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
            "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--hostname", spec.hostname, "--clearenv"]
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


Scalar = wire.Scalar
EventType = Literal["lifecycle", "progress", "event", "error"]


@dataclass(frozen=True)
class SandboxEvent:
    """One event: from the sandbox (progress/event/error) or about it (lifecycle)."""

    type: EventType
    name: str
    fields: Mapping[str, Scalar]
    at: float


@dataclass(frozen=True)
class Teardown:
    """What :meth:`Sandbox.destroy` verified."""

    processes_left: int
    namespaces_released: bool
    outputs_removed: int
    seconds: float


class Sandbox:
    """Runs one entry module in a fresh sandbox; destroy it when done.

    Example::

        with Sandbox(spec) as box:
            box.start("sealtune.train.worker", ["--config", "/sandbox/in/cfg"],
                      secrets={"train.jsonl": data_key})
            for event in box.events(timeout=3600):
                ...
        # leaving the block destroys the sandbox and verifies nothing is left
    """

    def __init__(self, spec: SandboxSpec) -> None:
        spec.validate()
        self.spec = spec
        self.lifecycle: list[SandboxEvent] = []
        self.namespaces: dict[str, int] = {}
        self.exit_code: int | None = None
        self.child_pid: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._sel = selectors.DefaultSelector()
        self._bufs: dict[int, bytearray] = {}
        self._pending = bytearray()
        self._stderr = bytearray()
        self._pidfd: int | None = None
        self._stderr_fd = -1
        self._first_step: tuple[int, float] | None = None
        self._teardown: Teardown | None = None

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.destroy()

    @property
    def pid(self) -> int | None:
        """Host pid of the outer bubblewrap process (``None`` before :meth:`start`)."""
        return None if self._proc is None else self._proc.pid

    def start(self, module: str, args: Sequence[str] = (), *,
              secrets: Mapping[str, bytes | bytearray] | None = None) -> None:
        """Create the sandbox and run ``module.main(ctx, args)`` inside it."""
        if self._proc is not None:
            raise SandboxError("this sandbox was already started; create a new one")
        if any(self.spec.output_dir.iterdir()):
            raise ConfigError(f"sandbox output dir {self.spec.output_dir} is not empty")
        bwrap = self.spec.resolve_bwrap()
        self._pending = wire.encode_secrets(secrets or {})
        keys_r, keys_w = os.pipe()
        ev_r, ev_w = os.pipe()
        st_r, st_w = os.pipe()
        command = [str(self.spec.python), "-I", "-B", "-m", LAUNCHER, f"--events-fd={ev_w}",
                   f"--keys-fd={keys_r}", *self.spec.limits.as_args(), "--", module, *args]
        argv = build_argv(self.spec, command, bwrap=bwrap, status_fd=st_w)
        try:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, pass_fds=(keys_r, ev_w, st_w, *self.spec.pass_fds))
        except OSError as exc:
            for fd in (keys_w, ev_r, st_r):
                os.close(fd)
            raise SandboxUnavailableError(f"cannot run {bwrap}: {exc.strerror}",
                                          hint=NO_SANDBOX_HINT) from None
        finally:
            for fd in (keys_r, ev_w, st_w):
                os.close(fd)
        assert self._proc.stderr is not None
        os.set_blocking(keys_w, False)
        self._sel.register(keys_w, selectors.EVENT_WRITE, "keys")
        self._sel.register(ev_r, selectors.EVENT_READ, "events")
        self._sel.register(st_r, selectors.EVENT_READ, "status")
        self._stderr_fd = self._proc.stderr.fileno()
        self._sel.register(self._stderr_fd, selectors.EVENT_READ, "stderr")

    def events(self, *, timeout: float | None = None) -> Iterator[SandboxEvent]:
        """Yield events until the sandbox exits; destroy it and raise on timeout."""
        if self._proc is None:
            raise SandboxError("start the sandbox before reading its events")
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._sel.get_map():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                self.destroy()
                raise SandboxError(f"the sandbox did not finish within {timeout} s; destroyed")
            for key, _ in self._sel.select(remaining):
                yield from self._service(key.fd, key.data)
        code = self._proc.wait()
        if self.child_pid is None:
            detail = self._stderr.decode(errors="replace").strip().splitlines()
            raise SandboxUnavailableError(
                "bubblewrap could not create the sandbox"
                + (f": {detail[-1][:300]}" if detail else f" (exit status {code})"),
                hint=NO_SANDBOX_HINT)
        if self.exit_code is None:
            self.exit_code = code
        yield self._note("exited", exit_code=self.exit_code)

    def wait(self, *, timeout: float | None = None) -> int:
        """Drain the events and return the sandboxed process's exit status."""
        for _ in self.events(timeout=timeout):
            pass
        assert self.exit_code is not None
        return self.exit_code

    def _service(self, fd: int, kind: str) -> Iterator[SandboxEvent]:
        if kind == "keys":
            try:
                sent = os.write(fd, self._pending[:65536])
            except BlockingIOError:
                return
            except BrokenPipeError:
                sent = len(self._pending)
            self._pending[:sent] = bytes(sent)  # zero what has been handed over
            del self._pending[:sent]
            if not self._pending:
                self._close(fd)
            return
        data = os.read(fd, 65536)
        if not data:
            self._close(fd)
            return
        if kind == "stderr":
            self._stderr = (self._stderr + data)[-4096:]
            return
        buf = self._bufs.setdefault(fd, bytearray())
        buf += data
        while b"\n" in buf:
            line, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            yield from self._line(kind, line)
        if len(buf) > wire.MAX_EVENT_BYTES:
            self._protocol_error()

    def _line(self, kind: str, line: bytes) -> Iterator[SandboxEvent]:
        if kind == "status":
            doc = json.loads(line)
            if "child-pid" in doc and self.child_pid is None:
                self._created(doc)
                yield self.lifecycle[-1]
            if "exit-code" in doc:
                self.exit_code = int(doc["exit-code"])
            return
        try:
            event = wire.decode_event(line)
        except wire.ProtocolError:
            self._protocol_error()
        kind_ = str(event.pop("type"))
        name = str(event.pop("name"))
        if kind_ == "progress":
            event["eta_s"] = self._eta(event.get("step"), event.get("total"))
        yield SandboxEvent(kind_, name, event, time.time())  # type: ignore[arg-type]

    def _created(self, doc: Mapping[str, int]) -> None:
        self.child_pid = int(doc["child-pid"])
        self.namespaces = {k: int(v) for k, v in doc.items() if k.endswith("-namespace")}
        with contextlib.suppress(OSError):
            pidfd = os.pidfd_open(self.child_pid)
            if _ns_inode(self.child_pid, "pid") == self.namespaces.get("pid-namespace"):
                self._pidfd = pidfd
            else:  # already gone and the pid reused: nothing of ours to watch
                os.close(pidfd)
        self._note("created", pid=self.child_pid,
                   **{k.replace("-", "_"): v for k, v in self.namespaces.items()})

    def _eta(self, step: Scalar, total: Scalar) -> float | None:
        """Seconds left, from the pace since the first progress event (not from start-up)."""
        if not isinstance(step, int) or not isinstance(total, int):
            return None
        if self._first_step is None:
            self._first_step = (step, time.monotonic())
        done = step - self._first_step[0]
        if done <= 0:
            return None
        return round((time.monotonic() - self._first_step[1]) / done * max(total - step, 0), 1)

    def _protocol_error(self) -> NoReturn:
        self.destroy()
        raise SandboxError("the sandbox broke the event protocol; it was destroyed")

    def _note(self, name: str, **fields: Scalar) -> SandboxEvent:
        event = SandboxEvent("lifecycle", name, fields, time.time())
        self.lifecycle.append(event)
        return event

    def _close(self, fd: int) -> None:
        with contextlib.suppress(KeyError):
            self._sel.unregister(fd)
        if self._proc is not None and self._proc.stderr is not None and fd == self._stderr_fd:
            self._proc.stderr.close()
        else:
            os.close(fd)

    def destroy(self) -> Teardown:
        """Kill the whole process tree, verify nothing is left, sanitize the outputs.

        Raises:
            SandboxError: a process of the sandbox survived.
        """
        if self._teardown is not None:
            return self._teardown
        began = time.monotonic()
        if self._pidfd is not None:  # SIGKILL to the namespace's init kills every member
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
        released = self._wait_released(5.0)
        left = namespace_members(self.namespaces, settle=2.0)
        for key in list(self._sel.get_map().values()):
            self._close(key.fd)
        self._pending[:] = bytes(len(self._pending))
        removed = 0 if self._proc is None else sanitize_outputs(self.spec.output_dir)
        self._teardown = Teardown(len(left), released and not left, removed,
                                  round(time.monotonic() - began, 4))
        self._note("destroyed", processes_left=len(left), outputs_removed=removed,
                   namespaces_released=self._teardown.namespaces_released)
        if left:
            raise SandboxError(f"{len(left)} sandbox process(es) survived destruction",
                               hint="kill them by pid: " + " ".join(map(str, left)))
        return self._teardown

    def _wait_released(self, timeout: float) -> bool:
        if self._pidfd is None:
            return self.child_pid is None or not namespace_members(self.namespaces)
        try:
            ready = selectors.DefaultSelector()
            ready.register(self._pidfd, selectors.EVENT_READ)
            return bool(ready.select(timeout))
        finally:
            os.close(self._pidfd)
            self._pidfd = None


def _ns_inode(pid: int, ns: str) -> int | None:
    try:
        return int(os.readlink(f"/proc/{pid}/ns/{ns}").split("[")[1].rstrip("]"))
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rpartition(b")")[2].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        return False


def namespace_members(namespaces: Mapping[str, int], *, settle: float = 0.0) -> list[int]:
    """Live host pids in the sandbox's pid or mount namespace (of those we may inspect).

    Zombies do not count: they hold neither memory nor mounts. Retries for up
    to ``settle`` seconds while processes are still exiting.
    """
    wanted = [(k, namespaces[f"{k}-namespace"]) for k in ("pid", "mnt")
              if f"{k}-namespace" in namespaces]
    deadline = time.monotonic() + settle
    while True:
        found = [int(p) for p in os.listdir("/proc") if p.isdigit()
                 and any(_ns_inode(int(p), k) == v for k, v in wanted) and _alive(int(p))]
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.01)


def sanitize_outputs(root: Path) -> int:
    """Remove links and special files from ``root``; make the rest private, no exec bits.

    The sandbox writes as its uid (host root when sealtune runs as root): it could
    otherwise leave a setuid binary, or a symlink that redirects a later reader.
    Returns the number of entries removed.
    """
    removed = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISDIR(mode):
                os.chmod(path, 0o700)
            elif stat.S_ISREG(mode):
                os.chmod(path, 0o600)
            else:
                os.unlink(path)
                removed += 1
    return removed


@dataclass(frozen=True)
class ProbeReport:
    """bubblewrap works here, and the isolation checks passed."""

    bwrap: str
    version: str
    seconds: float


def probe(spec: SandboxSpec | None = None) -> ProbeReport:
    """Create a sandbox, check its isolation from the inside, destroy it.

    Raises:
        SandboxUnavailableError: bubblewrap is missing, cannot create the
            sandbox here, or the sandbox it made is not isolated as claimed.
    """
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sealtune-probe-") as tmp:
        spec = replace(spec, output_dir=Path(tmp)) if spec else SandboxSpec(output_dir=Path(tmp))
        bwrap = spec.resolve_bwrap()
        version = subprocess.run([bwrap, "--version"], capture_output=True, text=True,
                                 check=False).stdout.strip()
        with Sandbox(spec) as box:
            box.start("sealtune.train._probe_child", ["selfcheck"])
            events = list(box.events(timeout=30))
    checks = [e.fields for e in events if e.name == "selfcheck"]
    if not checks:
        kinds = ",".join(str(e.fields.get("kind")) for e in events if e.type == "error")
        raise SandboxUnavailableError(
            f"the sandbox started but its self-check did not run (exit status {box.exit_code}"
            + (f", error {kinds})" if kinds else "; is sealtune readable inside?)"),
            hint=NO_SANDBOX_HINT)
    expected = {"interfaces": "lo", "cap_eff": "0" * 16, "no_new_privs": 1,
                "uid": SANDBOX_UID, "hostname": spec.hostname}
    failed = sorted(k for k, v in expected.items() if checks[0].get(k) != v)
    if failed:
        raise SandboxUnavailableError("the sandbox was created but failed isolation checks: "
                                      + ", ".join(failed), hint=NO_SANDBOX_HINT)
    return ProbeReport(bwrap, version, round(time.monotonic() - began, 3))


@dataclass(frozen=True)
class Measurement:
    """Digests of what a sandboxed run is made of (``sha256:`` hex each)."""

    code: str
    config: str
    base_model: str | None
    inputs: Mapping[str, str]

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "config": self.config, "base_model": self.base_model,
                "inputs": dict(sorted(self.inputs.items()))}

    @property
    def digest(self) -> str:
        """One digest over the canonical JSON of all the parts."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()
        return "sha256:" + hashlib.sha256(blob).hexdigest()


def digest_tree(root: Path, *, exclude: Sequence[str] = ("__pycache__",)) -> str:
    """sha256 over sorted relative paths and the contents of a file or directory.

    Each entry adds ``F <path>\\0<sha256>\\n`` (regular file) or
    ``L <path>\\0<target>\\n`` (symlink, not followed); files stream in chunks.
    """
    if root.is_file():
        with root.open("rb") as fh:
            return "sha256:" + hashlib.file_digest(fh, "sha256").hexdigest()
    entries: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in exclude]
        for name in filenames:
            if name not in exclude and not name.endswith(".pyc"):
                path = Path(dirpath, name)
                entries.append((path.relative_to(root).as_posix(), path))
    outer = hashlib.sha256()
    for rel, path in sorted(entries, key=lambda e: e[0].encode()):
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            outer.update(f"L {rel}\0{os.readlink(path)}\n".encode())
        elif stat.S_ISREG(mode):
            with path.open("rb") as fh:
                outer.update(f"F {rel}\0{hashlib.file_digest(fh, 'sha256').hexdigest()}\n".encode())
        else:
            raise ConfigError(f"cannot measure {path}: not a regular file or symlink")
    return "sha256:" + outer.hexdigest()


def measure(*, code: Sequence[Path], config: bytes, base_model: Path | None = None,
            inputs: Mapping[str, Path] | None = None) -> Measurement:
    """Digest the code dirs, the config bytes, the base model and each input."""
    code_digest = hashlib.sha256("\n".join(digest_tree(p) for p in code).encode()).hexdigest()
    return Measurement(
        code="sha256:" + code_digest,
        config="sha256:" + hashlib.sha256(config).hexdigest(),
        base_model=None if base_model is None else digest_tree(base_model),
        inputs={name: digest_tree(path) for name, path in (inputs or {}).items()},
    )
