"""A sandbox's lifecycle in the audit ledger: the same events for every stage, marked with it.

:class:`Timeline` turns what a sandbox reports into ledger entries, the
same way for training, the data step and the release gate: ``sandbox.created`` (the pid, the
measurement of what runs and the isolation flags, :func:`isolation_flags`,
taken from the very argv the sandbox runs with; hidden paths by their names
only, as the ledger is served and exported), ``sandbox.data_decrypted``
and ``sandbox.outputs_sealed`` (the entry's milestones, numbers only),
``sandbox.destroyed`` (the teardown result) and, when the sandbox left
files it should not have, ``sandbox.unexpected_outputs``. Each carries the
spec's stage (``"stage": "train"``, ``"data"`` or ``"assess"``). A stage adds its own
milestones (training's ``training_finished`` becomes ``train.finished``).
The ledger is reached through the caller's ``record`` callback, so this
package imports neither the ledger nor the workspace.

What this protects against: a stage that records its sandbox differently
(or not at all), and isolation flags in the ledger that differ from those
in force (they are read off the argv). What it does not: the entry's
milestones are only as truthful as the code that sends them (their fields
are numbers and short tokens, by the wire format); a record callback that
fails leaves the ledger short of the event (it raises to the caller).
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from sealtune.sandbox import seccomp
from sealtune.sandbox.process import Sandbox, SandboxEvent, native_arch
from sealtune.sandbox.spec import SandboxSpec, build_argv
from sealtune.sandbox.teardown import Teardown

__all__ = ["MILESTONES", "Recorder", "Timeline", "exit_status", "isolation_flags", "run_recorded"]

#: The milestones every stage's entry reports, and the ledger action each becomes.
MILESTONES: Mapping[str, str] = {"data_decrypted": "sandbox.data_decrypted",
                                 "outputs_sealed": "sandbox.outputs_sealed"}
_ISOLATION = frozenset({"--die-with-parent", "--new-session", "--clearenv",
                        "--disable-userns", "--as-pid-1"})


class Recorder(Protocol):
    """Writes one ledger entry (a job's ``event``, a stage's audit call)."""

    def __call__(self, action: str, details: Mapping[str, Any], *, at: float | None = None,
                 outcome: str = "success") -> None:
        """Record ``action`` with ``details`` (names and numbers, never data)."""


def isolation_flags(spec: SandboxSpec) -> dict[str, Any]:
    """The isolation settings for the ledger, taken from the argv the sandbox runs with."""
    argv = build_argv(spec, ["entry"], bwrap="bwrap", seccomp_fd=-1)
    return {"isolation": [a for a in argv if a.startswith("--unshare") or a in _ISOLATION],
            "cap_drop": "ALL", "network": "loopback only", "tmpfs_bytes": spec.tmpfs_size,
            "limits": spec.limits.as_args(), "inputs": sorted(spec.inputs),
            "hidden": sorted(h.name for h in spec.hidden), "env": sorted(spec.environment()),
            "seccomp": {"arch": native_arch(), "program": seccomp.digest(native_arch()),
                        "denied": len(seccomp.DENIED)}}


class Timeline:
    """Records one sandbox's lifecycle in the ledger, marked with its spec's stage.

    Args:
        spec: the sandbox's spec (its stage marks every ``sandbox.*`` entry).
        record: writes a ledger entry.
        measurement: what runs (recorded with ``sandbox.created``).
        milestones: entry milestone -> ledger action, beyond :data:`MILESTONES`.
    """

    def __init__(self, spec: SandboxSpec, record: Recorder, *,
                 measurement: Mapping[str, Any], milestones: Mapping[str, str] | None = None
                 ) -> None:
        self.spec, self._record, self._measurement = spec, record, measurement
        self._milestones = {**MILESTONES, **(milestones or {})}

    def _marked(self, details: Mapping[str, Any]) -> dict[str, Any]:
        return {**details, "stage": self.spec.stage}

    def observe(self, ev: SandboxEvent) -> None:
        """Record ``ev`` if it is the sandbox's creation or a milestone; ignore it otherwise."""
        if ev.type == "lifecycle" and ev.name == "created":
            self._record("sandbox.created", self._marked({
                "pid": ev.fields.get("pid"), "measurement": self._measurement,
                "flags": isolation_flags(self.spec)}), at=ev.at)
        elif ev.type == "event" and ev.name in self._milestones:
            action = self._milestones[ev.name]
            details = dict(ev.fields)
            self._record(action, self._marked(details) if action.startswith("sandbox.")
                         else details, at=ev.at)

    def destroyed(self, teardown: Teardown, *, exit_code: int | None,
                  wiped: object) -> dict[str, Any]:
        """Record ``sandbox.destroyed`` (and ``sandbox.unexpected_outputs``); return the details.

        Args:
            teardown: what :meth:`~sealtune.sandbox.process.Sandbox.destroy` verified.
            exit_code: the sandboxed process's exit status.
            wiped: the files the launcher reported wiping from the tmpfs (``workspace_wiped``).
        """
        details = {"processes_left": teardown.processes_left,
                   "namespaces_released": teardown.namespaces_released,
                   "outputs_removed": teardown.outputs_removed, "seconds": teardown.seconds,
                   "tmpfs_files_wiped": wiped, "exit_code": exit_code}
        self._record("sandbox.destroyed", self._marked(details))
        if teardown.outputs_removed:
            self.unexpected(teardown.outputs_removed, teardown.unexpected)
        return details

    def unexpected(self, count: int, names: Sequence[str]) -> None:
        """Record ``sandbox.unexpected_outputs`` (a failure) naming what was removed."""
        self._record("sandbox.unexpected_outputs",
                     self._marked({"count": count, "names": list(names)}), outcome="failure")

    def unsandboxed(self, *, wiped: int) -> dict[str, Any]:
        """Record the end of an in-process run (``--no-sandbox``) as ``sandbox.destroyed``."""
        details = {"tmpfs_files_wiped": wiped, "unsandboxed": True}
        self._record("sandbox.destroyed", self._marked(details))
        return details


def exit_status(code: object) -> str:
    """A sandboxed process's exit status in words (a negative code is the killing signal)."""
    if not isinstance(code, int):
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def run_recorded(timeline: Timeline, entry: str, args: Sequence[str], *,
                 secrets: Mapping[str, bytes | bytearray],
                 handle: Callable[[SandboxEvent], None],
                 timeout: float | None = None,
                 cancel: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Run ``entry`` in a fresh sandbox of ``timeline``'s spec, recording its lifecycle.

    Every event goes to ``handle`` (which passes the milestones to
    :meth:`Timeline.observe`); the sandbox is destroyed and ``sandbox.destroyed``
    recorded however the run ends (success, an error inside, a timeout, a killed
    entry, an exception in ``handle``, a ``cancel`` that returned true: see
    :meth:`Sandbox.events`).

    Returns:
        The ``sandbox.destroyed`` details (:meth:`Timeline.destroyed`).
    """
    wiped: list[object] = []
    with Sandbox(timeline.spec) as box:
        box.start(entry, args, secrets=secrets)
        try:
            for ev in box.events(timeout=timeout, cancel=cancel):
                if ev.type == "event" and ev.name == "workspace_wiped":
                    wiped.append(ev.fields.get("files"))
                handle(ev)
        finally:
            teardown = timeline.destroyed(box.destroy(), exit_code=box.exit_code,
                                          wiped=wiped[-1] if wiped else None)
    return teardown
