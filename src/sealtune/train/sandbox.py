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
* ``--unshare-pid`` / ``--as-pid-1`` / ``--die-with-parent`` / ``--new-session``:
  the sandbox sees only its own processes; the launcher is their init (PID 1),
  so no bubblewrap process is inside (bubblewrap's reaper, a process of the
  sandbox's uid, could otherwise be traced or read through ``/proc/1/mem``);
  everything dies with the launcher (and with the parent); no keystrokes can be
  injected into the user's terminal (TIOCSTI).
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
* The environment: bubblewrap itself is started with the allow-listed
  variables only (:meth:`SandboxSpec.environment`), so neither its
  ``/proc/<pid>/environ`` nor its memory holds the caller's passphrase, PIN or
  tokens, and ``--clearenv`` gives the command the same list; names that say
  they hold a secret are refused. The self-check compares the variable names
  of every process it can see inside with that list.
* ``--seccomp``: the filter of :mod:`sealtune.train.seccomp` (native
  architecture only; ``ptrace``, ``process_vm_*``, ``io_uring``, ``bpf``,
  ``perf_event_open``, the keyring calls, namespaces, mounts, modules,
  ``kexec``... fail with ``EPERM``), installed before the command runs and
  checked by the self-check (``Seccomp: 2``).
* Keys come over an inherited pipe, never as a file or variable; the parent
  closes its end as soon as they are written. All other parent fds are closed.
* Resource limits (address space, CPU seconds, open files, processes, file
  size) are set hard before the entry runs; cores are off; the caller's
  kernel session keyring is dropped (see ``_sandbox_child``).
* On destroy, the output directory is sanitized: symlinks, special files and,
  when the spec lists the expected ``outputs``, anything else are removed
  without following links and named in :attr:`Teardown.unexpected`; modes are
  reset to ``0600``/``0700`` (no setuid file written by a sandbox that is host
  uid 0 survives).

Not covered: the seccomp filter is a denylist (a system call it does not list,
including one added by a later kernel, is reachable) and a bug in an allowed
system call still escapes; a dumpable process inside can read another's memory
through ``/proc/<pid>/mem`` (the launcher, which holds the keys, is not
dumpable); the launcher, as PID 1, does not reap orphaned grandchildren (they
stay zombies until the sandbox ends); ``RLIMIT_NPROC`` does not bind host
uid 0; tmpfs pages can reach swap unless swap is off or encrypted, and freed
pages are zeroed by the kernel only with ``init_on_free=1``; the output
directory has no size quota; the allowed variables' values are visible in
bubblewrap's command line to any host user (they hold no secret). A
:class:`Sandbox` must be started from a thread that outlives it
(``--die-with-parent`` follows the starting thread).

This module is the facade and holds the self-check (:func:`probe`); the
pieces live beside it and are re-exported here (import from here):
``sandbox_spec`` (the spec, its validation and the bubblewrap argv),
``seccomp`` (the filter program), ``sandbox_process`` (start, the key pipe,
events, destroy), ``sandbox_teardown`` (the survivor check, output sanitizing) and
``sandbox_measure`` (digests of what runs).
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from sealtune.errors import ConfigError as ConfigError
from sealtune.errors import SealtuneError as SealtuneError
from sealtune.train import _sandbox_child as wire  # re-exported, as before
from sealtune.train.sandbox_measure import Measurement as Measurement
from sealtune.train.sandbox_measure import digest_tree as digest_tree
from sealtune.train.sandbox_measure import measure as measure
from sealtune.train.sandbox_process import EventType as EventType
from sealtune.train.sandbox_process import Sandbox as Sandbox
from sealtune.train.sandbox_process import SandboxEvent as SandboxEvent
from sealtune.train.sandbox_process import Scalar as Scalar
from sealtune.train.sandbox_spec import _ENV_NAME as _ENV_NAME
from sealtune.train.sandbox_spec import _FORBIDDEN_ENV as _FORBIDDEN_ENV
from sealtune.train.sandbox_spec import LAUNCHER as LAUNCHER
from sealtune.train.sandbox_spec import NO_SANDBOX_HINT as NO_SANDBOX_HINT
from sealtune.train.sandbox_spec import RESERVED as RESERVED
from sealtune.train.sandbox_spec import ROOT_LINKS as ROOT_LINKS
from sealtune.train.sandbox_spec import SANDBOX_UID as SANDBOX_UID
from sealtune.train.sandbox_spec import SHM as SHM
from sealtune.train.sandbox_spec import SYSTEM_FILES as SYSTEM_FILES
from sealtune.train.sandbox_spec import WORK as WORK
from sealtune.train.sandbox_spec import Limits as Limits
from sealtune.train.sandbox_spec import SandboxError as SandboxError
from sealtune.train.sandbox_spec import SandboxSpec as SandboxSpec
from sealtune.train.sandbox_spec import SandboxUnavailableError as SandboxUnavailableError
from sealtune.train.sandbox_spec import _default_code_dirs as _default_code_dirs
from sealtune.train.sandbox_spec import _default_runtime_dirs as _default_runtime_dirs
from sealtune.train.sandbox_spec import _outermost as _outermost
from sealtune.train.sandbox_spec import _within as _within
from sealtune.train.sandbox_spec import build_argv as build_argv
from sealtune.train.sandbox_teardown import Teardown as Teardown
from sealtune.train.sandbox_teardown import _alive as _alive
from sealtune.train.sandbox_teardown import _ns_inode as _ns_inode
from sealtune.train.sandbox_teardown import namespace_members as namespace_members
from sealtune.train.sandbox_teardown import sanitize_outputs as sanitize_outputs


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
                "uid": SANDBOX_UID, "hostname": spec.hostname,
                "seccomp": 2,  # SECCOMP_MODE_FILTER: the filter is in force
                "pid": 1,  # the launcher is init: no bubblewrap process inside
                "environ_names": wire.environ_names_digest(list(spec.environment()))}
    failed = sorted(k for k, v in expected.items() if checks[0].get(k) != v)
    if failed:
        raise SandboxUnavailableError("the sandbox was created but failed isolation checks: "
                                      + ", ".join(failed), hint=NO_SANDBOX_HINT)
    return ProbeReport(bwrap, version, round(time.monotonic() - began, 3))
