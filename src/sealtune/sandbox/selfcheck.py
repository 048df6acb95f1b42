"""The sandbox's self-check: create one, check its isolation from the inside, destroy it.

:func:`probe` starts :mod:`sealtune.sandbox._probe_child` (``selfcheck``) in
a sandbox built from the caller's spec (its output directory replaced by a
temporary one) and compares what it reports with what the spec promises: only
``lo``, no capabilities, ``no_new_privs``, the sandbox uid and hostname, the
seccomp filter in force, the launcher as PID 1, and exactly the allow-listed
variable names in every environment it can see. A stage runs it before it
starts its own entry, and refuses to run on a machine where it fails.

What this protects against: a machine where bubblewrap is missing, user
namespaces are off, or the kernel silently ignores a flag, so that work
believed isolated would not be. What it does not: it checks one sandbox at
one moment; it cannot see what the host (root, the kernel) does; see
:mod:`sealtune.sandbox` for what the isolation itself does not cover.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from sealtune.sandbox import wire
from sealtune.sandbox.process import Sandbox
from sealtune.sandbox.spec import (
    NO_SANDBOX_HINT,
    SANDBOX_UID,
    SandboxSpec,
    SandboxUnavailableError,
)

__all__ = ["ProbeReport", "probe"]


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
            box.start("sealtune.sandbox._probe_child", ["selfcheck"])
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
