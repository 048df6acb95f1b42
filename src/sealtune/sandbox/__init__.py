"""The sandbox: a bubblewrap process tree with no network and a private tmpfs.

Every stage that handles plaintext runs its work here (training and the
data step), the same way: the stage names an entry module and its
stage in a :class:`SandboxSpec`, hands the data keys over the key pipe, and
records the lifecycle in the audit ledger with the same events
(:mod:`sealtune.sandbox.timeline`). This package is below the stages: it
imports none of them, nor the keyring or the ledger.

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
* ``--seccomp``: the filter of :mod:`sealtune.sandbox.seccomp` (native
  architecture only; ``ptrace``, ``process_vm_*``, ``io_uring``, ``bpf``,
  ``perf_event_open``, the keyring calls, namespaces, mounts, modules,
  ``kexec``... fail with ``EPERM``), installed before the command runs and
  checked by the self-check (``Seccomp: 2``).
* Keys come over an inherited pipe, never as a file or variable; the parent
  closes its end as soon as they are written. All other parent fds are closed.
* Resource limits (address space, CPU seconds, open files, processes, file
  size) are set hard before the entry runs; cores are off; the caller's
  kernel session keyring is dropped (see :mod:`sealtune.sandbox.launcher`).
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

Layout (import each name from where it lives, or from this package):
``spec`` (the spec, its validation and the bubblewrap argv), ``seccomp``
(the filter program), ``process`` (start, the key pipe, events, destroy),
``teardown`` (the survivor check, output sanitizing), ``measurement``
(digests of what runs), ``selfcheck`` (:func:`probe`), ``timeline`` (the
ledger events, marked with the stage; :func:`run_recorded`, one recorded
run), ``wire`` (the key pipe and event format both sides share) and
``launcher`` (the in-sandbox side). The ``_probe_*`` modules are entries
that try to break out, for the self-check and the tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sealtune._lazy import attach

if TYPE_CHECKING:
    from sealtune.sandbox.launcher import ChildContext, wipe_tree
    from sealtune.sandbox.measurement import Measurement, digest_tree, measure
    from sealtune.sandbox.process import Sandbox, SandboxEvent
    from sealtune.sandbox.selfcheck import ProbeReport, probe
    from sealtune.sandbox.spec import (
        NO_SANDBOX_HINT,
        STAGES,
        Limits,
        SandboxCancelled,
        SandboxError,
        SandboxSpec,
        SandboxUnavailableError,
        build_argv,
    )
    from sealtune.sandbox.teardown import Teardown, namespace_members, sanitize_outputs
    from sealtune.sandbox.timeline import Timeline, isolation_flags, run_recorded
    from sealtune.sandbox.wire import EventWriter, ProtocolError

__all__ = [
    "NO_SANDBOX_HINT",
    "STAGES",
    "ChildContext",
    "EventWriter",
    "Limits",
    "Measurement",
    "ProbeReport",
    "ProtocolError",
    "Sandbox",
    "SandboxCancelled",
    "SandboxError",
    "SandboxEvent",
    "SandboxSpec",
    "SandboxUnavailableError",
    "Teardown",
    "Timeline",
    "build_argv",
    "digest_tree",
    "isolation_flags",
    "measure",
    "namespace_members",
    "probe",
    "run_recorded",
    "sanitize_outputs",
    "wipe_tree",
]

# Lazy (PEP 562): the launcher imports sealtune.sandbox.wire inside the sandbox, which
# runs this file first; it must load nothing else.
__getattr__, __dir__ = attach(__name__, {
    **dict.fromkeys(("ChildContext", "wipe_tree"), "sealtune.sandbox.launcher"),
    **dict.fromkeys(("Measurement", "digest_tree", "measure"), "sealtune.sandbox.measurement"),
    **dict.fromkeys(("Sandbox", "SandboxEvent"), "sealtune.sandbox.process"),
    **dict.fromkeys(("ProbeReport", "probe"), "sealtune.sandbox.selfcheck"),
    **dict.fromkeys(("NO_SANDBOX_HINT", "STAGES", "Limits", "SandboxCancelled", "SandboxError",
                     "SandboxSpec", "SandboxUnavailableError", "build_argv"),
                    "sealtune.sandbox.spec"),
    **dict.fromkeys(("Teardown", "namespace_members", "sanitize_outputs"),
                    "sealtune.sandbox.teardown"),
    **dict.fromkeys(("Timeline", "isolation_flags", "run_recorded"),
                    "sealtune.sandbox.timeline"),
    **dict.fromkeys(("EventWriter", "ProtocolError"), "sealtune.sandbox.wire"),
})
