"""The verification report of the audit ledger (what ``audit verify`` prints).

What this protects against: reports that leak entry contents (reasons name
sequence numbers, segments and sizes only) or hide a failure (``ok`` is False
whenever any problem was found, and :meth:`VerifyReport.raise_if_failed`
turns that into an ``IntegrityError``). What it does not: a report is only as
good as the run that produced it; it is not signed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sealtune.errors import IntegrityError

MAX_PROBLEMS = 100


@dataclass(frozen=True)
class Problem:
    """One integrity failure.

    Attributes:
        seq: the first sequence number affected (None for checkpoint-level issues).
        reason: what is wrong (never entry contents).
        range: the affected sequence range when only a checkpoint localises it.
    """

    seq: int | None
    reason: str
    range: tuple[int, int] | None = None


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of :meth:`Ledger.verify`.

    Attributes:
        ok: no problem found.
        first_bad_seq: the lowest sequence number where the log breaks.
        bad_range: when a checkpoint caught it, ``(last good + 1, first bad size)``.
        reason: one human sentence: the first problem, or a summary.
        problems: the first 100 problems, in discovery order.
        problem_count: how many problems were found in all.
        entries_checked: entries read.
        segments: segments known (from checkpoints and the segment table).
        checkpoints: stored checkpoints whose signature verified.
        pruned_segments: segments whose entries were legitimately pruned.
        unsigned_tail: entries after the newest signed checkpoint.
        signed_through_seq: the last sequence number covered by a signature.
        warnings: non-failing remarks (unsigned tail, what cannot be checked).
        global_checkpoints: stored global checkpoints whose signature verified.
        global_size: entries covered by the newest valid global checkpoint.
        global_checkpoint: that checkpoint's note (what to keep or give witnesses).
        cosigned: valid witness cosignatures on it (with a witness policy).
        witnesses_required: the policy's ``k`` (0: no witness policy).
    """

    ok: bool
    first_bad_seq: int | None
    bad_range: tuple[int, int] | None
    reason: str
    problems: tuple[Problem, ...]
    problem_count: int
    entries_checked: int
    segments: int
    checkpoints: int
    pruned_segments: int
    unsigned_tail: int
    signed_through_seq: int
    warnings: tuple[str, ...] = ()
    global_checkpoints: int = 0
    global_size: int = 0
    global_checkpoint: str | None = None
    cosigned: int = 0
    witnesses_required: int = 0

    def summary(self) -> str:
        """One line for people: the verdict, counts, and the unsigned tail."""
        if not self.ok:
            where = "" if self.first_bad_seq is None else f" at entry {self.first_bad_seq}"
            return f"BROKEN{where}: {self.reason}"
        text = (f"{self.entries_checked} entries in {self.segments} segments, "
                f"{self.checkpoints} signed checkpoints")
        if self.pruned_segments:
            text += f", {self.pruned_segments} segments pruned"
        if self.unsigned_tail:
            text += f", {self.unsigned_tail} entries after the last checkpoint not yet signed"
        if self.global_checkpoints:
            text += f"; global checkpoint at {self.global_size} entries"
        if self.witnesses_required:
            text += (f", cosigned by {self.cosigned} witnesses "
                     f"({self.witnesses_required} required)")
        return text

    def to_json(self) -> dict[str, Any]:
        """Return the report as a JSON-ready dict."""
        data = asdict(self)
        data["problems"] = [asdict(p) for p in self.problems]
        return data

    def raise_if_failed(self) -> None:
        """Raise :class:`~sealtune.errors.IntegrityError` unless ``ok``.

        The hint says what to do: when the only problem is that entries appended
        since the last witnessing lack cosignatures, ask the witnesses again;
        otherwise the log was changed outside sealtune and is evidence.
        """
        if self.ok:
            return
        where = "" if self.first_bad_seq is None else f" at sequence number {self.first_bad_seq}"
        unwitnessed = self.problem_count == 1 and self.cosigned < self.witnesses_required
        raise IntegrityError(
            f"audit log broken{where}: {self.reason}",
            hint="entries appended since the last witnessing need new cosignatures: run "
                 "'sealtune audit checkpoint --witness'" if unwitnessed else
                 "the log was edited, deleted or rolled back outside sealtune; keep this "
                 "workspace for investigation",
        )
