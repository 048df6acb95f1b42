"""Running one entry module in a sandbox: start, keys over a pipe, events, destroy.

:class:`Sandbox` launches bubblewrap with the argv from
:func:`~sealtune.sandbox.spec.build_argv`, the spec's allow-listed
environment (bubblewrap never sees the caller's) and the seccomp program on an
inherited pipe (:func:`filter_fd`), hands the data keys to the
launcher over an inherited pipe (written without blocking, zeroed as they go
and the pipe closed once they are out), reads structured events from the
sandbox and bubblewrap's JSON status (the child pid and namespace inodes), and
on :meth:`Sandbox.destroy` kills the namespace's init through a pidfd, checks
that no process of the sandbox is left and sanitizes the output directory
(removing, and naming in the teardown, what the spec did not expect).
Only the last 4 KiB of bubblewrap's stderr is kept, for the start-up error.

What this protects against: keys in files, variables or argv; the caller's
secrets in bubblewrap's environment; a sandbox that
outlives its job, hangs past its timeout or floods the event channel (it is
destroyed); event lines that break the wire format (the sandbox is destroyed,
nothing of the line is quoted). What it does not: this is OS isolation, not a
TEE (root on the host can read the sandbox's memory and the keys in this
process); events are only as truthful as the code that sends them; the keys
remain in this process's memory until the caller wipes its copies. A
:class:`Sandbox` must be started from a thread that outlives it
(``--die-with-parent`` follows the starting thread).
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, NoReturn

from sealtune.errors import ConfigError
from sealtune.sandbox import seccomp, wire
from sealtune.sandbox.spec import (
    LAUNCHER,
    NO_SANDBOX_HINT,
    SandboxCancelled,
    SandboxError,
    SandboxSpec,
    SandboxUnavailableError,
    build_argv,
)
from sealtune.sandbox.teardown import (
    MAX_REPORTED,
    Teardown,
    namespace_members,
    ns_inode,
    reported_name,
    sanitize_outputs,
)

Scalar = wire.Scalar
#: How often :meth:`Sandbox.events` asks its ``cancel`` callback, in seconds.
CANCEL_POLL_S = 0.25
EventType = Literal["lifecycle", "progress", "event", "error"]


@dataclass(frozen=True)
class SandboxEvent:
    """One event: from the sandbox (progress/event/error) or about it (lifecycle)."""

    type: EventType
    name: str
    fields: Mapping[str, Scalar]
    at: float


class Sandbox:
    """Runs one entry in a fresh sandbox; destroy it when done.

    Example::

        with Sandbox(spec) as box:
            box.start("sealtune.train.worker", ["--config", "/sandbox/in/cfg"],
                      secrets={"dataset": data_key})
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

    def start(self, entry: str, args: Sequence[str] = (), *,
              secrets: Mapping[str, bytes | bytearray] | None = None) -> None:
        """Create the sandbox and run ``entry(ctx, args)`` inside it.

        Args:
            entry: what runs inside: ``package.module`` (its ``main``) or
                ``package.module:function``, called with a
                :class:`~sealtune.sandbox.launcher.ChildContext` and ``args``.
            args: the entry's arguments (they hold no secret: any host user
                can read them in bubblewrap's command line).
            secrets: data keys by name, handed over the key pipe.

        Raises:
            ConfigError: ``entry`` is not a module name, or the output dir is not empty.
            SandboxUnavailableError: bubblewrap cannot be run.
        """
        if self._proc is not None:
            raise SandboxError("this sandbox was already started; create a new one")
        if not wire.ENTRY_RE.fullmatch(entry):
            raise ConfigError(f"sandbox entry {entry!r} must be package.module or "
                              "package.module:function")
        if any(self.spec.output_dir.iterdir()):
            raise ConfigError(f"sandbox output dir {self.spec.output_dir} is not empty")
        bwrap = self.spec.resolve_bwrap()
        self._pending = wire.encode_secrets(secrets or {})
        filter_r = filter_fd()
        keys_r, keys_w = os.pipe()
        ev_r, ev_w = os.pipe()
        st_r, st_w = os.pipe()
        command = [str(self.spec.python), "-I", "-B", "-m", LAUNCHER, f"--events-fd={ev_w}",
                   f"--keys-fd={keys_r}", *self.spec.limits.as_args(), "--", entry, *args]
        argv = build_argv(self.spec, command, bwrap=bwrap, seccomp_fd=filter_r, status_fd=st_w)
        try:
            # bubblewrap gets the allow-listed environment only: its /proc/<pid>/environ
            # (and a copy of it in its memory) must not hold the caller's secrets.
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, env=self.spec.environment(),
                pass_fds=(keys_r, ev_w, st_w, filter_r, *self.spec.pass_fds))
        except OSError as exc:
            for fd in (keys_w, ev_r, st_r):
                os.close(fd)
            raise SandboxUnavailableError(f"cannot run {bwrap}: {exc.strerror}",
                                          hint=NO_SANDBOX_HINT) from None
        finally:
            for fd in (keys_r, ev_w, st_w, filter_r):
                os.close(fd)
        assert self._proc.stderr is not None
        os.set_blocking(keys_w, False)
        self._sel.register(keys_w, selectors.EVENT_WRITE, "keys")
        self._sel.register(ev_r, selectors.EVENT_READ, "events")
        self._sel.register(st_r, selectors.EVENT_READ, "status")
        self._stderr_fd = self._proc.stderr.fileno()
        self._sel.register(self._stderr_fd, selectors.EVENT_READ, "stderr")

    def events(self, *, timeout: float | None = None,
               cancel: Callable[[], bool] | None = None) -> Iterator[SandboxEvent]:
        """Yield events until the sandbox exits; destroy it and raise on timeout.

        ``cancel`` is polled every :data:`CANCEL_POLL_S` seconds; once it returns
        true the sandbox is destroyed (every process of its namespace killed, the
        outputs sanitized) and :class:`~sealtune.sandbox.spec.SandboxCancelled` raised.
        """
        if self._proc is None:
            raise SandboxError("start the sandbox before reading its events")
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._sel.get_map():
            if cancel is not None and cancel():
                self.destroy()
                raise SandboxCancelled("the run was cancelled; the sandbox was destroyed")
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                self.destroy()
                raise SandboxError(f"the sandbox did not finish within {timeout} s; destroyed")
            wait = remaining
            if cancel is not None:
                wait = CANCEL_POLL_S if remaining is None else min(remaining, CANCEL_POLL_S)
            for key, _ in self._sel.select(wait):
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
            if ns_inode(self.child_pid, "pid") == self.namespaces.get("pid-namespace"):
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
        removed = [] if self._proc is None else sanitize_outputs(self.spec.output_dir,
                                                                   self.spec.outputs)
        self._teardown = Teardown(len(left), released and not left, len(removed),
                                  round(time.monotonic() - began, 4),
                                  tuple(reported_name(r) for r in removed[:MAX_REPORTED]))
        self._note("destroyed", processes_left=len(left), outputs_removed=len(removed),
                   namespaces_released=self._teardown.namespaces_released)
        if left:
            raise SandboxError(f"{len(left)} sandbox process(es) survived destruction",
                               hint="kill them by pid: " + " ".join(map(str, left)))
        return self._teardown

    def _wait_released(self, timeout: float) -> bool:
        if self._pidfd is None:
            return self.child_pid is None or not namespace_members(self.namespaces)
        try:
            with selectors.DefaultSelector() as ready:  # closed: one epoll fd per sandbox
                ready.register(self._pidfd, selectors.EVENT_READ)
                return bool(ready.select(timeout))
        finally:
            os.close(self._pidfd)
            self._pidfd = None


def native_arch() -> str:
    """This machine's architecture, as :mod:`sealtune.sandbox.seccomp` names it."""
    return os.uname().machine


def filter_fd() -> int:
    """A pipe's read end holding this machine's seccomp program (for ``--seccomp``).

    The write end is already closed; bubblewrap reads to the end, so each
    sandbox needs a fresh one. Raises :class:`SandboxUnavailableError` on an
    architecture without a filter table.
    """
    try:
        blob = seccomp.program(native_arch())
    except ValueError:
        raise SandboxUnavailableError(
            f"the sandbox has no seccomp filter for this architecture ({native_arch()})",
            hint="train on x86_64 or aarch64, or pass --no-sandbox (recorded in the "
                 "audit ledger)") from None
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, blob)  # a few hundred bytes: far below the pipe buffer
    finally:
        os.close(write_fd)
    return read_fd
