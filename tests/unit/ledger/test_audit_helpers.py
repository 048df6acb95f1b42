"""What ``sealtune audit`` used to decide itself, now in the ledger: reports, witnesses, files."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealtune.errors import IntegrityError, PolicyViolation, UsageError
from sealtune.ledger import Problem, VerifyReport, read_checkpoint_file
from sealtune.ledger.witness import WitnessOutcome, WitnessRun, request_cosignatures
from sealtune.workspace import Workspace


def _report(*, ok: bool, problems: int = 1, cosigned: int = 0, required: int = 0,
            seq: int | None = 7) -> VerifyReport:
    return VerifyReport(ok=ok, first_bad_seq=None if ok else seq, bad_range=None,
                        reason="" if ok else "entry 7 does not match its hash",
                        problems=() if ok else (Problem(seq, "x"),),
                        problem_count=0 if ok else problems, entries_checked=9, segments=1,
                        checkpoints=1, pruned_segments=0, unsigned_tail=0, signed_through_seq=9,
                        cosigned=cosigned, witnesses_required=required)


def test_a_broken_report_raises_with_the_place_and_what_to_do() -> None:
    _report(ok=True).raise_if_failed()
    with pytest.raises(IntegrityError) as broken:
        _report(ok=False).raise_if_failed()
    assert broken.value.message == ("audit log broken at sequence number 7: entry 7 does not "
                                    "match its hash")
    assert "outside sealtune" in (broken.value.hint or "")
    with pytest.raises(IntegrityError) as unwitnessed:
        _report(ok=False, cosigned=1, required=2, seq=None).raise_if_failed()
    assert unwitnessed.value.message.startswith("audit log broken: ")
    assert "audit checkpoint --witness" in (unwitnessed.value.hint or "")


def test_a_witness_run_fails_on_evidence_first_then_on_too_few_cosignatures() -> None:
    fine = WitnessOutcome("http://w1", (), "cosigned")
    forked = WitnessOutcome("http://w2", (), "forked", evidence=True)
    WitnessRun(5, (fine,), 2).raise_if_failed(2)
    with pytest.raises(PolicyViolation, match="1 of the 2 required witnesses cosigned the "
                                              "checkpoint at size 5"):
        WitnessRun(5, (fine,), 1).raise_if_failed(2)
    with pytest.raises(IntegrityError, match="rolled back or forked"):
        WitnessRun(5, (fine, forked), 3).raise_if_failed(2)


def test_witness_urls_must_be_http_before_anything_is_sent(workspace: Workspace) -> None:
    note = workspace.seal_ledger()
    with pytest.raises(UsageError, match="http or https"):
        request_cosignatures(workspace.ledger.anchors, note, ["file:///etc/passwd"], [])


def test_a_checkpoint_file_is_read_bounded_and_must_be_text(tmp_path: Path) -> None:
    good = tmp_path / "cp.txt"
    good.write_text("origin\n1\nabc=\n\n— sig\n", "utf-8")
    assert read_checkpoint_file(good).startswith("origin\n")
    big = tmp_path / "big"
    big.write_bytes(b"x" * (64 * 1024 + 1))
    with pytest.raises(UsageError, match="too large"):
        read_checkpoint_file(big)
    binary = tmp_path / "bin"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(IntegrityError, match="not a checkpoint note"):
        read_checkpoint_file(binary)
    with pytest.raises(UsageError, match="cannot read it"):
        read_checkpoint_file(tmp_path / "missing")
