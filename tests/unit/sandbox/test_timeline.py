"""The sandbox's ledger timeline: the same events for every stage, each marked with it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from sealtune.sandbox import SandboxEvent, SandboxSpec, Teardown, Timeline, isolation_flags, seccomp
from sealtune.sandbox.timeline import MILESTONES


class Ledger:
    """Collects what a Timeline records, as a stage's record callback would write it."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, dict[str, Any], float | None, str]] = []

    def __call__(self, action: str, details: Mapping[str, Any], *, at: float | None = None,
                 outcome: str = "success") -> None:
        self.entries.append((action, dict(details), at, outcome))


def _ev(type_: str, name: str, **fields: Any) -> SandboxEvent:
    return SandboxEvent(type_, name, fields, 12.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("stage", ["train", "data"])
def test_every_stage_records_the_same_lifecycle_marked_with_it(tmp_path: Path,
                                                               stage: str) -> None:
    spec = SandboxSpec(output_dir=tmp_path, stage=stage, inputs={"dataset": tmp_path})
    ledger = Ledger()
    line = Timeline(spec, ledger, measurement={"digest": "sha256:ab"},
                    milestones={"training_finished": "train.finished"})
    for ev in (_ev("lifecycle", "created", pid=7), _ev("event", "started", keys=2),
               _ev("event", "data_decrypted", records=12),
               _ev("event", "training_finished", steps=3),
               _ev("progress", "progress", step=1), _ev("event", "outputs_sealed", files=2)):
        line.observe(ev)
    details = line.destroyed(Teardown(0, True, 2, 0.01, ("stray.txt", "model/x")),
                             exit_code=0, wiped=4)
    actions = [e[0] for e in ledger.entries]
    assert actions == ["sandbox.created", "sandbox.data_decrypted", "train.finished",
                       "sandbox.outputs_sealed", "sandbox.destroyed",
                       "sandbox.unexpected_outputs"]
    marked = {a: d.get("stage") for a, d, _, _ in ledger.entries}
    assert all(marked[a] == stage for a in actions if a.startswith("sandbox."))
    assert "stage" not in ledger.entries[2][1]  # the stage's own action is not re-marked
    created = ledger.entries[0][1]
    assert created["pid"] == 7 and created["measurement"] == {"digest": "sha256:ab"}
    assert created["flags"] == isolation_flags(spec)
    assert ledger.entries[1][1] == {"records": 12, "stage": stage} and ledger.entries[1][2] == 12.5
    assert details == {"processes_left": 0, "namespaces_released": True, "outputs_removed": 2,
                       "seconds": 0.01, "tmpfs_files_wiped": 4, "exit_code": 0}
    assert ledger.entries[-1][1]["names"] == ["stray.txt", "model/x"]
    assert ledger.entries[-1][3] == "failure"
    assert set(MILESTONES) == {"data_decrypted", "outputs_sealed"}


def test_a_clean_teardown_records_no_unexpected_outputs_and_unsandboxed_runs_are_marked(
        tmp_path: Path) -> None:
    ledger = Ledger()
    line = Timeline(SandboxSpec(output_dir=tmp_path, stage="data"), ledger, measurement={})
    line.observe(_ev("event", "training_finished", steps=3))  # not a data milestone: ignored
    line.destroyed(Teardown(0, True, 0, 0.01), exit_code=0, wiped=0)
    assert [e[0] for e in ledger.entries] == ["sandbox.destroyed"]
    assert line.unsandboxed(wiped=3) == {"tmpfs_files_wiped": 3, "unsandboxed": True}
    assert ledger.entries[-1][1] == {"tmpfs_files_wiped": 3, "unsandboxed": True,
                                     "stage": "data"}


def test_the_isolation_flags_are_read_off_the_argv(tmp_path: Path) -> None:
    flags = isolation_flags(SandboxSpec(output_dir=tmp_path, env={"OMP_NUM_THREADS": "1"}))
    assert {"--unshare-net", "--unshare-pid", "--as-pid-1", "--clearenv",
            "--disable-userns"} <= set(flags["isolation"])
    assert flags["seccomp"]["program"] == seccomp.digest(os.uname().machine)
    assert "OMP_NUM_THREADS" in flags["env"] and flags["network"] == "loopback only"


def test_exit_status_in_words() -> None:
    from sealtune.sandbox.timeline import exit_status

    assert exit_status(-9) == "killed by SIGKILL"
    assert exit_status(3) == "exit status 3"
    assert exit_status(None) == "exit status unknown"
    assert exit_status(-99) == "killed by signal 99"
